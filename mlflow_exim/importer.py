"""Import: bundle → server. Each public function is one CLI command.

The whole bundle is validated before anything is written to the target. Then the import
is planned whole, reading the target only: each kind of the catalog, in dependency order,
decides for each of its objects whether to create it, skip it as already present, bring
it up to date, or delete and write again what an interrupted import left half-written
(:mod:`mlflow_exim.kind`). A dry run reports that plan and stops. Otherwise the steps of
every kind are applied together, ``workers`` at a time in all, each as soon as the objects
it needs are done (see :meth:`_Import._apply`): a logged model once its source run is,
a registered model once the runs and logged models of its versions are, while other
experiments' runs are still going in; there is no barrier between kinds. Last each kind
finishes, in reverse order: runs get their links to the logged models, then what is
deleted at the source is deleted again, runs before experiments (nothing can be written
into a deleted object).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow_exim import lease
from mlflow_exim.bundle import Bundle
from mlflow_exim.catalog import KINDS, new_idmap, open_bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import evaluation_dataset as dataset_entity
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import names
from mlflow_exim.entities import prompt as prompt_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.entities import scorer as scorer_entity
from mlflow_exim.entities import trace as trace_entity
from mlflow_exim.entities.registered_model import ImportOptions
from mlflow_exim.errors import EximError
from mlflow_exim.kind import SKIP, ImportContext, Task
from mlflow_exim.report import Report, log
from mlflow_exim.selection import Renames, Selection, rename, select
from mlflow_exim.shard import Shard, bundle_graph, narrow, split
from mlflow_exim.work import DEFAULT_WORKERS, Workers

EXPERIMENTS, RUNS = experiment_entity.NAME, run_entity.NAME
LOGGED_MODELS, REGISTERED_MODELS = logged_model_entity.NAME, registered_model_entity.NAME
VERSIONS = registered_model_entity.VERSIONS
PROMPTS, DATASETS, SCORERS = prompt_entity.NAME, dataset_entity.NAME, scorer_entity.NAME
TRACES = trace_entity.NAME
NONE = "none"  # a selection of nothing


def import_run(input_dir: str | Path, experiment_name: str, *,
               tracking_uri: str | Endpoint | None = None, import_source_tags: bool = False,
               workers: int = DEFAULT_WORKERS, dry_run: bool = False,
               database_uri: str | None = None) -> Report:
    """Import the one run of a bundle into the experiment ``experiment_name`` (created
    when missing). A parent run is not part of such a bundle, so ``mlflow.parentRunId``
    is dropped (and kept as a source tag with ``import_source_tags``)."""
    bundle = open_bundle(input_dir)
    runs = len(bundle.documents[RUNS])
    if runs != 1:
        raise EximError(f"{bundle.root}: holds {runs} runs; import-run takes a bundle of one "
                        "run (use import-experiment for more)")
    return _Import(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                   "import-run",
                   source_tags=import_source_tags, experiment_name=experiment_name,
                   workers=workers, dry_run=dry_run).run()


def import_experiment(input_dir: str | Path, *, experiment_name: str | None = None,
                      tracking_uri: str | Endpoint | None = None,
                      import_source_tags: bool = False, workers: int = DEFAULT_WORKERS,
                      dry_run: bool = False,
                      database_uri: str | None = None) -> Report:
    """Import the one experiment of a bundle, with its runs and logged models, under its own
    name or ``experiment_name``. An existing target experiment of that name receives them."""
    bundle = open_bundle(input_dir)
    if len(bundle.documents[EXPERIMENTS]) != 1:
        raise EximError(f"{bundle.root}: holds {len(bundle.documents[EXPERIMENTS])} experiments; "
                        "import-experiment takes one (use import-experiments)")
    names = {source_id: experiment_name for source_id in bundle.documents[EXPERIMENTS]}
    return _Import(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                   "import-experiment",
                   source_tags=import_source_tags, names=names if experiment_name else None,
                   workers=workers, dry_run=dry_run).run()


def import_experiments(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
                       import_source_tags: bool = False,
                       experiment_renames: Renames = (), workers: int = DEFAULT_WORKERS,
                       dry_run: bool = False, shard: Shard | str | None = None,
                       database_uri: str | None = None) -> Report:
    """Import every experiment of a bundle, with its runs and logged models, under its own
    name (or as ``experiment_renames``, (old prefix, new prefix) rules, say). Registered
    models in the bundle are left alone (use import-models or import-all). With ``shard``
    (``"2/4"``), only that shard's part (see :mod:`mlflow_exim.shard`)."""
    bundle = open_bundle(input_dir)
    return _Import(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                   "import-experiments",
                   source_tags=import_source_tags,
                   names=_experiment_names(bundle, experiment_renames),
                   workers=workers, dry_run=dry_run, shard=Shard.of(shard)).run()


