"""MLflow 3 traces with their spans, assessments, attachments and run links: their bundle
shape, export and import side by side.

The traces of one experiment are one object of the bundle: ``traces/<experiment id>/``
holds ``traces-000001.jsonl``, ``traces-000002.jsonl``, ... (one trace per line, at most
:data:`CHUNK` lines a file: its info as MLflow's protobuf JSON, with tags, metadata and
assessments, every span as MLflow's span dictionary, the runs it is linked to, and the
names of its attachments), ``artifacts/<trace id>/attachments/`` (the attachment files,
covered by the manifest's checksums) and ``traces.json``, written last, with the counts.
Export and import stream the files, a page of traces at a time, so memory does not grow
with the number of traces or spans (it holds the largest trace whole, as the server
sends it).

Import keeps every id (trace, span, assessment): StartTraceV3 writes the info with its
assessments, OTLP (``/v1/traces``) the spans. A trace id is a global key of a server, so
when the target already holds the trace in another experiment (an import into another
experiment of the same server, or a second copy under a renamed experiment) the trace gets
a new id derived from the old one and the target experiment (so that a re-run finds it
again), its assessments likewise; the report warns per trace and maps old to new ids.
A trace carries the tag ``mlflow_exim.import.pending`` until its spans, attachments and
links are written; a re-run deletes and writes again one left so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path

from google.protobuf.json_format import MessageToDict, ParseDict
from mlflow.entities import Span, TraceInfo, ViewType
from mlflow.entities.model_registry import PromptVersion
from mlflow.protos.service_pb2 import TraceInfoV3 as ProtoTraceInfo
from mlflow.store.tracking.abstract_store import AbstractStore
from mlflow.tracing.constant import TraceTagKey

from mlflow_exim import lineage
from mlflow_exim.bundle.format import ARTIFACTS_DIR, Section
from mlflow_exim.bundle.jsonio import JsonLinesWriter, iter_json_lines, read_json, write_json
from mlflow_exim.bundle.paths import inside, safe_component
from mlflow_exim.endpoint import Endpoint
from mlflow_exim.entities import logged_model as logged_model_entity
from mlflow_exim.entities import run as run_entity
from mlflow_exim.errors import BundleError
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
from mlflow_exim.report import FAILED, SKIPPED, Outcome, one_line
from mlflow_exim.work import paged

NAME = "traces"
TRACES_FILE = "traces.json"
CHUNK = 200  # traces per file, and per page read from the source
BATCH = 50  # traces looked up and written together on the target
LINKS_PER_REQUEST = 100  # link_traces_to_run takes at most 100 trace ids
LOCATIONS = 100  # experiments searched together for the traces linked to a run
ATTACHMENTS = "attachments"
ATTACHMENT_REF = "mlflow-attachment://"  # how a span's inputs or outputs name an attachment
SOURCE_RUN = "mlflow.sourceRun"
MODEL_ID = "mlflow.modelId"
ASSESSMENT_SOURCE_RUN = "mlflow.assessment.sourceRunId"
# Set by StartTraceV3: the trace's info was written, not derived from its spans.
INFO_FINALIZED = "mlflow.trace.infoFinalized"
# Tags the target server sets itself and refuses from a client.
SERVER_TAGS = ("mlflow.artifactLocation", "mlflow.trace.spansLocation",
               "mlflow.trace.archiveLocation", "mlflow.trace.archivalFailure")
ARTIFACT_LOCATION = SERVER_TAGS[0]
SPANS_IN_STORE = ("TRACKING_STORE", "ARCHIVE_REPO")


class RunLinks:
    """Trace id -> the runs it was linked to with ``link_traces_to_run`` (the runs named by
    its ``mlflow.sourceRun`` are not links), for the traces of the experiments ``traced``
    and the runs of the experiments ``runs_of`` (a link to a run of another experiment is
    found too), read once, when first asked (both may grow until then, as an export's plan
    does). A server reads links only run by run: one trace search per run, across the
    traced experiments that hold traces (at most :data:`LOCATIONS` a request). Only linked
    traces are held."""

    def __init__(self, endpoint: Endpoint, traced: Iterable[str], runs_of: Iterable[str]):
        self.endpoint, self.traced, self.runs_of = endpoint, traced, runs_of
        self._lock = threading.Lock()
        self._links: dict[str, list[str]] | None = None
        self._experiments: dict[str, str] = {}  # of the linked traces, by trace id

    def get(self, trace_id: str) -> list[str]:
        return self._read_once().get(trace_id, [])

    def pairs(self) -> set[tuple[str, str]]:
        """(experiment id of a linked trace, id of a run it is linked to), each once."""
        links = self._read_once()
        return {(self._experiments[trace_id], run_id)
                for trace_id, run_ids in links.items() for run_id in run_ids}

    def _read_once(self) -> dict[str, list[str]]:
        with self._lock:
            if self._links is None:
                self._links = self._read()
        return self._links

    def _read(self) -> dict[str, list[str]]:
        traced = [e for e in dict.fromkeys(self.traced) if has_traces(self.endpoint, e)]
        links: dict[str, list[str]] = {}
        for experiment_id in dict.fromkeys(self.runs_of) if traced else ():
            for run in paged(self.endpoint.client.search_runs, [experiment_id],
                             run_view_type=ViewType.ALL):
                run_id = run.info.run_id
                for start in range(0, len(traced), LOCATIONS):
                    for page in _pages(self.endpoint, traced[start:start + LOCATIONS],
                                       f"attribute.run_id = '{run_id}'", 500):
                        for info in page:
                            if info.trace_metadata.get(SOURCE_RUN) != run_id:
                                links.setdefault(info.trace_id, []).append(run_id)
                                self._experiments[info.trace_id] = info.experiment_id
        return links


@dataclass(frozen=True)
class ExportItem:
    """The traces of one experiment that an export takes: all, or those ``filter_string``
    (an MLflow trace search filter) finds, and with ``since`` those started since then;
    ``links`` their run links (by default, to the runs of their own experiment)."""

    experiment_id: str
    filter_string: str | None = None
    since: datetime | None = None
    links: RunLinks | None = field(default=None, compare=False)

    def search_filter(self) -> str | None:
        clauses = [self.filter_string] if self.filter_string else []  # MLflow's filters
        # have AND only, and no parentheses
        if self.since is not None:
            clauses.append(f"trace.timestamp_ms >= {int(self.since.timestamp() * 1000)}")
        return " AND ".join(clauses) or None


# The document and its lines -------------------------------------------------------------

def chunk_name(number: int) -> str:
    return f"traces-{number:06d}.jsonl"


def validate(doc, path: Path) -> None:
    if not isinstance(doc, dict):
        raise BundleError(path, "must hold a JSON object")
    if not isinstance(doc.get("experiment_id"), str):
        raise BundleError(path, "field 'experiment_id' is missing or not a str")
    for key in ("traces", "spans", "attachments"):
        if type(doc.get(key)) is not int:
            raise BundleError(path, f"field {key!r} is missing or not an int")
    chunks = doc.get("chunks")
    if not isinstance(chunks, list) or not all(
            isinstance(c, str) and c == chunk_name(n) for n, c in enumerate(chunks, 1)):
        raise BundleError(path, "field 'chunks' must list traces-000001.jsonl, ... in order")


def check_files(directory: Path) -> None:
    """Read every line of every chunk once, so that a malformed trace is found before an
    import writes anything; the counts must match ``traces.json``."""
    doc_path = directory / TRACES_FILE
    doc = read_json(doc_path)
    traces = spans = attachments = 0
    for path, line in _lines(directory, doc):
        _check_line(line, path)
        traces += 1
        spans += len(line["spans"])
        attachments += len(line["attachments"])
        for name in line["attachments"]:
            if not (attachment_dir(directory, line["info"]["trace_id"]) / name).is_file():
                raise BundleError(path, f"trace {line['info']['trace_id']}: attachment "
                                        f"{name!r} is missing")
    if (traces, spans, attachments) != (doc["traces"], doc["spans"], doc["attachments"]):
        raise BundleError(doc_path, f"counts {doc['traces']} traces, {doc['spans']} spans, "
                                    f"{doc['attachments']} attachments, but the chunks hold "
                                    f"{traces}, {spans} and {attachments}")


def _check_line(line, path: Path) -> None:
    if not isinstance(line, dict) or not isinstance(line.get("info"), dict):
        raise BundleError(path, "a line is not an object with an 'info' object")
    trace_id = line["info"].get("trace_id")
    if not isinstance(trace_id, str) or not trace_id.startswith("tr-"):
        raise BundleError(path, f"a line's info.trace_id {trace_id!r} is not a trace id")
    for key in ("spans", "run_links", "attachments"):
        if not isinstance(line.get(key), list):
            raise BundleError(path, f"trace {trace_id}: field {key!r} is missing or not a list")
    if not all(isinstance(s, dict) and isinstance(s.get("span_id"), str)
               for s in line["spans"]):
        raise BundleError(path, f"trace {trace_id}: a span is not an object with a span_id")
    try:
        ParseDict(line["info"], ProtoTraceInfo())
    except Exception as exc:  # noqa: BLE001 - any parse error names the trace
        raise BundleError(path, f"trace {trace_id}: info is malformed: {one_line(exc)}") from None


def _lines(directory: Path, doc: dict) -> Iterator[tuple[Path, dict]]:
    """Every trace line of one bundle object, chunk after chunk, read as it goes."""
    for name in doc["chunks"]:
        path = directory / name
        for line in iter_json_lines(path):
            yield path, line


def attachment_dir(directory: Path, trace_id: str) -> Path:
    return directory / ARTIFACTS_DIR / safe_component(trace_id) / ATTACHMENTS


def _info_dict(info: TraceInfo) -> dict:
    """The info as MLflow's protobuf JSON: every field as the server sent it."""
    return MessageToDict(info.to_proto(), preserving_proto_field_name=True)


