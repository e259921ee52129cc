"""Start-up time of the commands: how long before a command's own work starts.

    python benchmarks/startup.py [--repeat 5] [--workdir DIR]

Times, each in a fresh process as a user runs them, `mlflow-exim --help`,
`export-all --help`, and `export-run` of one small run from an embedded sqlite store.
For export-run it also splits the wall time into the work the command's summary reports
(`export-run: ok in 0.4 s`) and what comes before it (interpreter, imports, store
start-up). Then it lists the modules that `import mlflow_exim.cli` spends most time on
(`python -X importtime`), which is where a slow `--help` comes from.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}


def seed(uri: str, artifacts: Path) -> str:
    """One experiment with one small run: params, a short metric history, an artifact."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.create_experiment("startup", artifact_location=artifacts.as_uri())
    run_id = client.create_run(experiment_id, run_name="small").info.run_id
    client.log_param(run_id, "alpha", "0.5")
    for step in range(10):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
    client.log_text(run_id, "weights", "model/weights.txt")
    client.set_terminated(run_id)
    return run_id


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stderr


def slowest_imports(count: int) -> list[tuple[float, str]]:
    """The modules with the largest cumulative import time under ``mlflow_exim.cli``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mlflow_exim.cli"],
                          env=ENV, capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mlflow-exim-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'source.db'}"
    run_id = seed(uri, work / "artifacts")

    walls: dict[str, list[float]] = {}
    work_seconds: list[float] = []
    for i in range(args.repeat):
        for label, argv in (("mlflow-exim --help", [str(BIN / "mlflow-exim"), "--help"]),
                            ("export-all --help", [str(BIN / "export-all"), "--help"])):
            walls.setdefault(label, []).append(timed(argv, work)[0])
        bundle = work / f"bundle-{i}"
        seconds, stderr = timed([str(BIN / "export-run"), "--tracking-uri", uri, "--run-id",
                                 run_id, "--output-dir", str(bundle)], work)
        walls.setdefault("export-run (sqlite)", []).append(seconds)
        work_seconds.append(float(re.search(r"ok in ([0-9.]+) s", stderr).group(1)))
        shutil.rmtree(bundle)

    print(f"median wall time of {args.repeat} runs, each in a fresh process:")
    for label, values in walls.items():
        print(f"  {label:<22} {statistics.median(values):6.2f} s"
              f"   (min {min(values):.2f}, max {max(values):.2f})")
    work_median = statistics.median(work_seconds)
    before = statistics.median(walls["export-run (sqlite)"]) - work_median
    print(f"  export-run: {work_median:.2f} s of work (its summary), {before:.2f} s before it")
    print("slowest imports of `import mlflow_exim.cli` (cumulative):")
    for seconds, module in slowest_imports(8):
        print(f"  {seconds:6.3f} s {module}")
    if not args.workdir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
