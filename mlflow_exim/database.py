"""The direct-database path: a side's metric histories read and written with batched
statements on its tracking server's own database.

Over REST a server spends about 150 µs of CPU per metric point, which makes a run of a
million points a matter of minutes each way. Given the database a tracking server uses
(``sqlite:///…``, ``postgresql://…``, ``mysql://…``), the points of a run are read with one
streaming SELECT and written with batched INSERTs, through MLflow's own table definitions
(``SqlMetric``, ``SqlLatestMetric``). Everything else (the run itself, params, tags,
datasets, artifacts, models, the registry) still goes through MLflow's store API, so ids
and constraints stay MLflow's; the rows written here are the ones MLflow would write:
NaN stored as 0 with ``is_nan``, ±inf as the largest double, duplicates dropped, and the
``latest_metrics`` row of each key the greatest point by (step, timestamp, value).

Nothing is read or written before the database's schema revision is found to be the one
the installed MLflow expects: another revision may name or shape its tables otherwise.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from itertools import islice
from typing import NamedTuple

from mlflow_exim.errors import EximError

# Rows per INSERT batch, each batch its own transaction: large enough that a statement's
# cost is spread over many rows, small enough that a sqlite server sharing the file waits
# briefly for its lock and that memory stays flat.
CHUNK_ROWS = 20_000
# The longest statement joined_statements writes, in characters: at most 2 MB of
# UTF-8, below any MySQL server's smallest default max_allowed_packet (4 MB).
MAX_STATEMENT_CHARS = 500_000
# Batches in flight at once into a database server (PostgreSQL, MySQL), each on a
# connection of its own: a server takes a connection's statements on one core, so two
# take about 1.6 to 1.9 times the rows per second of one (measured on 2 cores). sqlite has
# one writer at a time, and takes one.
SERVER_CONNECTIONS = 2
# Rows fetched per round trip of the streaming SELECT.
FETCH_ROWS = 10_000
# How long a sqlite connection waits for the file's lock (the server writes too).
SQLITE_LOCK_SECONDS = 60

# MLflow's stand-in for ±inf in a SQL column (its SqlAlchemyStore.sanitize_metric_value).
_LARGEST_DOUBLE = 1.7976931348623157e308

# Collations that order keys by code point whatever the database's own. sqlite's default
# (BINARY) already does; for MySQL see _by_code_point.
_CODE_POINT_COLLATION = {"postgresql": "C", "mssql": "Latin1_General_BIN2"}


# The columns of ``metrics`` and ``latest_metrics``, in the order rows are built (the
# tables' own order, so that a positional statement takes the rows as they are).
_COLUMNS = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")


class Point(NamedTuple):
    """One point of a metric history as a bundle holds it (NaN and ±inf as floats)."""

    key: str
    value: float
    timestamp: int
    step: int


def stored_value(value: float) -> tuple[float, bool]:
    """(value, is_nan) as MLflow's SqlAlchemyStore stores a metric value."""
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (_LARGEST_DOUBLE if value > 0 else -_LARGEST_DOUBLE), False
    return value, False


def is_database_uri(uri: str) -> bool:
    """Whether ``uri`` names a SQL database (an embedded store's, or a server's backend)."""
    scheme = uri.partition("://")[0].partition("+")[0].lower()
    return "://" in uri and scheme in ("sqlite", "postgresql", "postgres", "mysql", "mssql")


