"""Export: server → bundle. Each public function is one CLI command.

Every export first makes a plan (which objects of each kind to write), then writes it,
each object through its kind's ``export`` hook as soon as the objects it needs are
written. An object needed by several others, such as a run behind a model version that
its experiment also holds, is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from mlflow.entities import Experiment, LifecycleStage, LoggedModel, Run, ViewType
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim import not_carried
from mlflow_exim.bundle import BundleWriter
from mlflow_exim.bundle.format import singular
from mlflow_exim.bundle.parts import PartsDir, part_name
from mlflow_exim.catalog import KINDS
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import evaluation_dataset as dataset_entity
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import prompt as prompt_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.entities import scorer as scorer_entity
from mlflow_exim.entities import trace as trace_entity
from mlflow_exim.entities.artifacts import require_client
from mlflow_exim.errors import EximError
from mlflow_exim.kind import ExportContext
from mlflow_exim.report import Report, one_line
from mlflow_exim.selection import (
    RunFilter,
    Selection,
    all_experiments,
    changed_since,
    select,
    select_experiments,
    select_registered_models,
)
from mlflow_exim.shard import Node, Shard, chunks, linked, model_runs, parts, split
from mlflow_exim.work import DEFAULT_WORKERS, PAGE_SIZE, Workers, pages, progress_bar

EXPERIMENTS, RUNS = experiment_entity.NAME, run_entity.NAME
LOGGED_MODELS, REGISTERED_MODELS = logged_model_entity.NAME, registered_model_entity.NAME
MODEL_VERSIONS = registered_model_entity.VERSIONS
PROMPTS, DATASETS, SCORERS = prompt_entity.NAME, dataset_entity.NAME, scorer_entity.NAME
TRACES = trace_entity.NAME
# Chunks of a pipelined export at most (see export_all_in_parts): more overlap the export
# and the import better; each costs a manifest and an import's plan of the target.
MOST_PARTS = 8

# The runs a plan keeps whole, to write them without reading them again, hold at most this
# many params, tags and latest metrics in all (some tens of MB): a server of many runs is
# planned in bounded memory, and a run beyond it is read again when it is written.
WHOLE_ENTRIES_HELD = 200_000

# Runs per page of an experiment's listing: each page joins a streaming export's schedule
# as it comes.
RUNS_PER_PAGE = PAGE_SIZE

# A plan that streams: the steps still to take (each yields once it has added objects),
# and the experiments selected.
Planning = tuple[Iterator[None], list[Experiment]]


def export_run(run_id: str, output_dir: str | Path, *,
               tracking_uri: str | Endpoint | None = None, export_deleted_runs: bool = False,
               workers: int = DEFAULT_WORKERS, overwrite: bool = False,
               database_uri: str | None = None) -> Report:
    """Export one run (and its experiment's metadata) to a new bundle at ``output_dir``."""
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    plan = _Plan(src)
    try:
        run = plan.run_facts(run_id)
    except Exception as exc:  # noqa: BLE001 - "not found" and friends
        raise EximError(f"run {run_id!r} not found on {src.display_uri}") from exc
    if run.lifecycle_stage == LifecycleStage.DELETED and not export_deleted_runs:
        raise EximError(f"run {run_id} is deleted; set `export_deleted_runs` to export it")
    plan.add_run(run_id, run.experiment_id)
    return _write_bundle(plan, output_dir, "export-run",
                         {"export_deleted_runs": export_deleted_runs, "run_id": run_id}, workers,
                         overwrite=overwrite)


def export_experiment(experiment: str, output_dir: str | Path, *,
                      tracking_uri: str | Endpoint | None = None,
                      export_deleted_runs: bool = False, run_filter: RunFilter | None = None,
                      workers: int = DEFAULT_WORKERS, overwrite: bool = False,
                      database_uri: str | None = None) -> Report:
    """Export one experiment, by name or id, with its runs (all, or those ``run_filter``
    takes) and logged models."""
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    found = experiment_entity.find(src, experiment)
    if found.lifecycle_stage == LifecycleStage.DELETED and not export_deleted_runs:
        raise EximError(f"experiment {found.name!r} is deleted; set `export_deleted_runs` "
                        "to export it")
    plan = _Plan(src, run_filter=run_filter or RunFilter())
    plan.add_experiments([found], export_deleted_runs)
    return _write_bundle(plan, output_dir, "export-experiment",
                         {"export_deleted_runs": export_deleted_runs, "selection": experiment,
                          **_filter_options(plan.run_filter)}, workers, overwrite=overwrite)


def export_experiments(experiments: Selection, output_dir: str | Path, *,
                       tracking_uri: str | Endpoint | None = None,
                       export_deleted_runs: bool = False, run_filter: RunFilter | None = None,
                       workers: int = DEFAULT_WORKERS, overwrite: bool = False,
                       shard: Shard | str | None = None,
                       database_uri: str | None = None) -> Report:
    """Export the experiments named by ``experiments`` (``all``, a comma list of names or
    ids, globs, ``re:`` regexes, a ``.txt`` file; see :func:`selection.parse_selection`) with
    their runs (all, or those ``run_filter`` takes) and logged models. With ``shard``
    (``"2/4"``), only that shard's part of them (see :mod:`mlflow_exim.shard`)."""
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    shard = Shard.of(shard)
    plan = _Plan(src, run_filter=run_filter or RunFilter(), workers=workers)
    chosen = select_experiments(src, experiments, include_deleted=export_deleted_runs)
    planning = plan.adding_experiments(chosen, export_deleted_runs)
    if shard is not None:  # a shard is cut from the whole plan
        _drain(planning)
        plan.narrow(shard)
    return _write_bundle(plan, output_dir, "export-experiments",
                         {"export_deleted_runs": export_deleted_runs, "selection": experiments,
                          **_filter_options(plan.run_filter), **_shard_option(shard)}, workers,
                         overwrite=overwrite,
                         planning=(planning, chosen) if shard is None else None)


def export_model(model: str, output_dir: str | Path, *,
                 tracking_uri: str | Endpoint | None = None, versions: list[str] | None = None,
                 stages: list[str] | None = None, latest_versions: bool = False,
                 workers: int = DEFAULT_WORKERS, overwrite: bool = False,
                 database_uri: str | None = None) -> Report:
    """Export one registered model with the selected versions (all by default): listed
    ``versions``, or those in ``stages``, or with ``latest_versions`` the newest of each
    stage. The run and the logged model behind each version travel with it."""
    return _export_model(model, output_dir, "export-model", tracking_uri=tracking_uri,
                         database_uri=database_uri,
                         versions=versions, stages=stages, latest_versions=latest_versions,
                         workers=workers, overwrite=overwrite)


def export_model_version(model: str, version: str, output_dir: str | Path, *,
                         tracking_uri: str | Endpoint | None = None,
                         overwrite: bool = False,
                         database_uri: str | None = None) -> Report:
    """Export one model version with its run and logged model (and the model's
    description, tags and aliases)."""
    return _export_model(model, output_dir, "export-model-version", tracking_uri=tracking_uri,
                         database_uri=database_uri,
                         versions=[str(version)], overwrite=overwrite)


def _export_model(model: str, output_dir, command: str, *, tracking_uri,
                  versions: list[str] | None = None, stages: list[str] | None = None,
                  latest_versions: bool = False, workers: int = DEFAULT_WORKERS,
                  overwrite: bool = False,
                  database_uri: str | None = None) -> Report:
    if versions and (stages or latest_versions):
        raise EximError("`versions` cannot be combined with `stages` or `latest_versions`")
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    registered = registered_model_entity.find(src, model)
    try:
        chosen = registered_model_entity.select_versions(
            registered_model_entity.versions(src, registered.name), numbers=versions,
            stages=stages, latest=latest_versions)
    except EximError as exc:
        raise EximError(f"registered model {model!r}: {exc}") from None
    plan = _Plan(src)
    plan.add_registered_model(registered, chosen)
    return _write_bundle(plan, output_dir, command,
                         {"selection": model, "versions": versions, "stages": stages,
                          "latest_versions": latest_versions}, workers, overwrite=overwrite)


def export_models(models: Selection, output_dir: str | Path, *,
                  tracking_uri: str | Endpoint | None = None, since: datetime | None = None,
                  workers: int = DEFAULT_WORKERS, overwrite: bool = False,
                  shard: Shard | str | None = None,
                  database_uri: str | None = None) -> Report:
    """Export the registered models named by ``models`` (as for
    :func:`export_experiments`) with all their versions (with ``since``: the versions
    changed since then), runs and logged models. With ``shard`` (``"2/4"``), only that
    shard's part of them (see :mod:`mlflow_exim.shard`)."""
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    shard = Shard.of(shard)
    plan = _Plan(src, run_filter=RunFilter(since=since), workers=workers)
    plan.add_registered_models_with_all_versions(select_registered_models(src, models))
    plan.narrow(shard)
    return _write_bundle(plan, output_dir, "export-models",
                         {"selection": models, **_filter_options(plan.run_filter),
                          **_shard_option(shard)}, workers, overwrite=overwrite)


def export_all(output_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
               export_deleted_runs: bool = False, experiments: Selection = "all",
               models: Selection = "all", run_filter: RunFilter | None = None,
               workers: int = DEFAULT_WORKERS, overwrite: bool = False,
               shard: Shard | str | None = None,
               database_uri: str | None = None) -> Report:
    """Export everything the bundle format carries: every experiment (or those
    ``experiments`` selects) with its runs and logged models, and every registered model
    (or those ``models`` selects; ``"none"`` for none) with its versions. ``run_filter``
    narrows the runs; its ``since`` also narrows logged models and model versions to those
    changed since then (an incremental sync). With ``shard`` (``"2/4"``), only that shard's
    part of it (see :mod:`mlflow_exim.shard`)."""
    plan, options, planning = _plan_all(tracking_uri, export_deleted_runs, experiments, models,
                                        run_filter, workers, shard, database_uri, stream=True)
    return _write_bundle(plan, output_dir, "export-all", options, workers, overwrite=overwrite,
                         planning=planning)


def export_all_in_parts(output_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
                        export_deleted_runs: bool = False, experiments: Selection = "all",
                        models: Selection = "all", run_filter: RunFilter | None = None,
                        workers: int = DEFAULT_WORKERS, shard: Shard | str | None = None,
                        database_uri: str | None = None,
                        most_parts: int = MOST_PARTS) -> Report:
    """What :func:`export_all` takes, planned once, split into its connected parts (see
    :mod:`mlflow_exim.shard`) packed into at most ``most_parts`` chunks of about equal
    weight (and one of the prompts and evaluation datasets), and written chunk after
    chunk, each as a bundle of its own in the parts directory ``output_dir``
    (:class:`~mlflow_exim.bundle.parts.PartsDir`), so that an import can take each as soon
    as it is complete. A trace linked to a run of another experiment lands in the chunk of
    that run. Once the reader marks that it stopped, no further chunk is written. The
    report holds every written chunk's outcomes and, under ``parts``, each chunk's name
    and counts."""
    plan, options, _ = _plan_all(tracking_uri, export_deleted_runs, experiments, models,
                                 run_filter, workers, shard, database_uri)
    left = not_carried.survey(plan.src, plan.items[EXPERIMENTS])  # the source's, once
    not_carried.warn(left, plan.src.display_uri)
    split_up = plan.split(most_parts)
    names = [part_name(k, len(split_up)) for k in range(1, len(split_up) + 1)]
    waiting = [name for name, part in zip(names, split_up, strict=True) if part.links_beyond()]
    directory = PartsDir(output_dir)
    directory.announce(names, after_earlier=waiting)
    report = plan.report
    report.command, report.outcomes = "export-all", []
    report.extra["parts"] = []
    for number, (name, part) in enumerate(zip(names, split_up, strict=True), 1):
        if directory.stopped():  # the import failed: no one takes what would follow
            break
        directory.event("export-start", name)
        written = _write_bundle(part, directory.root / name, "export-all",
                                {**options, "part": f"{number}/{len(names)}"}, workers,
                                overwrite=True, not_carried_left=left)
        directory.event("export-end", name)
        report.outcomes += written.outcomes
        report.extra["parts"].append({"part": name, "counts": written.counts()})
    if left:
        report.extra["not_carried"] = left
    report.extra["bundle"] = str(directory.root.absolute())
    return report


def _plan_all(tracking_uri, export_deleted_runs: bool, experiments: Selection,
              models: Selection, run_filter: RunFilter | None, workers: int, shard,
              database_uri: str | None, *,
              stream: bool = False) -> tuple[_Plan, dict, Planning | None]:
    """The plan of an export-all (see :func:`export_all`), the options its manifest
    records, and, with ``stream`` and no shard, the planning still to do (see
    :func:`_write_bundle`): else the plan is whole (and narrowed to the shard)."""
    src = Endpoint.connect(tracking_uri, must_exist=True, database_uri=database_uri)
    shard = Shard.of(shard)
    plan = _Plan(src, export_deleted_runs=export_deleted_runs,
                 run_filter=run_filter or RunFilter(), workers=workers)
    chosen = select_experiments(src, experiments, include_deleted=export_deleted_runs)

    def planning() -> Iterator[None]:
        yield from plan.adding_experiments(chosen, export_deleted_runs)
        if models != "none":
            plan.add_registered_models_with_all_versions(select_registered_models(src, models))
            yield
        if experiments == "all":  # else adding_experiments took those of the ones selected
            plan.add_prompts(plan.all_prompts())
            plan.add_datasets(dataset_entity.search(src))

    options = {"export_deleted_runs": export_deleted_runs, "experiments": experiments,
               "models": models, **_filter_options(plan.run_filter), **_shard_option(shard)}
    if stream and shard is None:
        return plan, options, (planning(), chosen)
    _drain(planning())
    plan.narrow(shard)
    return plan, options, None


def _drain(planning: Iterator[None]) -> None:
    for _ in planning:
        pass


def export_traces(experiments: Selection, output_dir: str | Path, *,
                  tracking_uri: str | Endpoint | None = None, since: datetime | None = None,
                  filter_string: str | None = None, workers: int = DEFAULT_WORKERS,
                  overwrite: bool = False, shard: Shard | str | None = None) -> Report:
    """Export the traces of the experiments named by ``experiments`` (as for
    :func:`export_experiments`), with their spans, assessments, attachments and run links,
    and the experiments' metadata, but not their runs: all traces, or those the MLflow
    trace search ``filter_string`` finds, started at or after ``since``. With ``shard``
    (``"2/4"``), only the experiments of that shard (see :mod:`mlflow_exim.shard`)."""
    src = Endpoint.connect(tracking_uri, must_exist=True)
    missing = src.lacks(TRACES, "source")
    if missing:
        raise EximError(missing)
    shard = Shard.of(shard)
    plan = _Plan(src)
    for experiment in select_experiments(src, experiments, include_deleted=False):
        plan.add_traces(experiment, filter_string, since)
    plan.narrow(shard)
    return _write_bundle(plan, output_dir, "export-traces",
                         {"selection": experiments, "filter_string": filter_string,
                          "since": since.isoformat() if since else None,
                          **_shard_option(shard)}, workers, overwrite=overwrite)


def export_prompts(prompts: Selection, output_dir: str | Path, *,
                   tracking_uri: str | Endpoint | None = None,
                   workers: int = DEFAULT_WORKERS, overwrite: bool = False) -> Report:
    """Export the prompts named by ``prompts`` (as for :func:`export_experiments`), each
    with every version, its aliases and tags; read through the registry, never with
    ``load_prompt`` (which writes to the source)."""
    src = Endpoint.connect(tracking_uri, must_exist=True)
    plan = _Plan(src)
    plan.add_prompts(select(prompts, prompt_entity.all_prompts(src), name=lambda p: p.name,
                            key=lambda p: p.name, what="prompt", where=src.display_uri))
    return _write_bundle(plan, output_dir, "export-prompts", {"selection": prompts}, workers,
                         overwrite=overwrite)


def export_evaluation_datasets(datasets: Selection, output_dir: str | Path, *,
                               tracking_uri: str | Endpoint | None = None,
                               workers: int = DEFAULT_WORKERS, overwrite: bool = False) -> Report:
    """Export the evaluation datasets named by ``datasets`` (names or ``d-…`` ids, as for
    :func:`export_experiments`), each with every record."""
    src = Endpoint.connect(tracking_uri, must_exist=True)
    missing = src.lacks("evaluation_datasets", "source")
    if missing:
        raise EximError(missing)
    plan = _Plan(src)
    plan.add_datasets(select(datasets, dataset_entity.search(src), name=lambda d: d.name,
                             key=lambda d: d.dataset_id, what="evaluation dataset",
                             where=src.display_uri))
    return _write_bundle(plan, output_dir, "export-evaluation-datasets",
                         {"selection": datasets}, workers, overwrite=overwrite)


def _filter_options(run_filter: RunFilter) -> dict:
    """The run filter as the manifest records it (only what is set)."""
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(run_filter).items() if value}