def import_all(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
               import_source_tags: bool = False,
               stage_to_alias: dict[str, str] | None = None, experiment_renames: Renames = (),
               model_renames: Renames = (), experiments: Selection = "all",
               models: Selection = "all", workers: int = DEFAULT_WORKERS,
               dry_run: bool = False, shard: Shard | str | None = None,
               database_uri: str | None = None,
               known_ids: dict[str, dict[str, str]] | None = None) -> Report:
    """Import everything a bundle holds (made by ``export-all`` or any other export), or
    the ``experiments`` and registered ``models`` selected from it (the grammar of
    :func:`selection.parse_selection`; ``"none"`` for no models), with what they need: the
    runs and logged models behind the selected models' versions come along.
    Experiments and registered models arrive under their own names, or renamed by the
    first matching (old prefix, new prefix) rule of ``experiment_renames`` and
    ``model_renames``. Running it again completes what is missing and duplicates nothing;
    ``dry_run`` reports the plan (what would be created, skipped as present or brought up
    to date) and writes nothing. With ``shard`` (``"2/4"``), only that shard's part of it
    (see :mod:`mlflow_exim.shard`): N imports, one per shard, take it all, nothing twice.
    ``known_ids`` (the ``id_map`` of earlier imports' reports) resolves links to objects
    those imports brought and this bundle does not hold (a prompt version's runs, a
    dataset record's run, an experiment renamed on the way): a pipelined ``migrate``
    gives each chunk those of the chunks before it."""
    bundle = open_bundle(input_dir)
    return _Import(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                   "import-all",
                   source_tags=import_source_tags,
                   names=_experiment_names(bundle, experiment_renames),
                   models=None if models == NONE else ImportOptions(
                       source_tags=import_source_tags, stage_to_alias=stage_to_alias or {}),
                   model_renames={name: rename(name, model_renames)
                                  for name in bundle.documents[REGISTERED_MODELS]},
                   selected=_selection(bundle, experiments, models),
                   workers=workers, dry_run=dry_run, shard=Shard.of(shard),
                   known_ids=known_ids).run()


def import_traces(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
                  import_source_tags: bool = False, experiment_renames: Renames = (),
                  workers: int = DEFAULT_WORKERS, dry_run: bool = False,
                  shard: Shard | str | None = None) -> Report:
    """Import the traces of a bundle (from export-traces, or any export that holds them)
    into their experiments (created when missing, or renamed), and only them: the bundle's
    runs, logged models and registered models are left alone. A trace's run and logged
    model (``mlflow.sourceRun``, ``mlflow.modelId``, run links, assessments' runs) are
    found on the target where an earlier import wrote them. With ``shard`` (``"2/4"``),
    only the traces of that shard's experiments (see :mod:`mlflow_exim.shard`)."""
    bundle = open_bundle(input_dir)
    selected = {kind: set() for kind in (RUNS, LOGGED_MODELS, REGISTERED_MODELS)}
    return _Import(bundle, Endpoint.connect(tracking_uri), "import-traces",
                   source_tags=import_source_tags,
                   names=_experiment_names(bundle, experiment_renames),
                   selected=selected, workers=workers, dry_run=dry_run,
                   shard=Shard.of(shard)).run()