class Database:
    """The database of one side, with one engine, opened and checked on first use.

    ``uri`` may hold credentials: every message shows ``display`` instead."""

    def __init__(self, uri: str, display: str):
        if not is_database_uri(uri):
            raise EximError(f"database {display}: expected a sqlite:///, postgresql://, "
                            "mysql:// or mssql:// URI (the one the tracking server uses)")
        from sqlalchemy.engine import make_url  # MLflow's own dependency

        try:
            url = make_url(uri)
        except Exception:  # noqa: BLE001 - any malformed URI
            raise EximError(f"database {display}: not a database URI that SQLAlchemy "
                            "can read") from None
        self.uri = uri
        self.display = display
        self.dialect = url.get_backend_name()
        self._password = url.password
        self._lock = threading.Lock()
        self._checked = False

    def __repr__(self) -> str:
        return f"Database({self.display!r})"

    @cached_property
    def _engine(self):
        import sqlalchemy

        arguments = {"timeout": SQLITE_LOCK_SECONDS} if self.dialect == "sqlite" else {}
        try:
            return sqlalchemy.create_engine(self.uri, pool_pre_ping=True,
                                            connect_args=arguments)
        except Exception as exc:  # noqa: BLE001 - a missing driver, a malformed URI
            raise EximError(f"cannot open database {self.display}: "
                            f"{type(exc).__name__}: {self._words(exc)}") from None

    @property
    def engine(self):
        """The engine, once the schema is known to be the installed MLflow's."""
        with self._lock:
            if not self._checked:
                self.check_schema()
                self._checked = True
        return self._engine

    def check_schema(self) -> None:
        """Refuse, in one line, a database whose alembic revision is not the head of the
        installed MLflow's migrations (the check MLflow's own store makes on opening)."""
        import mlflow
        from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version

        expected = _get_latest_schema_revision()
        try:
            found = _get_schema_version(self._engine)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, not a database
            raise EximError(f"cannot read the schema revision of database {self.display}: "
                            f"{type(exc).__name__}: {self._words(exc)}") from None
        if found != expected:
            raise EximError(f"database {self.display} has schema revision {found or 'none'}, "
                            f"but MLflow {mlflow.__version__} expects {expected}: refused "
                            "(run `mlflow db upgrade` on it, or use the MLflow its server runs)")

    def metric_history(self, run_id: str, key: str | None = None) -> Iterator[Point]:
        """Every point of every metric of a run (or of metric ``key`` only), in the order
        the REST path writes them (keys by code point; then timestamp, step and value, as
        MLflow pages a history), streamed with a server-side cursor."""
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from sqlalchemy import select

        c = SqlMetric.__table__.c
        query = (select(c.key, c.value, c.timestamp, c.step, c.is_nan)
                 .where(c.run_uuid == run_id)
                 .order_by(self._by_code_point(c.key), c.timestamp, c.step, c.value,
                           c.is_nan))
        if key is not None:
            query = query.where(c.key == key)
        with self.engine.connect() as connection:
            rows = connection.execution_options(stream_results=True,
                                                yield_per=FETCH_ROWS).execute(query)
            for name, value, timestamp, step, is_nan in rows:
                yield Point(name, math.nan if is_nan else float(value), timestamp, step)

    def _by_code_point(self, column):
        """``column`` as an ORDER BY term that sorts text by code point, as Python's
        ``sorted`` does (the order the REST path writes keys in). On MySQL and MariaDB
        its bytes: a collation belongs to one character set, and the column's may be
        utf8mb4, utf8mb3 or latin1 (the default of older servers); UTF-8's bytes sort as
        their code points, and latin1's as theirs but for the 27 characters cp1252 puts
        at 0x80-0x9F."""
        from sqlalchemy import cast, collate

        if self.dialect == "mysql":
            from sqlalchemy.dialects.mysql import BINARY

            return cast(column, BINARY())
        collation = _CODE_POINT_COLLATION.get(self.dialect)
        return collate(column, collation) if collation else column

    def write_metric_history(self, run_id: str, points: Iterable) -> int:
        """Insert the points ((key, value, timestamp, step) tuples) of a run that has none
        yet, in batches of ``CHUNK_ROWS`` rows, each committed; then its ``latest_metrics``
        rows. Returns how many points were read; on a failure no row of the run stays.
        A point MLflow would drop as a duplicate of one already written is dropped."""
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        metrics = self._insert_ignoring_duplicates(SqlMetric.__table__)
        latest: dict[str, tuple] = {}
        rows: list[tuple] = []
        count = 0
        in_flight: deque[tuple[Future, list]] = deque()
        # the next batch is read (and, on PyMySQL, written as statements) while the
        # database takes those before, each on a connection of its own: the server's
        # work and this process's overlap
        connections = 1 if self.dialect == "sqlite" else SERVER_CONNECTIONS
        with self._removed_on_failure(run_id), ThreadPoolExecutor(
                connections, thread_name_prefix="mlflow-exim-insert") as inserter, \
                self._prepared_batches(metrics) as prepared:
            for key, value, timestamp, step in points:
                value, is_nan = stored_value(value)
                row = (key, value, timestamp, step, is_nan, run_id)
                rows.append(row)
                order = (step, timestamp, value)
                best = latest.get(key)
                if best is None:
                    self._check_name(key)
                if best is None or order > best[0]:  # strictly later, as MLflow compares
                    latest[key] = (order, row)
                if len(rows) == CHUNK_ROWS:
                    batch = prepared(rows)
                    self._settle(metrics, in_flight, connections - 1)
                    in_flight.append((inserter.submit(self._execute, metrics, batch), batch))
                    count += len(rows)
                    rows = []
            self._settle(metrics, in_flight, 0)
            count += len(rows)
            self._execute(metrics, rows, (SqlLatestMetric.__table__.insert(),
                                          [row for _, row in latest.values()]))
        return count

    def _settle(self, statement, in_flight: deque[tuple[Future, list]], keep: int) -> None:
        """Wait, oldest first, until at most ``keep`` batches are in flight; an error is
        raised here. A batch whose transaction the database rolled back to break a
        deadlock with another (possible where batches hold the same point, which each
        then waits to skip) is written again once no other is in flight."""
        while len(in_flight) > keep:
            future, batch = in_flight.popleft()
            try:
                future.result()
            except Exception as exc:
                if not _is_deadlock(exc):
                    raise
                self._settle(statement, in_flight, 0)
                self._execute(statement, batch)

    @cached_property
    def parses_json(self) -> bool:
        """Whether the database takes a batch of points as JSON text and parses it itself
        (sqlite's JSON functions): about twice sqlite3's own rate of binding each row from
        Python, since no row is ever built in Python."""
        if self.dialect != "sqlite":
            return False
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT json_extract('{}', '$.a')")
        except Exception:  # noqa: BLE001 - a sqlite built without its JSON functions
            return False
        return True

    def write_metric_json(self, run_id: str, points: Iterable[str],
                          non_finite: dict[str, float]) -> int:
        """As :meth:`write_metric_history`, where :attr:`parses_json`: the points as JSON
        objects ``{"key", "value", "timestamp", "step"}`` (``non_finite`` maps the strings
        that stand for NaN and ±inf to them), each batch of ``CHUNK_ROWS`` parsed and
        inserted by sqlite in one statement and committed. The ``latest_metrics`` rows are then
        chosen among the run's rows in the order they went in (a tie kept first, as
        MLflow keeps it), the metric names checked as MLflow checks them. Returns how
        many points were read; on a failure no row of the run stays."""
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        metrics, latest = SqlMetric.__tablename__, SqlLatestMetric.__tablename__
        columns = ", ".join(_COLUMNS)
        stored = {text: stored_value(number) for text, number in non_finite.items()}
        special = " ".join(f"WHEN {_sql_text(text)} THEN {number!r}"
                           for text, (number, _) in stored.items())
        nans = ", ".join(_sql_text(text) for text, (_, nan) in stored.items() if nan)
        # each field extracted once (a materialized CTE; before sqlite 3.35 the query is
        # flattened, and the value extracted for each use)
        materialized = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""
        fields = ", ".join(f"json_extract(value, '$.{name}')"
                           for name in ("key", "value", "timestamp", "step"))
        insert = (f"WITH point (k, v, t, s) AS {materialized}(SELECT {fields} FROM json_each(?))"
                  f" INSERT INTO {metrics} ({columns}) SELECT k, CASE v {special} ELSE "
                  f"max(min(v, {_LARGEST_DOUBLE!r}), {-_LARGEST_DOUBLE!r}) END, t, s, "
                  f"v IN ({nans}), ? FROM point WHERE true ON CONFLICT DO NOTHING")
        count = 0
        points = iter(points)
        with self._removed_on_failure(run_id):
            while batch := list(islice(points, CHUNK_ROWS)):
                self._insert_json(insert, run_id, batch)
                count += len(batch)
            with self.engine.begin() as connection:
                # per metric through MLflow's (run_uuid, key, step) index: a window over
                # all the run's rows took five times as long on a million points
                keys = [key for (key,) in connection.exec_driver_sql(
                    f"SELECT DISTINCT key FROM {metrics} WHERE run_uuid = ?", (run_id,))]
                for key in keys:
                    self._check_name(key)
                    connection.exec_driver_sql(
                        f"INSERT INTO {latest} ({columns}) SELECT {columns} FROM {metrics} "
                        "WHERE run_uuid = ? AND key = ? ORDER BY step DESC, timestamp DESC, "
                        "value DESC, rowid LIMIT 1", (run_id, key))
        return count

    def _insert_json(self, insert: str, run_id: str, batch: list[str]) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql(insert, (f"[{','.join(batch)}]", run_id))

    def _check_name(self, key: str) -> None:
        from mlflow.utils.validation import _validate_metric_name

        try:
            _validate_metric_name(key)
        except Exception as exc:  # noqa: BLE001 - MLflow's words, on one line
            raise EximError(f"metric {key!r}: {self._words(exc)}") from None

    @contextlib.contextmanager
    def _removed_on_failure(self, run_id: str) -> Iterator[None]:
        """The rows of ``run_id`` deleted again if what follows fails: its batches are
        committed one by one, and a run left half-written is deleted by the importer,
        which MLflow only marks deleted."""
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        try:
            yield
        except BaseException:
            table = SqlMetric.__table__
            with contextlib.suppress(Exception), self.engine.begin() as connection:
                connection.execute(table.delete().where(table.c.run_uuid == run_id))
            raise

    def _words(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()).replace(self.uri, self.display)
        return (text.replace(self._password, "***") if self._password else text)[:300]

    def _execute(self, statement, rows: list[tuple], *more: tuple) -> None:
        """Rows (in ``_COLUMNS`` order) inserted by ``statement``, then each (statement,
        rows) of ``more``, in one transaction. Where the driver takes positional
        parameters (sqlite3), the statement MLflow's table compiles to is handed to the
        driver's executemany as it is; psycopg2 sends the rows with COPY (see
        :func:`_copied`), else as multi-row VALUES pages (its execute_values); PyMySQL
        as multi-row VALUES of literals (:func:`_as_literal_statements`; a batch may
        come as those statements already): binding each row through SQLAlchemy costs more
        than the insert."""
        with self.engine.begin() as connection:
            for insert, batch in ((statement, rows), *more):
                if not batch:
                    continue
                dbapi = connection.connection.dbapi_connection
                compiled = insert.compile(dialect=connection.dialect)
                psycopg2 = connection.dialect.driver == "psycopg2"
                if connection.dialect.driver == "pymysql" and not isinstance(
                        batch, _Statements):
                    with dbapi.cursor() as cursor:
                        batch = _as_literal_statements(compiled, batch, _quoter(cursor))
                if isinstance(batch, _Statements):
                    with dbapi.cursor() as cursor:
                        for text in batch:
                            cursor.execute(text)
                elif compiled.positional and tuple(compiled.positiontup) == _COLUMNS:
                    connection.exec_driver_sql(str(compiled), batch)
                elif psycopg2 and _copied(connection, insert.table.name, batch):
                    continue
                elif not (psycopg2 and _execute_values(connection, compiled, batch)):
                    connection.execute(insert, [dict(zip(_COLUMNS, row, strict=True))
                                                for row in batch])

    @contextlib.contextmanager
    def _prepared_batches(self, statement) -> Iterator[Callable[[list[tuple]], list]]:
        """A function that makes a batch of rows for ``statement`` what :meth:`_execute`
        takes: on PyMySQL the statements of literals (:func:`_as_literal_statements`),
        texts quoted by a connection held meanwhile; on psycopg2 the rows with their COPY
        text (:class:`_CopyRows`); else the rows as they are."""
        driver = self.engine.dialect.driver
        if driver != "pymysql":
            yield (lambda rows: _CopyRows(rows)) if driver == "psycopg2" else (lambda rows: rows)
            return
        with self.engine.connect() as connection, \
                connection.connection.dbapi_connection.cursor() as cursor:
            compiled, quote = statement.compile(dialect=connection.dialect), _quoter(cursor)
            yield lambda rows: _as_literal_statements(compiled, rows, quote)

    def _insert_ignoring_duplicates(self, table):
        """An INSERT that skips a row whose primary key is taken, as MLflow's
        ``_log_metrics`` does after its IntegrityError."""
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
            return insert(table).on_conflict_do_nothing()
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
            return insert(table).on_conflict_do_nothing()
        if self.dialect == "mysql":  # not INSERT IGNORE, which also skips, with a mere
            # warning, a row whose run is missing or whose value does not fit
            from sqlalchemy.dialects.mysql import insert
            statement = insert(table)
            return statement.on_duplicate_key_update(run_uuid=statement.inserted.run_uuid)
        return table.insert()


