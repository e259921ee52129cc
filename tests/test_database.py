"""The direct-database path of metric histories (mlflow_exim.database), on sqlite and on
real PostgreSQL and MariaDB servers that the tests start, each served afterwards by an
`mlflow server` on the same database and compared with the source by verify."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

import mlflow_exim
from mlflow_exim import lineage
from mlflow_exim.bundle.jsonio import NON_FINITE, dumps, encode_float
from mlflow_exim.database import Database
from mlflow_exim.endpoint import Endpoint, display_uri
from mlflow_exim.errors import EximError
from tests.databases import DatabaseServer
from tests.seed import T0
from tests.servers import BIN

INF = math.inf
NAN = math.nan
# Points that MLflow stores in a special way or orders by more than one column: NaN and
# ±inf, negative steps, one step at several timestamps, one (step, timestamp) with several
# values, keys whose order differs between code points and a language's collation.
ODD_POINTS = [
    ("loss", 1.5, T0, -2), ("loss", NAN, T0 + 1, -1), ("loss", INF, T0 + 2, 0),
    ("loss", -INF, T0 + 3, 0), ("loss", 0.25, T0 + 4, 0), ("loss", 0.5, T0 + 4, 0),
    ("loss", 2.0, T0 + 9, 3), ("loss", 1.0, T0 + 5, 3), ("loss", NAN, T0 + 9, 3),
    ("B", 1.0, T0, 0), ("a", 2.0, T0, 0), ("Ä", 3.0, T0, 0), ("z_inf", INF, T0, 7),
    ("z_inf", -1e300, T0, 7),
]
# Keys and values a statement of literals must write exactly (every character MLflow
# allows in a name, a letter latin1 holds, the longest key; the smallest and largest
# doubles, negative zero, digits a short form would round), beside MLflow's own writes.
LITERAL_POINTS = [
    ("a b/c:d-e.f_9", 5e-324, T0, 0), ("naïve", -0.0, T0, 0), ("k" * 250, 0.1 + 0.2, T0, 0),
    ("tiny", 2.2250738585072014e-308, T0, 0), ("tiny", 123456789.12345679, T0, 1),
    ("tiny", -1.7976931348623157e308, T0, 2), ("tiny", 1e22, T0, 3), ("tiny", 1e-7, T0, 4),
]
BIG_RUN_POINTS = 30_000  # "tens of thousands": a run that takes several insert batches


def cli(*argv, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlflow-exim"), *map(str, argv)], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgresql", "mysql"])
def server_database(request):
    """A database server of each dialect a tracking server may use besides sqlite, whose
    databases order keys otherwise than by code point: PostgreSQL's with ICU's en-US, and
    MariaDB's with its defaults (latin1, case-insensitive: "a" before "B")."""
    return request.getfixturevalue({"postgresql": "postgres", "mysql": "mariadb"}[request.param])


def log_points(client: MlflowClient, run_id: str, points) -> None:
    batch = []
    for key, value, timestamp, step in points:
        batch.append(Metric(key, value, timestamp, step))
        if len(batch) == 1000:
            client.log_batch(run_id, metrics=batch)
            batch = []
    if batch:
        client.log_batch(run_id, metrics=batch)


def big_history():
    for i in range(BIG_RUN_POINTS):
        yield f"m{i % 3}", (i * 0.001 if i % 997 else NAN), T0 + i, i // 3 - 100


@pytest.fixture(scope="module")
def source(stack, tmp_path_factory):
    """An experiment on the stack's source server with odd, long and empty histories, its
    bundle exported over REST and its bundle exported with the database path."""
    name = "dbpath-" + os.urandom(4).hex()
    client = MlflowClient(stack.source.uri)
    experiment = client.create_experiment(name)
    odd = client.create_run(experiment, start_time=T0, run_name="odd").info.run_id
    log_points(client, odd, ODD_POINTS)
    client.log_batch(odd, params=[Param("p", "1")], tags=[RunTag("t", "x")])
    big = client.create_run(experiment, start_time=T0 + 1, run_name="big",
                            tags={"mlflow.parentRunId": odd}).info.run_id
    log_points(client, big, big_history())
    empty = client.create_run(experiment, start_time=T0 + 2, run_name="empty").info.run_id
    for run_id in (odd, big, empty):
        client.set_terminated(run_id, "FINISHED", end_time=T0 + 10_000)
    work = tmp_path_factory.mktemp("dbpath")
    database = sqlite_uri(stack.source.log_path.with_suffix(".db"))
    rest, direct = work / "rest", work / "direct"
    for bundle, flags in ((rest, ()), (direct, ("--database-uri", database))):
        done = cli("export-experiment", "--tracking-uri", stack.source.uri, *flags,
                   "--experiment", name, "--output-dir", bundle)
        assert done.returncode == 0, done.stderr
    return {"name": name, "runs": {"odd": odd, "big": big, "empty": empty}, "rest": rest,
            "direct": direct, "work": work, "uri": stack.source.uri, "database": database}