def import_models(input_dir: str | Path, *, models: Selection = "all", **options) -> Report:
    """Import every registered model of a bundle (or those ``models`` selects) under its
    own name (or renamed), with the same version numbers, and the runs and logged models
    behind the versions; the bundle's other runs and logged models are left alone. Takes
    the other options of :func:`import_all`."""
    report = import_all(input_dir, experiments=NONE, models=models, **options)
    report.command = "import-models"
    return report


def import_model(input_dir: str | Path, *, model: str | None = None,
                 experiment_name: str | None = None, tracking_uri: str | Endpoint | None = None,
                 import_source_tags: bool = False,
                 stage_to_alias: dict[str, str] | None = None, workers: int = DEFAULT_WORKERS,
                 dry_run: bool = False,
                 database_uri: str | None = None) -> Report:
    """Import the one registered model of a bundle, under its own name or ``model``, with
    the same version numbers. Its runs and logged models go into their own experiments,
    or all into ``experiment_name``."""
    bundle = open_bundle(input_dir)
    (source_name,) = _only_model(bundle, "import-model")
    return _Import(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                   "import-model",
                   source_tags=import_source_tags, experiment_name=experiment_name,
                   models=ImportOptions(source_tags=import_source_tags,
                                        stage_to_alias=stage_to_alias or {}),
                   model_renames={source_name: model or source_name},
                   workers=workers, dry_run=dry_run).run()


def import_model_version(input_dir: str | Path, model: str, *,
                         experiment_name: str | None = None,
                         tracking_uri: str | Endpoint | None = None,
                         import_source_tags: bool = False, workers: int = DEFAULT_WORKERS,
                         dry_run: bool = False,
                         database_uri: str | None = None) -> Report:
    """Import the one model version of a bundle (from export-model-version) as the next
    version of ``model`` (created when missing), with its run and logged model. Imported
    again, it is recognised (it points at the same migrated run or model) and not added."""
    bundle = open_bundle(input_dir)
    _only_model(bundle, "import-model-version", one_version=True)
    return import_version_as(bundle, Endpoint.connect(tracking_uri, database_uri=database_uri),
                             "import-model-version",
                             model, experiment_name,
                             ImportOptions(source_tags=import_source_tags, keep_numbers=False,
                                           update_existing=False),
                             workers=workers, dry_run=dry_run)


def import_prompts(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
                   workers: int = DEFAULT_WORKERS, dry_run: bool = False) -> Report:
    """Import the prompts of a bundle under their own names, every version under its
    number, with aliases and tags; links to experiments and runs name the target's (an
    experiment not in the bundle is found by name). The bundle's other objects are left
    alone."""
    return _import_only(input_dir, PROMPTS, "import-prompts", tracking_uri, workers, dry_run)


def import_evaluation_datasets(input_dir: str | Path, *,
                               tracking_uri: str | Endpoint | None = None,
                               workers: int = DEFAULT_WORKERS,
                               dry_run: bool = False) -> Report:
    """Import the evaluation datasets of a bundle with every record, into the target's
    experiments of the same names (see :func:`import_prompts`)."""
    return _import_only(input_dir, DATASETS, "import-evaluation-datasets", tracking_uri,
                        workers, dry_run)


def _import_only(input_dir, kind: str, command: str, tracking_uri, workers: int,
                 dry_run: bool) -> Report:
    bundle = open_bundle(input_dir)
    selected = {other.name: set() for other in KINDS if other.name != kind}
    return _Import(bundle, Endpoint.connect(tracking_uri), command, selected=selected,
                   workers=workers, dry_run=dry_run).run()


# Helpers of the commands ----------------------------------------------------------------

def _only_model(bundle: Bundle, command: str, *, one_version: bool = False) -> list[str]:
    names = list(bundle.documents[REGISTERED_MODELS])
    if len(names) != 1:
        raise EximError(f"{bundle.root}: holds {len(names)} registered models; {command} "
                        "takes a bundle of one (use import-models for more)")
    if one_version and len(bundle.documents[REGISTERED_MODELS][names[0]]["versions"]) != 1:
        raise EximError(f"{bundle.root}: {command} takes a bundle of one model version "
                        "(from export-model-version)")
    return names