def to_trace_info(info: dict) -> TraceInfo:
    return TraceInfo.from_proto(ParseDict(info, ProtoTraceInfo()))


def to_line(trace, run_links: list[str], attachments: list[str]) -> dict:
    return {
        "info": _info_dict(trace.info),
        "spans": [span.to_dict() for span in trace.data.spans],
        "run_links": sorted(run_links),
        "attachments": sorted(attachments),
    }


# Export ---------------------------------------------------------------------------------

def has_traces(src: Endpoint, experiment_id: str) -> bool:
    if not src.supports(NAME):
        return False
    infos, _ = src.store.search_traces(locations=[experiment_id], max_results=1)
    return bool(infos)


def _pages(src: Endpoint, experiments: str | list[str], filter_string: str | None,
           size: int = CHUNK) -> Iterator[list[TraceInfo]]:
    locations = [experiments] if isinstance(experiments, str) else experiments
    token = None
    while True:
        infos, token = src.store.search_traces(locations=locations,
                                               filter_string=filter_string,
                                               max_results=size, page_token=token)
        if infos:
            yield infos
        if not token:
            return


def _with_spans(src: Endpoint, infos: list[TraceInfo]) -> list:
    """The traces of ``infos`` with their spans: from the store, or, for traces that keep
    their spans as a file, from the trace's artifact directory (read with this endpoint's
    URI, not the process's)."""
    from mlflow.entities import Trace, TraceData

    in_store = [i.trace_id for i in infos
                if i.tags.get("mlflow.trace.spansLocation") in SPANS_IN_STORE]
    found = {t.info.trace_id: t for t in src.store.batch_get_traces(in_store)} if in_store else {}
    traces = []
    for info in infos:
        trace = found.get(info.trace_id)
        if trace is None:
            repo = src.artifact_repository(info.tags[ARTIFACT_LOCATION])
            trace = Trace(info, TraceData.from_dict(repo.download_trace_data()))
        traces.append(trace)
    return traces


