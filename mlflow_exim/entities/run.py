"""Runs: their bundle documents, export and import side by side.

A run's directory holds ``run.json`` (info, params, tags, inputs, outputs; written last, so
its presence marks the run complete), ``metrics.jsonl`` (every point of every metric
history, one JSON object per line, streamed both ways so memory does not grow with history
length) and ``artifacts/`` (the run's artifact tree, byte for byte).
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import shutil
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from mlflow.entities import (
    Dataset,
    DatasetInput,
    FileInfo,
    InputTag,
    LifecycleStage,
    LoggedModelInput,
    LoggedModelOutput,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mlflow_exim import lineage
from mlflow_exim.bundle.format import ARTIFACTS_DIR, Section
from mlflow_exim.bundle.jsonio import (
    NON_FINITE,
    JsonLinesWriter,
    decode_float,
    dumps,
    encode_float,
    iter_json_lines,
    read_json,
    write_json,
)
from mlflow_exim.bundle.paths import inside
from mlflow_exim.endpoint import Endpoint, Point
from mlflow_exim.entities import limits
from mlflow_exim.entities.artifacts import count_files, upload_tree
from mlflow_exim.errors import BundleError, EximError
from mlflow_exim.idmap import IdMap
from mlflow_exim.kind import (
    CREATE,
    REDO,
    SKIP,
    UPDATE,
    ExportContext,
    ImportContext,
    Kind,
    Step,
    Task,
    planning,
)
from mlflow_exim.report import FAILED, SKIPPED, Outcome, abbreviate, one_line
from mlflow_exim.work import Workers, paged, parents_first

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"

# Per-request limits of the LogBatch API.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTRIES_PER_BATCH = 1000
# Points read per page of GetMetricHistory: the page of MLflow's own client. The server
# pages by offset (each page re-reads the rows before it) and returns every point without
# a page size, but one page must stay small enough to keep memory flat.
METRIC_PAGE_SIZE = 25000

_STATUSES = tuple(RunStatus.to_string(s) for s in RunStatus.all_status())


# The document ---------------------------------------------------------------------------

def to_doc(run: Run, metric_points: int, artifact_files: int) -> dict:
    info = run.info
    inputs = run.inputs
    outputs = getattr(run, "outputs", None)
    return {
        "info": {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "user_id": info.user_id,
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "lifecycle_stage": info.lifecycle_stage,
            "artifact_uri": info.artifact_uri,
        },
        "params": dict(run.data.params),
        "tags": dict(run.data.tags),
        "metrics": {"keys": sorted(run.data.metrics), "points": metric_points},
        "inputs": {
            "datasets": [
                {
                    "dataset": {
                        "name": d.dataset.name,
                        "digest": d.dataset.digest,
                        "source_type": d.dataset.source_type,
                        "source": d.dataset.source,
                        "schema": d.dataset.schema,
                        "profile": d.dataset.profile,
                    },
                    "tags": [{"key": t.key, "value": t.value} for t in d.tags],
                }
                for d in (inputs.dataset_inputs if inputs else [])
            ],
            "models": [
                {"model_id": m.model_id} for m in (getattr(inputs, "model_inputs", None) or [])
            ],
        },
        "outputs": {
            "models": [
                {"model_id": m.model_id, "step": m.step}
                for m in (getattr(outputs, "model_outputs", None) or [])
            ],
        },
        "artifacts": {"files": artifact_files},
    }


def validate(doc, path: Path) -> None:
    """Check the shape an importer relies on; a problem names the file and the field."""
    def need(container, key, kind, where):
        value = container.get(key) if isinstance(container, dict) else None
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(
                k.__name__ for k in kind)
            raise BundleError(path, f"field {where}{key!r} is missing or not a {names}")
        return value

    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    info = need(doc, "info", dict, "")
    need(info, "run_id", str, "info.")
    need(info, "experiment_id", str, "info.")
    need(info, "start_time", (int, type(None)), "info.")
    need(info, "end_time", (int, type(None)), "info.")
    if info.get("status") not in _STATUSES:
        raise BundleError(path, f"info.status {info.get('status')!r} is not one of "
                                f"{', '.join(_STATUSES)}")
    if info.get("lifecycle_stage") not in (LifecycleStage.ACTIVE, LifecycleStage.DELETED):
        raise BundleError(path, f"info.lifecycle_stage {info.get('lifecycle_stage')!r} is not "
                                "'active' or 'deleted'")
    for section, limit in (("params", limits.PARAM_VALUE), ("tags", limits.TAG_VALUE)):
        values = need(doc, section, dict, "")
        if not all(isinstance(v, str) for v in values.values()):
            raise BundleError(path, f"every value in {section!r} must be a string")
        limits.check_mapping(values, path, section, value_limit=limit)
    if not isinstance(doc.get("metrics", {}), dict) or type(
            doc.get("metrics", {}).get("points", 0)) is not int:
        raise BundleError(path, "field 'metrics' is not an object with an integer 'points'")
    inputs = need(doc, "inputs", dict, "")
    for item in need(inputs, "datasets", list, "inputs."):
        dataset = need(item, "dataset", dict, "inputs.datasets[].")
        for key in ("name", "digest", "source_type", "source"):
            need(dataset, key, str, "inputs.datasets[].dataset.")
        for key in ("schema", "profile"):
            need(dataset, key, (str, type(None)), "inputs.datasets[].dataset.")
        for key, limit in limits.DATASET.items():
            limits.check_length(dataset.get(key), limit, path, f"inputs.datasets[].dataset.{key}")
        for tag in need(item, "tags", list, "inputs.datasets[]."):
            need(tag, "key", str, "inputs.datasets[].tags[].")
            need(tag, "value", str, "inputs.datasets[].tags[].")
            limits.check_length(tag["key"], limits.INPUT_TAG_KEY, path,
                                "inputs.datasets[].tags[].key")
            limits.check_length(tag["value"], limits.INPUT_TAG_VALUE, path,
                                "inputs.datasets[].tags[].value")


def validate_metric_history(path: Path) -> None:
    """Read every line of ``metrics.jsonl`` once, so that a malformed point is found
    before an import writes anything. Memory stays flat: the points are not kept."""
    for _ in _read_points(path):
        pass


# Export ---------------------------------------------------------------------------------

def export(src: Endpoint, run_id: str, directory: Path, run: Run | None = None) -> dict:
    """Write one run into ``directory``; ``run.json`` last. Returns the document. ``run``
    is the run as read already, whole (see :func:`whole_in_search`); else it is read."""
    if directory.exists():
        shutil.rmtree(directory)  # a half-written run from an interrupted export
    directory.mkdir(parents=True)
    try:
        run = run or src.client.get_run(run_id)
        points = _export_metric_history(src, run_id, sorted(run.data.metrics), directory)
        files = download_artifacts(src, run_id, run.info.artifact_uri, directory / ARTIFACTS_DIR)
        doc = to_doc(run, points, files)
        write_json(directory / RUN_FILE, doc)
    except Exception:
        shutil.rmtree(directory, ignore_errors=True)  # no half-written run in the bundle
        raise
    return doc


def whole_in_search(any_logged_models: bool) -> bool:
    """Whether a run as ``search_runs`` returns it holds all that its document carries:
    info, params, tags, latest metrics, dataset inputs and model outputs come with it, but
    not the logged models it consumed (model inputs), which only ``get_run`` reads. Those
    can only exist where the source holds ``any_logged_models``."""
    return not any_logged_models


def _export_metric_history(src: Endpoint, run_id: str, keys: list[str], directory: Path) -> int:
    if src.database is not None:  # the same points in one SELECT (mlflow_exim.database)
        points = src.database.metric_history(run_id)
    else:
        points = (point for key in keys
                  for point in paged(src.points.get_metric_history, run_id, key,
                                     max_results=METRIC_PAGE_SIZE))
    with JsonLinesWriter(directory / METRICS_FILE) as out:
        for key, value, timestamp, step in points:
            out.write({"key": key, "value": encode_float(value), "timestamp": timestamp,
                       "step": step})
        return out.count


def download_artifacts(src: Endpoint, run_id: str, artifact_uri: str, destination: Path) -> int:
    """The run's artifact tree into ``destination`` (created); returns how many files.
    It is read from the run's own artifact store, not through MLflow 3's ``runs:/`` view,
    which also searches logged models (an MLflow 2 server answers 404) and hides a failed
    file behind "Failed to download artifacts from path ''". The tree is listed once and
    each file fetched by its path, side by side (the store's own download of a tree lists
    it again, its root twice); a file that needs another way goes as
    :func:`_through_run_endpoint` says. A file that cannot be read is an EximError that
    names each such file and why."""
    destination.mkdir()
    repo = src.artifact_repository(artifact_uri)
    files = []
    for info in _listed(repo):
        if info.is_dir:  # an empty directory, kept as the store holds it
            inside(destination, info.path, source=destination).mkdir(parents=True,
                                                                     exist_ok=True)
        else:
            files.append(info.path)
    fetches = {path: repo.thread_pool.submit(_fetch_file, src, run_id, artifact_uri, repo,
                                             path, destination) for path in files}
    unreadable = {path: one_line(error) for path, fetch in fetches.items()
                  if (error := fetch.exception()) is not None}
    if unreadable:
        raise EximError(f"{len(unreadable)} artifact file(s) cannot be read from "
                        f"{src.display_uri}: " + "; ".join(
                            f"{path!r} ({why})" for path, why in sorted(unreadable.items())))
    return count_files(destination)


def _listed(repo, path: str | None = None) -> Iterator:
    """Every file below ``path``, and each empty directory (``is_dir``), one listing per
    directory."""
    found = [info for info in repo.list_artifacts(path) if info.path not in (".", path)]
    if not found and path is not None:
        yield FileInfo(path, True, None)
    for info in found:
        if info.is_dir:
            yield from _listed(repo, info.path)
        else:
            yield info


def _through_run_endpoint(src: Endpoint, artifact_uri: str, path: str) -> bool:
    """Whether a file must be read through the server's ``/get-artifact`` rather than its
    artifact proxy (``mlflow-artifacts:``), which sends the file name in a
    ``Content-Disposition`` header as it is. A name that is not Latin-1 cannot travel so:
    an MLflow 2 server's gunicorn rejects that header and drops the connection (which the
    client retries for minutes). ``/get-artifact``, the run-artifact endpoint of MLflow's
    UI, encodes the name (RFC 5987)."""
    if not (src.is_http and artifact_uri.startswith("mlflow-artifacts:")):
        return False
    try:
        posixpath.basename(path).encode("latin-1")
    except UnicodeEncodeError:
        return True
    return False


def _fetch_file(src: Endpoint, run_id: str, artifact_uri: str, repo, path: str,
                destination: Path) -> None:
    """One artifact file, below ``destination`` at its own path."""
    local = inside(destination, path, source=destination)
    local.parent.mkdir(parents=True, exist_ok=True)
    if not _through_run_endpoint(src, artifact_uri, path):
        # by its path: the public download_artifacts first lists it to see if it is a tree
        repo._download_file(remote_file_path=path, local_path=str(local))
        return
    response = src.request("GET", "/get-artifact", stream=True,
                           params={"run_uuid": run_id, "path": path})
    if response.status_code != 200:
        raise EximError(f"/get-artifact answered HTTP {response.status_code}: "
                        f"{' '.join(response.text.split())[:200]}")
    with local.open("wb") as out:
        for chunk in response.iter_content(chunk_size=1 << 20):
            out.write(chunk)


# Import ---------------------------------------------------------------------------------

def import_run(dst: Endpoint, doc: dict, directory: Path, experiment_id: str, *,
               parent_run_id: str | None, source_tags: bool, outcome: Outcome,
               transfers: Workers) -> Run:
    """Create and fill one run on the target; returns it as its creation returned it.

    ``parent_run_id`` is the target id of the parent, or None to drop the source's
    ``mlflow.parentRunId``. Deleting the run, where the source run is deleted, is left to
    the caller: nothing can be written into a deleted run, and children come later.
    Metric batches and artifact files go through ``transfers`` side by side.

    The run is created with its tags and the source-id tag among them (so the server
    writes them in the run's own transaction, not in a LogBatch's), but for those sent
    after (see :func:`_sent_after_creation`), and marked pending: a run with a name is
    created under its pending name (:func:`lineage.pending_run_name`), which its last
    request, the UpdateRun of its status and end time, replaces with its own; any other
    carries the tag ``mlflow_exim.import.pending``, which its last request deletes. See
    :func:`find_imported`. If any step fails, the half-written target run is deleted
    before the error propagates.
    """
    info = doc["info"]
    source_id = info["run_id"]
    run_name = info.get("run_name") or None
    tags = _target_tags(doc, parent_run_id, source_tags, outcome)
    later = _sent_after_creation(tags, run_name)
    # The name carries the mark where the last UpdateRun can give the name back as it was:
    # the run has one, and its mlflow.runName tag, if any, is that name.
    named_last = bool(run_name) and MLFLOW_RUN_NAME not in later
    if named_last:
        tags.pop(MLFLOW_RUN_NAME, None)  # the UpdateRun writes it with the name
    marks = [RunTag(lineage.SOURCE_RUN_ID, source_id)] + (
        [] if named_last else [RunTag(lineage.PENDING, source_id)])
    run = dst.store.create_run(
        experiment_id=experiment_id,
        user_id=info.get("user_id") or "unknown",
        start_time=info["start_time"],
        tags=[*marks, *(RunTag(k, v) for k, v in tags.items())],
        run_name=lineage.pending_run_name(source_id) if named_last else run_name,
    )
    run_id = run.info.run_id
    outcome.target_id = run_id
    try:
        if LOG_MODEL_HISTORY_TAG in later:
            later[LOG_MODEL_HISTORY_TAG] = later[LOG_MODEL_HISTORY_TAG].replace(source_id,
                                                                                run_id)
        metrics_file = directory / METRICS_FILE
        metrics = () if dst.database is not None else _read_points(metrics_file)
        if dst.database is not None:  # committed before the run is marked complete
            _write_metric_history(dst, run_id, metrics_file)
        transfers.each(
            lambda batch: dst.points.log_batch(run_id, metrics=batch[2], params=batch[0],
                                               tags=batch[1]),
            _log_batches([Param(k, v) for k, v in doc["params"].items()],
                         [RunTag(k, v) for k, v in later.items()],
                         metrics))
        datasets = [
            DatasetInput(Dataset(**item["dataset"]),
                         tags=[InputTag(t["key"], t["value"]) for t in item["tags"]])
            for item in doc["inputs"]["datasets"]
        ]
        if datasets:
            _log_datasets(dst, run_id, datasets)
        _import_artifacts(dst, run, directory / ARTIFACTS_DIR, source_id, transfers, outcome)
        status = RunStatus.from_string(info["status"])
        if named_last:
            dst.store.update_run_info(run_id, status, info.get("end_time"), run_name)
        else:
            if info["status"] != "RUNNING" or info.get("end_time") is not None:
                dst.store.update_run_info(run_id, status, info.get("end_time"), None)
            dst.store.delete_tag(run_id, lineage.PENDING)
    except BaseException:
        with contextlib.suppress(Exception):  # the original error is what matters
            dst.client.delete_run(run_id)
        raise
    return run


# How a SQL store words a unique-key clash (sqlite, PostgreSQL, MySQL).
_DUPLICATE_KEY = ("UNIQUE constraint failed", "duplicate key value", "Duplicate entry")
DATASET_ATTEMPTS = 4


def _log_datasets(dst: Endpoint, run_id: str, datasets: list[DatasetInput]) -> None:
    """Log the run's dataset inputs. The server gets or creates each dataset row of the
    experiment, and two runs of one experiment that log the same dataset at the same moment
    (parallel workers) collide there: the loser's request is rolled back whole with a
    unique-key error. Sent again once the winner's row exists, it finds the row."""
    for attempt in range(1, DATASET_ATTEMPTS + 1):
        try:
            dst.client.log_inputs(run_id, datasets=datasets)
            return
        except Exception as exc:
            if attempt == DATASET_ATTEMPTS or not any(m in str(exc) for m in _DUPLICATE_KEY):
                raise
            time.sleep(0.1 * attempt)