def _is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` (a driver's error, or SQLAlchemy's around one) says the database
    rolled the transaction back to break a deadlock: PostgreSQL's SQLSTATE 40P01, MySQL's
    error 1213."""
    error = getattr(exc, "orig", None) or exc
    if getattr(error, "pgcode", None) == "40P01":
        return True
    return (type(error).__module__.split(".")[0] in ("pymysql", "MySQLdb")
            and error.args[:1] == (1213,))


def _sql_text(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# COPY's text format: these characters of a text column are written escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(rows: Iterable[tuple]) -> io.StringIO:
    """Rows (in ``_COLUMNS`` order) as the text ``COPY … FROM STDIN`` reads."""
    text = io.StringIO()
    for key, value, timestamp, step, is_nan, run_uuid in rows:
        text.write(f"{key.translate(_COPY_ESCAPES)}\t{value!r}\t{timestamp}\t{step}\t"
                   f"{'t' if is_nan else 'f'}\t{run_uuid}\n")
    text.seek(0)
    return text


class _CopyRows(list):
    """A batch of rows with its COPY text, written where the batch is made."""

    def __init__(self, rows: list[tuple]):
        super().__init__(rows)
        self.text = copy_text(rows)


def _copied(connection, table: str, rows: list[tuple]) -> bool:
    """The rows (in ``_COLUMNS`` order) into ``table`` with ``COPY … FROM STDIN``, inside
    ``connection``'s transaction: PostgreSQL's fastest way in, about twice the rate of
    multi-row VALUES on MLflow's ``metrics``. COPY cannot skip a row whose key is taken,
    so it runs in a savepoint: on such a row nothing of it stays, and False tells the
    caller to insert the batch in the way that skips duplicates."""
    import psycopg2

    text = rows.text if isinstance(rows, _CopyRows) else copy_text(rows)
    text.seek(0)  # a batch may be sent again (see Database._settle)
    with connection.connection.cursor() as cursor:
        cursor.execute("SAVEPOINT mlflow_exim_copy")
        try:
            cursor.copy_expert(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN", text)
        except psycopg2.IntegrityError:
            cursor.execute("ROLLBACK TO SAVEPOINT mlflow_exim_copy")
            return False
        cursor.execute("RELEASE SAVEPOINT mlflow_exim_copy")
    return True


def _values_row(compiled) -> re.Match | None:
    """Where ``compiled`` (an INSERT of MLflow's table) has one VALUES row whose parameters
    are ``_COLUMNS`` in that order, the match of that row in its SQL; else None."""
    match = re.search(r"VALUES (\((?:%(?:\(\w+\))?s(?:, )?)+\))", str(compiled))
    if match is None:
        return None
    names = (tuple(compiled.positiontup) if compiled.positional
             else tuple(re.findall(r"%\((\w+)\)s", match[1])))
    return match if names == _COLUMNS else None


def _execute_values(connection, compiled, rows: list[tuple]) -> bool:
    """``compiled`` (MLflow's table, with its ON CONFLICT clause) through psycopg2's
    execute_values, inside ``connection``'s transaction: the statement's one VALUES row of
    named parameters becomes the ``%s`` that pages of rows fill. False, and nothing
    done, where the statement does not have that shape."""
    from psycopg2.extras import execute_values

    match = _values_row(compiled)
    if match is None:
        return False
    sql = match.string
    template = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    with connection.connection.cursor() as cursor:
        execute_values(cursor, sql[:match.start(1)] + "%s" + sql[match.end(1):], rows,
                       template=template, page_size=1000)
    return True


class _Statements(list):
    """A batch of rows already written as the statements that insert them."""


def _quoter(cursor) -> Callable[[str], str]:
    """Texts as SQL literals by the driver's own quoting (PyMySQL's public ``mogrify``,
    on its connection's rules: character set, NO_BACKSLASH_ESCAPES), each text once."""
    literals: dict[str, str] = {}

    def quote(value: str) -> str:
        literal = literals.get(value)
        if literal is None:
            literal = literals[value] = cursor.mogrify("%s", (value,))
        return literal
    return quote


def _as_literal_statements(compiled, rows: list[tuple], quote: Callable[[str], str]) -> list:
    """The rows (in ``_COLUMNS`` order) as the multi-row INSERTs of literals that
    ``compiled`` (MySQL's INSERT of MLflow's table, one VALUES row of parameters in that
    order) stands for, each at most ``MAX_STATEMENT_CHARS`` long. PyMySQL's executemany
    escapes each of a row's six values by a call on its type: more of this process's
    time than the server's insert. Here each text (a key, a run id) is quoted once, and
    numbers are written directly: a double with 17 significant digits in exponent form
    (a DOUBLE literal that reads back as the same double), integers as they are. The
    rows as they are where the statement does not have that shape."""
    match = _values_row(compiled)
    if match is None:
        return rows
    sql = match.string
    # sent without parameters, so the format style's escaped "%%" is unescaped
    head, tail = (part.replace("%%", "%") for part in (sql[:match.start(1)], sql[match.end(1):]))
    return _Statements(joined_statements(head, (
        f"({quote(key)},{value:.16e},{timestamp:d},{step:d},{1 if is_nan else 0},"
        f"{quote(run_uuid)})" for key, value, timestamp, step, is_nan, run_uuid in rows), tail))


def joined_statements(head: str, values: Iterable[str], tail: str = "") -> list[str]:
    """``head`` + VALUES rows (each a literal ``(…)``) joined by commas + ``tail``, as few
    statements as keep each within ``MAX_STATEMENT_CHARS``."""
    statements: list[str] = []
    batch: list[str] = []
    size = len(head) + len(tail)
    for row in values:
        if batch and size + len(row) + 1 > MAX_STATEMENT_CHARS:
            statements.append(head + ",".join(batch) + tail)
            batch, size = [], len(head) + len(tail)
        batch.append(row)
        size += len(row) + 1
    if batch:
        statements.append(head + ",".join(batch) + tail)
    return statements
