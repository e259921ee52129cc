"""MLflow 3 logged models: their bundle document, export and import side by side.

A logged model's directory holds ``logged_model.json`` (fields, params, tags and every
metric with its run and dataset links; written last) and ``artifacts/`` (the model's own
artifact tree, which lives beside its run's artifacts, not inside them).

On import the model is recreated for real: created with its name, type, params and tags,
its artifacts uploaded (``MLmodel`` rewritten to the new model and run ids), its metrics
logged against the migrated runs, and its status set. A server assigns the new model id.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import mlflow
from mlflow.entities import LoggedModel, LoggedModelStatus, Metric

from mlflow_exim import lineage
from mlflow_exim.bundle.format import ARTIFACTS_DIR, Section
from mlflow_exim.bundle.jsonio import decode_float, dumps, encode_float, read_json, write_json
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import limits
from mlflow_exim.entities.artifacts import count_files, upload_tree
from mlflow_exim.entities.run import MAX_METRICS_PER_BATCH
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.idmap import IdMap
from mlflow_exim.kind import (
    CREATE,
    REDO,
    SKIP,
    ExportContext,
    ImportContext,
    Kind,
    Step,
    Task,
    planning,
)
from mlflow_exim.report import Outcome, log, one_line
from mlflow_exim.work import Workers, paged

LOGGED_MODEL_FILE = "logged_model.json"
# The server keeps this tag itself: registering a version on the target appends to it.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"
_FINAL_STATUSES = ("READY", "FAILED")
_STATUSES = (*_FINAL_STATUSES, "PENDING", "UNSPECIFIED")


# The document ---------------------------------------------------------------------------

def to_doc(model: LoggedModel, artifact_files: int) -> dict:
    return {
        "model_id": model.model_id,
        "experiment_id": model.experiment_id,
        "name": model.name,
        "model_type": model.model_type,
        "source_run_id": model.source_run_id,
        "status": _status_name(model.status),
        "status_message": model.status_message,
        "artifact_location": model.artifact_location,
        "creation_timestamp": model.creation_timestamp,
        "last_updated_timestamp": model.last_updated_timestamp,
        "params": dict(model.params or {}),
        "tags": dict(model.tags or {}),
        "metrics": [
            {
                "key": m.key,
                "value": encode_float(m.value),
                "timestamp": m.timestamp,
                "step": m.step,
                "run_id": m.run_id,
                "dataset_name": m.dataset_name,
                "dataset_digest": m.dataset_digest,
            }
            for m in sorted(model.metrics or [], key=lambda m: (m.key, m.step, m.timestamp))
        ],
        "artifacts": {"files": artifact_files},
    }


def _status_name(status) -> str:
    return status.value if isinstance(status, LoggedModelStatus) else str(status)


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    for key in ("model_id", "experiment_id", "name"):
        if not isinstance(doc.get(key), str):
            raise BundleError(path, f"field {key!r} is missing or not a str")
    for key in ("model_type", "source_run_id"):
        if not isinstance(doc.get(key), (str, type(None))):
            raise BundleError(path, f"field {key!r} is not a str or null")
    if doc.get("status") not in _STATUSES:
        raise BundleError(path, f"status {doc.get('status')!r} is not one of "
                                f"{', '.join(_STATUSES)}")
    for section, limit in (("params", limits.PARAM_VALUE), ("tags", limits.TAG_VALUE)):
        values = doc.get(section)
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise BundleError(path, f"field {section!r} must be an object of strings")
        limits.check_mapping(values, path, section, value_limit=limit)
    metrics = doc.get("metrics")
    if not isinstance(metrics, list):
        raise BundleError(path, "field 'metrics' is missing or not a list")
    for point in metrics:
        try:
            _metric(point, "m-check")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BundleError(path, f"metric {str(point)[:120]} is malformed: {exc}") from None


def _metric(point: dict, model_id: str, run_id: str | None = None) -> Metric:
    if not isinstance(point["key"], str):
        raise TypeError("key is not a string")
    return Metric(point["key"], decode_float(point["value"]), int(point["timestamp"]),
                  int(point["step"]), model_id=model_id, dataset_name=point.get("dataset_name"),
                  dataset_digest=point.get("dataset_digest"), run_id=run_id)


# Export ---------------------------------------------------------------------------------

def search(endpoint: Endpoint, experiment_id: str) -> list[LoggedModel]:
    """Every logged model of an experiment, oldest first (the order an import recreates
    them in). Deleted models are invisible to the API. An endpoint without logged models
    (an MLflow 2 server) has none."""
    if not endpoint.supports("logged_models"):
        return []
    return sorted(paged(endpoint.client.search_logged_models, [experiment_id]),
                  key=lambda m: (m.creation_timestamp, m.model_id))


def export(src: Endpoint, model: LoggedModel, directory: Path) -> dict:
    """Write one logged model into ``directory``; ``logged_model.json`` last."""
    if directory.exists():
        shutil.rmtree(directory)  # half-written by an interrupted export
    artifacts = directory / ARTIFACTS_DIR
    directory.mkdir(parents=True)
    try:
        if src.client.list_logged_model_artifacts(model.model_id):
            # The public download takes the endpoint's URI (it sets no process-wide state)
            # and puts the tree in a folder named like the location's last part.
            scratch = directory / "download"
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location, tracking_uri=src.uri,
                dst_path=str(scratch))
            Path(local).rename(artifacts)
            shutil.rmtree(scratch)
        else:
            artifacts.mkdir()
        doc = to_doc(model, count_files(artifacts))
        write_json(directory / LOGGED_MODEL_FILE, doc)
    except Exception:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return doc


# Import ---------------------------------------------------------------------------------

def import_model(dst: Endpoint, doc: dict, directory: Path, experiment_id: str, *,
                 idmap: IdMap, source_tags: bool, outcome: Outcome, transfers: Workers) -> str:
    """Recreate one logged model on the target; returns its new id. Its source run and the
    runs its metrics name must already be in ``idmap``. Like a run, it is created with the
    source-id tag and the tag ``mlflow_exim.import.pending``, which its last step deletes.
    A half-made model is deleted when any step fails."""
    source_run = idmap.get("runs", doc["source_run_id"])
    if doc["source_run_id"] and source_run is None:
        outcome.warn(f"its source run {doc['source_run_id']} is not part of this import; "
                     "the model arrives without a source run")
    tags = lineage.without_import_marks(doc["tags"])
    tags.pop(MODEL_VERSIONS_TAG, None)
    if source_tags:
        tags.update(lineage.logged_model_source_tags(doc))
    tags[lineage.SOURCE_MODEL_ID] = tags[lineage.PENDING] = doc["model_id"]
    model = dst.client.create_logged_model(experiment_id, name=doc["name"],
                                           source_run_id=source_run, tags=tags,
                                           params=doc["params"] or None,
                                           model_type=doc["model_type"])
    model_id = model.model_id
    outcome.target_id = model_id
    try:
        upload_tree(directory / ARTIFACTS_DIR, dst, model.artifact_location,
                    {"model_id": (doc["model_id"], model_id),
                     **({"run_id": (doc["source_run_id"], source_run)} if source_run else {})},
                    transfers, outcome=outcome)
        _import_metrics(dst, doc, model_id, source_run, idmap, outcome)
        if doc["status"] in _FINAL_STATUSES:
            dst.client.finalize_logged_model(model_id, doc["status"])
        dst.client.delete_logged_model_tag(model_id, lineage.PENDING)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is what matters
            dst.client.delete_logged_model(model_id)
        raise
    return model_id


def find_imported(dst: Endpoint, experiment_id: str) -> tuple[dict[str, LoggedModel],
                                                                 dict[str, list[str]]]:
    """Logged models of a target experiment written by an earlier import: the complete ones
    by source id, and, by source id, the ids of those left half-written (see
    :func:`import_model`)."""
    complete: dict[str, LoggedModel] = {}
    half_written: dict[str, list[str]] = {}
    for model in search(dst, experiment_id):
        tags = model.tags or {}
        if lineage.PENDING in tags:
            half_written.setdefault(tags[lineage.PENDING], []).append(model.model_id)
        elif (source_id := source_id_of(tags)) is not None:
            complete.setdefault(source_id, model)
    return complete, half_written


def source_id_of(tags: dict) -> str | None:
    """The source id of a logged model an import completed (its source-id tag without the
    pending tag), else None: how the importer and verify both recognise a migrated model."""
    return None if lineage.PENDING in tags else tags.get(lineage.SOURCE_MODEL_ID)


def _import_metrics(dst: Endpoint, doc: dict, model_id: str, source_run: str | None,
                    idmap: IdMap, outcome: Outcome) -> None:
    """A model metric can only be logged through a run: each goes to the migrated run it
    was logged in (the store call, so no active-model state of the process applies)."""
    by_run: dict[str, list[Metric]] = {}
    missing = 0
    for point in doc["metrics"]:
        run_id = idmap.get("runs", point.get("run_id")) or (
            source_run if point.get("run_id") is None else None)
        if run_id is None:
            missing += 1
            continue
        by_run.setdefault(run_id, []).append(_metric(point, model_id, run_id))
    if missing:
        outcome.warn(f"{missing} metric point(s) not imported: the runs they were logged in "
                     "are not part of this import")
    for run_id, metrics in by_run.items():
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            dst.store.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH],
                                params=[], tags=[])


# The kind -------------------------------------------------------------------------------

def _plan(ctx: ImportContext) -> list[Step]:
    """A model an earlier import completed is skipped; one it left half-written is deleted
    and written again. A target without logged models (an MLflow 2 server) fails each,
    naming what it lacks."""
    found: dict[str, tuple[dict[str, LoggedModel], dict[str, list[str]]]] = {}
    source_ids = ctx.source_ids(NAME)
    missing = None if ctx.empty_target or not source_ids else ctx.dst.lacks(NAME, "target")
    steps = []
    for source_id in source_ids:
        fact = ctx.bundle.facts[NAME][source_id]
        step = Step(NAME, source_id, fact["name"], CREATE, "would be created in a new experiment",
                    error=missing)
        steps.append(step)
        experiment = ctx.target_experiment(fact["experiment_id"])
        if missing or experiment is None:
            continue
        with planning(step):
            if experiment not in found:
                found[experiment] = find_imported(ctx.dst, experiment)
            complete, half_written = found[experiment]
            present = complete.get(source_id)
            if present is not None:
                step.action, step.reason = SKIP, "already present"
                step.target_id = present.model_id
                step.leftovers = half_written.get(source_id, [])  # see _delete_resent
                ctx.idmap.add(NAME, source_id, present.model_id)
            elif source_id in half_written:
                step.action, step.leftovers = REDO, half_written[source_id]
                step.reason = ("left half-written by an interrupted import: deleted and "
                               "written again")
            else:
                step.reason = f"would be created in experiment {experiment}"
    return steps


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each model once its experiment and its source run are done (it fails with the run's
    reason when the run failed), and the runs its metrics were logged in."""
    bar = ctx.progress(len(steps), "import logged models")

    def apply(step: Step) -> None:
        with ctx.track(step) as outcome:
            if step.action in (CREATE, REDO):
                doc = ctx.bundle.documents[NAME][step.source_id]
                experiment = ctx.target_experiment(doc["experiment_id"])
                if experiment is None:
                    raise EximError(f"its experiment {doc['experiment_id']} was not imported")
                for leftover in step.leftovers:
                    ctx.dst.client.delete_logged_model(leftover)
                import_model(ctx.dst, doc, ctx.bundle.dirs[NAME][step.source_id], experiment,
                             idmap=ctx.idmap, source_tags=ctx.source_tags, outcome=outcome,
                             transfers=ctx.transfers)
            ctx.idmap.add(NAME, step.source_id, outcome.target_id)

    tasks = []
    for step in steps:
        doc = ctx.bundle.documents[NAME][step.source_id]
        tasks.append(Task(
            step, lambda step=step: apply(step), done=bar.update,
            needs=[("experiments", doc["experiment_id"])]
            + ([("runs", doc["source_run_id"])] if doc["source_run_id"] else []),
            after=[("runs", m["run_id"]) for m in doc["metrics"] if m.get("run_id")]))
    return tasks