def find_imported(dst: Endpoint, experiment_id: str) -> tuple[dict[str, Run],
                                                             dict[str, list[str]]]:
    """Runs of a target experiment written by an earlier import (all carry the source-id
    tag): the complete ones by source id, and, by source id, the ids of those it left
    half-written (active and still marked pending, see :func:`lineage.is_pending`)."""
    half_written: dict[str, list[str]] = {}
    complete: dict[str, Run] = {}
    for run in _search_tagged(dst, experiment_id, lineage.SOURCE_RUN_ID):
        tags = run.data.tags
        if (source_id := source_id_of(tags)) is not None:
            complete.setdefault(source_id, run)
        elif lineage.is_pending(tags) and run.info.lifecycle_stage == LifecycleStage.ACTIVE:
            half_written.setdefault(tags[lineage.SOURCE_RUN_ID], []).append(run.info.run_id)
    return complete, half_written


def source_id_of(tags: dict) -> str | None:
    """The source id of a run an import completed (its source-id tag, not marked pending),
    else None: how the importer and verify both recognise a migrated run."""
    return None if lineage.is_pending(tags) else tags.get(lineage.SOURCE_RUN_ID)


def _search_tagged(dst: Endpoint, experiment_id: str, key: str) -> Iterator[Run]:
    return paged(dst.client.search_runs, [experiment_id], f"tags.`{key}` LIKE '%'",
                 run_view_type=ViewType.ALL)