def metric_files(bundle: Path) -> dict[str, bytes]:
    return {path.parent.name: path.read_bytes()
            for path in sorted(bundle.rglob("metrics.jsonl"))}


def assert_latest_metrics_equal(src_uri: str, dst_uri: str, experiment_name: str) -> None:
    """Each run's latest metrics (what MLflow computed on the source, what the database
    path wrote on the target), NaN equal to NaN."""
    def latest(uri):
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(experiment_name).experiment_id
        return {r.info.run_name: sorted((m.key, repr(m.value), m.timestamp, m.step)
                                        for m in r.data._metric_objs)
                for r in client.search_runs([experiment])}
    assert latest(src_uri) == latest(dst_uri)


def test_a_database_export_writes_the_metric_files_the_rest_export_writes(source):
    rest, direct = metric_files(source["rest"]), metric_files(source["direct"])
    assert len(rest) == 3 and rest == direct
    manifest = lambda bundle: (bundle / "manifest.json").read_text()  # noqa: E731
    assert "inventory" in manifest(source["direct"])
    check = cli("check", "--input-dir", source["direct"])
    assert check.returncode == 0, check.stdout + check.stderr


def test_sqlite_import_through_the_database_is_served_and_identical(source, tmp_path):
    database = tmp_path / "target.db"
    server = DatabaseServer("sqlite-target", tmp_path, sqlite_uri(database))
    try:
        done = cli("import-experiment", "--tracking-uri", server.uri, "--database-uri",
                   sqlite_uri(database), "--input-dir", source["direct"],
                   "--report", tmp_path / "report.json")
        assert done.returncode == 0, done.stdout + done.stderr
        carried = json.loads((tmp_path / "report.json").read_text())["metric_histories"]
        assert carried == {"path": "database (sqlite)", "runs": 3,
                           "points": len(ODD_POINTS) + BIG_RUN_POINTS}
        card = mlflow_exim.verify(source["uri"], server.uri, experiments=[source["name"]])
        assert card.ok, card.text()
        assert card.totals["runs"] == 3
        assert_latest_metrics_equal(source["uri"], server.uri, source["name"])
        with sqlite3.connect(database) as connection:
            assert connection.execute("SELECT count(*) FROM metrics").fetchone()[0] == (
                len(ODD_POINTS) + BIG_RUN_POINTS)
        # verify reading both sides' histories from their databases: identical; and from a
        # copy of the target's with one point changed, which the server does not serve:
        # that difference, so the histories did come from the database
        verify = ("verify", "--src-uri", source["uri"], "--dst-uri", server.uri,
                  "--experiments", source["name"], "--src-database-uri", source["database"])
        done = cli(*verify, "--dst-database-uri", sqlite_uri(database))
        assert done.returncode == 0, done.stdout + done.stderr
        changed = tmp_path / "changed.db"
        shutil.copy(database, changed)
        with sqlite3.connect(changed) as connection:
            connection.execute("UPDATE metrics SET value = value + 1 WHERE rowid = "
                               "(SELECT min(rowid) FROM metrics WHERE is_nan = 0)")
        done = cli(*verify, "--dst-database-uri", sqlite_uri(changed))
        assert done.returncode == 1 and "histories differ" in done.stdout, done.stdout
        assert mlflow_exim.verify(source["uri"], server.uri, experiments=[source["name"]]).ok
    finally:
        server.stop()


def test_a_server_database_import_is_served_and_identical(source, server_database,
                                                         tmp_path):
    database = server_database.create_database("target")
    server = DatabaseServer("server-database-target", tmp_path, database)
    try:
        done = cli("import-experiment", "--tracking-uri", server.uri, "--database-uri",
                   database, "--input-dir", source["rest"])
        assert done.returncode == 0, done.stdout + done.stderr
        card = mlflow_exim.verify(source["uri"], server.uri, experiments=[source["name"]])
        assert card.ok, card.text()
        assert card.totals["runs"] == 3
        assert_latest_metrics_equal(source["uri"], server.uri, source["name"])
        # Read back with the database path: the same lines, in the same order, although
        # this database's collation puts "a" before "B" (and a latin1 column takes no
        # utf8mb4 collation).
        again = tmp_path / "again"
        done = cli("export-experiment", "--tracking-uri", server.uri, "--database-uri",
                   database, "--experiment", source["name"], "--output-dir", again)
        assert done.returncode == 0, done.stderr
        assert sorted(metric_files(again).values()) == sorted(
            metric_files(source["rest"]).values())
    finally:
        server.stop()