def _shard_option(shard: Shard | None) -> dict:
    """The shard as the manifest records it (nothing without one)."""
    return {"shard": str(shard)} if shard else {}


# The plan -------------------------------------------------------------------------------

class _RunFacts(NamedTuple):
    """What a plan keeps of every run it has read, held whole or not."""

    experiment_id: str
    lifecycle_stage: str
    artifact_uri: str
    parent: str | None
    metrics: int  # its latest metrics: its weight when the plan is split


@dataclass
class _Plan:
    """What an export writes: per kind, the objects by source id (dicts keep insertion
    order and drop repeats). The ``add_*`` methods say what each command takes along: the
    experiment of a run, the run and logged model behind a model version."""

    src: Endpoint
    export_deleted_runs: bool = False
    run_filter: RunFilter = field(default_factory=RunFilter)
    workers: int = DEFAULT_WORKERS  # listings read side by side
    report: Report = field(default_factory=lambda: Report("export"))
    items: dict[str, dict] = field(default_factory=lambda: {k.name: {} for k in KINDS})
    parents: dict[str, str] = field(default_factory=dict)  # run id -> its parent's, if any
    # warnings for the outcomes of some objects, by kind and source id
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # the run links of the traces taken, to the runs of every experiment taken
    run_links: trace_entity.RunLinks | None = None
    # what the plan read of each run, by id; and those of them read whole (up to
    # WHOLE_ENTRIES_HELD), which the export writes without reading them again
    facts: dict[str, _RunFacts] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    _held: int = 0
    _prompts: list | None = None
    _any_logged_models: bool | None = None

    def add_experiment(self, experiment_id: str) -> None:
        experiments = self.items[EXPERIMENTS]
        if experiment_id not in experiments:
            experiments[experiment_id] = self.src.client.get_experiment(experiment_id)

    def add_run(self, run_id: str, experiment_id: str, parent: str | None = None) -> None:
        self.add_experiment(experiment_id)
        self.items[RUNS].setdefault(run_id, experiment_id)
        if parent:
            self.parents[run_id] = parent

    def add_logged_model(self, model: LoggedModel) -> None:
        self.add_experiment(model.experiment_id)
        self.items[LOGGED_MODELS].setdefault(model.model_id, model)

    def add_experiments(self, experiments: list[Experiment], export_deleted_runs: bool) -> None:
        """Whole experiments: their runs (deleted ones too, if asked; those the run filter
        takes) and logged models (with a run filter: those of the runs taken, or, for
        ``since``, changed since then)."""
        _drain(self.adding_experiments(experiments, export_deleted_runs))

    def adding_experiments(self, experiments: list[Experiment],
                           export_deleted_runs: bool) -> Iterator[None]:
        """What :meth:`add_experiments` does, step by step: it yields once each page of an
        experiment's runs is in the plan, once its logged models are (in the experiments'
        order, the listings read side by side, ahead), and once their scorers, datasets
        and prompts are."""
        view = ViewType.ALL if export_deleted_runs else ViewType.ACTIVE_ONLY
        with Workers(self.workers, "plan") as pool:
            for experiment, listing in pool.streams(lambda e: self._listing(e, view),
                                                    experiments):
                yield from self._add_listing(experiment, listing)
        self.add_genai_of([e.experiment_id for e in experiments])
        yield

    def _add_listing(self, experiment: Experiment, listing: Iterator) -> Iterator[None]:
        """Add what the listing of one experiment finds, yielding after each page of runs
        and after its logged models. A listing that fails fails the experiment: with the
        runs added before, if any (they are exported), else without it."""
        experiment_id = experiment.experiment_id
        self.items[EXPERIMENTS].setdefault(experiment_id, experiment)
        added = 0
        try:
            for found in listing:
                if isinstance(found, dict):  # a page of runs
                    whole = run_entity.whole_in_search(self.any_logged_models())
                    for run_id, run in found.items():
                        self.add_run(run_id, experiment_id, self._read(run, whole).parent)
                    added += len(found)
                    yield
                    continue
                models, traced = found
                for model in models:
                    self.items[LOGGED_MODELS].setdefault(model.model_id, model)
                if traced:
                    self.add_traces(experiment, since=self.run_filter.since)
        except Exception as exc:  # noqa: BLE001 - reported on the experiment
            if added:
                self.report.fail(EXPERIMENTS, experiment_id,
                                 f"its listing stopped after {added} runs, which are "
                                 f"exported: {one_line(exc)}", experiment.name)
            else:
                self.report.fail(EXPERIMENTS, experiment_id,
                                 f"cannot list its runs and logged models: {one_line(exc)}",
                                 experiment.name)
                del self.items[EXPERIMENTS][experiment_id]
            return
        yield

    def _listing(self, experiment: Experiment, view: int) -> Iterator:
        """What the plan reads of one experiment: each page of its runs (the runs any of
        the run filter's searches finds, each once, by id), then its logged models with
        whether it has traces."""
        experiment_id = experiment.experiment_id
        taken: set[str] = set()
        for filter_string in self.run_filter.searches():
            for page in pages(self.src.client.search_runs, [experiment_id], filter_string,
                              run_view_type=view, max_results=RUNS_PER_PAGE):
                found = {run.info.run_id: run for run in page
                         if run.info.run_id not in taken}
                taken.update(found)
                yield found
        yield ([m for m in logged_model_entity.search(self.src, experiment_id)
                if self._wanted(m, taken)], trace_entity.has_traces(self.src, experiment_id))

    def _side_by_side(self, read: Callable, objects: list, key: Callable) -> dict:
        """``read`` of each object, ``workers`` at a time, by ``key``: what it returned,
        or the exception it raised (reported by the caller, in the objects' order)."""
        def one(item) -> Iterator:
            try:
                yield read(item)
            except Exception as exc:  # noqa: BLE001 - the caller reports it on the object
                yield exc

        with Workers(self.workers, "plan") as pool:
            return {key(item): next(found) for item, found in pool.streams(one, objects)}

    def add_genai_of(self, experiment_ids: list[str]) -> None:
        """The scorers and evaluation datasets of these experiments, and the prompts
        linked to them."""
        taken = [i for i in experiment_ids if i in self.items[EXPERIMENTS]]
        if not taken:
            return
        active = [i for i in taken
                  if self.items[EXPERIMENTS][i].lifecycle_stage == LifecycleStage.ACTIVE]
        if self.src.supports(SCORERS):
            for experiment_id in set(taken) - set(active):
                self.notes.setdefault((EXPERIMENTS, experiment_id), []).append(
                    scorer_entity.NOT_LISTED)
        # a server lists no scorers of a deleted experiment
        listed = self._side_by_side(lambda i: scorer_entity.search(self.src, i), active,
                                    key=lambda i: i)
        for experiment_id in active:
            if isinstance(found := listed[experiment_id], Exception):
                self.report.fail(SCORERS, experiment_id,
                                 f"cannot list the scorers of experiment {experiment_id}: "
                                 f"{one_line(found)}")
                continue
            for item in found:
                self.items[SCORERS].setdefault(
                    scorer_entity.key(item.experiment_id, item.name), item)
        self.add_datasets(dataset_entity.search(self.src, taken))
        self.add_prompts(p for p in self.all_prompts()
                         if set(prompt_entity.linked_experiments(p)) & set(taken))

    def all_prompts(self) -> list:
        """Every prompt of the source, listed once however many commands' parts ask."""
        if self._prompts is None:
            self._prompts = prompt_entity.all_prompts(self.src)
        return self._prompts

    def any_logged_models(self) -> bool:
        """Whether the source holds a logged model in any experiment (deleted ones too): only
        then can a run have consumed one (see :func:`run_entity.whole_in_search`)."""
        if self._any_logged_models is None:
            self._any_logged_models = self.src.supports(LOGGED_MODELS) and any(
                self.src.client.search_logged_models(ids, max_results=1)
                for ids in _chunks([e.experiment_id for e in all_experiments(
                    self.src, include_deleted=True)], EXPERIMENTS_PER_SEARCH))
        return self._any_logged_models

    def run_facts(self, run_id: str) -> _RunFacts:
        """What the plan read of the run already, else read it (whole) now."""
        facts = self.facts.get(run_id)
        return facts if facts is not None else self._read(self.src.client.get_run(run_id),
                                                          whole=True)

    def _read(self, run: Run, whole: bool) -> _RunFacts:
        """Keep what the plan needs of a run read while planning, and the run itself where
        it was read ``whole`` and fits within WHOLE_ENTRIES_HELD."""
        run_id, data = run.info.run_id, run.data
        facts = self.facts.setdefault(run_id, _RunFacts(
            run.info.experiment_id, run.info.lifecycle_stage, run.info.artifact_uri,
            data.tags.get(MLFLOW_PARENT_RUN_ID), len(data.metrics)))
        entries = len(data.params) + len(data.tags) + len(data.metrics)
        if whole and run_id not in self.runs and self._held + entries <= WHOLE_ENTRIES_HELD:
            self.runs[run_id] = run
            self._held += entries
        return facts

    def add_prompts(self, prompts) -> None:
        for found in prompts:
            self.items[PROMPTS].setdefault(found.name, found)

    def add_datasets(self, datasets) -> None:
        for dataset in datasets:
            self.items[DATASETS].setdefault(dataset.dataset_id, dataset)

    def add_traces(self, experiment: Experiment, filter_string: str | None = None,
                   since: datetime | None = None) -> None:
        """The traces of an experiment (all, or those ``filter_string`` finds, started
        since ``since``), whether or not they belong to a run."""
        self.items[EXPERIMENTS].setdefault(experiment.experiment_id, experiment)
        if self.run_links is None:
            self.run_links = trace_entity.RunLinks(self.src, self.items[TRACES],
                                                   self.items[EXPERIMENTS])
        self.items[TRACES][experiment.experiment_id] = trace_entity.ExportItem(
            experiment.experiment_id, filter_string, since, self.run_links)

    def _wanted(self, model: LoggedModel, run_ids: set[str]) -> bool:
        rule = self.run_filter
        if model.source_run_id in run_ids or not rule.active:
            return True
        if rule.filter_string or rule.started_after or rule.started_before:
            return False
        return changed_since(model.last_updated_timestamp, rule.since)

    def add_registered_model(self, registered: RegisteredModel,
                             versions: list[ModelVersion]) -> None:
        """A registered model with ``versions``, and the run and logged model behind each.
        A version whose run is deleted or unreadable is a reported failure."""
        entries = []
        for version in versions:
            key = f"{registered.name}/{version.version}"
            try:
                entries.append(self._version_entry(version))
            except Exception as exc:  # noqa: BLE001 - reported; the other versions go on
                reason = str(exc) if isinstance(exc, EximError) else one_line(exc)
                self.report.fail(MODEL_VERSIONS, key, reason, registered.name)
        self.items[REGISTERED_MODELS][registered.name] = registered_model_entity.ExportItem(
            registered, entries)

    def add_registered_models_with_all_versions(self, models: list[RegisteredModel]) -> None:
        """The models with all their versions, listed side by side; with ``since``, only
        the models changed since then (a new or updated version changes it too), with the
        versions that did."""
        since = self.run_filter.since
        models = [m for m in models if changed_since(m.last_updated_timestamp, since)]
        listed = self._side_by_side(lambda m: [
            v for v in registered_model_entity.versions(self.src, m.name)
            if changed_since(v.last_updated_timestamp, since)], models, key=lambda m: m.name)
        for registered in models:
            if isinstance(versions := listed[registered.name], Exception):
                self.report.fail(REGISTERED_MODELS, registered.name,
                                 f"cannot list its versions: {one_line(versions)}",
                                 registered.name)
                continue
            self.add_registered_model(registered, versions)

    def narrow(self, shard: Shard | None) -> None:
        """Keep only what falls into ``shard`` (see :mod:`mlflow_exim.shard`), and the
        planning failures of its objects; the graph is the one an import reads from the
        bundle of the whole plan."""
        if shard is None:
            return
        nodes, edges = self.graph()
        taken = split(nodes, edges, shard)
        kept = self.part(taken, lambda node: shard.takes(f"{node[0]}:{node[1]}"))
        self.items, self.report.outcomes = kept.items, kept.report.outcomes

    def graph(self) -> tuple[set[Node], list[tuple[Node, Node]]]:
        """The objects of the plan and what must stay together (see :mod:`shard`)."""
        items = self.items
        edges = [((RUNS, run_id), (EXPERIMENTS, experiment_id))
                 for run_id, experiment_id in items[RUNS].items()]
        edges += [((RUNS, run_id), (RUNS, parent)) for run_id, parent in self.parents.items()]
        edges += [((TRACES, i), (EXPERIMENTS, i)) for i in items[TRACES]]
        edges += [((SCORERS, key), (EXPERIMENTS, item.experiment_id))
                  for key, item in items[SCORERS].items()]
        for model_id, model in items[LOGGED_MODELS].items():
            edges.append(((LOGGED_MODELS, model_id), (EXPERIMENTS, model.experiment_id)))
            edges += [((LOGGED_MODELS, model_id), (RUNS, run_id))
                      for run_id in model_runs(model.source_run_id, model.metrics)]
        edges += [((REGISTERED_MODELS, name), need) for name, item in
                  items[REGISTERED_MODELS].items() for _, _, needs in item.versions
                  for need in needs]
        edges += linked(PROMPTS, {name: prompt_entity.linked_experiments(p)
                                  for name, p in items[PROMPTS].items()})
        edges += linked(DATASETS, {i: self.src.store.get_dataset_experiment_ids(i)
                                   for i in items[DATASETS]})
        return {(kind, i) for kind, objects in items.items() for i in objects}, edges

    def split(self, most: int) -> list[_Plan]:
        """The plan as at most ``most`` plans of whole parts (see :func:`shard.chunks`),
        weighed by their runs and metric histories; a trace linked to a run of another
        experiment goes with that run (its links are read now, once, for the export too).
        A failure of planning goes with its object, else into the first. Prompts and
        evaluation datasets make a last chunk of their own, after everything they may link
        to: the plan does not read their links to runs (a prompt version's, a record's),
        which the import of that chunk resolves through the ids of the chunks before it."""
        nodes, edges = self.graph()
        last = {node for node in nodes if node[0] in (PROMPTS, DATASETS)}
        nodes -= last
        edges = [edge for edge in edges if not {*edge} & last]
        for item in self.items[TRACES].values():
            if item.links is not None:
                edges += [((TRACES, experiment_id), (RUNS, run_id))
                          for experiment_id, run_id in item.links.pairs()]

        def weight(node: Node) -> int:
            facts = self.facts.get(node[1]) if node[0] == RUNS else None
            return 1 + (facts.metrics if facts is not None else 0)

        packed = chunks(parts(nodes, edges), weight, most) + ([sorted(last)] if last else [])
        taken = [{kind: {i for k, i in members if k == kind} for kind in self.items}
                 for members in packed]
        return [self.part(part, lambda _, first=number == 0: first)
                for number, part in enumerate(taken)]

    def links_beyond(self) -> bool:
        """Whether objects of this plan may link to objects of any other that :meth:`split`
        made: prompts and evaluation datasets, whose links to runs it does not read."""
        return bool(self.items[PROMPTS] or self.items[DATASETS])

    def part(self, taken: dict[str, set[str]], takes_unplanned: Callable) -> _Plan:
        """A plan of the objects ``taken`` (per kind), with their planning failures and
        those of objects not in the plan that ``takes_unplanned((kind, id))``; what was read
        while planning is shared."""
        items = {kind: {i: item for i, item in objects.items() if i in taken.get(kind, ())}
                 for kind, objects in self.items.items()}
        nodes = {(kind, i) for kind, objects in self.items.items() for i in objects}

        def in_part(outcome) -> bool:  # a failure of planning: where its object would be
            node = ((REGISTERED_MODELS, outcome.name) if outcome.kind == MODEL_VERSIONS
                    else (EXPERIMENTS, outcome.source_id) if outcome.kind == SCORERS
                    else (outcome.kind, outcome.source_id))
            return (node[1] in taken.get(node[0], ()) if node in nodes
                    else takes_unplanned(node))

        report = Report(self.report.command)
        report.outcomes = [o for o in self.report.outcomes if in_part(o)]
        return replace(self, report=report, items=items,
                       facts={i: f for i, f in self.facts.items() if i in items[RUNS]},
                       runs={i: r for i, r in self.runs.items() if i in items[RUNS]})

    def _version_entry(self, version: ModelVersion) -> tuple[ModelVersion, dict, list]:
        """The version, where its files are, and the (kind, id) pairs written with it."""
        needs = []
        run_artifact_uri = None
        if version.run_id:
            run = self.run_facts(version.run_id)
            if run.lifecycle_stage == LifecycleStage.DELETED and not self.export_deleted_runs:
                raise EximError(f"its source run {version.run_id} is deleted")
            self.add_run(version.run_id, run.experiment_id, run.parent)
            run_artifact_uri = run.artifact_uri
            needs.append((RUNS, version.run_id))
        ref = registered_model_entity.source_ref(version, run_artifact_uri)
        if ref["kind"] == "logged_model":
            model = (self.items[LOGGED_MODELS].get(ref["model_id"])
                     or self.src.client.get_logged_model(ref["model_id"]))
            self.add_logged_model(model)
            needs.append((LOGGED_MODELS, model.model_id))
            for run_id in {model.source_run_id, *(m.run_id for m in model.metrics or [])}:
                if run_id and run_id not in self.items[RUNS]:
                    run = self.run_facts(run_id)
                    self.add_run(run_id, run.experiment_id, run.parent)
        return version, ref, needs