def _catch_up_needed(doc: dict, run: Run) -> bool:
    """Whether a run found complete on the target must be brought up to its source's final
    state: a run still RUNNING when it was migrated may have finished since (an incremental
    sync). Params, tags and metric points it gained since are not added (see README)."""
    info = doc["info"]
    return ((run.info.status, run.info.end_time) != (info["status"], info.get("end_time"))
            and run.info.lifecycle_stage == LifecycleStage.ACTIVE)


def _catch_up(dst: Endpoint, doc: dict, run: Run) -> None:
    info = doc["info"]
    dst.store.update_run_info(run.info.run_id, RunStatus.from_string(info["status"]),
                              info.get("end_time"), None)


def import_model_links(dst: Endpoint, doc: dict, run_id: str, idmap: IdMap,
                       outcome: Outcome, *, present: bool = False) -> None:
    """Link the target run to the migrated logged models it consumed (inputs) and produced
    (outputs, with their step). Called once the logged models exist on the target. For a
    run already ``present`` only the links it lacks are added."""
    def target(link: dict) -> str | None:
        model_id = idmap.get("logged_models", link["model_id"])
        if model_id is None:
            outcome.warn(f"link to logged model {link['model_id']} not imported: the model is "
                         "not part of this import")
        return model_id

    inputs = [LoggedModelInput(m) for m in map(target, doc["inputs"].get("models", [])) if m]
    outputs = [LoggedModelOutput(m, link["step"])
               for link in doc.get("outputs", {}).get("models", [])
               if (m := target(link))]
    if present and (inputs or outputs):
        run = dst.client.get_run(run_id)
        have_in = {m.model_id for m in getattr(run.inputs, "model_inputs", None) or []}
        have_out = {(m.model_id, m.step)
                    for m in getattr(getattr(run, "outputs", None), "model_outputs", None) or []}
        inputs = [m for m in inputs if m.model_id not in have_in]
        outputs = [m for m in outputs if (m.model_id, m.step) not in have_out]
    if inputs:
        dst.client.log_inputs(run_id, models=inputs)
    if outputs:
        dst.client.log_outputs(run_id, outputs)


