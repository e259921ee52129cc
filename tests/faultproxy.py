"""A loopback HTTP proxy in front of a real MLflow server that misbehaves on demand.

Faults are armed for the requests whose path contains a text (``"/runs/create"``, or
``""`` for every request; a text ending in ``$`` must end the path, query apart:
``"/mlflow/logged-models$"`` is the create, not the search), a given number of times:
answer 503 without forwarding, drop the connection before forwarding (the server never
sees the request) or after it (the server did the work; its answer is lost), answer only
after a delay, or drop everything
for a while (an outage), or run a function first (kill the server behind it). A request
the server behind cannot take (it is down) has its connection dropped. With ``token`` it
also plays an authenticating front end: any request without ``Authorization: Bearer
<token>`` gets 401. Every Authorization header it receives is kept in ``authorizations``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from tests.servers import free_port

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length", "host"}


@dataclass
class _Fault:
    path: str
    kind: str  # "503", "drop-before", "drop-after", "delay", "outage", "call"
    times: int
    seconds: float = 0.0
    action: Callable[[], None] | None = None


class FaultProxy:
    def __init__(self, upstream: str, *, token: str | None = None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.token = token
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.authorizations: list[str] = []
        self.seen: list[str] = []  # "METHOD path" of every request, in order
        self.faults: list[_Fault] = []
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def arm(self, path: str, kind: str, times: int = 1, seconds: float = 0.0,
            action: Callable[[], None] | None = None) -> None:
        with self._lock:
            self.faults.append(_Fault(path, kind, times, seconds, action))

    def outage(self, seconds: float) -> None:
        """Drop every connection for ``seconds`` from now."""
        self._down_until = time.monotonic() + seconds

    def fired(self) -> int:
        """How many armed faults are used up."""
        with self._lock:
            return sum(1 for f in self.faults if f.times == 0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (path.partition("?")[0].endswith(fault.path[:-1])
                                        if fault.path.endswith("$") else fault.path in path):
                    fault.times -= 1
                    return fault
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a drop is one request

            def log_message(self, *args):
                pass

            def _drop(self):
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _any(self):
                body = self._body()
                with proxy._lock:
                    proxy.seen.append(f"{self.command} {self.path}")
                    if "Authorization" in self.headers:
                        proxy.authorizations.append(self.headers["Authorization"])
                if time.monotonic() < proxy._down_until:
                    return self._drop()
                if proxy.token and self.headers.get("Authorization") != f"Bearer {proxy.token}":
                    return self._answer(401, b'{"error_code": "UNAUTHENTICATED", '
                                             b'"message": "bearer token required"}')
                fault = proxy._take(self.path)
                if fault and fault.kind == "503":
                    return self._answer(503, b"service unavailable")
                if fault and fault.kind == "drop-before":
                    return self._drop()
                if fault and fault.kind == "outage":
                    proxy.outage(fault.seconds)
                    return self._drop()
                if fault and fault.kind == "delay":
                    time.sleep(fault.seconds)
                if fault and fault.kind == "call":
                    fault.action()
                try:
                    status, headers, content = self._forward(body)
                except OSError:  # the server behind is down
                    return self._drop()
                if fault and fault.kind == "drop-after":
                    return self._drop()
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _forward(self, body: bytes):
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=300)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in _HOP_BY_HOP and k.lower() != "authorization"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.getheaders(), response.read()
                finally:
                    connection.close()

            def _answer(self, status: int, content: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        return Handler