def run_links(src: Endpoint, experiment_id: str) -> RunLinks:
    """The run links of an experiment's traces to the runs of that experiment."""
    return RunLinks(src, [experiment_id], [experiment_id])


def _attachment_files(src: Endpoint, trace) -> tuple[object, list]:
    """The trace's artifact repository (read with this endpoint's URI) and its attachment
    files; asked of the store only when a span refers to an attachment."""
    info = trace.info
    location = info.tags.get(ARTIFACT_LOCATION)
    if not location or not any(ATTACHMENT_REF in json.dumps(span.to_dict())
                               for span in trace.data.spans):
        return None, []
    repo = src.artifact_repository(location)
    try:
        return repo, [f for f in repo.list_artifacts(ATTACHMENTS) if not f.is_dir]
    except Exception:  # noqa: BLE001 - a trace without attachments may have no directory
        return repo, []


def _download_attachments(src: Endpoint, trace, directory: Path) -> list[str]:
    info = trace.info
    repo, listed = _attachment_files(src, trace)
    names = []
    for item in listed:
        target = attachment_dir(directory, info.trace_id)
        target.mkdir(parents=True, exist_ok=True)
        name = item.path.rpartition("/")[2]
        repo._download_file(item.path, str(inside(target, name, source=target)))
        names.append(name)
    return names