def _target_tags(doc: dict, parent_run_id: str | None, source_tags: bool,
                 outcome: Outcome) -> dict:
    """The run's tags as the target gets them (the import's own marks aside): the parent's
    target id, and the source tags where asked for."""
    tags = lineage.without_import_marks(doc["tags"])
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    elif MLFLOW_PARENT_RUN_ID in tags:
        outcome.warn(f"parent run {tags.pop(MLFLOW_PARENT_RUN_ID)} was not imported with it; "
                     f"{MLFLOW_PARENT_RUN_ID} removed")
    if source_tags:
        skipped: list[str] = []
        tags.update(lineage.run_source_tags(doc, skipped))
        tags.pop(lineage.SOURCE_RUN_ID)  # written with the import's marks
        for key in skipped:
            outcome.warn(f"source tag for {key!r} not written: its key would be too long")
    return tags


def _sent_after_creation(tags: dict, run_name: str | None) -> dict:
    """Take out of ``tags`` those LogBatch requests send once the run exists: the model
    history, which names the run's own id; a ``mlflow.runName`` other than the run's name
    (run creation refuses the two to differ; a LogBatch makes the tag the name, as it did
    at the source); and all but the first tags a LogBatch can hold, so that no request
    grows larger than one."""
    later = {}
    if LOG_MODEL_HISTORY_TAG in tags:
        later[LOG_MODEL_HISTORY_TAG] = tags.pop(LOG_MODEL_HISTORY_TAG)
    if MLFLOW_RUN_NAME in tags and (not run_name or tags[MLFLOW_RUN_NAME] != run_name):
        later[MLFLOW_RUN_NAME] = tags.pop(MLFLOW_RUN_NAME)
    for key in list(tags)[MAX_PARAMS_TAGS_PER_BATCH:]:
        later[key] = tags.pop(key)
    return later


