"""One side of a migration: a tracking (and registry) URI with its own client.

An :class:`Endpoint` never touches process-wide MLflow state (no ``set_tracking_uri``,
no environment writes), so a source and a target live side by side in one process
and are safe to use from worker threads.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.tracking import MlflowClient

from mlflow_exim.errors import EximError

# Greedy up to the last "@" before the path, so a password holding "@" is removed whole.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s]+@")


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


class Endpoint:
    """A tracking server (``http(s)://…``) or an embedded store (``sqlite:///file.db``)."""

    def __init__(self, uri: str | None):
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise EximError("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
        self.uri = uri
        self.display_uri = display_uri(uri)
        try:
            self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            _ = self.store  # opening an embedded store can fail (e.g. a file store): fail here
        except Exception as exc:  # noqa: BLE001 - any failure to open is the user's to fix
            raise EximError(f"cannot open tracking store {self.display_uri}: "
                            f"{redact(' '.join(str(exc).split()))}") from None

    @classmethod
    def connect(cls, uri: str | None) -> Endpoint:
        """An endpoint whose server has answered, so that an unreachable server or refused
        credentials fail in one line before any work starts."""
        endpoint = cls(uri)
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
                f"tracking server {self.display_uri} refused the credentials "
                f"(HTTP {response.status_code})"
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