def _stamped_copy(tmp_path: Path) -> tuple[Path, str]:
    """A store at the head revision, then stamped with the revision before it."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    path = tmp_path / "old.db"
    MlflowClient(sqlite_uri(path)).search_experiments()  # created at the head revision
    script = ScriptDirectory.from_config(_get_alembic_config(""))
    older = script.get_revision(script.get_current_head()).down_revision
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (older,))
    return path, older


def test_a_database_at_another_schema_revision_is_refused_in_one_line(stack, source,
                                                                      tmp_path):
    from mlflow.store.db.utils import _get_latest_schema_revision

    path, older = _stamped_copy(tmp_path)
    with pytest.raises(EximError) as refused:
        Endpoint.connect(stack.target.uri, database_uri=sqlite_uri(path))
    message = str(refused.value)
    assert "\n" not in message
    assert sqlite_uri(path) in message and older in message
    assert _get_latest_schema_revision() in message
    name = "refused-" + os.urandom(4).hex()
    done = cli("import-experiment", "--tracking-uri", stack.target.uri, "--database-uri",
               sqlite_uri(path), "--input-dir", source["direct"], "--experiment-name", name)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and older in done.stderr
    assert MlflowClient(stack.target.uri).get_experiment_by_name(name) is None


def test_a_database_password_never_shows(tmp_path):
    uri = "postgresql://exim:s3cret-pw@127.0.0.1:1/mlflow"
    with pytest.raises(EximError) as refused:
        _ = Database(uri, display_uri(uri)).engine
    assert "s3cret-pw" not in str(refused.value)
    assert "postgresql://127.0.0.1:1/mlflow" in str(refused.value)
    endpoint = Endpoint(sqlite_uri(tmp_path / "x.db"), database_uri=uri)
    assert "s3cret-pw" not in repr(endpoint.database)


KILLED_IMPORT = textwrap.dedent("""
    import os, signal, sys
    import mlflow_exim
    from mlflow_exim import database
    from mlflow_exim.endpoint import Endpoint

    database.CHUNK_ROWS = 4_000
    done = []
    write = database.Database._insert_json  # sqlite parses the bundle's lines itself

    def killed_after_two_batches(self, insert, run_id, batch):
        write(self, insert, run_id, batch)
        if len(batch) == database.CHUNK_ROWS:  # a full batch: only the big run has them
            done.append(len(batch))
        if len(done) == 2:  # two batches committed, the run still pending
            os.kill(os.getpid(), signal.SIGKILL)

    database.Database._insert_json = killed_after_two_batches
    uri, db, bundle, name = sys.argv[1:]
    mlflow_exim.import_experiment(bundle, tracking_uri=Endpoint(uri, database_uri=db),
                                  experiment_name=name, workers=1)