def _write_metric_history(dst: Endpoint, run_id: str, path: Path) -> None:
    """The points of ``metrics.jsonl`` straight into the target's database: as the JSON
    lines they are, where the database parses them itself (the bundle's reader has
    checked every line), else as checked points."""
    if not dst.database.parses_json:
        dst.database.write_metric_history(run_id, _read_points(path))
        return
    with path.open(encoding="utf-8") as lines:
        dst.database.write_metric_json(
            run_id, (line for line in lines if not line.isspace()), NON_FINITE)


def _read_points(path: Path) -> Iterator[Point]:
    """(key, value, timestamp, step) of each line of ``metrics.jsonl``, checked: the
    direct-database path and the validation take them without building a Metric."""
    for point in iter_json_lines(path):
        try:
            key, value, timestamp, step = (point["key"], point["value"], point["timestamp"],
                                           point["step"])
            if not isinstance(key, str):
                raise TypeError("key is not a string")
            if len(key) > limits.KEY:
                raise ValueError(f"key is longer than MLflow's {limits.KEY} characters")
            if type(timestamp) is not int or type(step) is not int:
                raise TypeError("timestamp and step must be integers")
            if type(value) is not float:  # the common case needs no call
                if isinstance(value, bool):
                    raise TypeError("value is a boolean")
                value = decode_float(value)
            yield key, value, timestamp, step
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BundleError(path, f"metric point {abbreviate(point, 120)} is malformed: "
                                    f"{type(exc).__name__} {exc}") from None