def import_version_as(bundle: Bundle, dst: Endpoint, command: str, model: str,
                      experiment_name: str | None, options: ImportOptions,
                      **settings) -> Report:
    """Import the one model version of ``bundle`` into ``model`` as ``options`` say (used
    by import-model-version and copy-model-version)."""
    (source_name,) = bundle.documents[REGISTERED_MODELS]
    return _Import(bundle, dst, command, source_tags=options.source_tags,
                   experiment_name=experiment_name, models=options,
                   model_renames={source_name: model}, **settings).run()


def _experiment_names(bundle: Bundle, renames: Renames) -> dict[str, str]:
    return {source_id: rename(doc["name"], renames)
            for source_id, doc in bundle.documents[EXPERIMENTS].items()}


def _new_report(command: str, bundle: Bundle) -> Report:
    """A report that says so when the bundle itself is partial."""
    report = Report(command)
    left = bundle.manifest.get("not_carried") or {}
    if left:
        report.extra["not_carried"] = left
    failures = bundle.manifest.get("export_failures") or []
    if failures:
        report.extra["bundle_export_failures"] = failures
        log.warning("%s: the export that wrote this bundle failed for %d object(s); they are "
                    "not in it (see the manifest's export_failures)", bundle.root, len(failures))
    if bundle.unverified:  # formats 1 and 2 have no checksum for them
        report.extra["unverified_files"] = dict(bundle.unverified)
        log.warning("%s: %d files could not be verified: format %d recorded no checksum for "
                    "them", bundle.root, sum(bundle.unverified.values()), bundle.format_version)
    return report


# The import engine ----------------------------------------------------------------------

