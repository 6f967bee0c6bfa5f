"""The transport half of the local server: real sockets, request recording, injected faults and the auth check.

Kept apart from the API modules (:mod:`.v1`, :mod:`.v0`) so that what OpenHands answers reads without socket code,
and the transport trouble a client must survive (5xx, malformed bodies, slow answers, dropped connections) lives in
one place. Standard library only (a request that asks for a WebSocket is handed to ``upgrade``: see
:mod:`._websocket`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._websocket import wants_upgrade

AUTH_STYLES = ("bearer", "session-key", "none")
#: An endless answer stops by itself after this long, whether or not the client hung up.
ENDLESS_SECONDS = 30.0


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method``/``path_prefix`` this way instead of normally.

    ``body`` is sent as is (bytes/str) or as JSON (anything else); ``drop=True`` closes the connection without an
    answer; ``delay`` sleeps first (longer than the client's timeout makes a timeout). A hostile server:
    ``dribble`` sends the body one byte every that many seconds (each read is quick, the whole is not);
    ``endless`` sends a chunked body that never ends (``body`` repeated, for at most ``ENDLESS_SECONDS``).
    """

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path_prefix: str = "/api/"
    times: int = 1
    delay: float = 0.0
    drop: bool = False
    dribble: float = 0.0
    endless: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (self.method is None or self.method == method) and path.startswith(self.path_prefix)


class RawBody(str):
    """A request body that is not JSON, kept as text; ``error`` is what the JSON parser said."""

    error: str = ""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it: ``headers`` have lower-case names, ``body`` is parsed JSON
    (a :class:`RawBody` string if it was not JSON, the bytes of a multipart body, ``None`` if empty)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    #: ``time.monotonic()`` when it arrived: tests measure how requests are spread over time.
    received: float = field(default_factory=time.monotonic, compare=False)

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header, or ``None``."""
        return self.headers.get("authorization")


@dataclass(frozen=True)
class Reply:
    """An answer: ``body`` goes out as JSON unless ``content_type`` is not JSON (then as text or bytes)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    dribble: float = 0.0  #: seconds between the body's bytes
    endless: bool = False  #: repeat the body as chunks, without end

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.content_type != "application/json" and isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def auth_failure(style: str, key: str, headers: dict[str, str]) -> Reply | None:
    """The 401 a request gets under this auth style, or ``None`` if it may pass.

    Cloud wants ``Authorization: Bearer KEY``; a self-hosted server started with ``SESSION_API_KEY`` wants
    ``X-Session-API-Key: KEY`` (a Bearer header does not count); one started without it takes anything.
    """
    if style == "bearer" and headers.get("authorization") != f"Bearer {key}":
        return Reply(401, {"error": "NoCredentialsError"})
    if style == "session-key" and headers.get("x-session-api-key") != key:
        return Reply(401, {"detail": "Unauthorized"})
    return None


def _fault_reply(fault: Fault) -> Reply:
    body = fault.body if isinstance(fault.body, (bytes, str)) else json.dumps(fault.body)
    return Reply(
        fault.status,
        body.encode() if isinstance(body, str) else body,
        dict(fault.headers),
        dribble=fault.dribble,
        endless=fault.endless,
    )