def _log_batches(params: list[Param], tags: list[RunTag],
                 metrics: Iterable[Point]) -> Iterator[tuple[list, list, list]]:
    """(params, tags, metrics) for LogBatch requests, each within the API's limits, so that
    a small run needs one request. Metrics are drawn from the stream as room allows."""
    metrics = iter(metrics)
    while True:
        batch_params = params[:MAX_PARAMS_TAGS_PER_BATCH]
        batch_tags = tags[:MAX_PARAMS_TAGS_PER_BATCH]
        params = params[len(batch_params):]
        tags = tags[len(batch_tags):]
        room = MAX_ENTRIES_PER_BATCH - len(batch_params) - len(batch_tags)
        batch_metrics = list(islice(metrics, min(room, MAX_METRICS_PER_BATCH)))
        if not (batch_params or batch_tags or batch_metrics):
            return
        yield batch_params, batch_tags, batch_metrics


def _import_artifacts(dst: Endpoint, run: Run, local_dir: Path, source_run_id: str,
                      transfers: Workers, outcome: Outcome) -> None:
    """Upload every file under ``local_dir`` at the same relative path, and its empty
    directories where the run's store can hold them. MLflow-2 style model directories keep
    a copy of their run id in ``MLmodel``; it names the new run."""
    upload_tree(local_dir, dst, run.info.artifact_uri,
                {"run_id": (source_run_id, run.info.run_id)}, transfers, outcome=outcome)


# The kind -------------------------------------------------------------------------------

