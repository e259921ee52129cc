"""Import: bundle → server. Each public function is one CLI command.

The whole bundle is validated before anything is written to the target. Objects are then
created in dependency order: experiments, runs parents first (each run is created, filled,
terminated and, if deleted at the source, deleted again), and last the experiments that
are deleted at the source.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.entities import LifecycleStage
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from mlflow_exim.bulk import parents_first, progress
from mlflow_exim.bundle import Bundle
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import experiment as experiment_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.errors import EximError
from mlflow_exim.exporter import export_run
from mlflow_exim.idmap import IdMap
from mlflow_exim.report import FAILED, Outcome, Report, log, one_line


def import_run(input_dir: str | Path, experiment_name: str, *,
               tracking_uri: str | None = None, import_source_tags: bool = False) -> Report:
    """Import the one run of a bundle into the experiment ``experiment_name`` (created
    when missing). A parent run is not part of such a bundle, so ``mlflow.parentRunId``
    is dropped (and kept as a source tag with ``import_source_tags``)."""
    bundle = Bundle.open(input_dir)
    if len(bundle.runs) != 1:
        raise EximError(f"{bundle.root}: holds {len(bundle.runs)} runs; import-run takes a "
                        "bundle of one run (use import-experiment for more)")
    dst = Endpoint.connect(tracking_uri)
    report = _new_report("import-run", bundle)
    idmap = IdMap()
    (doc,) = bundle.runs.values()
    source_experiment = doc["info"]["experiment_id"]
    with report.track("experiment", source_experiment, experiment_name) as outcome:
        outcome.target_id = experiment_entity.get_or_create(dst, experiment_name)
        idmap.add("experiment", source_experiment, outcome.target_id)
    _import_runs(bundle, dst, idmap, report, import_source_tags)
    report.extra["id_map"] = idmap.to_dict()
    return report


def import_experiment(input_dir: str | Path, *, experiment_name: str | None = None,
                      tracking_uri: str | None = None,
                      import_source_tags: bool = False) -> Report:
    """Import the one experiment of a bundle, under its own name or ``experiment_name``.
    An existing target experiment of that name receives the runs."""
    bundle = Bundle.open(input_dir)
    if len(bundle.experiments) != 1:
        raise EximError(f"{bundle.root}: holds {len(bundle.experiments)} experiments; "
                        "import-experiment takes one (use import-experiments)")
    (source_id, doc), = bundle.experiments.items()
    names = {source_id: experiment_name or doc["name"]}
    return _import(bundle, Endpoint.connect(tracking_uri), names, import_source_tags,
                   "import-experiment")


def import_experiments(input_dir: str | Path, *, tracking_uri: str | None = None,
                       import_source_tags: bool = False) -> Report:
    """Import every experiment of a bundle under its own name."""
    return _import_everything(input_dir, tracking_uri, import_source_tags, "import-experiments")


def import_all(input_dir: str | Path, *, tracking_uri: str | None = None,
               import_source_tags: bool = False) -> Report:
    """Import everything a bundle holds (made by ``export-all`` or any other export)."""
    return _import_everything(input_dir, tracking_uri, import_source_tags, "import-all")


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


def _import_everything(input_dir, tracking_uri, import_source_tags, command) -> Report:
    bundle = Bundle.open(input_dir)
    names = {source_id: doc["name"] for source_id, doc in bundle.experiments.items()}
    return _import(bundle, Endpoint.connect(tracking_uri), names, import_source_tags, command)


def _import(bundle: Bundle, dst: Endpoint, names: dict[str, str], source_tags: bool,
            command: str) -> Report:
    report = _new_report(command, bundle)
    idmap = IdMap()
    to_delete: list[Outcome] = []
    for source_id, name in names.items():
        with report.track("experiment", source_id, name) as outcome:
            doc = bundle.experiments[source_id]
            outcome.target_id, owned = experiment_entity.import_doc(
                dst, doc, name, source_tags=source_tags, outcome=outcome)
            idmap.add("experiment", source_id, outcome.target_id)
            if owned and doc["lifecycle_stage"] == LifecycleStage.DELETED:
                to_delete.append(outcome)
    _import_runs(bundle, dst, idmap, report, source_tags)
    for outcome in to_delete:
        try:
            dst.client.delete_experiment(outcome.target_id)
        except Exception as exc:  # noqa: BLE001 - reported on the experiment
            outcome.status = FAILED
            outcome.reason = f"imported, but could not be deleted again: {one_line(exc)}"
    report.extra["id_map"] = idmap.to_dict()
    return report


def _new_report(command: str, bundle: Bundle) -> Report:
    """A report that says so when the bundle itself is partial."""
    report = Report(command)
    failures = bundle.manifest.get("export_failures") or []
    if failures:
        report.extra["bundle_export_failures"] = failures
        log.warning("%s: the export that wrote this bundle failed for %d object(s); they are "
                    "not in it (see the manifest's export_failures)", bundle.root, len(failures))
    return report


def _import_runs(bundle: Bundle, dst: Endpoint, idmap: IdMap, report: Report,
                 source_tags: bool) -> None:
    order = parents_first(bundle.runs)
    for source_id in progress(order, total=len(order), desc="import runs"):
        doc = bundle.runs[source_id]
        with report.track("run", source_id, doc["info"].get("run_name")) as outcome:
            experiment_id = idmap.get("experiment", doc["info"]["experiment_id"])
            if experiment_id is None:
                raise EximError(f"its experiment {doc['info']['experiment_id']} was not imported")
            target_id = run_entity.import_run(
                dst, doc, bundle.run_dirs[source_id], experiment_id,
                parent_run_id=idmap.get("run", doc["tags"].get(MLFLOW_PARENT_RUN_ID)),
                source_tags=source_tags, outcome=outcome)
            idmap.add("run", source_id, target_id)
            if doc["info"]["lifecycle_stage"] == LifecycleStage.DELETED:
                dst.client.delete_run(target_id)