""")


def test_an_import_killed_mid_insert_is_completed_by_the_next_one(source, tmp_path):
    database = tmp_path / "target.db"
    server = DatabaseServer("killed-target", tmp_path, sqlite_uri(database))
    name = source["name"]
    try:
        killed = subprocess.run([sys.executable, "-c", KILLED_IMPORT, server.uri,
                                 sqlite_uri(database), str(source["direct"]), name],
                                capture_output=True, text=True)
        assert killed.returncode == -9, killed.stderr
        client = MlflowClient(server.uri)
        experiment = client.get_experiment_by_name(name).experiment_id
        (pending,) = [r for r in client.search_runs([experiment])
                      if lineage.is_pending(r.data.tags)]
        with sqlite3.connect(database) as connection:
            written = connection.execute("SELECT count(*) FROM metrics WHERE run_uuid = ?",
                                         (pending.info.run_id,)).fetchone()[0]
        assert written == 8_000  # two batches of the big run's 30,000 points

        report = tmp_path / "report.json"
        done = cli("import-experiment", "--tracking-uri", server.uri, "--database-uri",
                   sqlite_uri(database), "--input-dir", source["direct"], "--report", report)
        assert done.returncode == 0, done.stdout + done.stderr
        actions = {o["source_id"]: o["action"] for o in json.loads(report.read_text())["objects"]
                   if o["kind"] == "runs"}
        assert actions[source["runs"]["big"]] == "redo"
        card = mlflow_exim.verify(source["uri"], server.uri, experiments=[name])
        assert card.ok, card.text()
        assert_latest_metrics_equal(source["uri"], server.uri, name)
        assert client.get_run(pending.info.run_id).info.lifecycle_stage == "deleted"
    finally:
        server.stop()


# The rows themselves: the same as MLflow's own store writes for the same points ----------

# Few distinct values, times and steps, so that ties (NaN stored as 0 beside a real 0,
# inf beside the largest double) and duplicates come up often.
_values = st.one_of(st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1.0, 1.7976931348623157e308]),
                    st.floats(allow_nan=False, width=64))
_points = st.lists(st.tuples(st.sampled_from(["a", "B"]), _values,
                             st.integers(T0, T0 + 1), st.integers(-1, 1)), max_size=40)


def _rows(path: Path, table, run_id: str) -> list:
    columns = ("key", "value", "timestamp", "step", "is_nan")
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute(
            f"SELECT {', '.join(columns)} FROM {table.__tablename__} WHERE run_uuid = ?",
            (run_id,)).fetchall())


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    path = tmp_path_factory.mktemp("rows") / "rows.db"
    client = MlflowClient(sqlite_uri(path))
    return path, client, client.create_experiment("rows")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=_points)
@example(points=[("a", NAN, T0, 1), ("a", 0.0, T0, 1), ("a", INF, T0, 0),
                 ("a", 1.7976931348623157e308, T0, 0)])
def test_the_rows_written_are_the_rows_mlflow_writes(embedded, points):
    path, client, experiment = embedded
    theirs = client.create_run(experiment).info.run_id
    ours = client.create_run(experiment).info.run_id
    metrics = [Metric(*point) for point in points]
    for start in range(0, len(metrics), 7):  # several requests, as the REST path sends them
        client.log_batch(theirs, metrics=metrics[start:start + 7])
    database = Database(sqlite_uri(path), "rows")
    assert database.write_metric_history(ours, points) == len(points)
    # the bundle's own lines, parsed by sqlite itself (what import-run takes on sqlite)
    lines = [dumps({"key": key, "value": encode_float(value), "timestamp": timestamp,
                    "step": step}, indent=None) for key, value, timestamp, step in points]
    parsed = client.create_run(experiment).info.run_id
    assert database.parses_json
    assert database.write_metric_json(parsed, lines, NON_FINITE) == len(points)
    for table in (SqlMetric, SqlLatestMetric):
        assert _rows(path, table, ours) == _rows(path, table, theirs), table.__tablename__
        assert _rows(path, table, parsed) == _rows(path, table, theirs), table.__tablename__


def test_the_rows_written_into_a_server_database_are_the_rows_mlflow_writes(server_database):
    database = server_database.create_database("rows")
    client = MlflowClient(database)
    experiment = client.create_experiment("rows")
    theirs, ours = (client.create_run(experiment).info.run_id for _ in range(2))
    # duplicates dropped, as MLflow does
    points = [*ODD_POINTS, *ODD_POINTS[:3], *LITERAL_POINTS, *big_history()]
    log_points(client, theirs, points)
    assert Database(database, "rows").write_metric_history(ours, points) == len(points)
    assert_same_rows(database, theirs, ours)


def assert_same_rows(database: str, theirs: str, ours: str) -> None:
    """The ``metrics`` and ``latest_metrics`` rows of run ``ours`` are those of ``theirs``."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database)
    with engine.connect() as connection:
        for table in (SqlMetric.__table__, SqlLatestMetric.__table__):
            c = table.c
            rows = {run_id: sorted(connection.execute(
                sqlalchemy.select(c.key, c.value, c.timestamp, c.step, c.is_nan)
                .where(c.run_uuid == run_id))) for run_id in (theirs, ours)}
            assert rows[ours] == rows[theirs] and rows[ours], table.name
    engine.dispose()


