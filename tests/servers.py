"""Real `mlflow server` and `moto` S3 processes on free loopback ports, for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
# MLflow 2's own venv, made by `make mlflow2` (which `make test` runs first).
MLFLOW2_PYTHON = Path(__file__).resolve().parent.parent / ".venv-mlflow2" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _inherited() -> dict[str, str]:
    """The test process's environment without pytest's marker: with PYTEST_CURRENT_TEST
    set, MLflow's SQL store runs its own test-time checks, which a real server does not."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


# The environment of jobs that tests run side by side against one sqlite server (shards,
# copies): they keep some of MLflow's own retries, as a user's job does (8 tries by
# default), since such a server answers 503 to a request that waited 20 s for the file's
# lock, and may take longer than a minute to answer while it serves them all.
CONCURRENT_JOBS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
                   "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


class Process:
    """A child process in its own session, stopped by its own id (never by name)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**_inherited(), **(env or {})},
                                     start_new_session=True)

    def wait_http(self, url: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout}s:\n"
                           + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class MotoServer(Process):
    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1",
                                  "-p", str(self.port)], log_dir)

    def wait(self) -> None:
        self.wait_http(f"{self.url}/moto-api/")


class MlflowServer(Process):
    """``mlflow server`` with a sqlite backend and proxied (mlflow-artifacts:) artifacts
    stored under ``artifacts_destination`` (a local path or an s3:// URI). Not ``proxied``,
    it is the artifact root that runs' artifact URIs name and clients write themselves
    (``--default-artifact-root … --no-serve-artifacts``)."""

    def __init__(self, name: str, work_dir: Path, artifacts_destination: str,
                 env: dict | None = None, app_name: str | None = None, proxied: bool = True,
                 python: str = sys.executable):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        db = work_dir / f"{name}.db"
        artifacts = (["--artifacts-destination", artifacts_destination] if proxied else
                     ["--default-artifact-root", artifacts_destination, "--no-serve-artifacts"])
        argv = [python, "-m", "mlflow", "server",
                "--backend-store-uri", f"sqlite:///{db}", *artifacts,
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        if app_name:
            argv += ["--app-name", app_name]
        super().__init__(name, argv, work_dir,
                         env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})

    def wait(self) -> None:
        self.wait_http(f"{self.uri}/health")


class Mlflow2Server(MlflowServer):
    """An MLflow 2 ``mlflow server`` (from ``MLFLOW2_PYTHON``), set up like MlflowServer;
    ``artifacts_dir`` is where its proxied artifacts lie on disk."""

    def __init__(self, name: str, work_dir: Path):
        if not MLFLOW2_PYTHON.exists():
            raise RuntimeError(f"{MLFLOW2_PYTHON} is missing: run `make mlflow2`")
        self.artifacts_dir = work_dir / f"{name}-artifacts"
        super().__init__(name, work_dir, str(self.artifacts_dir), python=str(MLFLOW2_PYTHON))


class BasicAuthServer(MlflowServer):
    """``mlflow server --app-name basic-auth`` (needs Flask-WTF): like MlflowServer, but
    every request needs a user's basic auth. Users get no permission on what others
    created; :meth:`add_user` creates them."""

    ADMIN = ("admin", "admin-Pa55word!")

    def __init__(self, name: str, work_dir: Path, artifacts_destination: str):
        config = work_dir / f"{name}-auth.ini"
        config.write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{work_dir / f'{name}-auth.db'}\n"
            f"admin_username = {self.ADMIN[0]}\n"
            f"admin_password = {self.ADMIN[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Checking a password costs a slow hash; without this cache, on every request.
            "auth_cache_ttl_seconds = 600\n")
        super().__init__(name, work_dir, artifacts_destination, app_name="basic-auth",
                         env={"MLFLOW_AUTH_CONFIG_PATH": str(config),
                              "MLFLOW_FLASK_SERVER_SECRET_KEY": f"{name}-csrf-secret"})

    def add_user(self, username: str, password: str) -> None:
        response = requests.post(f"{self.uri}/api/2.0/mlflow/users/create", timeout=30,
                                 json={"username": username, "password": password},
                                 auth=self.ADMIN)
        response.raise_for_status()