# Experiments per search of logged models (a list of ids the server puts in one query).
EXPERIMENTS_PER_SEARCH = 100


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# Writing --------------------------------------------------------------------------------

def _write_bundle(plan: _Plan, output_dir, command: str, options: dict,
                  workers: int = DEFAULT_WORKERS, *, overwrite: bool = False,
                  not_carried_left: dict[str, int] | None = None,
                  planning: Planning | None = None) -> Report:
    """Write the plan, ``workers`` objects at a time, each as soon as what it needs is
    written (see :func:`_write_objects`). An object whose dependency could not be written
    fails with that reason. Into a complete bundle of the same export, it refreshes that
    bundle: new objects are written, changed ones written again, the others kept; with
    ``overwrite`` it replaces any bundle there (see :class:`BundleWriter`).

    With ``planning``, the plan streams: writing starts with the first page of runs
    listed, and the objects each step adds are written while the next steps are taken."""
    report = plan.report
    report.command = command
    src = plan.src
    checked = _require_clients(plan, set(), planning[1] if planning else
                               _holding(plan.items, _keys(plan.items)))
    source = {"tracking_uri": src.display_uri, **src.server_info}
    writer = BundleWriter(output_dir, [kind.section for kind in KINDS], command=command,
                          source=source, options=options, overwrite=overwrite)
    ctx = ExportContext(src, writer, report, read={})
    with Workers(workers, "export") as pool:
        _write_objects(ctx, plan, pool, planning[0] if planning else None, checked)
    for outcome in report.outcomes:
        for note in plan.notes.get((outcome.kind, outcome.source_id), []):
            outcome.warn(note)
    left = not_carried_left
    if left is None:  # else surveyed once for the whole export
        left = not_carried.survey(src, plan.items[EXPERIMENTS])
        not_carried.warn(left, src.display_uri)
    if left:
        report.extra["not_carried"] = left
    writer.finish([asdict(o) for o in report.failures], not_carried=left)
    report.extra["bundle"] = str(writer.final)
    report.extra["refreshed"] = writer.refreshes
    return report