class HttpServer(ThreadingHTTPServer):
    """The socket server: records every request, applies faults, checks auth on ``/api/``, then asks ``app``.

    A client that hangs up (a timeout test, an interrupted poll) is normal here, not a traceback on stderr.
    :meth:`close_connections` ends the connections already open too (``shutdown`` only stops accepting new ones,
    and a keep-alive client would go on being answered): once it returns, no request is recorded or answered.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        app: Callable[[RecordedRequest], Reply],
        *,
        auth: str,
        key: str,
        upgrade: Callable[[RecordedRequest, socket.socket, list[tuple[str, str]], str], None] | None = None,
        compress: bool = False,
    ):
        super().__init__(address, _Handler)
        self.app, self.auth, self.key = app, auth, key
        #: Gzip every answer whose request accepts it, as a reverse proxy in front of the server does (nginx's
        #: ``gzip on``, a CDN): the real app server sends its JSON as it is.
        self.compress = compress
        #: Runs a WebSocket session (request, its socket, its raw headers, its path with the query) in the request's
        #: thread; ``None``: an upgrade request is answered as any other.
        self.upgrade = upgrade
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._closed = False
        self._answering = 0  # requests between the check of _closed and the end of their answer's making
        self._state = threading.Condition()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._state:
            if self._closed:  # accepted in the moment the server closed
                self.shutdown_request(request)
                return
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._state:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Answer nothing more: wait (at most ``timeout``) for answers being made, then end every open connection
        (its thread sees the end and exits; an answer being written fails on the client's side)."""
        with self._state:
            self._closed = True
            self._state.wait_for(lambda: self._answering == 0, timeout)
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # (already gone)
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def inject(self, fault: Fault) -> None:
        """Queue a fault for the next matching requests."""
        with self._faults_lock:
            self._faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first queued fault for this request, counted down (and removed once used up)."""
        with self._faults_lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def answer(self, request: RecordedRequest) -> Reply | None:
        """What to send for a request (``None``: drop the connection, as for every request once the server closed)."""
        if not self._start_answering():
            return None
        try:
            self.requests.append(request)
            fault = self.take_fault(request.method, request.path)
            if fault is None:
                if request.path.startswith("/api/"):
                    refused = auth_failure(self.auth, self.key, request.headers)
                    if refused is not None:
                        return refused
                return self.app(request)
        finally:
            self._done_answering()
        time.sleep(fault.delay)  # not while counted as answering: a long delay must not hold up closing
        return None if fault.drop or self._closed else _fault_reply(fault)

    def answer_upgrade(self, request: RecordedRequest) -> Reply | bool:
        """For a request that asks for a WebSocket: a fault's answer (a ``Reply``), ``False`` to drop the connection,
        or ``True`` to go on with the upgrade. Recorded like any request; the session is not counted as an answer
        being made (it lasts), :meth:`close_connections` ends it by ending its socket."""
        if not self._start_answering():
            return False
        try:
            self.requests.append(request)
            fault = self.take_fault(request.method, request.path)
        finally:
            self._done_answering()
        if fault is None:
            return True
        time.sleep(fault.delay)
        return False if fault.drop or self._closed else _fault_reply(fault)

    def _start_answering(self) -> bool:
        with self._state:
            if self._closed:
                return False
            self._answering += 1
            return True

    def _done_answering(self) -> None:
        with self._state:
            self._answering -= 1
            self._state.notify_all()


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "LocalOpenHands/2"
    # Headers and body go out as two writes; with Nagle on, each keep-alive answer waits ~40 ms for an ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and notebooks read stdout
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        if (self.headers.get("Content-Type") or "").startswith("multipart/"):
            return raw  # (a file upload: its bytes as they came)
        try:
            return json.loads(raw)
        except ValueError as error:
            text = RawBody(raw.decode(errors="replace"))
            text.error = getattr(error, "msg", str(error))
            return text

    def _handle(self) -> None:
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        query = parse_qs(url.query, keep_blank_values=True)
        request = RecordedRequest(self.command, url.path, query, headers, self._body())
        if self.server.upgrade is not None and wants_upgrade(self.command, headers):
            verdict = self.server.answer_upgrade(request)
            if verdict is True:
                self.close_connection = True
                self.server.upgrade(request, self.connection, list(self.headers.items()), self.path)
                return
            reply = verdict if isinstance(verdict, Reply) else None
        else:
            reply = self.server.answer(request)
        if reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):  # (already ended, if the server is closing)
                self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection end, no answer
            return
        data = reply.encode()
        zipped = (
            self.server.compress
            and "gzip" in headers.get("accept-encoding", "")
            and not (reply.endless or reply.dribble or "content-encoding" in {n.lower() for n in reply.headers})
        )
        if zipped:
            data = gzip.compress(data, mtime=0)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if zipped:
            self.send_header("Content-Encoding", "gzip")
        if reply.endless:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.endless:
            self._send_endless(data or b" ")
        elif reply.dribble:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                time.sleep(reply.dribble)
        else:
            self.wfile.write(data)

    def _send_endless(self, chunk: bytes) -> None:
        """Chunks until the client hangs up, or ``ENDLESS_SECONDS`` pass (a test server must stop by itself)."""
        self.close_connection = True
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        deadline = time.monotonic() + ENDLESS_SECONDS
        while time.monotonic() < deadline:
            self.wfile.write(frame)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
