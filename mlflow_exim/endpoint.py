"""One side of a migration: a tracking (and registry) URI with its own client and credentials.

An :class:`Endpoint` never touches process-wide MLflow state (no ``set_tracking_uri``,
no credentials or retry settings in the environment), so a source and a target with
different credentials live side by side in one process and are safe to use from worker
threads. For http endpoints it sets two process-wide defaults that change no other
code's results: how many connections MLflow keeps per server (:func:`_keep_connections`,
unless the user chose), and the Databricks runtime modules that are not installed marked
as absent (:func:`_skip_absent_runtime_probes`).

How credentials reach MLflow: a username and password go into the URI handed to
``MlflowClient`` as ``user:password@``. MLflow derives every URL it calls from that URI
(tracking and registry REST calls, and ``mlflow-artifacts:`` uploads, downloads and
listings), and ``requests`` turns URL credentials into basic auth on each request,
replacing any ``Authorization`` header built from ``MLFLOW_TRACKING_*``. MLflow caches its
stores by URI, so endpoints with different credentials get different stores. The URI is an
immutable string: nothing is shared between threads but MLflow's own caches.

A bearer token, and how many times and how long MLflow tries each request, MLflow takes
only from the process environment (``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_HTTP_REQUEST_*``).
An endpoint that needs them says so (:attr:`Endpoint.environment`); its client is then
only opened in a process whose environment holds them: ``migrate``, the copies and
``verify`` run each side's phase in a child process of its own (:mod:`mlflow_exim.sides`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.protos.service_pb2 import GetMetricHistory, LogBatch, MlflowService
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.store.entities.paged_list import PagedList
from mlflow.tracking import MlflowClient
from mlflow.utils.rest_utils import (
    _REST_API_PATH_PREFIX,
    extract_api_info_for_service,
    http_request,
    verify_rest_response,
)
from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri

from mlflow_exim.database import Database, is_database_uri
from mlflow_exim.errors import EximError
from mlflow_exim.floats import encode_float

# Greedy up to the last "@" before the path, so a password holding "@" is removed whole.
# Azure's wasbs:// and abfss:// URIs name the container there (``container@account…``).
_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])(?!(?:wasbs?|abfss?)://)"
                       r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]+@")
# The value of each parameter of a URL's query string (it may be a key or a token), also
# where a message shows only the URL's path ("Max retries exceeded with url: /?key=…").
_QUERY_VALUE = re.compile(r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s?#'\"]*\?)"
                          r"(?P<query>[^\s#'\"]*[^\s#'\":,;.)])")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# What a server may or may not serve: the store method a client calls for it (an embedded
# store, or a client older than the feature, lacks it), and a request (method, path, JSON
# body) that a server without it answers with its router's 404. The requests read nothing
# or one item. Prompts need no probe: they are registered models with a tag.
_PROBES = {
    "logged_models": ("search_logged_models", "POST", "/api/2.0/mlflow/logged-models/search",
                      {}),
    "traces": ("search_traces", "POST", "/api/3.0/mlflow/traces/search", {}),
    "evaluation_datasets": ("search_datasets", "POST", "/api/3.0/mlflow/datasets/search",
                            {"max_results": 1}),
    "scorers": ("list_scorers", "GET", "/api/3.0/mlflow/scorers/list", None),
}


# How a SQL store words a request it rolled back whole because of other writers, not because
# of the request (pool exhausted, sqlite's lock, PostgreSQL and MySQL deadlocks and
# serialization failures): no row of it was written, so sending it again is safe.
_CONTENTION = ("QueuePool limit", "database is locked", "deadlock detected",
               "could not serialize access", "Deadlock found", "Lock wait timeout exceeded")
CONTENTION_ATTEMPTS = 5


# How MLflow words a request it gave up on after its own retries (MLFLOW_HTTP_REQUEST_*):
# the server was unreachable, dropped the connection, was too slow or kept answering 5xx.
_TRANSPORT = ("Max retries exceeded", "Connection aborted", "Connection refused",
              "Read timed out", "RemoteDisconnected", "error responses")


# MLflow's settings of its HTTP requests, read from the environment at each request: a
# value it cannot read fails every request with a message that reads like an outage.
_HTTP_SETTINGS = (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", int), ("MLFLOW_HTTP_REQUEST_TIMEOUT", int),
                  ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", int),
                  ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", float))


# Connections MLflow's client keeps open per server (its MLFLOW_HTTP_POOL_MAXSIZE, default
# 10). An export or import asks more at once: objects side by side, each fetching or
# sending files through its artifact store's own threads (2 per core, up to 20), two chunk
# imports at once in migrate. Past the pool's size each answer closes its connection, and
# urllib3 warns "Connection pool is full, discarding connection" every time.
CONNECTIONS_KEPT = 128


def _keep_connections() -> None:
    """Have MLflow keep :data:`CONNECTIONS_KEPT` connections per server, unless the user
    set ``MLFLOW_HTTP_POOL_MAXSIZE``. MLflow reads it when this process sends its first
    request: a library caller that already sent one keeps its pool as it is."""
    os.environ.setdefault("MLFLOW_HTTP_POOL_MAXSIZE", str(CONNECTIONS_KEPT))


# Modules that MLflow's request headers try to import on every request, to learn whether it
# runs on Databricks (mlflow.utils.databricks_utils). Where one is not installed, each
# attempt searches the whole import path again, under the interpreter's import lock:
# about 0.6 ms of the client's CPU per request, every worker thread queued behind it.
RUNTIME_PROBES = ("dbruntime", "IPython", "pyspark")


def _skip_absent_runtime_probes() -> None:
    """Mark the :data:`RUNTIME_PROBES` that are not installed as absent (``None`` in
    ``sys.modules``): importing one then fails at once, as it did after the search. An
    installed one is left alone, so on Databricks MLflow finds its runtime as before."""
    for name in RUNTIME_PROBES:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None


def check_http_settings() -> None:
    """One line naming the first ``MLFLOW_HTTP_REQUEST_*`` variable MLflow cannot read,
    and what it takes there, before any request is sent."""
    for name, kind in _HTTP_SETTINGS:
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            kind(value)
        except ValueError:
            words = "a whole number (no decimals)" if kind is int else "a number"
            raise EximError(f"environment variable {name} is {value!r}: MLflow reads it as "
                            f"{words}") from None


@dataclass(frozen=True)
class RetryPolicy:
    """How one side's requests survive a server that is down, drops connections, answers
    5xx or is slow: each request is sent at most ``attempts`` times, with MLflow's
    exponential backoff in between, and each try waits at most ``timeout`` seconds for
    its answer. None keeps MLflow's setting (its environment, else 8 tries and 120 s).
    Once a request has used its attempts on a transport failure, the endpoint is taken
    for down, and its later calls fail at once: an outage that outlasts the budget ends
    the command in bounded time, with each object it could not write reported failed."""

    attempts: int | None = None
    timeout: int | None = None

    def __post_init__(self):
        for name in ("attempts", "timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise EximError(f"{name}: expected a whole number of at least 1, not {value!r}")

    def environment(self) -> dict[str, str]:
        """The MLflow environment variables that carry this policy."""
        env = {}
        if self.attempts is not None:
            env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(self.attempts - 1)
        if self.timeout is not None:
            env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self.timeout)
        return env

    def merged(self, override: RetryPolicy | None) -> RetryPolicy:
        """This policy with what ``override`` sets (a flag beside a config file)."""
        if override is None:
            return self
        return RetryPolicy(override.attempts or self.attempts, override.timeout or self.timeout)


class _Retrying:
    """A client or store whose calls survive the server's database contention and stop
    at once once the server is known to be down.

    Contention: a call the server's database rolled back whole because of other writers
    is sent again, with backoff (a sqlite server under parallel workers answers
    ``QueuePool limit of size 5 overflow 10 reached`` for a request that waited too long
    for the file's lock). Outages: MLflow itself sends a request again while the server
    is unreachable or answers 5xx (see :class:`RetryPolicy`); a call that still failed so
    marks the endpoint down (``health``), and every later call fails without waiting."""

    def __init__(self, target, health: _Health):
        self._target = target
        self._health = health

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args, **kwargs):
            for attempt in range(1, CONTENTION_ATTEMPTS + 1):
                self._health.check()
                try:
                    return value(*args, **kwargs)
                except Exception as exc:
                    text = str(exc)
                    if any(m in text for m in _TRANSPORT):
                        self._health.down(text)
                    if attempt == CONTENTION_ATTEMPTS or not any(
                            m in text for m in _CONTENTION):
                        raise
                    time.sleep(0.5 * 2 ** (attempt - 1))
        return call


# What a store's database may compare names and keys without regard to (Endpoint.folding).
CASE, TRAILING_SPACES = "case", "trailing spaces"

# A metric point as a bundle holds it: (key, value, timestamp, step).
Point = tuple[str, float, int, int]
_API = extract_api_info_for_service(MlflowService, _REST_API_PATH_PREFIX)


class _Points:
    """Metric points as plain :data:`Point` tuples, both ways: ``get_metric_history``
    page by page, and ``log_batch``. Over REST each page is read from the answer's JSON,
    and each batch written as the request's JSON: MLflow's own calls build a protobuf
    message and an entity for each point (a fifth of an export's client CPU). The
    requests, their headers, retries and error answers are MLflow's (``http_request``,
    ``verify_rest_response``); the JSON is the one ``message_to_json`` writes, a double
    that is not finite as ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (see
    :mod:`mlflow_exim.floats`). Other stores are called with entities."""

    def __init__(self, store, is_http: bool):
        self._store, self._is_http = store, is_http

    def get_metric_history(self, run_id: str, key: str, max_results: int,
                           page_token: str | None = None) -> PagedList:
        if not self._is_http:
            page = self._store.get_metric_history(run_id, key, max_results=max_results,
                                                  page_token=page_token)
            return PagedList([(key, m.value, m.timestamp, m.step) for m in page],
                             getattr(page, "token", None))
        params = {"run_id": run_id, "run_uuid": run_id, "metric_key": key,
                  "max_results": max_results}
        if page_token:
            params["page_token"] = page_token
        answer = self._call(GetMetricHistory, params=params).json()
        return PagedList([(key, float(m.get("value", 0.0)), int(m.get("timestamp", 0)),
                           int(m.get("step", 0))) for m in answer.get("metrics", [])],
                         answer.get("next_page_token") or None)

    def log_batch(self, run_id: str, metrics: list[Point], params: list[Param],
                  tags: list[RunTag]) -> None:
        if not self._is_http:
            self._store.log_batch(run_id, metrics=[Metric(*point) for point in metrics],
                                  params=params, tags=tags)
            return
        self._call(LogBatch, json={
            "run_id": run_id,
            "metrics": [{"key": key, "value": encode_float(value), "timestamp": timestamp,
                         "step": step} for key, value, timestamp, step in metrics],
            "params": [{"key": p.key, "value": p.value} for p in params],
            "tags": [{"key": t.key, "value": t.value} for t in tags]})

    def _call(self, request, **body):
        endpoint, method = _API[request]
        return verify_rest_response(
            http_request(self._store.get_host_creds(), endpoint, method, **body), endpoint)


class _Health:
    """Whether an endpoint is taken for down, and why (see :class:`_Retrying`): until the
    end of the command, whose next :meth:`Endpoint.connect` starts afresh."""

    def __init__(self, display: str):
        self._display = display
        self._reason: str | None = None

    def reset(self) -> None:
        self._reason = None

    def down(self, reason: str) -> None:
        if self._reason is None:
            self._reason = " ".join(redact(reason).split())[:300]

    def check(self) -> None:
        if self._reason is not None:
            raise EximError(f"not sent: {self._display} was unreachable after its retries "
                            f"({self._reason})")


def redact(text: str) -> str:
    """Remove ``user:password@`` and the values of query parameters from every URL inside
    ``text``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    return _QUERY_VALUE.sub(lambda m: m["head"] + _masked_query(m["query"]), text)


def _masked_query(query: str) -> str:
    return "&".join(item.partition("=")[0] + ("=***" if "=" in item else "")
                    for item in query.split("&"))


def display_uri(uri: str) -> str:
    """The URI without credentials (userinfo, query values), safe for logs, reports and
    bundles."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc and not parts.query:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, _masked_query(parts.query) if
                       parts.query else "", parts.fragment))


@dataclass(frozen=True)
class Credentials:
    """The credentials of one side: a username and password, or a bearer token.
    ``repr`` shows the username only."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.token and (self.username or self.password):
            raise EximError("credentials: give a token or a username and password, not both")
        if not self.token and not (self.username and self.password):
            raise EximError("credentials: give a username and a password, or a token")
        if self.username and ":" in self.username:
            raise EximError("credentials: a username cannot contain ':' (HTTP basic auth)")

    @classmethod
    def from_env(cls, *, username_env: str | None = None, password_env: str | None = None,
                 token_env: str | None = None) -> Credentials | None:
        """Credentials read from the environment variables named (None if none is named).
        Each error names the argument and the variable: ``password_env: environment
        variable PROD_PASSWORD is not set``."""
        if token_env and (username_env or password_env):
            raise EximError("token_env: give token_env or username_env and password_env, "
                            "not both")
        if bool(username_env) != bool(password_env):
            missing = "password_env" if username_env else "username_env"
            raise EximError(f"{missing}: missing (username_env and password_env go together)")
        names = {"username_env": username_env, "password_env": password_env,
                 "token_env": token_env}
        values = {}
        for key, name in names.items():
            if not name:
                continue
            if not _ENV_NAME.fullmatch(name):  # perhaps a value: never repeat it
                raise EximError(f"{key}: expected the name of an environment variable "
                                "(letters, digits and _), not a value")
            value = os.environ.get(name)
            if not value:
                raise EximError(f"{key}: environment variable {name} is "
                                f"{'empty' if value == '' else 'not set'}")
            values[key.removesuffix("_env")] = value
        if ":" in values.get("username", ""):
            raise EximError(f"username_env: the user name in {username_env} contains ':', "
                            "which HTTP basic auth cannot carry")
        return cls(**values) if values else None


def _with_credentials(uri: str, credentials: Credentials) -> str:
    """``uri`` with the credentials in it as ``user:password@`` (see the module docstring)."""
    parts = urlsplit(uri)
    shown = display_uri(uri)
    if parts.scheme not in ("http", "https"):
        raise EximError(f"{shown}: credentials apply only to an http(s) tracking server")
    if "@" in parts.netloc:
        raise EximError(f"{shown}: credentials given twice, in the URI and separately")
    if credentials.token:
        return uri  # MLflow takes a token from its environment only (see the module text)
    userinfo = f"{_quote_userinfo(credentials.username)}:{_quote_userinfo(credentials.password)}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store, absolute (None for any other store, or
    sqlite in memory). A legacy file store is opened as before: MLflow refuses one unless
    it is opted into, and that refusal must stay a one-line error at connect time."""
    if urlsplit(uri).scheme != "sqlite":
        return None
    from sqlalchemy.engine import make_url  # MLflow's own dependency, parsed as MLflow does

    database = make_url(uri).database
    return Path(database).absolute() if database and database != ":memory:" else None


def _quote_userinfo(value: str) -> str:
    """Percent-quoted so that ``requests`` sends ``value`` as UTF-8, as MLflow sends
    MLFLOW_TRACKING_PASSWORD: ``requests`` encodes URL credentials as Latin-1, so the
    UTF-8 bytes travel as the Latin-1 characters that stand for them."""
    return quote(value.encode("utf-8").decode("latin-1"), safe="")


class Endpoint:
    """A tracking server (``http(s)://…``) or an embedded store (``sqlite:///file.db``).

    ``uri`` is what MLflow is given and may hold credentials: never show it; show
    ``display_uri``. ``database_uri`` names the database the server uses, for the
    direct-database path of metric histories (:attr:`database`); an embedded store's
    own URI is its database.
    """

    def __init__(self, uri: str | None, credentials: Credentials | None = None,
                 retry: RetryPolicy | None = None, database_uri: str | None = None):
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise EximError("no tracking URI: give `tracking_uri` or set MLFLOW_TRACKING_URI")
        self.display_uri = display_uri(uri)
        self.uri = _with_credentials(uri, credentials) if credentials else uri
        self.token = credentials.token if credentials else None
        self.retry = retry or RetryPolicy()
        self._health = _Health(self.display_uri)
        self._capabilities: dict[str, bool] = {}
        self._probe_lock = threading.Lock()
        self._database = _sqlite_file(uri)
        self.database_uri = database_uri
        if database_uri is None and is_database_uri(uri) and (
                self._database is not None or urlsplit(uri).scheme != "sqlite"):
            database_uri = uri  # an embedded store (not sqlite in memory: not shared)
        self.database = (Database(database_uri, display_uri(database_uri))
                         if database_uri else None)
        if self.missing_store is None and not self.needs_own_process:
            _ = self.client  # opening an embedded store can fail (e.g. a file store): fail here

    @classmethod
    def connect(cls, uri: str | Endpoint | None, credentials: Credentials | None = None, *,
                must_exist: bool = False, retry: RetryPolicy | None = None,
                database_uri: str | None = None) -> Endpoint:
        """An endpoint whose server has answered, so that an unreachable server or refused
        credentials fail in one line before any work starts. Every library function takes
        an endpoint where it takes a URI, which is how credentials reach it.

        ``must_exist`` is for a side that is only read (the source of an export, copy or
        migrate, and both sides of verify): an embedded store that does not exist is then
        an error, where opening it would create an empty one. ``database_uri`` as for the
        class; its schema revision is checked here."""
        if isinstance(uri, Endpoint) and (credentials is not None or retry is not None
                                          or database_uri is not None):
            raise EximError(f"{uri.display_uri}: an endpoint already has its credentials, "
                            "retry policy and database")
        endpoint = uri if isinstance(uri, Endpoint) else cls(uri, credentials, retry,
                                                             database_uri)
        if endpoint.is_http:
            check_http_settings()
            _keep_connections()
            _skip_absent_runtime_probes()
        endpoint._health.reset()  # an outage that ended an earlier command ends only that one
        if must_exist and endpoint.missing_store is not None:
            raise EximError(f"tracking store {endpoint.display_uri}: {endpoint.missing_store} "
                            "does not exist (a store that is only read is never created)")
        _ = endpoint.mlflow_version
        if endpoint.database is not None and endpoint.missing_store is None:
            _ = endpoint.database.engine  # its schema revision is checked before any work
        return endpoint

    def __repr__(self) -> str:
        return f"Endpoint({self.display_uri!r})"

    def __reduce__(self):
        """Pickled as its URI and settings (a side's phase in a child process, see
        :mod:`mlflow_exim.sides`); the child opens its own client."""
        return _rebuilt, (self.uri, self.token, self.retry, self.database_uri)

    @property
    def environment(self) -> dict[str, str]:
        """The MLflow environment variables this side's client needs: its bearer token and
        its retry policy. Empty for most endpoints."""
        env = self.retry.environment()
        if self.token:
            env["MLFLOW_TRACKING_TOKEN"] = self.token
        return env

    @property
    def needs_own_process(self) -> bool:
        """Whether this process's environment lacks what :attr:`environment` asks for."""
        return any(os.environ.get(k) != v for k, v in self.environment.items())

    @property
    def is_http(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def missing_store(self) -> Path | None:
        """The database file of an embedded sqlite store that does not exist yet, else
        None. Such a store is opened, and so created, only when the client is first used:
        a dry run or a refused source leaves no empty database behind."""
        if self._database is None or self._database.exists():
            return None
        return self._database

    @cached_property
    def client(self) -> MlflowClient:
        """The MLflow client; building it opens the tracking store (creating an embedded
        one that is missing). Its calls, and the store's, survive database contention on
        the server and stop once it is down (see ``_Retrying``). Refused in a process
        whose environment does not carry this side's token and retry policy."""
        if self.needs_own_process:
            missing = sorted(k for k, v in self.environment.items() if os.environ.get(k) != v)
            raise EximError(f"{self.display_uri}: this side's client needs {', '.join(missing)} "
                            "in its process's environment (MLflow reads them from there "
                            "only); mlflow_exim.sides.call runs a side in a process that "
                            "has them")
        try:
            client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            _ = client._tracking_client.store
        except Exception as exc:  # noqa: BLE001 - any failure to open is the user's to fix
            raise EximError(f"cannot open tracking store {self.display_uri}: "
                            f"{redact(' '.join(str(exc).split()))}") from None
        return _Retrying(client, self._health)

    @property
    def store(self):
        """The tracking store. Used where the client adds process-wide state (active model,
        user from the OS) or reads whole histories into memory."""
        return _Retrying(self.client._tracking_client.store, self._health)

    @property
    def points(self) -> _Points:
        """Metric histories read and runs' batches written with plain points (see
        :class:`_Points`)."""
        return _Retrying(_Points(self.client._tracking_client.store, self.is_http),
                         self._health)

    @property
    def registry(self):
        """The model registry's store. Used for a model the import created or checked
        itself: the client asks the server, before each tag or alias call, whether the
        model is a prompt (one more request each)."""
        return _Retrying(self.client._get_registry_client().store, self._health)

    def artifact_repository(self, artifact_uri: str) -> ArtifactRepository:
        """The artifact store at ``artifact_uri`` (a run's, a logged model's or a trace's,
        as the server gave it), opened as MLflow's client opens it for this endpoint (a
        ``databricks://profile`` endpoint's profile goes with a ``dbfs:`` URI). Every read
        and write of files goes through it: the client's ``log_artifact`` and
        ``log_model_artifact`` read the run or model again to find it, for each file its
        cache does not hold yet (every file that starts before the first one is done)."""
        return get_artifact_repository(
            add_databricks_profile_info_to_artifact_uri(artifact_uri, self.uri),
            tracking_uri=self.uri)

    @cached_property
    def mlflow_version(self) -> str:
        """The server's MLflow version (its ``/version``); for an embedded store, the
        client's, whose code is the store. Fails with a one-line error when the server is
        unreachable or refuses the credentials."""
        if not self.is_http:
            return mlflow.__version__
        response = self.request("GET", "/version")
        if response.status_code in (401, 403):
            raise EximError(
                f"tracking server {self.display_uri} refused the request "
                f"(HTTP {response.status_code}): wrong or missing credentials"
            )
        if response.status_code != 200:
            raise EximError(
                f"tracking server {self.display_uri} answered /version with HTTP "
                f"{response.status_code}"
            )
        return response.text.strip()

    @cached_property
    def server_info(self) -> dict:
        """What a bundle records about its source: the MLflow version, what the server
        says about itself (``/api/3.0/mlflow/server-info``, absent before MLflow 3) or that
        the store is embedded, and every capability (see :meth:`supports`)."""
        info: dict = {"mlflow_version": self.mlflow_version}
        if not self.is_http:
            info["store"] = "embedded"
        else:
            extra = self.request("GET", "/api/3.0/mlflow/server-info")
            if extra.status_code == 200:
                info["server_info"] = extra.json()
        info["capabilities"] = {name: self.supports(name) for name in _PROBES}
        return info

    def supports(self, capability: str) -> bool:
        """Whether this endpoint serves ``capability`` (a key of ``_PROBES``: logged models,
        the MLflow 3 trace API, evaluation datasets, scorers). Asked of the server, not inferred
        from the client's version: the client's store must have the call, and a server must
        answer its probe with anything but a 404 from its router (a 404 that names a missing
        object is an answer). Probed once per endpoint, on first use."""
        with self._probe_lock:
            if capability not in self._capabilities:
                method, verb, path, body = _PROBES[capability]
                present = hasattr(self.store, method)
                if present and self.is_http:
                    present = not _no_such_route(self.request(verb, path, json=body))
                self._capabilities[capability] = present
            return self._capabilities[capability]

    @cached_property
    def folding(self) -> frozenset[str]:
        """What the store's database compares names and keys without regard to:
        ``case`` where, asked for the experiment ``DEFAULT``, it answers with its
        ``Default`` (which every tracking store has), as MySQL's and MariaDB's default
        collations do; ``trailing spaces`` where it does so for ``Default `` (their PAD
        SPACE collations). Two requests, once."""
        probes = {CASE: "DEFAULT", TRAILING_SPACES: "Default "}
        found = set()
        for what, name in probes.items():
            try:
                experiment = self.client.get_experiment_by_name(name)
            except Exception:  # noqa: BLE001 - unreachable: the requests that follow say so
                continue
            if experiment is not None and experiment.name != name:
                found.add(what)
        return frozenset(found)

    def lacks(self, capability: str, role: str) -> str | None:
        """Why ``capability`` cannot be used here (``role`` is "source" or "target"), or
        None when it can: ``the target server http://… (MLflow 2.22.1) has no logged
        models``."""
        if self.supports(capability):
            return None
        kind = "server" if self.is_http else "store"
        return (f"the {role} {kind} {self.display_uri} (MLflow {self.mlflow_version}) has no "
                f"{capability.replace('_', ' ')}")

    def request(self, method: str, path: str, **kwargs):
        """One HTTP request to the server, with this endpoint's credentials and no retries;
        a transport error is a one-line error."""
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        creds = get_default_host_creds(self.uri)
        if self.token:
            creds.token = self.token
        try:
            return http_request(creds, path, method, max_retries=0, timeout=15, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any transport error means "unreachable"
            raise EximError(
                f"cannot reach tracking server {self.display_uri}: {redact(str(exc))}"
            ) from None


def _rebuilt(uri: str, token: str | None, retry: RetryPolicy,
             database_uri: str | None = None) -> Endpoint:
    """An unpickled endpoint: ``uri`` holds a username and password already."""
    return Endpoint(uri, Credentials(token=token) if token else None, retry, database_uri)


def _no_such_route(response) -> bool:
    """Whether a 404 comes from the server's router (no such endpoint: an HTML page, or
    MLflow's ENDPOINT_NOT_FOUND) rather than from a handler that looked and found nothing."""
    if response.status_code != 404:
        return False
    try:
        code = response.json().get("error_code")
    except ValueError:
        return True
    return code in (None, "ENDPOINT_NOT_FOUND")