def export(src: Endpoint, item: ExportItem, directory: Path) -> dict:
    """Write the traces of one experiment into ``directory``; ``traces.json`` last."""
    if directory.exists():
        shutil.rmtree(directory)  # half-written by an interrupted export
    directory.mkdir(parents=True)
    (directory / ARTIFACTS_DIR).mkdir()
    doc = {"experiment_id": item.experiment_id, "filter_string": item.filter_string,
           "since": item.since.isoformat() if item.since else None,
           "traces": 0, "spans": 0, "attachments": 0, "chunks": []}
    try:
        if has_traces(src, item.experiment_id):
            links = item.links or run_links(src, item.experiment_id)
            for infos in _pages(src, item.experiment_id, item.search_filter()):
                doc["chunks"].append(chunk_name(len(doc["chunks"]) + 1))
                with JsonLinesWriter(directory / doc["chunks"][-1]) as out:
                    for trace in _with_spans(src, infos):
                        names = _download_attachments(src, trace, directory)
                        out.write(to_line(trace, links.get(trace.info.trace_id), names))
                        doc["spans"] += len(trace.data.spans)
                        doc["attachments"] += len(names)
                doc["traces"] += out.count
        write_json(directory / TRACES_FILE, doc)
    except Exception:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return doc


# Verify: traces read from a server as bundle lines -----------------------------------

def read_lines(endpoint: Endpoint, experiment_id: str,
               links: RunLinks | None = None) -> Iterator[dict]:
    """Every trace of an experiment as a bundle line, a page at a time."""
    if not has_traces(endpoint, experiment_id):
        return
    links = links or run_links(endpoint, experiment_id)
    for infos in _pages(endpoint, experiment_id, None):
        for trace in _with_spans(endpoint, infos):
            names = [f.path.rpartition("/")[2] for f in _attachment_files(endpoint, trace)[1]]
            yield to_line(trace, links.get(trace.info.trace_id), names)


def find_lines(dst: Endpoint, lines: list[dict], experiment_id: str, mapped: dict[str, str],
               links: RunLinks) -> dict[str, dict]:
    """The target's traces (as bundle lines) that the source ``lines`` became in target
    experiment ``experiment_id``, by source id: through ``mapped`` (an import's id map),
    else the same id, else the id a moved trace gets. Left out: missing, or pending."""
    if not dst.supports(NAME):
        return {}
    wanted = {}
    unmapped = [line for line in lines if line["info"]["trace_id"] not in mapped]
    for p in place(dst, unmapped, experiment_id) if unmapped else []:
        wanted[p.line["info"]["trace_id"]] = p.target_id
    for line in lines:
        wanted.setdefault(line["info"]["trace_id"], mapped.get(line["info"]["trace_id"]))
    traces = {t.info.trace_id: t for t in dst.store.batch_get_traces(list(wanted.values()))}
    found = {}
    for source_id, target_id in wanted.items():
        trace = traces.get(target_id)
        if trace is None or _action(trace.info) != SKIP or \
                trace.info.experiment_id != experiment_id:
            continue
        names = [f.path.rpartition("/")[2] for f in _attachment_files(dst, trace)[1]]
        found[source_id] = to_line(trace, links.get(target_id), names)
    return found


def count(endpoint: Endpoint, experiment_id: str) -> int:
    """How many whole traces an experiment holds (those an import left pending are not
    counted)."""
    if not endpoint.supports(NAME):
        return 0
    return sum(_action(info) == SKIP
               for infos in _pages(endpoint, experiment_id, None, 500) for info in infos)


def lines_of(bundle_dir: Path, doc: dict) -> Iterator[dict]:
    """The trace lines of one bundle object."""
    return (line for _path, line in _lines(bundle_dir, doc))


# Import: what the target can take -------------------------------------------------------

def target_lacks(dst: Endpoint) -> str | None:
    """Why the target cannot take traces, or None: the trace API, a store that keeps spans
    (an SQL backend), and the OTLP endpoint the spans are sent to."""
    missing = dst.lacks(NAME, "target")
    if missing:
        return missing
    where = f"the target {'server' if dst.is_http else 'store'} {dst.display_uri} " \
            f"(MLflow {dst.mlflow_version})"
    if not dst.is_http:
        if type(dst.client._tracking_client.store).log_spans is AbstractStore.log_spans:
            return f"{where} cannot store spans (it is not an SQL store)"
        return None
    store_type = dst.server_info.get("server_info", {}).get("store_type")
    if store_type not in (None, "SqlStore"):
        return f"{where} has no SQL backend for spans (store type {store_type})"
    response = dst.request("POST", "/v1/traces", data=b"",
                           extra_headers={"Content-Type": "application/x-protobuf"})
    if response.status_code == 404:
        return f"{where} has no OTLP endpoint /v1/traces for spans"
    return None


# Import: ids ----------------------------------------------------------------------------

def derived_trace_id(trace_id: str, experiment_id: str) -> str:
    """The id a trace gets in a target experiment when its own id is taken elsewhere on the
    target: the same for the same trace and experiment, so a re-run finds it again."""
    digest = hashlib.sha256(f"{trace_id}\0{experiment_id}".encode()).hexdigest()[:32]
    return f"tr-{digest}"


