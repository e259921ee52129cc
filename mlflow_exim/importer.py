"""Import: bundle → server. Each public function is one CLI command.

The whole bundle is validated before anything is written to the target. Objects are then
created in dependency order:

1. experiments; then what earlier imports left in them is looked up (complete runs and
   logged models are skipped, half-written ones deleted and redone);
2. runs, a generation at a time, parents first (each is created, filled and terminated);
3. logged models (their source runs and the runs of their metrics exist by now), then the
   runs' links to them (model inputs and outputs);
4. registered models and their versions, which point at the migrated runs and models;
5. last, what is deleted at the source is deleted again: runs, then experiments (nothing
   can be written into a deleted run or experiment).

Within each step, objects go ``workers`` at a time (see :class:`work.Workers`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.entities import LifecycleStage, LoggedModel, Run
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim import lineage
from mlflow_exim.bundle import Bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import registered_model as registered_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.entities.registered_model import ImportOptions
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_model_version, export_run
from mlflow_exim.idmap import IdMap
from mlflow_exim.report import FAILED, PLANNED, SKIPPED, Outcome, Report, log, one_line
from mlflow_exim.selection import Renames, rename
from mlflow_exim.work import DEFAULT_WORKERS, Workers, generations, progress_bar


def import_run(input_dir: str | Path, experiment_name: str, *,
               tracking_uri: str | Endpoint | None = None, import_source_tags: bool = False,
               workers: int = DEFAULT_WORKERS, dry_run: bool = False) -> Report:
    """Import the one run of a bundle into the experiment ``experiment_name`` (created
    when missing). A parent run is not part of such a bundle, so ``mlflow.parentRunId``
    is dropped (and kept as a source tag with ``import_source_tags``)."""
    bundle = Bundle.open(input_dir)
    if len(bundle.runs) != 1:
        raise EximError(f"{bundle.root}: holds {len(bundle.runs)} runs; import-run takes a "
                        "bundle of one run (use import-experiment for more)")
    return _ImportPlan(bundle, Endpoint.connect(tracking_uri), "import-run",
                       source_tags=import_source_tags, experiment_name=experiment_name,
                       workers=workers, dry_run=dry_run).run()


def import_experiment(input_dir: str | Path, *, experiment_name: str | None = None,
                      tracking_uri: str | Endpoint | None = None,
                      import_source_tags: bool = False, workers: int = DEFAULT_WORKERS,
                      dry_run: bool = False) -> Report:
    """Import the one experiment of a bundle, with its runs and logged models, under its own
    name or ``experiment_name``. An existing target experiment of that name receives them."""
    bundle = Bundle.open(input_dir)
    if len(bundle.experiments) != 1:
        raise EximError(f"{bundle.root}: holds {len(bundle.experiments)} experiments; "
                        "import-experiment takes one (use import-experiments)")
    names = {source_id: experiment_name for source_id in bundle.experiments}
    return _ImportPlan(bundle, Endpoint.connect(tracking_uri), "import-experiment",
                       source_tags=import_source_tags, names=names if experiment_name else None,
                       workers=workers, dry_run=dry_run).run()


def import_experiments(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
                       import_source_tags: bool = False,
                       experiment_renames: Renames = (), workers: int = DEFAULT_WORKERS,
                       dry_run: bool = False) -> Report:
    """Import every experiment of a bundle, with its runs and logged models, under its own
    name (or as ``experiment_renames``, (old prefix, new prefix) rules, say). Registered
    models in the bundle are left alone (use import-models or import-all)."""
    bundle = Bundle.open(input_dir)
    return _ImportPlan(bundle, Endpoint.connect(tracking_uri), "import-experiments",
                       source_tags=import_source_tags,
                       names=_experiment_names(bundle, experiment_renames),
                       workers=workers, dry_run=dry_run).run()


def import_all(input_dir: str | Path, *, tracking_uri: str | Endpoint | None = None,
               import_source_tags: bool = False,
               stage_to_alias: dict[str, str] | None = None, experiment_renames: Renames = (),
               model_renames: Renames = (), workers: int = DEFAULT_WORKERS,
               dry_run: bool = False) -> Report:
    """Import everything a bundle holds (made by ``export-all`` or any other export).
    Experiments and registered models arrive under their own names, or renamed by the
    first matching (old prefix, new prefix) rule of ``experiment_renames`` and
    ``model_renames``. Running it again completes what is missing and duplicates nothing;
    ``dry_run`` reports what would be created and writes nothing."""
    bundle = Bundle.open(input_dir)
    return _ImportPlan(bundle, Endpoint.connect(tracking_uri), "import-all",
                       source_tags=import_source_tags,
                       names=_experiment_names(bundle, experiment_renames),
                       models=ImportOptions(source_tags=import_source_tags,
                                            stage_to_alias=stage_to_alias or {}),
                       model_renames={name: rename(name, model_renames)
                                      for name in bundle.registered_models},
                       workers=workers, dry_run=dry_run).run()


def import_models(input_dir: str | Path, **options) -> Report:
    """Import every registered model of a bundle under its own name (or renamed), with the
    same version numbers, and the runs and logged models behind the versions. Takes the
    options of :func:`import_all`."""
    report = import_all(input_dir, **options)
    report.command = "import-models"
    return report


def import_model(input_dir: str | Path, *, model: str | None = None,
                 experiment_name: str | None = None, tracking_uri: str | Endpoint | None = None,
                 import_source_tags: bool = False,
                 stage_to_alias: dict[str, str] | None = None, workers: int = DEFAULT_WORKERS,
                 dry_run: bool = False) -> Report:
    """Import the one registered model of a bundle, under its own name or ``model``, with
    the same version numbers. Its runs and logged models go into their own experiments,
    or all into ``experiment_name``."""
    bundle = Bundle.open(input_dir)
    (source_name,) = _only_model(bundle, "import-model")
    return _ImportPlan(bundle, Endpoint.connect(tracking_uri), "import-model",
                       source_tags=import_source_tags, experiment_name=experiment_name,
                       models=ImportOptions(source_tags=import_source_tags,
                                            stage_to_alias=stage_to_alias or {}),
                       model_renames={source_name: model or source_name},
                       workers=workers, dry_run=dry_run).run()


def import_model_version(input_dir: str | Path, model: str, *,
                         experiment_name: str | None = None,
                         tracking_uri: str | Endpoint | None = None,
                         import_source_tags: bool = False, workers: int = DEFAULT_WORKERS,
                         dry_run: bool = False) -> Report:
    """Import the one model version of a bundle (from export-model-version) as the next
    version of ``model`` (created when missing), with its run and logged model. Imported
    again, it is recognised (it points at the same migrated run or model) and not added."""
    bundle = Bundle.open(input_dir)
    _only_model(bundle, "import-model-version", one_version=True)
    return _import_version_as(bundle, Endpoint.connect(tracking_uri), "import-model-version",
                              model, experiment_name,
                              ImportOptions(source_tags=import_source_tags, keep_numbers=False,
                                            update_existing=False),
                              workers=workers, dry_run=dry_run)


def copy_run(run_id: str, src_uri: str, dst_uri: str, experiment_name: str, *,
             import_source_tags: bool = False) -> Report:
    """Copy one run from server to server through a temporary bundle that is removed
    afterwards. A deleted run is copied and deleted on the target too."""
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = export_run(run_id, bundle_dir, tracking_uri=src_uri, export_deleted_runs=True)
        exported.command = "copy-run"
        if not exported.ok:
            return exported
        imported = import_run(bundle_dir, experiment_name, tracking_uri=dst_uri,
                              import_source_tags=import_source_tags)
    imported.command = "copy-run"
    return imported


def copy_model_version(src_uri: str, dst_uri: str, src_model: str, src_version: str,
                       dst_model: str, *, dst_experiment_name: str | None = None,
                       copy_stages_and_aliases: bool = False, aliases: tuple[str, ...] = (),
                       copy_lineage_tags: bool = False) -> Report:
    """Deep-copy one model version to ``dst_model`` on another server (or the same one):
    its run, logged model and all artifacts travel, so the target never points at source
    storage. Its run goes into ``dst_experiment_name`` (default: the source experiment's
    name). Idempotent: if ``dst_model`` already holds a copy of the version, nothing is
    created and the report says which version it is (``extra["model_version"]``).

    A copy is recognised by the lineage tags (``copy_lineage_tags``) or else by what it
    shares with the original: description, user tags, the run's name and start time, and
    the logged model (name, type, params) or artifact path it serves."""
    src, dst = Endpoint.connect(src_uri, must_exist=True), Endpoint.connect(dst_uri)
    try:
        original = registered_model_entity.get_version(src, src_model, str(src_version))
    except Exception:  # noqa: BLE001 - "not found" and friends
        raise EximError(f"model version {src_model}/{src_version} not found on "
                        f"{src.display_uri}") from None
    existing = _existing_copy(src, dst, original, dst_model)
    if existing is not None:
        return _already_copied(dst, original, existing, aliases)
    options = ImportOptions(
        keep_numbers=False, update_existing=False, copy_stages=copy_stages_and_aliases,
        copy_aliases=copy_stages_and_aliases, extra_aliases=tuple(aliases),
        extra_version_tags=lineage.copy_lineage_tags(
            src_model, {"version": original.version, "run_id": original.run_id},
            src.display_uri, dst.display_uri) if copy_lineage_tags else {})
    with tempfile.TemporaryDirectory(prefix="mlflow-exim-copy-") as scratch:
        bundle_dir = Path(scratch) / "bundle"
        exported = export_model_version(src_model, str(src_version), bundle_dir,
                                        tracking_uri=src_uri)
        exported.command = "copy-model-version"
        if not exported.ok:
            return exported
        report = _import_version_as(Bundle.open(bundle_dir), dst, "copy-model-version",
                                    dst_model, dst_experiment_name, options)
    created = report.extra["id_map"]["model_version"].get(f"{src_model}/{original.version}")
    if created:
        version = dst.client.get_model_version(dst_model, created.rpartition("/")[2])
        report.extra["model_version"] = _version_summary(version, "created")
    return report


# Helpers of the commands ----------------------------------------------------------------

def _only_model(bundle: Bundle, command: str, *, one_version: bool = False) -> list[str]:
    names = list(bundle.registered_models)
    if len(names) != 1:
        raise EximError(f"{bundle.root}: holds {len(names)} registered models; {command} "
                        "takes a bundle of one (use import-models for more)")
    if one_version and len(bundle.registered_models[names[0]]["versions"]) != 1:
        raise EximError(f"{bundle.root}: {command} takes a bundle of one model version "
                        "(from export-model-version)")
    return names


def _import_version_as(bundle: Bundle, dst: Endpoint, command: str, model: str,
                       experiment_name: str | None, options: ImportOptions,
                       **settings) -> Report:
    (source_name,) = bundle.registered_models
    return _ImportPlan(bundle, dst, command, source_tags=options.source_tags,
                       experiment_name=experiment_name, models=options,
                       model_renames={source_name: model}, **settings).run()


def _experiment_names(bundle: Bundle, renames: Renames) -> dict[str, str]:
    return {source_id: rename(doc["name"], renames)
            for source_id, doc in bundle.experiments.items()}


def _existing_copy(src: Endpoint, dst: Endpoint, original, dst_model: str):
    """The version of ``dst_model`` that is already a copy of ``original``, if any."""
    try:
        candidates = registered_model_entity.versions(dst, dst_model)
    except Exception:  # noqa: BLE001 - no such model on the target yet
        return None
    for candidate in candidates:
        tags = candidate.tags or {}
        if (tags.get(lineage.SRC_VERSION + "name") == original.name
                and tags.get(lineage.SRC_VERSION + "version") == str(original.version)
                and tags.get(lineage.SRC_CLIENT_URI) == src.display_uri):
            return candidate
    wanted = None
    for candidate in candidates:
        if (candidate.description or "") != (original.description or ""):
            continue  # cheap test first; the fingerprint reads runs and models
        wanted = wanted or registered_model_entity.fingerprint(src, original)
        if registered_model_entity.fingerprint(dst, candidate) == wanted:
            return candidate
    return None


def _already_copied(dst: Endpoint, original, existing, aliases: tuple[str, ...]) -> Report:
    """Nothing is created; asked-for aliases are pointed at the existing copy."""
    report = Report("copy-model-version")
    outcome = Outcome("model_version", f"{original.name}/{original.version}", existing.name,
                      status=SKIPPED, target_id=f"{existing.name}/{existing.version}",
                      reason=f"already present as {existing.name} version {existing.version}")
    report.add(outcome)
    for alias in aliases:
        if alias not in (existing.aliases or []):
            dst.client.set_registered_model_alias(existing.name, alias, existing.version)
    report.extra["model_version"] = _version_summary(existing, "already_present")
    return report


def _version_summary(version, status: str) -> dict:
    return {"name": version.name, "version": str(version.version), "source": version.source,
            "run_id": version.run_id or None, "status": status}


def _new_report(command: str, bundle: Bundle) -> Report:
    """A report that says so when the bundle itself is partial."""
    report = Report(command)
    failures = bundle.manifest.get("export_failures") or []
    if failures:
        report.extra["bundle_export_failures"] = failures
        log.warning("%s: the export that wrote this bundle failed for %d object(s); they are "
                    "not in it (see the manifest's export_failures)", bundle.root, len(failures))
    return report


# The import engine ----------------------------------------------------------------------

class _ImportPlan:
    """One import of a bundle into a target, in dependency order (see the module text).

    ``experiment_name`` puts every run and logged model into that one experiment (created
    empty when missing); otherwise ``names`` maps source experiment ids to target names
    (default: the source names). ``models`` says how registered models arrive; None
    leaves them out. ``model_renames`` maps source model names to target names.

    Re-runs: runs and logged models that an earlier import completed are found by their
    source-id tags (:func:`run_entity.find_imported`) and skipped; ones it left half-written
    are deleted and written again; model versions are recognised by what they point at.
    ``workers`` objects (and, inside each, metric batches and files) go at once; parents
    before children, runs before the models that need them. ``dry_run`` reads the target
    and reports what would be created or skipped, and writes nothing."""

    def __init__(self, bundle: Bundle, dst: Endpoint, command: str, *,
                 source_tags: bool = False, experiment_name: str | None = None,
                 names: dict[str, str] | None = None, models: ImportOptions | None = None,
                 model_renames: dict[str, str] | None = None, workers: int = DEFAULT_WORKERS,
                 dry_run: bool = False):
        self.bundle = bundle
        self.dst = dst
        self.source_tags = source_tags
        self.experiment_name = experiment_name
        self.names = names or {i: d["name"] for i, d in bundle.experiments.items()}
        self.models = models
        self.model_renames = model_renames or {}
        # An embedded store takes one writer at a time (sqlite locks the whole file).
        self.workers = workers if dst.is_http else 1
        self.dry_run = dry_run
        self.report = _new_report(command, bundle)
        self.idmap = IdMap()
        self._run_outcomes: dict[str, Outcome] = {}
        self._present_runs: dict[str, Run] = {}
        self._present_models: dict[str, LoggedModel] = {}
        self._to_delete: list[Outcome] = []

    def run(self) -> Report:
        if self.dry_run and self.dst.missing_store is not None:
            return self._plan_new_store()
        with Workers(self.workers, "objects") as objects, \
                Workers(self.workers, "transfers") as transfers:
            self.objects, self.transfers = objects, transfers
            experiments_to_delete = self._import_experiments()
            self._find_imported()
            self._import_runs()
            self._import_logged_models()
            self._import_model_links()
            if self.models is not None:
                objects.each(self._import_registered_model,
                             list(self.bundle.registered_models.items()))
        if not self.dry_run:
            for outcome in self._to_delete + experiments_to_delete:
                self._delete_again(outcome)
        self.report.extra["id_map"] = self.idmap.to_dict()
        self.report.extra["dry_run"] = self.dry_run
        return self.report

    def _plan_new_store(self) -> Report:
        """A dry run into an embedded store that does not exist yet: opening the store
        would create it, so it is not opened, and every object of the bundle is planned."""
        log.warning("%s does not exist: the import would create a new store and every "
                    "object in it; the dry run creates nothing", self.dst.missing_store)
        reason = f"would be created in a new store {self.dst.display_uri}"
        experiments = ([(",".join(self.bundle.experiments), self.experiment_name)]
                       if self.experiment_name else self.names.items())
        planned = [("experiment", source_id, name) for source_id, name in experiments]
        planned += [("run", source_id, doc["info"].get("run_name"))
                    for source_id, doc in self.bundle.runs.items()]
        planned += [("logged_model", source_id, doc["name"])
                    for source_id, doc in self.bundle.logged_models.items()]
        for source_name, doc in (self.bundle.registered_models.items()
                                 if self.models is not None else ()):
            name = self.model_renames.get(source_name, source_name)
            planned.append(("registered_model", source_name, name))
            planned += [("model_version", f"{source_name}/{v['version']}", name)
                        for v in doc["versions"]]
        for kind, source_id, name in planned:
            self.report.add(Outcome(kind, source_id, name, status=PLANNED, reason=reason))
        self.report.extra.update(id_map=self.idmap.to_dict(), dry_run=True,
                                 new_store=str(self.dst.missing_store))
        return self.report

    def _import_experiments(self) -> list[Outcome]:
        """Experiments (or the one named target); returns those to delete again."""
        to_delete = []
        if self.experiment_name:
            with self.report.track("experiment", ",".join(self.bundle.experiments),
                                   self.experiment_name) as outcome:
                outcome.target_id = experiment_entity.get_or_create(
                    self.dst, self.experiment_name, outcome, dry_run=self.dry_run)
                for source_id in self.bundle.experiments:
                    self.idmap.add("experiment", source_id, outcome.target_id)
            return to_delete
        for source_id, name in self.names.items():
            with self.report.track("experiment", source_id, name) as outcome:
                doc = self.bundle.experiments[source_id]
                outcome.target_id, owned = experiment_entity.import_doc(
                    self.dst, doc, name, source_tags=self.source_tags, outcome=outcome,
                    dry_run=self.dry_run)
                self.idmap.add("experiment", source_id, outcome.target_id)
                if owned and doc["lifecycle_stage"] == LifecycleStage.DELETED:
                    to_delete.append(outcome)
        return to_delete

    def _find_imported(self) -> None:
        """What earlier imports left in the target experiments: complete runs and logged
        models are remembered; half-written ones are deleted (they are written anew)."""
        leftovers: dict[str, list[str]] = {"run": [], "logged_model": []}
        for experiment_id in sorted({t for t in self.idmap.to_dict()["experiment"].values()
                                     if t is not None}):
            runs, half_runs = run_entity.find_imported(self.dst, experiment_id)
            models, half_models = logged_model_entity.find_imported(self.dst, experiment_id)
            self._present_runs.update(runs)
            self._present_models.update(models)
            leftovers["run"] += half_runs
            leftovers["logged_model"] += half_models
        if not any(leftovers.values()):
            return
        log.warning("%s half-written run(s) and %s logged model(s) left by an interrupted "
                    "import %s", len(leftovers["run"]), len(leftovers["logged_model"]),
                    "would be written again" if self.dry_run else "are deleted and written again")
        self.report.extra["half_written"] = leftovers
        if not self.dry_run:
            self.objects.each(self.dst.client.delete_run, leftovers["run"])
            self.objects.each(self.dst.client.delete_logged_model, leftovers["logged_model"])

    def _import_runs(self) -> None:
        """Runs, a generation at a time: all top-level runs side by side, then their
        children, and so on, so that a parent's target id is known before its children."""
        levels = generations(self.bundle.run_parents)
        bar = progress_bar(sum(map(len, levels)), "import runs")
        for level in levels:
            self.objects.each(lambda source_id: (self._import_run(source_id), bar.update()),
                              level)
        bar.close()

    def _import_run(self, source_id: str) -> None:
        doc = self.bundle.runs[source_id]
        with self.report.track("run", source_id, doc["info"].get("run_name")) as outcome:
            experiment_id = self._experiment(doc["info"]["experiment_id"])
            present = self._present_runs.get(source_id)
            deleted_at_source = doc["info"]["lifecycle_stage"] == LifecycleStage.DELETED
            if present is not None:
                _skip(outcome, present.info.run_id)
                deleted_at_target = present.info.lifecycle_stage == LifecycleStage.DELETED
                if not self.dry_run:
                    run_entity.catch_up(self.dst, doc, present, outcome)
                if deleted_at_source and not deleted_at_target:
                    self._to_delete.append(outcome)
            elif self.dry_run:
                _plan(outcome, f"would be created in experiment {experiment_id}")
            else:
                run_entity.import_run(
                    self.dst, doc, self.bundle.run_dirs[source_id], experiment_id,
                    parent_run_id=self.idmap.get("run", doc["tags"].get(MLFLOW_PARENT_RUN_ID)),
                    source_tags=self.source_tags, outcome=outcome, transfers=self.transfers)
                if deleted_at_source:
                    self._to_delete.append(outcome)
            if outcome.target_id:
                self.idmap.add("run", source_id, outcome.target_id)
            self._run_outcomes[source_id] = outcome

    def _import_logged_models(self) -> None:
        models = self.bundle.logged_models
        bar = progress_bar(len(models), "import logged models")
        self.objects.each(lambda source_id: (self._import_logged_model(source_id),
                                             bar.update()), list(models))
        bar.close()

    def _import_logged_model(self, source_id: str) -> None:
        doc = self.bundle.logged_models[source_id]
        with self.report.track("logged_model", source_id, doc["name"]) as outcome:
            experiment_id = self._experiment(doc["experiment_id"])
            present = self._present_models.get(source_id)
            if present is not None:
                _skip(outcome, present.model_id)
            elif self.dry_run:
                _plan(outcome, f"would be created in experiment {experiment_id}")
            else:
                logged_model_entity.import_model(
                    self.dst, doc, self.bundle.dirs["logged_models"][source_id], experiment_id,
                    idmap=self.idmap, source_tags=self.source_tags, outcome=outcome,
                    transfers=self.transfers)
            if outcome.target_id:
                self.idmap.add("logged_model", source_id, outcome.target_id)

    def _import_model_links(self) -> None:
        """The runs' links to the logged models they consumed and produced; a run found
        complete gets the links it is still missing."""
        if self.dry_run:
            return

        def link(item: tuple[str, Outcome]) -> None:
            source_id, outcome = item
            if outcome.status == FAILED or not outcome.target_id:
                return
            try:
                run_entity.import_model_links(self.dst, self.bundle.runs[source_id],
                                              outcome.target_id, self.idmap, outcome,
                                              present=outcome.status == SKIPPED)
            except Exception as exc:  # noqa: BLE001 - reported on the run
                outcome.status = FAILED
                outcome.reason = f"imported, but its logged-model links failed: {one_line(exc)}"

        self.objects.each(link, list(self._run_outcomes.items()))

    def _import_registered_model(self, item: tuple[str, dict]) -> None:
        source_name, doc = item
        registered_model_entity.import_model(
            self.dst, doc, self.model_renames.get(source_name, source_name),
            idmap=self.idmap, report=self.report, options=self.models, dry_run=self.dry_run)

    def _experiment(self, source_id: str) -> str | None:
        if self.dry_run:  # an experiment that would be created has no id yet
            return self.idmap.get("experiment", source_id) or "(new)"
        target = self.idmap.get("experiment", source_id)
        if target is None:
            raise EximError(f"its experiment {source_id} was not imported")
        return target

    def _delete_again(self, outcome: Outcome) -> None:
        try:
            if outcome.kind == "run":
                self.dst.client.delete_run(outcome.target_id)
            else:
                self.dst.client.delete_experiment(outcome.target_id)
        except Exception as exc:  # noqa: BLE001 - reported on the object
            outcome.status = FAILED
            outcome.reason = f"imported, but could not be deleted again: {one_line(exc)}"


def _skip(outcome: Outcome, target_id: str) -> None:
    outcome.status = SKIPPED
    outcome.target_id = target_id
    outcome.reason = "already present"


def _plan(outcome: Outcome, what: str) -> None:
    outcome.status = PLANNED
    outcome.reason = what