def _finish(ctx: ImportContext) -> None:
    _delete_resent(ctx, [step for step in ctx.steps.get(NAME, []) if not step.error])


def _delete_resent(ctx: ImportContext, steps: list[Step]) -> None:
    """Delete the logged models created twice. MLflow sends a create again when its
    answer was lost (a dropped connection, a timeout; see MLFLOW_HTTP_REQUEST_MAX_RETRIES),
    and the server may have created the model each time: the copy not used stays tagged
    pending with its source id beside the complete one. One listing per experiment that
    got a model; under the import's lease no other job writes there. A failure here is a
    warning: a re-run deletes what is left."""
    experiments = {ctx.target_experiment(ctx.bundle.facts[NAME][step.source_id]
                                         ["experiment_id"])
                   for step in steps if step.action in (CREATE, REDO) or step.leftovers}
    for experiment in sorted(e for e in experiments if e is not None):
        try:
            complete, half_written = find_imported(ctx.dst, experiment)
            for source_id in complete.keys() & half_written.keys():
                for model_id in half_written[source_id]:
                    ctx.dst.client.delete_logged_model(model_id)
        except Exception as exc:  # noqa: BLE001 - the import itself is done
            log.warning("logged models of experiment %s created twice were not deleted: %s",
                        experiment, one_line(exc))