def derived_assessment_id(assessment_id: str, trace_id: str) -> str:
    return "a-" + hashlib.sha256(f"{assessment_id}\0{trace_id}".encode()).hexdigest()[:32]


@dataclass
class _Placed:
    """One trace line of the bundle and what the target holds for it: ``target_id`` is the
    id it has (or gets) there, ``action`` create, skip or redo."""

    line: dict
    target_id: str
    action: str
    moved: bool = False  # its own id is taken by another experiment


def place(dst: Endpoint, lines: list[dict], experiment_id: str) -> list[_Placed]:
    """Where each trace of ``lines`` goes in target experiment ``experiment_id``, read
    from the target (two batch reads at most)."""
    ids = [line["info"]["trace_id"] for line in lines]
    found = _infos(dst, ids)
    placed, moved = [], []
    for line, trace_id in zip(lines, ids, strict=True):
        info = found.get(trace_id)
        if info is not None and info.experiment_id != experiment_id:
            moved.append(_Placed(line, derived_trace_id(trace_id, experiment_id), CREATE,
                                 moved=True))
            placed.append(moved[-1])
        else:
            placed.append(_Placed(line, trace_id, _action(info)))
    if moved:
        again = _infos(dst, [p.target_id for p in moved])
        for p in moved:
            p.action = _action(again.get(p.target_id))
    return placed


def _infos(dst: Endpoint, trace_ids: list[str]) -> dict[str, TraceInfo]:
    return {i.trace_id: i for i in dst.store.batch_get_trace_infos(trace_ids)} \
        if trace_ids else {}


def _action(info: TraceInfo | None) -> str:
    """Create a trace the target lacks; write again one an import left half-written (its
    spans without its info, or still marked pending); skip one that is whole."""
    if info is None:
        return CREATE
    whole = (lineage.PENDING not in info.tags
             and info.trace_metadata.get(INFO_FINALIZED) is not None)
    return SKIP if whole else REDO


def _batches(directory: Path, doc: dict, size: int = BATCH) -> Iterator[list[dict]]:
    lines = lines_of(directory, doc)
    while batch := list(islice(lines, size)):
        yield batch


# Import: references ---------------------------------------------------------------------

class _References:
    """Target ids of the runs and logged models a trace names: through the id map, or, for
    objects not in this import (an import-traces after an earlier import of the runs), by
    the source-id tags every import writes, read once per target experiment."""

    def __init__(self, dst: Endpoint, idmap: IdMap):
        self.dst, self.idmap = dst, idmap
        self._runs: dict[str, dict[str, str]] = {}
        self._models: dict[str, dict[str, str]] = {}

    def run(self, source_id: str | None, experiment_id: str) -> str | None:
        if not source_id:
            return None
        if (mapped := self.idmap.get("runs", source_id)) is not None:
            return mapped
        if experiment_id not in self._runs:
            complete, _ = run_entity.find_imported(self.dst, experiment_id)
            self._runs[experiment_id] = {s: r.info.run_id for s, r in complete.items()}
        return self._runs[experiment_id].get(source_id)

    def model(self, source_id: str | None, experiment_id: str) -> str | None:
        if not source_id:
            return None
        if (mapped := self.idmap.get("logged_models", source_id)) is not None:
            return mapped
        if experiment_id not in self._models:
            complete, _ = logged_model_entity.find_imported(self.dst, experiment_id)
            self._models[experiment_id] = {s: m.model_id for s, m in complete.items()}
        return self._models[experiment_id].get(source_id)


