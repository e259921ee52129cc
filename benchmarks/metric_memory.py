"""Peak memory of export-run and import-run against metric-history length.

    python benchmarks/metric_memory.py [--points 1000,1000000] [--rest] [--workdir DIR]
        [--json PATH]

For each size it seeds a run with that many points of one metric in an embedded sqlite
store, then runs export-run and import-run, each in a fresh process, and prints wall time
and peak RSS. Histories are streamed page by page (export) and batch by batch (import),
so peak RSS should not grow with the number of points. The embedded stores are their
own databases, so this measures the direct-database path; with ``--rest`` the export
reads that store through an ``mlflow server`` and the import writes into another, the
REST path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

# Runs one CLI command in this process and reports the process's own peak RSS: VmHWM of
# its memory after exec (getrusage's ru_maxrss would not do: Linux keeps in it the peak of
# the image before exec, that of the benchmark that forked it).
MEASURE = """
import sys
from mlflow_exim.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"PEAK_RSS_KB {peak}\\n")
"""


def seed(uri: str, points: int, artifacts: Path) -> str:
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("memory", artifact_location=artifacts.as_uri())
    run_id = client.create_run(experiment_id, run_name=f"{points} points").info.run_id
    store = client._tracking_client.store
    batch = []
    for step in range(points):
        batch.append(Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step))
        if len(batch) == 1000:
            store.log_batch(run_id, metrics=batch, params=[], tags=[])
            batch = []
    if batch:
        store.log_batch(run_id, metrics=batch, params=[], tags=[])
    client.set_terminated(run_id)
    return run_id


def measure(args: list[str], cwd: Path) -> tuple[float, int]:
    """Run ``mlflow-exim args`` in a child Python: its wall seconds and peak RSS in MB
    (benchmarks/traces.py measures with it too)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return seconds, int(peak[-1].split()[1]) // 1024


def sizes(lengths: list[int], root: Path, rest: bool = False) -> list[dict]:
    """Seed, export and import a run of each history length under ``root`` (through
    servers with ``rest``); prints a row per length and returns them."""
    print(f"{'points':>10} {'seed s':>8} {'export s':>9} {'export MB':>10} "
          f"{'import s':>9} {'import MB':>10}", flush=True)
    rows = []
    for points in lengths:
        work = root / str(points)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        src, dst = f"sqlite:///{work / 'src.db'}", f"sqlite:///{work / 'dst.db'}"
        start = time.perf_counter()
        run_id = seed(src, points, work / "src-artifacts")
        seeded = time.perf_counter() - start
        with ExitStack() as servers:
            if rest:
                src, dst = (servers.enter_context(_server(name, work)) for name in ("src", "dst"))
            export_s, export_mb = measure(["export-run", "--tracking-uri", src, "--run-id",
                                           run_id, "--output-dir", str(work / "bundle")], work)
            import_s, import_mb = measure(["import-run", "--tracking-uri", dst, "--input-dir",
                                           str(work / "bundle"), "--experiment-name", "memory"],
                                          work)
        print(f"{points:>10} {seeded:>8.1f} {export_s:>9.1f} {export_mb:>10} "
              f"{import_s:>9.1f} {import_mb:>10}", flush=True)
        rows.append({"points": points, "seed_s": round(seeded, 1),
                     "export_s": round(export_s, 1), "export_mb": export_mb,
                     "import_s": round(import_s, 1), "import_mb": import_mb})
    return rows


@contextmanager
def _server(name: str, work: Path):
    """The URI of an ``mlflow server`` on ``work/<name>.db`` (as tests start them), for the
    ``with`` block."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.servers import MlflowServer

    server = MlflowServer(name, work, str(work / f"{name}-proxied"))
    try:
        server.wait()
        yield server.uri
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default="1000,1000000",
                        help="comma list of history lengths (default: %(default)s)")
    parser.add_argument("--rest", action="store_true",
                        help="export and import through mlflow servers (the REST path)")
    parser.add_argument("--workdir", default="bench-work/metric-memory")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    options = parser.parse_args()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    rows = sizes([int(p) for p in options.points.split(",")],
                 Path(options.workdir).absolute(), rest=options.rest)
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