class _Import:
    """One import of a bundle into a target (see the module text).

    ``experiment_name`` puts every run and logged model into that one experiment (created
    empty when missing); otherwise ``names`` maps source experiment ids to target names
    (default: the source names). ``models`` says how registered models arrive; None
    leaves them out. ``model_renames`` maps source model names to target names.
    ``selected`` narrows the bundle to some objects per kind (see :func:`_selection`),
    and ``shard`` to that shard's part of them (see :mod:`mlflow_exim.shard`).
    ``known_ids`` seeds the id map with earlier imports' (see
    :class:`~mlflow_exim.idmap.IdMap`).
    An embedded store takes one writer at a time (sqlite locks the whole file)."""

    def __init__(self, bundle: Bundle, dst: Endpoint, command: str, *,
                 source_tags: bool = False, experiment_name: str | None = None,
                 names: dict[str, str] | None = None, models: ImportOptions | None = None,
                 model_renames: dict[str, str] | None = None,
                 selected: dict[str, set[str]] | None = None, workers: int = DEFAULT_WORKERS,
                 dry_run: bool = False, shard: Shard | None = None,
                 known_ids: dict[str, dict[str, str]] | None = None):
        self.bundle, self.dst, self.dry_run, self.shard = bundle, dst, dry_run, shard
        self.known_ids = known_ids
        self.workers = workers if dst.is_http else 1
        if shard:
            selected = narrow(selected or {}, split(*bundle_graph(bundle), shard))
        self.settings = dict(
            source_tags=source_tags, experiment_name=experiment_name,
            names=names or {i: d["name"] for i, d in bundle.documents[EXPERIMENTS].items()},
            models=models, model_names=model_renames or {}, selected=selected or {})
        self.report = _new_report(command, bundle)

    def run(self) -> Report:
        """The import, under a lease on the target for this bundle (see :mod:`lease`): a
        second import of the same bundle into the same target at once waits a little
        (long enough for a killed import's lease to expire), then is refused, rather than
        delete the first one's half-written objects. A dry run writes nothing and takes
        none."""
        if self.dry_run:
            return self._run()
        work = ["import", self.bundle.manifest] + ([str(self.shard)] if self.shard else [])
        key = json.dumps(work, sort_keys=True, default=str)
        with lease.held(self.dst, key, f"{self.report.command} of bundle {self.bundle.root}",
                        wait=lease.TTL_SECONDS + 5):
            return self._run()

    def _run(self) -> Report:
        idmap = new_idmap(self.known_ids)
        new_store = self.dry_run and self.dst.missing_store is not None
        if new_store:  # opening it would create it: the plan is to create everything
            log.warning("%s does not exist: the import would create a new store and every "
                        "object in it; the dry run creates nothing", self.dst.missing_store)
            self.report.extra["new_store"] = str(self.dst.missing_store)
        with Workers(self.workers, "objects") as objects, \
                Workers(self.workers, "transfers") as transfers:
            ctx = ImportContext(self.bundle, self.dst, self.report, idmap, objects, transfers,
                                dry_run=self.dry_run, empty_target=new_store, **self.settings)
            for kind in KINDS:
                ctx.steps[kind.name] = kind.plan(ctx)
            if not new_store and self.dst.folding:  # asking a missing store creates it
                _refuse_clashing_keys(ctx, self.dst.folding)
            for kind in KINDS:
                if kind.review:
                    kind.review(ctx)
            self._report_leftovers(ctx)
            if self.dry_run:
                for kind in KINDS:
                    for step in ctx.steps[kind.name]:
                        for planned in (step, *step.parts):
                            self.report.add(planned.planned_outcome())
            else:
                self._apply(ctx)
                for kind in reversed(KINDS):
                    if kind.finish:
                        kind.finish(ctx)
        self.report.extra["id_map"] = idmap.to_dict()
        self.report.extra["dry_run"] = self.dry_run
        return self.report

    @staticmethod
    def _apply(ctx: ImportContext) -> None:
        """Every kind's tasks on one scheduler (:meth:`Workers.each_after`), so that no
        more than ``workers`` objects are in flight in all and each starts once what it
        needs is done, whatever became of it. A step whose plan failed is reported failed;
        so is one whose needed object failed, with that object's reason (see
        :meth:`ImportContext.unmet`): a child run whose parent failed, a logged model whose
        source run did, a version whose run or logged model did."""
        tasks: dict[tuple[str, str], Task] = {}
        for kind in KINDS:
            for step in ctx.steps[kind.name]:
                if step.error:
                    ctx.fail(step)
            for task in kind.apply(ctx, [s for s in ctx.steps[kind.name] if not s.error]):
                tasks[task.step.kind, task.step.source_id] = task

        def key(need: tuple[str, str]) -> tuple[str, str] | None:
            step = ctx.planned_step(*need)
            return None if step is None else (step.kind, step.source_id)

        needs = {k: [n for n in map(key, (*task.needs, *task.after)) if n in tasks]
                 for k, task in tasks.items()}

        def run(k: tuple[str, str]) -> None:
            task = tasks[k]
            reason = ctx.unmet(task.needs)
            if reason:
                task.step.error = reason
                ctx.fail(task.step)
            else:
                task.run()
            task.done()

        try:
            ctx.objects.each_after(run, needs)
        finally:
            ctx.close_progress()

    def _report_leftovers(self, ctx: ImportContext) -> None:
        """Say what an interrupted import left half-written, which this one writes again."""
        leftovers = {kind: [i for step in steps for i in step.leftovers]
                     for kind, steps in ctx.steps.items()}
        leftovers = {kind: ids for kind, ids in leftovers.items() if ids}
        if leftovers:
            self.report.extra["half_written"] = leftovers
            log.warning("%s left half-written by an interrupted import %s",
                        ", ".join(f"{len(ids)} {kind}" for kind, ids in leftovers.items()),
                        "would be written again" if self.dry_run
                        else "are deleted and written again")