def target_info(line: dict, placed: _Placed, experiment_id: str, refs: _References,
                warn: Callable[[str], None]) -> TraceInfo:
    """The trace's info for the target: its experiment, run and model ids remapped (one
    that cannot be is dropped, with a warning), server-managed tags left to the server,
    the pending mark set, and, for a moved trace, its new trace and assessment ids."""
    info = json.loads(json.dumps(line["info"]))
    old_id, new_id = info["trace_id"], placed.target_id
    info["trace_id"] = new_id
    info["trace_location"] = {"type": "MLFLOW_EXPERIMENT",
                              "mlflow_experiment": {"experiment_id": experiment_id}}
    tags = {k: v for k, v in info.get("tags", {}).items()
            if k not in SERVER_TAGS and k not in lineage.IMPORT_MARKS}
    tags[lineage.PENDING] = old_id
    info["tags"] = tags
    metadata = info.setdefault("trace_metadata", {})
    for key, lookup in ((SOURCE_RUN, refs.run), (MODEL_ID, refs.model)):
        _remap(metadata, key, lambda v, lookup=lookup: lookup(v, experiment_id), warn,
               f"trace metadata {key}")
    for assessment in info.get("assessments", []):
        assessment["trace_id"] = new_id
        if placed.moved:
            assessment["assessment_id"] = derived_assessment_id(assessment["assessment_id"],
                                                                new_id)
            if assessment.get("overrides"):
                assessment["overrides"] = derived_assessment_id(assessment["overrides"], new_id)
        _remap(assessment, "run_id", lambda v: refs.run(v, experiment_id), warn,
               f"assessment {assessment.get('assessment_name')!r} run")
        _remap(assessment.get("metadata", {}), ASSESSMENT_SOURCE_RUN,
               lambda v: refs.run(v, experiment_id), warn,
               f"assessment {assessment.get('assessment_name')!r} metadata "
               f"{ASSESSMENT_SOURCE_RUN}")
    return to_trace_info(info)


def _remap(holder: dict, key: str, lookup: Callable[[str], str | None],
           warn: Callable[[str], None], what: str) -> None:
    value = holder.get(key)
    if not value:
        return
    mapped = lookup(value)
    if mapped is None:
        del holder[key]
        warn(f"{what} {value} dropped: it is not on the target")
    else:
        holder[key] = mapped


def target_spans(line: dict, new_id: str) -> list[Span]:
    """The trace's spans, under ``new_id`` when the trace moves (every mention of the old
    id in the spans, such as attachment references, names the new one)."""
    old_id = line["info"]["trace_id"]
    spans = line["spans"]
    if new_id != old_id:
        spans = json.loads(json.dumps(spans).replace(old_id, new_id))
        otel_id = base64.b64encode(bytes.fromhex(new_id.removeprefix("tr-"))).decode()
        for span in spans:
            span["trace_id"] = otel_id
    return [Span.from_dict(span) for span in spans]


# Import: writing ------------------------------------------------------------------------

def write_batch(ctx: ImportContext, directory: Path, placed: list[_Placed], experiment_id: str,
                refs: _References) -> None:
    """Write the traces of one batch that are not present, each with its own outcome:
    every span in one OTLP request first, then each info with its assessments
    (StartTraceV3 on a trace that exists merges it, and makes the info's times, state and
    metadata the ones written, where spans alone would have the server derive them), then
    the assessments that override others (so that the server marks those invalid), the
    attachments and the run links. A trace with any of these carries the pending mark
    until they are written."""
    outcomes: dict[str, Outcome] = {}
    written: list[_Placed] = []
    for p in placed:
        source_id = p.line["info"]["trace_id"]
        with ctx.report.track(NAME, source_id, p.line["info"].get("tags", {}).get(
                "mlflow.traceName")) as outcome:
            outcomes[source_id] = outcome
            outcome.action, outcome.target_id = p.action, p.target_id
            if p.moved:
                ctx.idmap.add(NAME, source_id, p.target_id)
            if p.action == SKIP:
                outcome.status, outcome.reason = SKIPPED, "already present"
                continue
            if p.moved:
                outcome.warn(f"trace id {source_id} is taken on the target by another "
                             f"experiment; imported as {p.target_id}")
            if p.action == REDO:
                ctx.dst.store.delete_traces(experiment_id, trace_ids=[p.target_id])
            written.append(p)
    if not written:
        return
    _settle(outcomes, written, "its spans could not be written", lambda: ctx.dst.store.log_spans(
        experiment_id, [s for p in written for s in target_spans(p.line, p.target_id)]))
    infos: dict[str, TraceInfo] = {}
    marked: list[_Placed] = []
    for p in written:
        outcome = outcomes[p.line["info"]["trace_id"]]
        info = target_info(p.line, p, experiment_id, refs, outcome.warn)
        overriding = [a for a in info.assessments if a.overrides]
        info.assessments = [a for a in info.assessments if not a.overrides]
        prompts = json.loads(info.tags.get(TraceTagKey.LINKED_PROMPTS, "[]"))
        pending = bool(overriding or p.line["attachments"] or p.line["run_links"] or prompts)
        if pending:
            marked.append(p)
        else:
            del info.tags[lineage.PENDING]
        _settle(outcomes, [p], "its info could not be written",
                lambda info=info, p=p: infos.__setitem__(p.target_id,
                                                         ctx.dst.store.start_trace(info)))
        for assessment in sorted(overriding, key=lambda a: a.create_time_ms or 0):
            _settle(outcomes, [p], f"its assessment {assessment.name!r} could not be written",
                    lambda a=assessment: ctx.dst.store.create_assessment(a))
        if prompts and p.target_id in infos:  # the tag alone is not the server's link
            _settle(outcomes, [p], "its prompt links could not be written",
                    lambda p=p, prompts=prompts: ctx.dst.store.link_prompts_to_trace(
                        p.target_id, [PromptVersion(v["name"], int(v["version"]), template="")
                                      for v in prompts]))
        if p.line["attachments"] and p.target_id in infos:
            _settle(outcomes, [p], "its attachments could not be uploaded",
                    lambda p=p: _upload_attachments(ctx.dst, infos[p.target_id], directory,
                                                    p.line))
    by_run: dict[str, list[_Placed]] = {}
    for p in written:
        for run_id in p.line["run_links"]:
            target_run = refs.run(run_id, experiment_id)
            if target_run is None:
                outcomes[p.line["info"]["trace_id"]].warn(
                    f"link to run {run_id} not imported: the run is not on the target")
            else:
                by_run.setdefault(target_run, []).append(p)
    for run_id, linked in by_run.items():
        for start in range(0, len(linked), LINKS_PER_REQUEST):
            group = linked[start:start + LINKS_PER_REQUEST]
            _settle(outcomes, group, f"its link to run {run_id} could not be written",
                    lambda group=group, run_id=run_id: ctx.dst.store.link_traces_to_run(
                        [p.target_id for p in group], run_id))
    for p in marked:
        if p.target_id in infos:
            _settle(outcomes, [p], "its pending mark could not be removed",
                    lambda p=p: ctx.dst.store.delete_trace_tag(p.target_id, lineage.PENDING))