def _require_clients(plan: _Plan, checked: set[str],
                     experiments: Iterable[Experiment]) -> set[str]:
    """Before their objects are written: the storage client of each of ``experiments``
    (those holding runs or logged models: their artifact URIs lie under its location) not
    ``checked`` yet. A plan that streams checks every experiment selected before it lists
    them, then those its later steps add. Returns ``checked`` with them."""
    for experiment in experiments:
        if experiment.experiment_id not in checked:
            require_client(experiment.artifact_location, f"experiment "
                           f"{experiment.experiment_id} ({experiment.name}) on "
                           f"{plan.src.display_uri}")
            checked.add(experiment.experiment_id)
    return checked


def _keys(items: dict[str, dict]) -> Iterator[tuple[str, str]]:
    return ((kind, object_id) for kind, objects in items.items() for object_id in objects)


def _holding(items: dict[str, dict], keys: Iterable[tuple[str, str]]) -> list[Experiment]:
    """The experiments (in the plan's order) of the runs and logged models among ``keys``
    ((kind, id) pairs)."""
    ids = {items[RUNS][i] if kind == RUNS else items[LOGGED_MODELS][i].experiment_id
           for kind, i in keys if kind in (RUNS, LOGGED_MODELS)}
    return [experiment for i, experiment in items[EXPERIMENTS].items() if i in ids]


