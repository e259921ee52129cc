"""Real database servers for the tests: a PostgreSQL cluster and a MariaDB server (MySQL's
wire protocol and dialect, the one Debian packages), each in a temporary directory on a
free loopback port, with no password (both refuse to run as root: as root, as in CI, their
programs run as the user their Debian package creates); and an ``mlflow server`` on any
such database."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import Process, free_port


def _program(pattern: str, package: str) -> str:
    found = sorted(glob.glob(pattern)) or [shutil.which(Path(pattern).name)]
    if not found[-1]:
        raise RuntimeError(f"{Path(pattern).name} is missing: apt-get install {package}")
    return found[-1]


class _Server:
    """A server's data directory, owned by ``user`` when this process is root."""

    user = ""

    def __init__(self, prefix: str):
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.port = free_port()
        self.as_user = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, self.user)

    def _run(self, program: str, *argv) -> None:
        done = subprocess.run([*self.as_user, program, *map(str, argv)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}")


class PostgresServer(_Server):
    """A PostgreSQL cluster whose collation is ICU's en-US, whose order of keys is not the
    code points' order. Debian keeps its programs in /usr/lib/postgresql/N/bin."""

    user = "postgres"

    def __init__(self):
        super().__init__("mlflow-exim-pg-")
        self.data = self.dir / "data"
        self._run(self._program("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale-provider=icu", "--icu-locale=en-US",
                  "--locale=C.UTF-8")
        self._run(self._program("pg_ctl"), "-D", self.data, "-l", self.dir / "server.log",
                  "-w", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                  "start")

    @staticmethod
    def _program(name: str) -> str:
        return _program(f"/usr/lib/postgresql/*/bin/{name}", "postgresql")

    def create_database(self, name: str, options: str = "") -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                      dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}" {options}')
        connection.close()
        # SQLAlchemy 2.1 takes psycopg (3) for a bare postgresql://; psycopg2 is the one
        # the test extra installs.
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(self._program("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDBServer(_Server):
    """A MariaDB server with MariaDB's own defaults (``--no-defaults``: no Debian config),
    so a database created without options is ``latin1`` with a case-insensitive
    collation, as on many servers that MLflow has used for years."""

    user = "mysql"

    def __init__(self, timeout: float = 60.0):
        super().__init__("mlflow-exim-mariadb-")
        self.data = self.dir / "data"
        self._run(_program("/usr/bin/mariadb-install-db", "mariadb-server"), "--no-defaults",
                  f"--datadir={self.data}", "--auth-root-authentication-method=normal",
                  "--skip-test-db")
        self._log = (self.dir / "server.log").open("w")
        self.proc = subprocess.Popen(
            [*self.as_user, _program("/usr/sbin/mariadbd", "mariadb-server"), "--no-defaults",
             f"--datadir={self.data}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.dir / 'socket'}", f"--pid-file={self.dir / 'pid'}",
             "--innodb-buffer-pool-size=64M"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mariadbd did not start: "
                                   + (self.dir / "server.log").read_text()[-2000:])
            time.sleep(0.2)

    def _connect(self, database: str | None = None):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                               database=database, autocommit=True)

    def _answers(self) -> bool:
        import pymysql

        try:
            self._connect().close()
        except pymysql.err.OperationalError:
            return False
        return True

    def create_database(self, name: str, options: str = "") -> str:
        connection = self._connect()
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` {options}")
        connection.close()
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """The server by its own id, from its pid file (as root, ``self.proc`` is runuser,
        which waits for it)."""
        pid_file = self.dir / "pid"
        if self.proc.poll() is None and pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DatabaseServer(Process):
    """``mlflow server`` on a given backend database, with proxied artifacts."""

    def __init__(self, name: str, work_dir: Path, backend_store_uri: str):
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        super().__init__(name, [sys.executable, "-m", "mlflow", "server",
                                "--backend-store-uri", backend_store_uri,
                                "--artifacts-destination", str(work_dir / f"{name}-artifacts"),
                                "--host", "127.0.0.1", "--port", str(self.port),
                                "--workers", "1"],
                         work_dir, env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        self.wait_http(f"{self.uri}/health")