def _settle(outcomes: dict[str, Outcome], placed: Iterable[_Placed], what: str,
            call: Callable[[], object]) -> None:
    """Run one write for some traces; a failure fails each of them (still pending, so a
    re-run writes them again)."""
    group = [outcomes[p.line["info"]["trace_id"]] for p in placed]
    if all(o.status == FAILED for o in group):
        return
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - reported on each trace
        for outcome in group:
            if outcome.status != FAILED:
                outcome.status, outcome.reason = FAILED, f"{what}: {one_line(exc)}"


def _upload_attachments(dst: Endpoint, info: TraceInfo, directory: Path, line: dict) -> None:
    if not line["attachments"]:
        return
    repo = dst.artifact_repository(info.tags[ARTIFACT_LOCATION])
    local = attachment_dir(directory, line["info"]["trace_id"])
    for name in line["attachments"]:
        repo.log_artifact(str(local / name), ATTACHMENTS)


# The kind -------------------------------------------------------------------------------

def _facts(doc: dict) -> dict:
    return {"experiment_id": doc["experiment_id"], "traces": doc["traces"]}


def _plan(ctx: ImportContext) -> list[Step]:
    """One step per experiment's traces, counted from the target a batch at a time: how
    many would be created, are present, or were left half-written. A target that cannot
    take traces fails each trace on apply, naming what it lacks (in a dry run, the step)."""
    steps = []
    lacking: str | None = None
    checked = False
    for source_id in ctx.source_ids(NAME):
        fact = ctx.bundle.facts[NAME][source_id]
        step = Step(NAME, source_id, f"{fact['traces']} traces", CREATE)
        steps.append(step)
        if not fact["traces"]:
            step.action, step.reason = SKIP, "no traces"
            continue
        if not checked and not ctx.empty_target:
            lacking, checked = target_lacks(ctx.dst), True
        if lacking:
            step.present = lacking
            step.error = lacking if ctx.dry_run else None
            continue
        experiment = ctx.target_experiment(fact["experiment_id"])
        if experiment is None:
            step.reason = "would be created in a new experiment"
            continue
        with planning(step):
            _plan_one(ctx, step, experiment)
    return steps


def _plan_one(ctx: ImportContext, step: Step, experiment: str) -> None:
    directory = ctx.bundle.dirs[NAME][step.source_id]
    doc = ctx.bundle.documents[NAME][step.source_id]
    counts = {CREATE: 0, SKIP: 0, REDO: 0}
    moved = 0
    for batch in _batches(directory, doc):
        for p in place(ctx.dst, batch, experiment):
            counts[p.action] += 1
            moved += p.moved and p.action != SKIP
    if counts[CREATE] + counts[REDO] == 0:
        step.action, step.reason = SKIP, "already present"
        return
    step.action = REDO if counts[REDO] else CREATE
    step.reason = (f"{counts[CREATE]} to create, {counts[REDO]} half-written to write again, "
                   f"{counts[SKIP]} present, in experiment {experiment}")
    if moved:
        step.warnings.append(f"{moved} trace id(s) are taken on the target by another "
                             "experiment: those traces get new ids (see the id map)")