def real_deadlock(database: str) -> Exception:
    """The error of a deadlock the database itself detects and breaks: two transactions,
    each holding a row the other then asks for."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(database)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE crossed (id INT PRIMARY KEY, n INT)")
        connection.exec_driver_sql("INSERT INTO crossed VALUES (1, 0), (2, 0)")
    both_hold = threading.Barrier(2, timeout=30)
    errors = []

    def cross(first: int, second: int) -> None:
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql(f"UPDATE crossed SET n = 1 WHERE id = {first}")
                both_hold.wait()
                connection.exec_driver_sql(f"UPDATE crossed SET n = 2 WHERE id = {second}")
        except Exception as exc:  # noqa: BLE001 - the one the database chose
            errors.append(exc)
    threads = [threading.Thread(target=cross, args=ids) for ids in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert len(errors) == 1, errors
    return errors[0]


def test_batches_in_flight_on_two_connections_write_the_rows_mlflow_writes(server_database,
                                                                          monkeypatch):
    """Batches go in two at a time, each on a connection of its own, and a point held by
    two batches in flight together is still written once; a batch the database rolls
    back to break a deadlock (here the real error of one, raised for the fifth batch)
    is written again, alone, and the run's rows are still MLflow's."""
    from mlflow_exim import database

    uri = server_database.create_database("flight")
    client = MlflowClient(uri)
    experiment = client.create_experiment("flight")
    theirs, ours, deadlocked = (client.create_run(experiment).info.run_id for _ in range(3))
    history = list(big_history())
    points = [*history, *history[100::997], *history[5000:5100]]  # later batches repeat points
    log_points(client, theirs, points)
    monkeypatch.setattr(database, "CHUNK_ROWS", 500)
    deadlock = real_deadlock(uri)
    assert database._is_deadlock(deadlock) and database._is_deadlock(deadlock.orig)
    active, most, calls = [0], [0], []
    execute, lock = Database._execute, threading.Lock()

    def watched(self, statement, rows, *more):
        with lock:
            calls.append(len(rows))
            fail = self.failing and len(calls) == 5
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.01)  # long enough for the next batch to be handed over meanwhile
            if fail:
                raise deadlock
            return execute(self, statement, rows, *more)
        finally:
            with lock:
                active[0] -= 1
    monkeypatch.setattr(Database, "_execute", watched)
    for run_id, failing in ((ours, False), (deadlocked, True)):
        side = Database(uri, "flight")
        side.failing = failing
        calls.clear()
        assert side.write_metric_history(run_id, points) == len(points)
        assert_same_rows(uri, theirs, run_id)
        assert most[0] == database.SERVER_CONNECTIONS == 2
        batches = -(-len(points) // 500)
        assert len(calls) == batches + failing  # the rolled-back batch once more


def test_the_insert_that_skips_duplicates_skips_nothing_else(server_database):
    """The statement each batch of points goes in by drops a point already written, and
    fails on any other conflict: a point of a run the database lacks is refused, not
    dropped with a warning as MySQL's INSERT IGNORE would drop it. And a whole write for
    such a run fails, leaving no row."""
    import sqlalchemy

    database = server_database.create_database("lacking")
    client = MlflowClient(database)
    run_id = client.create_run(client.create_experiment("lacking")).info.run_id
    side = Database(database, "lacking")
    insert = side._insert_ignoring_duplicates(SqlMetric.__table__)
    row = ("loss", 1.5, T0, 0, False)
    side._execute(insert, [(*row, run_id), (*row, run_id)])
    with pytest.raises(Exception, match="(?i)foreign key"):
        side._execute(insert, [(*row, "0" * 32)])
    with pytest.raises(Exception, match="(?i)foreign key"):
        side.write_metric_history("0" * 32, ODD_POINTS)
    engine = sqlalchemy.create_engine(database)
    with engine.connect() as connection:
        c = SqlMetric.__table__.c
        counts = dict(connection.execute(sqlalchemy.select(
            c.run_uuid, sqlalchemy.func.count()).group_by(c.run_uuid)).all())
    engine.dispose()
    assert counts == {run_id: 1}


def test_postgresql_takes_rows_by_copy_and_a_batch_with_a_taken_key_by_insert(postgres,
                                                                            monkeypatch):
    """A batch goes in with COPY; one that holds a point twice (COPY cannot skip it) is
    rolled back to its savepoint and sent again by the INSERT that skips duplicates, and
    the batches before it stay."""
    from mlflow_exim import database

    inserted: list[int] = []
    execute_values = database._execute_values
    monkeypatch.setattr(database, "_execute_values", lambda connection, insert, rows: (
        inserted.append(len(rows)) or execute_values(connection, insert, rows)))
    uri = postgres.create_database("copy")
    client = MlflowClient(uri)
    experiment = client.create_experiment("copy")
    unique, twice = (client.create_run(experiment).info.run_id for _ in range(2))
    side = Database(uri, "copy")
    points = list(big_history())
    assert side.write_metric_history(unique, points) == len(points)
    assert inserted == []
    assert side.write_metric_history(twice, points + points[:1]) == len(points) + 1
    assert inserted == [len(points) + 1 - database.CHUNK_ROWS]  # the last batch only
    for run_id in (unique, twice):
        assert len(client.get_metric_history(run_id, "m0")) == len(
            [p for p in points if p[0] == "m0"])