def _refuse_clashing_keys(ctx: ImportContext, folding: frozenset[str]) -> None:
    """On a target whose database folds case or trailing spaces (``folding``, see
    :attr:`Endpoint.folding`), each object still to be written whose keys it would take
    for one (:func:`names.clashing_keys`) fails before anything of it is written, and what
    needs it with it."""
    for kind in KINDS:
        documents = ctx.bundle.documents.get(kind.name, {})
        for step in ctx.steps[kind.name]:
            if step.error or step.action == SKIP or step.source_id not in documents:
                continue
            doc = documents[step.source_id]
            step.error = names.clashing_keys(doc, folding)
            versions = {str(v.get("version")): v for v in doc.get("versions") or []
                        if isinstance(v, dict)}
            for part in step.parts:
                version = versions.get(part.source_id.rpartition("/")[2])
                if version is not None and not part.error and part.action != SKIP:
                    part.error = names.clashing_keys(version, folding)


def _selection(bundle: Bundle, experiments: Selection, models: Selection) -> dict[str, set[str]]:
    """The objects of a bundle that an import of some experiments and registered models
    takes: the selected experiments with their runs and logged models, the selected models
    with every version, and what those versions need (their runs and logged models, the
    logged models' source runs and the runs of their metrics, and the experiments that hold
    them). Empty when everything is selected."""
    if experiments == "all" and models == "all":
        return {}
    where = f"bundle {bundle.root}"
    experiment_docs = bundle.documents[EXPERIMENTS]
    chosen_experiments = set() if experiments == NONE else {
        doc["experiment_id"] for doc in select(
            experiments, list(experiment_docs.values()), name=lambda d: d["name"],
            key=lambda d: d["experiment_id"], what="experiment", where=where)}
    chosen = {EXPERIMENTS: set(chosen_experiments), REGISTERED_MODELS: set()}
    for kind in (RUNS, LOGGED_MODELS, TRACES):
        chosen[kind] = {object_id for object_id, facts in bundle.facts[kind].items()
                        if facts["experiment_id"] in chosen_experiments}
    if models != NONE:
        model_docs = bundle.documents[REGISTERED_MODELS]
        for doc in select(models, list(model_docs.values()), name=lambda d: d["name"],
                          key=lambda d: d["name"], what="registered model", where=where):
            chosen[REGISTERED_MODELS].add(doc["name"])
            for v in doc["versions"]:
                if v["run_id"]:
                    chosen[RUNS].add(v["run_id"])
                if v["source_ref"]["kind"] == "logged_model":
                    chosen[LOGGED_MODELS].add(v["source_ref"]["model_id"])
    logged = bundle.documents[LOGGED_MODELS]
    for model_id in [m for m in chosen[LOGGED_MODELS] if m in logged]:
        doc = logged[model_id]
        chosen[RUNS].update(r for r in {doc["source_run_id"], *(m.get("run_id") for m in
                                                                 doc["metrics"])} if r)
    _select_genai(bundle, chosen, chosen_experiments, experiments == "all")
    chosen[RUNS] &= set(bundle.facts[RUNS])
    chosen[LOGGED_MODELS] &= set(logged)
    for kind in (RUNS, LOGGED_MODELS):
        chosen[EXPERIMENTS].update(bundle.facts[kind][i]["experiment_id"] for i in chosen[kind])
    return chosen


def _select_genai(bundle: Bundle, chosen: dict[str, set[str]], experiments: set[str],
                  everything: bool) -> None:
    """The prompts, evaluation datasets and scorers of the selected experiments (all of
    them when every experiment is selected, those of no experiment too)."""
    def linked(ids) -> bool:
        return everything or bool(set(ids) & experiments)

    chosen[PROMPTS] = {name for name, doc in bundle.documents[PROMPTS].items()
                       if linked(prompt_entity.linked_experiments_of(doc))}
    chosen[DATASETS] = {i for i, doc in bundle.documents[DATASETS].items()
                        if linked(doc["experiment_ids"])}
    chosen[SCORERS] = {i for i, doc in bundle.documents[SCORERS].items()
                       if linked([doc["experiment_id"]])}