def _apply(ctx: ImportContext, steps: list[Step]) -> list[Task]:
    """An experiment's traces once the experiment and the runs, logged models and prompts
    they name are done (a reference to one that did not arrive is dropped, with a warning),
    a batch at a time on ``transfers``."""
    total = sum(ctx.bundle.facts[NAME][s.source_id]["traces"] for s in steps)
    bar = ctx.progress(total, "import traces")
    refs = _References(ctx.dst, ctx.idmap)

    def apply_step(step: Step) -> None:
        directory = ctx.bundle.dirs[NAME][step.source_id]
        doc = ctx.bundle.documents[NAME][step.source_id]
        experiment = ctx.target_experiment(doc["experiment_id"])

        def apply(batch: list[dict]) -> None:
            why = step.present or (None if experiment else
                                   f"its experiment {doc['experiment_id']} was not imported")
            if why:
                for line in batch:
                    ctx.report.fail(NAME, line["info"]["trace_id"], why)
            else:
                try:
                    placed = place(ctx.dst, batch, experiment)
                except Exception as exc:  # noqa: BLE001 - reported on each trace
                    for line in batch:
                        ctx.report.fail(NAME, line["info"]["trace_id"],
                                        f"cannot be looked up on the target: {one_line(exc)}")
                else:
                    write_batch(ctx, directory, placed, experiment, refs)
            bar.update(len(batch))

        if step.action != SKIP or step.present:
            ctx.transfers.each(apply, _batches(directory, doc))
        else:
            _report_present(ctx, directory, doc)
            bar.update(doc["traces"])

    tasks = []
    for step in steps:
        doc = ctx.bundle.documents[NAME][step.source_id]
        named = [] if step.action == SKIP or step.present else sorted(
            _references(ctx.bundle.dirs[NAME][step.source_id], doc))
        tasks.append(Task(step, lambda step=step: apply_step(step),
                          after=[("experiments", doc["experiment_id"]), *named]))
    return tasks


def _references(directory: Path, doc: dict) -> set[tuple[str, str]]:
    """The (kind, source id) of the runs, logged models and prompts that an experiment's
    traces name (metadata, assessments, run links, linked prompts)."""
    found: set[tuple[str, str]] = set()
    for line in lines_of(directory, doc):
        info = line["info"]
        metadata = info.get("trace_metadata") or {}
        runs = [metadata.get(SOURCE_RUN), *line["run_links"]]
        for assessment in info.get("assessments", []):
            runs += [assessment.get("run_id"),
                     (assessment.get("metadata") or {}).get(ASSESSMENT_SOURCE_RUN)]
        found.update(("runs", run_id) for run_id in runs if run_id)
        if metadata.get(MODEL_ID):
            found.add(("logged_models", metadata[MODEL_ID]))
        try:
            prompts = json.loads((info.get("tags") or {}).get(TraceTagKey.LINKED_PROMPTS, "[]"))
            found.update(("prompts", prompt["name"]) for prompt in prompts)
        except (ValueError, TypeError, KeyError):
            continue  # the writing of the trace meets it
    return found


def _report_present(ctx: ImportContext, directory: Path, doc: dict) -> None:
    """The traces of an object the plan found all present: each reported skipped."""
    experiment = ctx.target_experiment(doc["experiment_id"])
    for batch in _batches(directory, doc):
        for p in place(ctx.dst, batch, experiment):
            source_id = p.line["info"]["trace_id"]
            if p.moved:
                ctx.idmap.add(NAME, source_id, p.target_id)
            with ctx.report.track(NAME, source_id) as outcome:
                outcome.action, outcome.target_id = SKIP, p.target_id
                outcome.status, outcome.reason = SKIPPED, "already present"


def _export(ctx: ExportContext, experiment_id: str, item: ExportItem, directory: Path,
            outcome: Outcome) -> None:
    doc = export(ctx.src, item, directory)
    outcome.name = f"{doc['traces']} traces, {doc['spans']} spans"


KIND = Kind(
    name=NAME,
    section=Section(NAME, TRACES_FILE, validate, artifacts=True, check_files=check_files,
                    facts=_facts,
                    references=lambda doc: [("experiments", doc["experiment_id"])]),
    depends_on=("experiments", "runs", "logged_models", "prompts"),
    export=_export,
    inventory=lambda item: {"experiment_id": item.experiment_id},
    export_needs=lambda item: [("experiments", item.experiment_id)],
    plan=_plan,
    apply=_apply,
)
