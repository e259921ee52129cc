"""One side of a migration: a tracking (and registry) URI with its own client and credentials.

An :class:`Endpoint` never touches process-wide MLflow state (no ``set_tracking_uri``,
no environment writes), so a source and a target with different credentials live side
by side in one process and are safe to use from worker threads.

How credentials reach MLflow: a username and password go into the URI handed to
``MlflowClient`` as ``user:password@``. MLflow derives every URL it calls from that URI
(tracking and registry REST calls, and ``mlflow-artifacts:`` uploads, downloads and
listings), and ``requests`` turns URL credentials into basic auth on each request,
replacing any ``Authorization`` header built from ``MLFLOW_TRACKING_*``. MLflow caches its
stores by URI, so endpoints with different credentials get different stores. The URI is an
immutable string: nothing is shared between threads but MLflow's own caches.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import quote, urlsplit, urlunsplit

import mlflow
from mlflow.tracking import MlflowClient

from mlflow_exim.errors import EximError

# Greedy up to the last "@" before the path, so a password holding "@" is removed whole.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]+@")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def redact(text: str) -> str:
    """Remove ``user:password@`` from every URL inside ``text``."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def display_uri(uri: str) -> str:
    """The URI without credentials, safe for logs, reports and bundles."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


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
        raise EximError(
            f"{shown}: a bearer token cannot be given per endpoint: MLflow's artifact client "
            "takes a token only from the process-wide MLFLOW_TRACKING_TOKEN; use a username "
            "and password")
    userinfo = f"{_quote_userinfo(credentials.username)}:{_quote_userinfo(credentials.password)}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def _quote_userinfo(value: str) -> str:
    """Percent-quoted so that ``requests`` sends ``value`` as UTF-8, as MLflow sends
    MLFLOW_TRACKING_PASSWORD: ``requests`` encodes URL credentials as Latin-1, so the
    UTF-8 bytes travel as the Latin-1 characters that stand for them."""
    return quote(value.encode("utf-8").decode("latin-1"), safe="")


class Endpoint:
    """A tracking server (``http(s)://…``) or an embedded store (``sqlite:///file.db``).

    ``uri`` is what MLflow is given and may hold credentials: never show it; show
    ``display_uri``.
    """

    def __init__(self, uri: str | None, credentials: Credentials | None = None):
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise EximError("no tracking URI: give `tracking_uri` or set MLFLOW_TRACKING_URI")
        self.display_uri = display_uri(uri)
        self.uri = _with_credentials(uri, credentials) if credentials else uri
        try:
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            _ = self.store  # opening an embedded store can fail (e.g. a file store): fail here
        except Exception as exc:  # noqa: BLE001 - any failure to open is the user's to fix
            raise EximError(f"cannot open tracking store {self.display_uri}: "
                            f"{redact(' '.join(str(exc).split()))}") from None

    @classmethod
    def connect(cls, uri: str | Endpoint | None,
                credentials: Credentials | None = None) -> Endpoint:
        """An endpoint whose server has answered, so that an unreachable server or refused
        credentials fail in one line before any work starts. Every library function takes
        an endpoint where it takes a URI, which is how credentials reach it."""
        if isinstance(uri, Endpoint) and credentials is not None:
            raise EximError(f"{uri.display_uri}: an endpoint already has its credentials")
        endpoint = uri if isinstance(uri, Endpoint) else cls(uri, credentials)
        _ = endpoint.server_info
        return endpoint

    def __repr__(self) -> str:
        return f"Endpoint({self.display_uri!r})"

    @property
    def is_http(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def store(self):
        """The tracking store. Used where the client adds process-wide state (active model,
        user from the OS) or reads whole histories into memory."""
        return self.client._tracking_client.store

    @cached_property
    def server_info(self) -> dict:
        """What the server says about itself: its MLflow version and, where it tells,
        its store type and capabilities. Fails with a one-line error when it is unreachable."""
        if not self.is_http:
            return {"mlflow_version": mlflow.__version__, "store": "embedded"}
        from mlflow.utils.rest_utils import http_request

        creds = self.store.get_host_creds()
        try:
            response = http_request(creds, "/version", "GET", max_retries=0, timeout=15)
        except Exception as exc:  # noqa: BLE001 - any transport error means "unreachable"
            raise EximError(
                f"cannot reach tracking server {self.display_uri}: {redact(str(exc))}"
            ) from None
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
        info = {"mlflow_version": response.text.strip()}
        try:
            extra = http_request(
                creds, "/api/3.0/mlflow/server-info", "GET", max_retries=0, timeout=15
            )
            if extra.status_code == 200:
                info["server_info"] = extra.json()
        except Exception:  # noqa: BLE001 - older servers have no server-info; that is fine
            pass
        return info
