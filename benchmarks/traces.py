"""Traces per second through mlflow-exim against the target server's own ingest, and peak
memory with few and with many traces.

    python benchmarks/traces.py [--traces 50,500] [--spans 5] [--workdir DIR]

Starts three fresh ``mlflow server`` processes (sqlite, one worker): a source, a target for
mlflow-exim and a target for the ceiling. For each size it seeds an experiment of the
source with that many traces of ``--spans`` nested spans, then times, each in a fresh
process that reports its own peak RSS, ``export-traces`` from the source and
``import-traces`` into the target. The ceiling is the same traces sent straight to the
other target the way an import must send them, without mlflow-exim: the spans to OTLP
(``/v1/traces``) in batches of 50 traces, alone, and then with one StartTraceV3 per trace.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Span, TraceInfo, TraceLocation, TraceState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.metric_memory import measure  # noqa: E402
from tests.servers import MlflowServer  # noqa: E402

SERVER_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
BATCH = 50
T0_NS = 1_700_000_000_000_000_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def synthetic(experiment_id: str, index: int, spans: int) -> tuple[TraceInfo, list[Span]]:
    """One trace of ``spans`` spans, each the child of the one before, with a few
    attributes of several types and an event."""
    trace_hex = os.urandom(16).hex()
    trace_id = f"tr-{trace_hex}"
    start = T0_NS + index * 10_000_000
    span_ids = [os.urandom(8) for _ in range(spans)]
    made = []
    for depth, span_id in enumerate(span_ids):
        made.append(Span.from_dict({
            "trace_id": _b64(bytes.fromhex(trace_hex)), "span_id": _b64(span_id),
            "parent_span_id": _b64(span_ids[depth - 1]) if depth else None,
            "name": f"step-{depth}", "start_time_unix_nano": start + depth * 1000,
            "end_time_unix_nano": start + 5_000_000 - depth * 1000,
            "status": {"code": "STATUS_CODE_OK", "message": ""},
            "events": [{"name": "tick", "time_unix_nano": start + depth, "attributes": {"n": 1}}],
            "attributes": {"mlflow.traceRequestId": json.dumps(trace_id),
                           "mlflow.spanType": json.dumps("CHAIN"),
                           "mlflow.spanInputs": json.dumps({"q": f"question {index}"}),
                           "mlflow.spanOutputs": json.dumps({"a": "x" * 200}),
                           "depth": json.dumps(depth), "score": json.dumps(0.5)},
            "links": []}))
    info = TraceInfo(trace_id=trace_id, trace_location=TraceLocation.from_experiment_id(
        experiment_id), request_time=start // 1_000_000, execution_duration=5,
        state=TraceState.OK, request_preview=f"question {index}", response_preview="x",
        trace_metadata={"mlflow.trace.user": "bench", "mlflow.trace.session": f"s-{index % 7}"},
        tags={"mlflow.traceName": "step-0", "bench": "yes"})
    return info, made


def ingest(uri: str, experiment_id: str, traces: list[tuple[TraceInfo, list[Span]]], *,
           infos: bool) -> float:
    """Send ``traces`` to a server's own ingest: spans by OTLP in batches, and with
    ``infos`` one StartTraceV3 per trace; returns the seconds it took."""
    store = MlflowClient(uri)._tracking_client.store
    start = time.perf_counter()
    for first in range(0, len(traces), BATCH):
        batch = traces[first:first + BATCH]
        store.log_spans(experiment_id, [s for _, spans in batch for s in spans])
        if infos:
            for info, _ in batch:
                info.trace_location = TraceLocation.from_experiment_id(experiment_id)
                store.start_trace(info)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", default="50,500",
                        help="comma list of trace counts (default: %(default)s)")
    parser.add_argument("--spans", type=int, default=5, help="spans per trace")
    parser.add_argument("--workdir", default="bench-work/traces")
    options = parser.parse_args()
    work = Path(options.workdir).absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with ExitStack() as stack:
        servers = {}
        for name in ("source", "target", "ceiling"):
            server = MlflowServer(name, work, str(work / f"{name}-artifacts"), env=SERVER_ENV)
            stack.callback(server.stop)
            servers[name] = server
        for server in servers.values():
            server.wait()
        src, dst, ceiling = (servers[n].uri for n in ("source", "target", "ceiling"))
        print(f"{'traces':>7} {'spans':>6} | {'export s':>8} {'MB':>5} | {'import s':>8} "
              f"{'MB':>5} {'tr/s':>6} | {'OTLP s':>7} {'tr/s':>6} | {'OTLP+info s':>11} "
              f"{'tr/s':>6}")
        for count in (int(n) for n in options.traces.split(",")):
            name = f"bench-{count}"
            experiment_id = MlflowClient(src).create_experiment(name)
            traces = [synthetic(experiment_id, i, options.spans) for i in range(count)]
            ingest(src, experiment_id, traces, infos=True)
            bundle = work / f"bundle-{count}"
            export_s, export_mb = measure(["export-traces", "--tracking-uri", src,
                                           "--experiments", name, "--output-dir", str(bundle)],
                                          work)
            import_s, import_mb = measure(["import-traces", "--tracking-uri", dst,
                                           "--input-dir", str(bundle)], work)
            client = MlflowClient(ceiling)
            spans_only = ingest(ceiling, client.create_experiment(f"{name}-otlp"),
                                [synthetic("0", i, options.spans) for i in range(count)],
                                infos=False)
            with_infos = ingest(ceiling, client.create_experiment(f"{name}-full"),
                                [synthetic("0", i, options.spans) for i in range(count)],
                                infos=True)
            print(f"{count:>7} {count * options.spans:>6} | {export_s:>8.1f} {export_mb:>5} | "
                  f"{import_s:>8.1f} {import_mb:>5} {count / import_s:>6.1f} | "
                  f"{spans_only:>7.1f} {count / spans_only:>6.1f} | {with_infos:>11.1f} "
                  f"{count / with_infos:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