def _facts(doc: dict) -> dict:
    info = doc["info"]
    return {"experiment_id": info["experiment_id"], "name": info.get("run_name"),
            "parent": doc["tags"].get(MLFLOW_PARENT_RUN_ID),
            "deleted": info["lifecycle_stage"] == LifecycleStage.DELETED,
            "metric_points": doc.get("metrics", {}).get("points", 0)}


def _plan(ctx: ImportContext) -> list[Step]:
    """Runs parents first. A run an earlier import completed is skipped (or its status
    brought up to date); one it left half-written is deleted and written again."""
    facts = ctx.bundle.facts[NAME]
    found: dict[str, tuple[dict[str, Run], dict[str, list[str]]]] = {}
    steps = []
    for source_id in parents_first({i: facts[i]["parent"] for i in ctx.source_ids(NAME)}):
        fact = facts[source_id]
        step = Step(NAME, source_id, fact["name"], CREATE, delete_again=fact["deleted"])
        with planning(step):
            experiment = ctx.target_experiment(fact["experiment_id"])
            if experiment is None:
                step.reason = "would be created in a new experiment"
            else:
                if experiment not in found:
                    found[experiment] = find_imported(ctx.dst, experiment)
                complete, half_written = found[experiment]
                _plan_one(ctx, step, complete.get(source_id), half_written.get(source_id, []),
                          experiment)
        steps.append(step)
    return steps


def _plan_one(ctx: ImportContext, step: Step, present: Run | None, leftovers: list[str],
              experiment: str) -> None:
    # Beside a complete copy, a leftover is a run whose create MLflow sent again after
    # its answer was lost (a dropped connection, a timeout): deleted too.
    step.leftovers = leftovers
    if present is None:
        step.action = REDO if leftovers else CREATE
        step.reason = ("left half-written by an interrupted import: deleted and written again"
                       if leftovers else f"would be created in experiment {experiment}")
        return
    doc = ctx.bundle.documents[NAME][step.source_id]
    step.target_id, step.present = present.info.run_id, present
    ctx.idmap.add(NAME, step.source_id, present.info.run_id)
    ctx.run_artifact_uris[present.info.run_id] = present.info.artifact_uri
    deleted_at_target = present.info.lifecycle_stage == LifecycleStage.DELETED
    step.delete_again = step.delete_again and not deleted_at_target
    if deleted_at_target and doc["info"]["lifecycle_stage"] == LifecycleStage.ACTIVE:
        step.warnings.append("already present on the target, where it is deleted; left deleted")
    if _catch_up_needed(doc, present):
        step.action = UPDATE
        step.reason = f"already present; status brought up to {doc['info']['status']}"
    else:
        step.action, step.reason = SKIP, "already present"


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """Each run once its experiment and its parent are done, so that the parent's target
    id is known; a run whose parent failed fails with the parent's reason (created
    without it, a re-run would find it complete and never link it)."""
    bar = ctx.progress(len(steps), "import runs")
    return [Task(step, lambda step=step: _apply_one(ctx, step),
                 needs=_needs(ctx.bundle.facts[NAME][step.source_id]), done=bar.update)
            for step in steps]


def _needs(fact: dict) -> list[tuple[str, str]]:
    return [("experiments", fact["experiment_id"])] + (
        [(NAME, fact["parent"])] if fact["parent"] else [])


def _apply_one(ctx: ImportContext, step: Step) -> None:
    with ctx.track(step) as outcome:
        doc = ctx.bundle.documents[NAME][step.source_id]
        for leftover in step.leftovers:  # the import's lease says no other job writes them
            ctx.dst.client.delete_run(leftover)
        if step.action == UPDATE:
            _catch_up(ctx.dst, doc, step.present)
        elif step.action in (CREATE, REDO):
            experiment = ctx.target_experiment(doc["info"]["experiment_id"])
            if experiment is None:
                raise EximError(f"its experiment {doc['info']['experiment_id']} was not imported")
            created = import_run(
                ctx.dst, doc, ctx.bundle.dirs[NAME][step.source_id], experiment,
                parent_run_id=ctx.idmap.get(NAME, doc["tags"].get(MLFLOW_PARENT_RUN_ID)),
                source_tags=ctx.source_tags, outcome=outcome, transfers=ctx.transfers)
            ctx.run_artifact_uris[created.info.run_id] = created.info.artifact_uri
        ctx.idmap.add(NAME, step.source_id, outcome.target_id)


