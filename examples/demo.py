"""End-to-end demo on embedded stores: seed a small source, export it, import it, verify.

    python examples/demo.py [WORKDIR]      (``make demo`` runs it in ./demo-work)

Everything lives under WORKDIR: source.db and its artifacts, the bundle, target.db and the
target's artifacts (an embedded sqlite store keeps artifacts in ./mlruns of the current
directory, so the demo runs the import from WORKDIR).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag


def seed(uri: str, artifact_root: Path) -> None:
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        "demo/forecasting", artifact_location=(artifact_root / "forecasting").as_uri(),
        tags={"mlflow.note.content": "Weekly demand forecasts", "team": "supply"})
    t0 = int(time.time() * 1000) - 3_600_000
    parent = client.create_run(experiment_id, start_time=t0, run_name="sweep",
                               tags={"mlflow.user": "ada"})
    for i, alpha in enumerate((0.1, 0.5)):
        child = client.create_run(experiment_id, start_time=t0 + 1000 * (i + 1),
                                  run_name=f"alpha={alpha}",
                                  tags={"mlflow.parentRunId": parent.info.run_id,
                                        "mlflow.user": "ada"})
        run_id = child.info.run_id
        client.log_batch(run_id, params=[Param("alpha", str(alpha))],
                         tags=[RunTag("stage", "tuning")],
                         metrics=[Metric("rmse", 10.0 / (step + 1) + alpha, t0 + step, step)
                                  for step in range(200)])
        client.log_inputs(run_id, [DatasetInput(
            Dataset("sales", "d41d8cd9", "local", '{"uri": "/data/sales.csv"}'),
            tags=[InputTag("mlflow.data.context", "training")])])
        client.log_text(run_id, f"alpha: {alpha}\n", "config/settings.yaml")
        client.log_dict(run_id, {"coefficients": [alpha, 1 - alpha]}, "model/weights.json")
        client.set_terminated(run_id, "FINISHED", end_time=t0 + 60_000 * (i + 1))
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=t0 + 180_000)


def main(workdir: Path) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    src = f"sqlite:///{workdir / 'source.db'}"
    dst = f"sqlite:///{workdir / 'target.db'}"
    bundle = workdir / "bundle"
    print(f"seeding {src}")
    seed(src, workdir / "source-artifacts")
    exim = [sys.executable, "-m", "mlflow_exim"]
    steps = [
        exim + ["export-all", "--tracking-uri", src, "--output-dir", str(bundle)],
        exim + ["import-all", "--tracking-uri", dst, "--input-dir", str(bundle),
                "--report", str(workdir / "import-report.json")],
        exim + ["verify", "--src-uri", src, "--dst-uri", dst],
    ]
    for step in steps:
        print("$", " ".join(step[2:]), flush=True)
        code = subprocess.call(step, cwd=workdir)
        if code:
            print(f"demo failed: step exited {code}")
            return code
    print(f"demo ok: source, bundle and target are in {workdir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-work").absolute()))
