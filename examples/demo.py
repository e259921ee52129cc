"""A walk through the whole tool on two real tracking servers, "dev" and "prod".

    python examples/demo.py [WORKDIR]      (``make demo`` runs it in ./demo-work)

It starts two ``mlflow server`` processes on free loopback ports (sqlite backends, proxied
artifacts, everything under WORKDIR), seeds dev with what a team has (nested runs with
metric histories, dataset inputs and artifacts; an MLflow-2-style model registered from
its run with a stage; an MLflow 3 logged model registered as a version with an alias),
then runs each step as the exact command a user can paste (with the virtual environment
of ``make install`` active): export, inspect, a dry run, the import, verify, and a
``copy-model-version`` promotion from dev to prod. The servers are stopped at the end.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

BIN = Path(sys.executable).parent
MODEL = "demand-forecaster"
MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: demo\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(name: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = (workdir / f"{name}-server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{workdir / f'{name}.db'}",
         "--artifacts-destination", str(workdir / f"{name}-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    return process, f"http://127.0.0.1:{port}"


def wait_until_up(process: subprocess.Popen, uri: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server for {uri} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{uri} did not answer within {timeout:.0f} s")


def seed(uri: str) -> None:
    """What a team's dev server holds (see the module text)."""
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

    client = MlflowClient(uri, uri)
    experiment_id = client.create_experiment(
        "demo/forecasting", tags={"mlflow.note.content": "Weekly demand forecasts",
                                  "team": "supply"})
    t0 = int(time.time() * 1000) - 3_600_000
    parent = client.create_run(experiment_id, start_time=t0, run_name="sweep",
                               tags={"mlflow.user": "ada"})
    children = []
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
        client.log_text(run_id, MLMODEL + f"run_id: {run_id}\n", "model/MLmodel")
        client.log_dict(run_id, {"coefficients": [alpha, 1 - alpha]}, "model/weights.json")
        client.set_terminated(run_id, "FINISHED", end_time=t0 + 60_000 * (i + 1))
        children.append(run_id)
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=t0 + 180_000)

    client.create_registered_model(MODEL, description="Weekly demand, per store",
                                   tags={"owner": "supply"})
    # MLflow 2 style: the model's files inside its run's artifacts, promoted by stage.
    client.create_model_version(MODEL, f"runs:/{children[0]}/model", run_id=children[0],
                                description="first baseline")
    with warnings.catch_warnings():  # stages are deprecated in MLflow 3, still widely used
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(MODEL, "1", "Staging")
    # MLflow 3 style: a logged model of its own, registered from models:/m-…, with an alias.
    logged = client.create_logged_model(experiment_id, name="forecaster",
                                        source_run_id=children[1], model_type="regressor",
                                        params={"alpha": "0.5"})
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "MLmodel").write_text(MLMODEL + f"model_id: {logged.model_id}\n")
        client.log_model_artifact(logged.model_id, str(Path(scratch) / "MLmodel"))
    client.finalize_logged_model(logged.model_id, "READY")
    client.create_model_version(MODEL, f"models:/{logged.model_id}", run_id=children[1],
                                model_id=logged.model_id, description="alpha 0.5")
    client.set_registered_model_alias(MODEL, "champion", "2")


def run_step(argv: list[str], workdir: Path) -> int:
    """Print the command as a user would type it, then run the installed command."""
    print(f"\n$ {shlex.join(argv)}", flush=True)
    return subprocess.call([str(BIN / argv[0]), *argv[1:]], cwd=workdir)


def main(workdir: Path) -> int:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    servers = [start_server(name, workdir) for name in ("dev", "prod")]
    try:
        for process, uri in servers:
            wait_until_up(process, uri)
        (_, dev), (_, prod) = servers
        print(f"dev server {dev}, prod server {prod}; seeding dev", flush=True)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints a link per run
            seed(dev)
        bundle = str(workdir / "bundle")
        print(f"\n$ cd {shlex.quote(str(workdir))}")
        steps = [
            ["export-all", "--tracking-uri", dev, "--output-dir", bundle],
            ["inspect", "--input-dir", bundle],
            ["import-all", "--tracking-uri", prod, "--input-dir", bundle, "--dry-run"],
            ["import-all", "--tracking-uri", prod, "--input-dir", bundle,
             "--report", "import-report.json"],
            ["verify", "--src-uri", dev, "--dst-uri", prod],
            ["copy-model-version", "--src-uri", dev, "--dst-uri", prod, "--src-model", MODEL,
             "--src-version", "2", "--dst-model", f"{MODEL}-prod", "--alias", "champion",
             "--copy-lineage-tags", "--output", "json"],
        ]
        for argv in steps:
            code = run_step(argv, workdir)
            if code:
                print(f"\ndemo failed: {argv[0]} exited {code}")
                return code
    finally:
        for process, _ in servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
    print(f"\ndemo ok: the bundle, the report and both servers' stores are in {workdir}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo-work").absolute()))