def _finish(ctx: ImportContext) -> None:
    """Once the logged models exist: the runs' links to them (a run found complete gets the
    links it still lacks). Then the runs deleted at the source are deleted again."""
    def link(outcome: Outcome) -> None:
        if outcome.status == FAILED or not outcome.target_id:
            return
        try:
            import_model_links(ctx.dst, ctx.bundle.documents[NAME][outcome.source_id],
                               outcome.target_id, ctx.idmap, outcome,
                               present=outcome.status == SKIPPED)
        except Exception as exc:  # noqa: BLE001 - reported on the run
            outcome.status = FAILED
            outcome.reason = f"imported, but its logged-model links failed: {one_line(exc)}"

    ctx.objects.each(link, list(ctx.outcomes.get(NAME, {}).values()))
    ctx.delete_again(NAME, ctx.dst.client.delete_run)
    _report_metric_path(ctx)


def _report_metric_path(ctx: ImportContext) -> None:
    """Which path carried the metric histories of the runs this import wrote (``database``
    with its dialect, or ``rest``), and how many runs and points (as the bundle counts
    them) took it: ``extra["metric_histories"]``."""
    written = [o for o in ctx.outcomes.get(NAME, {}).values()
               if o.status != FAILED and o.action in (CREATE, REDO)]
    database = ctx.dst.database
    ctx.report.extra["metric_histories"] = {
        "path": f"database ({database.dialect})" if database is not None else "rest",
        "runs": len(written),
        "points": sum(ctx.bundle.facts[NAME][o.source_id]["metric_points"] for o in written)}


def _export(ctx: ExportContext, run_id: str, experiment_id: str, directory: Path,
            outcome: Outcome) -> None:
    run = ctx.read.pop((NAME, run_id), None)
    doc = export(ctx.src, run_id, directory, run)
    outcome.name = doc["info"]["run_name"]
    if lineage.is_pending(doc["tags"]):
        outcome.warn(lineage.LEFT_HALF_WRITTEN)


def _unchanged(ctx: ExportContext, run_id: str, _experiment_id: str, directory: Path) -> bool:
    """Whether a run written by an earlier (interrupted or complete) export of the same
    selection still reads the same at the source: it had ended, its info, params, tags,
    inputs, outputs and metric keys are as written, and each metric's latest point (the
    one the run itself reports) has the step and time of the last one written, so that a
    point logged later to an ended run is seen without reading its history. Files added
    to an ended run are not seen; ``overwrite`` exports everything anew."""
    try:
        doc = read_json(directory / RUN_FILE)
        if not RunStatus.is_terminated(RunStatus.from_string(doc["info"]["status"])):
            return False
        run = ctx.read.get((NAME, run_id)) or ctx.src.client.get_run(run_id)
        fresh = to_doc(run, doc["metrics"]["points"], doc["artifacts"]["files"])
        if json.loads(dumps(fresh)) != doc:
            return False
        written: dict[str, tuple[int, int]] = {}
        for key, _, timestamp, step in _read_points(directory / METRICS_FILE):
            written[key] = max(written.get(key, (step, timestamp)), (step, timestamp))
    except Exception:  # noqa: BLE001 - written again, which reports what goes wrong
        return False
    return written == {m.key: (m.step, m.timestamp) for m in run.data._metric_objs}


NAME = "runs"
KIND = Kind(
    name=NAME,
    section=Section(NAME, RUN_FILE, validate, artifacts=True,
                    check_files=lambda directory: validate_metric_history(
                        directory / METRICS_FILE),
                    facts=_facts,
                    references=lambda doc: [("experiments", doc["info"]["experiment_id"])],
                    parent=f"tags[{MLFLOW_PARENT_RUN_ID!r}]"),
    depends_on=("experiments",),
    export=_export,
    unchanged=_unchanged,
    inventory=lambda experiment_id: {"experiment_id": experiment_id},
    export_needs=lambda experiment_id: [("experiments", experiment_id)],
    plan=_plan,
    apply=_apply,
    finish=_finish,
)
