"""The direct-database path against REST on one run of many metric points.

    python benchmarks/database_path.py --points 1000000 [--postgres] [--mysql]
        [--rest-points N] [--workdir DIR] [--json PATH]

A bundle holding one run of ``--points`` points (four metrics, NaN among them) is made
once. Then, each into a fresh, empty target ``mlflow server`` (sqlite; with ``--postgres``
also PostgreSQL, with ``--mysql`` also MariaDB, MySQL's dialect, each started here as the
tests start them, tests/databases.py):

* ``import-run`` over REST (``--rest-points`` takes a bundle of fewer points for it, whose
  rate is then quoted; by default the same run);
* ``import-run --database-uri``: the direct-database path; the command's wall time and its
  own peak RSS (VmHWM);
* the ceiling: the same rows inserted into the same ``metrics`` table through the driver
  alone (sqlite3 ``executemany``, psycopg2 ``COPY``, PyMySQL sending multi-row INSERTs
  of literals), rows built in memory (COPY text and INSERT statements too) beforehand,
  batches of the same size, one transaction each; no SQLAlchemy, no parsing. On a
  database server, on one connection and on as many as the path uses at once
  (``SERVER_CONNECTIONS``, batches dealt among them): the share is of the latter.

Rates are points per second of the whole command (its start-up included), so the
database path's ratio to the ceiling is a floor. Each measurement starts once the CPUs
are 90% idle (a database server settles a million new rows in the background). Wall
clock on a possibly shared machine: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path

from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.metric_memory import measure  # noqa: E402
from mlflow_exim.database import (  # noqa: E402
    CHUNK_ROWS,
    SERVER_CONNECTIONS,
    Database,
    copy_text,
    joined_statements,
    stored_value,
)
from tests.servers import MlflowServer  # noqa: E402

T0 = 1_700_000_000_000
KEYS = ("loss", "accuracy", "learning_rate", "grad_norm")


def points(count: int):
    for i in range(count):
        yield KEYS[i % 4], (float("nan") if i % 10007 == 0 else 1.0 / (i + 1)), T0 + i, i // 4


def make_bundle(work: Path, count: int) -> Path:
    """A bundle of one run of ``count`` points, exported from an embedded store (whose
    points are written through the database path: seeding over REST would take longer
    than the benchmark)."""
    source = f"sqlite:///{work / f'source-{count}.db'}"
    client = MlflowClient(source)
    experiment = client.create_experiment("bench", artifact_location=(work / "a").as_uri())
    run_id = client.create_run(experiment, start_time=T0, run_name=f"{count} points").info.run_id
    Database(source, source).write_metric_history(run_id, points(count))
    client.set_terminated(run_id, end_time=T0 + count)
    bundle = work / f"bundle-{count}"
    seconds, _ = measure(["export-run", "--tracking-uri", source, "--run-id", run_id,
                          "--output-dir", str(bundle)], work)
    print(f"bundle of {count} points exported (database path) in {seconds:.1f} s", flush=True)
    return bundle


def import_run(work: Path, name: str, bundle: Path, backend: str | None,
               direct: bool) -> tuple[float, int]:
    """``import-run`` into a fresh server on ``backend`` (default: a new sqlite file)."""
    server = _server(work, name, backend)
    try:
        flags = ["--database-uri", server.backend] if direct else []
        return measure(["import-run", "--tracking-uri", server.uri, *flags, "--input-dir",
                        str(bundle), "--experiment-name", "bench"], work)
    finally:
        server.stop()


def _server(work: Path, name: str, backend: str | None):
    """An ``mlflow server`` on ``backend`` (a database server's), or on a new sqlite file."""
    if backend is None:
        server = MlflowServer(name, work, str(work / f"{name}-artifacts"))
        server.backend = f"sqlite:///{work / f'{name}.db'}"
        server.wait()
        return server
    from tests.databases import DatabaseServer

    server = DatabaseServer(name, work, backend)
    server.backend = backend
    return server


def raw_rows(count: int, run_id: str) -> list[tuple]:
    rows = []
    for key, value, timestamp, step in points(count):
        stored, is_nan = stored_value(value)
        rows.append((key, stored, timestamp, step, is_nan, run_id))
    return rows


INSERT = ("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) "
          "VALUES ({})")


def raw_sqlite(work: Path, count: int) -> float:
    """Seconds to insert the rows into a fresh MLflow database through sqlite3 alone."""
    uri = f"sqlite:///{work / 'raw.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("raw")).info.run_id
    rows = raw_rows(count, run_id)
    connection = sqlite3.connect(work / "raw.db")
    start = time.perf_counter()
    for at in range(0, len(rows), CHUNK_ROWS):
        with connection:
            connection.executemany(INSERT.format(", ".join("?" * 6)), rows[at:at + CHUNK_ROWS])
    seconds = time.perf_counter() - start
    connection.close()
    return seconds


def _sent(batches: list, connect, send, connections: int) -> float:
    """Seconds to send the prepared ``batches``, each in a transaction of its own, on
    ``connections`` connections at once (batches dealt round-robin, one thread each)."""
    opened = [connect() for _ in range(connections)]

    def send_share(index: int) -> None:
        for batch in batches[index::connections]:
            send(opened[index], batch)
    threads = [threading.Thread(target=send_share, args=(index,))
               for index in range(connections)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for connection in opened:
        connection.close()
    return seconds


def raw_postgres(database: str, count: int, connections: int) -> float:
    """The same through psycopg2's COPY (its fastest way in) into a fresh MLflow
    database, rows written as COPY text ahead of the clock."""
    import psycopg2

    client = MlflowClient(database)  # creates MLflow's tables
    run_id = client.create_run(client.create_experiment("raw")).info.run_id
    rows = raw_rows(count, run_id)
    texts = [copy_text(rows[at:at + CHUNK_ROWS]) for at in range(0, len(rows), CHUNK_ROWS)]

    def send(connection, text) -> None:
        with connection, connection.cursor() as cursor:
            cursor.copy_expert("COPY metrics (key, value, timestamp, step, is_nan, run_uuid) "
                               "FROM STDIN", text)
    return _sent(texts, lambda: psycopg2.connect(database.replace("+psycopg2", "")), send,
                 connections)


def raw_mysql(database: str, count: int, connections: int) -> float:
    """The same as multi-row INSERTs of literals into a fresh MLflow database, each row
    escaped by PyMySQL itself ahead of the clock, statements as long as the database
    path's: the server's own rate, which PyMySQL's executemany (escaping as it goes)
    stays below."""
    import pymysql
    from sqlalchemy.engine import make_url

    client = MlflowClient(database)  # creates MLflow's tables
    run_id = client.create_run(client.create_experiment("raw")).info.run_id
    rows = raw_rows(count, run_id)
    url = make_url(database)

    def connect():
        return pymysql.connect(host=url.host, port=url.port, user=url.username,
                               database=url.database)
    head = INSERT.replace("(key,", "(`key`,").split("VALUES")[0] + "VALUES "
    quoting = connect()
    mogrify, row_of = quoting.cursor().mogrify, "(" + ", ".join(["%s"] * 6) + ")"
    batches = [joined_statements(head, (mogrify(row_of, row) for row in rows[at:at + CHUNK_ROWS]))
               for at in range(0, len(rows), CHUNK_ROWS)]  # per batch, its statements
    quoting.close()

    def send(connection, statements) -> None:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()
    return _sent(batches, connect, send, connections)


def quiet(idle: float = 0.9, timeout: float = 120.0) -> None:
    """Wait until the machine's CPUs are ``idle`` over a second (from /proc/stat), so that
    a measurement does not share them with a database server still settling the one
    before (PostgreSQL's autovacuum of a million new rows, InnoDB's purge)."""
    def times() -> tuple[int, int]:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle_before, all_before = times()
        time.sleep(1)
        idle_after, all_after = times()
        if idle_after - idle_before >= idle * (all_after - all_before):
            return


def side(work: Path, label: str, bundle: Path, rest_bundle: Path, count: int,
         rest_count: int, backends) -> dict:
    quiet()
    rest_s, rest_mb = import_run(work, f"{label}-rest", rest_bundle, backends(), direct=False)
    quiet()
    db_s, db_mb = import_run(work, f"{label}-db", bundle, backends(), direct=True)
    quiet()
    if label == "sqlite":
        raw_s = raw_sqlite(work, count)
        connections = {1: raw_s}
    else:
        raw = {"postgresql": raw_postgres, "mysql": raw_mysql}[label]
        connections = {}
        for n in sorted({1, SERVER_CONNECTIONS}):
            database = backends()
            quiet()
            connections[n] = raw(database, count, n)
        raw_s = connections[SERVER_CONNECTIONS]  # as many connections as the path uses
    result = {
        "points": count, "rest_points": rest_count,
        "rest_import_s": round(rest_s, 2), "rest_points_per_s": round(rest_count / rest_s),
        "rest_peak_rss_mb": rest_mb,
        "database_import_s": round(db_s, 2), "database_points_per_s": round(count / db_s),
        "database_peak_rss_mb": db_mb,
        "driver_insert_s": round(raw_s, 2), "driver_points_per_s": round(count / raw_s),
        "driver_points_per_s_by_connections": {n: round(count / seconds)
                                               for n, seconds in connections.items()},
    }
    result["speedup_vs_rest"] = round(result["database_points_per_s"]
                                      / result["rest_points_per_s"], 1)
    result["share_of_driver_rate"] = round(result["database_points_per_s"]
                                           / result["driver_points_per_s"], 2)
    by = ", ".join(f"{rate:,} on {n}" for n, rate in
                   result["driver_points_per_s_by_connections"].items())
    print(f"{label:>10}: REST {result['rest_points_per_s']:>9,} pt/s ({rest_mb} MB) | "
          f"database {result['database_points_per_s']:>9,} pt/s in {db_s:.1f} s ({db_mb} MB)"
          f" | driver {by} | {result['speedup_vs_rest']}x REST, "
          f"{result['share_of_driver_rate']:.0%} of the driver on as many connections",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rest-points", type=int, default=None,
                        help="points of the run imported over REST (default: --points)")
    parser.add_argument("--postgres", action="store_true",
                        help="also into PostgreSQL (needs the postgresql package)")
    parser.add_argument("--mysql", action="store_true",
                        help="also into MariaDB, MySQL's dialect (needs mariadb-server)")
    parser.add_argument("--workdir", default="bench-work/database-path")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    options = parser.parse_args()
    work = Path(options.workdir).absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "600")
    rest_count = options.rest_points or options.points
    bundle = make_bundle(work, options.points)
    rest_bundle = bundle if rest_count == options.points else make_bundle(work, rest_count)
    figures = {"load_average": os.getloadavg()[0],
               "sqlite": side(work, "sqlite", bundle, rest_bundle, options.points, rest_count,
                              lambda: None)}
    from tests.databases import MariaDBServer, PostgresServer

    for label, wanted, server_class in (("postgresql", options.postgres, PostgresServer),
                                        ("mysql", options.mysql, MariaDBServer)):
        if not wanted:
            continue
        server = server_class()
        try:
            names = iter(range(1000))
            figures[label] = side(work, label, bundle, rest_bundle, options.points,
                                  rest_count, lambda server=server, names=names:
                                  server.create_database(f"bench{next(names)}"))
        finally:
            server.stop()
    print(f"load average {figures['load_average']:.1f}")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
