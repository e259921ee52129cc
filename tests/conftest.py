"""Session fixtures: one moto S3 server and real MLflow servers, started once.

* ``source``: sqlite backend, proxied artifacts on local disk; some of its experiments put
  their artifacts straight into S3 (an ``s3://`` artifact location).
* ``target``: like ``source``; shared by the tests that import into an existing server.
* ``s3_target``: a fresh server whose proxied artifacts live in S3, used once, by the full
  export-all → import-all round trip, so that the target holds nothing else.

``local_root_server`` (started only when a test asks for it): a server whose artifact root
is a plain local path that clients write themselves.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.databases import MariaDBServer, PostgresServer
from tests.servers import MlflowServer, MotoServer

# The test process (not the library) sets its own environment.
os.environ.update({
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
})
os.environ.pop("MLFLOW_TRACKING_URI", None)

BUCKET = "mlflow-exim-tests"


@dataclass
class Stack:
    source: MlflowServer
    target: MlflowServer
    s3_target: MlflowServer
    s3_endpoint: str

    def s3_objects(self, prefix: str) -> list[str]:
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint)
        found = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return [o["Key"] for o in found]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    work = tmp_path_factory.mktemp("servers")
    moto = MotoServer(work)
    processes = [moto]
    try:
        moto.wait()
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = moto.url
        boto3.client("s3", endpoint_url=moto.url).create_bucket(Bucket=BUCKET)
        source = MlflowServer("source", work, str(work / "source-artifacts"))
        target = MlflowServer("target", work, str(work / "target-artifacts"))
        s3_target = MlflowServer("s3-target", work, f"s3://{BUCKET}/s3-target")
        processes += [source, target, s3_target]
        for server in (source, target, s3_target):
            server.wait()
        yield Stack(source, target, s3_target, moto.url)
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.fixture(scope="session")
def local_root_server(tmp_path_factory) -> MlflowServer:
    """A server whose artifact root is a plain local path, not proxied: clients read and
    write the runs' artifacts there themselves, as on a shared file system."""
    work = tmp_path_factory.mktemp("local-root")
    server = MlflowServer("local-root", work, str(work / "artifacts"), proxied=False)
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique() -> str:
    """A short unique prefix so tests sharing a server never collide."""
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The test's temporary directory, also made the current directory, so that embedded
    stores keep their ./mlruns there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _running(server):
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster of this test process (tests/databases.py), started when first
    asked for."""
    yield from _running(PostgresServer())


@pytest.fixture(scope="session")
def mariadb():
    """A MariaDB server of this test process (tests/databases.py), started when first
    asked for."""
    yield from _running(MariaDBServer())