def _write_objects(ctx: ExportContext, plan: _Plan, pool: Workers,
                   planning: Iterator[None] | None, checked: set[str]) -> None:
    """Every planned object on one scheduler (:meth:`Workers.each_after`): each as soon as
    the objects it needs or waits for are written (a run's experiment; a registered
    model's versions' runs and logged models), never after the slowest object of the kind
    before it. With ``planning``, the plan's steps are taken meanwhile, and what each adds
    joins the schedule; traces join once the plan is whole (their links to runs are read
    against every experiment it takes)."""
    kinds = {kind.name: kind for kind in KINDS}
    items = plan.items
    given: dict[str, set[str]] = {kind.name: set() for kind in KINDS}
    bars: dict[str, Any] = {}

    def fresh(final: bool) -> dict[tuple[str, str], list]:
        """The plan's objects not on the schedule yet (traces only once the plan is
        ``final``), with what each needs; the runs the plan holds whole go to the export's
        context, and new experiments holding objects are checked for their storage
        client."""
        found = {}
        for kind in KINDS:
            if kind.name == TRACES and not final:
                continue
            new = _added_since(items[kind.name], given[kind.name])
            given[kind.name].update(new)
            for object_id in new:
                item = items[kind.name][object_id]
                found[kind.name, object_id] = [*kind.export_needs(item), *kind.export_after(item)]
            if new and kind.name in bars:
                bars[kind.name].total += len(new)
            elif new:
                bars[kind.name] = progress_bar(len(new), f"export {kind.name.replace('_', ' ')}")
        _require_clients(plan, checked, _holding(items, found))
        for kind_name, object_id in found:
            if kind_name == RUNS and object_id in plan.runs:
                ctx.read[RUNS, object_id] = plan.runs.pop(object_id)
        return found

    def write(key: tuple[str, str]) -> None:
        kind, object_id = kinds[key[0]], key[1]
        item = items[kind.name][object_id]
        with ctx.report.track(kind.name, object_id, kind.label(item)) as outcome:
            for needed, needed_id in kind.export_needs(item):
                if not ctx.writer.has(needed, needed_id):
                    raise EximError(f"its {singular(needed)} {needed_id} could not be "
                                    "exported")
            directory = ctx.writer.object_dir(kind.name, object_id)
            if (kind.rewrite_on_resume or not ctx.writer.is_written(kind.name, object_id)
                    or (kind.unchanged and not kind.unchanged(ctx, object_id, item, directory))):
                kind.export(ctx, object_id, item, directory, outcome)
            ctx.writer.add(kind.name, object_id, **kind.inventory(item))
            outcome.target_id = ctx.writer.relative(directory)
        bars[kind.name].update()

    def steps() -> Iterator[dict]:
        for _ in planning:
            if found := fresh(final=False):
                yield found
        yield fresh(final=True)

    if planning is None:
        pool.each_after(write, fresh(final=True))
    else:
        pool.each_after(write, {}, more=steps())
    plan.runs.clear()
    for bar in bars.values():
        bar.close()


def _added_since(objects: dict[str, Any], given: set[str]) -> list[str]:
    """The keys of ``objects`` (a dict the plan only adds to, in order) not in ``given``:
    those added last, found walking back from the end."""
    new = []
    for key in reversed(objects):
        if key in given:
            break
        new.append(key)
    return new[::-1]