def _export(ctx: ExportContext, model_id: str, model: LoggedModel, directory: Path,
            outcome: Outcome) -> None:
    export(ctx.src, model, directory)
    if lineage.PENDING in (model.tags or {}):
        outcome.warn(lineage.LEFT_HALF_WRITTEN)


def _unchanged(_ctx: ExportContext, _model_id: str, model: LoggedModel,
               directory: Path) -> bool:
    """Whether a logged model written by an earlier export of the same selection reads the
    same at the source (its status, params, tags, metrics and update time)."""
    try:
        doc = read_json(directory / LOGGED_MODEL_FILE)
        fresh = to_doc(model, doc["artifacts"]["files"])
    except (BundleError, KeyError, TypeError):
        return False
    return json.loads(dumps(fresh)) == doc


NAME = "logged_models"
KIND = Kind(
    name=NAME,
    section=Section(NAME, LOGGED_MODEL_FILE, validate, artifacts=True,
                    facts=lambda doc: {"experiment_id": doc["experiment_id"],
                                       "name": doc["name"]},
                    references=lambda doc: [("experiments", doc["experiment_id"])]),
    depends_on=("experiments", "runs"),
    export=_export,
    unchanged=_unchanged,
    inventory=lambda model: {"experiment_id": model.experiment_id},
    export_needs=lambda model: [("experiments", model.experiment_id)],
    label=lambda model: model.name,
    plan=_plan,
    apply=_apply,
    finish=_finish,
)
