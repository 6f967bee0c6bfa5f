"""A small OpenHands-compatible HTTP server on 127.0.0.1, for tests and for trying notebooks offline.

It speaks the same contract as the Cloud (Bearer key, JSON shapes, 401/404/422/429) over real sockets, moves each
conversation through the statuses of a schedule the caller chooses, and lets a test inject faults (5xx, malformed
JSON, slow answers, dropped connections) on the next matching requests. Standard library only, so it costs nothing
to import and runs wherever the package runs.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_SCHEDULE", "DEMO_API_KEY", "Fault", "LocalOpenHandsServer", "RecordedRequest"]

DEMO_API_KEY = "oh-demo-key-local-only"
#: (status, seconds spent in it); the last entry's duration is ignored: it is where the conversation stays.
DEFAULT_SCHEDULE: tuple[tuple[str, float | None], ...] = (("STARTING", 1.0), ("RUNNING", 3.0), ("STOPPED", None))
_ACTIVE = ("STARTING", "RUNNING")
_ALLOWED_FIELDS = {  # OpenHands' InitSessionRequest has extra='forbid': anything else is a 422
    "initial_user_msg", "repository", "git_provider", "selected_branch", "image_urls", "replay_json",
    "suggested_task", "create_microagent", "conversation_instructions", "mcp_config",
}
_CONVERSATION_PATH = re.compile(r"^/api/conversations/([^/]+)$")
_PAGE_PATH = re.compile(r"^/conversations/([^/]+)$")


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method``/``path_prefix`` this way instead of normally.

    ``body`` is sent as is (bytes/str) or as JSON (anything else); ``drop=True`` closes the connection without an
    answer; ``delay`` sleeps first (longer than the client's timeout makes a timeout).
    """

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    method: str | None = None
    path_prefix: str = "/api/"
    times: int = 1
    delay: float = 0.0
    drop: bool = False

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path.startswith(self.path_prefix)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class _Conversation:
    conversation_id: str
    message: str
    repository: str | None
    created: float
    schedule: tuple[tuple[str, float | None], ...]
    forced_status: str | None = None
    forced_at: float | None = None

    def status_at(self, now: float) -> tuple[str, float]:
        """The status at ``now`` and when it began (drives ``last_updated_at``)."""
        if self.forced_status is not None:
            return self.forced_status, self.forced_at or self.created
        began = self.created
        for status, seconds in self.schedule:
            if seconds is None or now < began + seconds:
                return status, began
            began += seconds
        return self.schedule[-1][0], began

    def as_json(self, now: float) -> dict[str, Any]:
        status, since = self.status_at(now)
        title = f"Conversation {self.conversation_id[:5]}" if status == "STARTING" else (self.message.strip().splitlines() or ["(empty message)"])[0][:60]
        return {
            "conversation_id": self.conversation_id,
            "title": title,
            "created_at": _iso(self.created),
            "last_updated_at": _iso(since),
            "status": status,
            "runtime_status": "STATUS$READY" if status == "RUNNING" else None,
            "selected_repository": self.repository,
            "selected_branch": None,
            "git_provider": "github" if self.repository else None,
            "trigger": "openhands_api",
            "num_connections": 0,
            "url": None,
            "session_api_key": None,
            "pr_number": [],
            "conversation_version": "V0",
        }


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client that hangs up (a timeout test, an interrupted poll) is normal here, not a traceback on stderr."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat().replace("+00:00", "Z")


class LocalOpenHandsServer:
    """Start with ``with LocalOpenHandsServer() as server:`` or ``server.start()``; ``server.base_url`` is where."""

    def __init__(
        self,
        api_key: str = DEMO_API_KEY,
        *,
        schedule: Sequence[tuple[str, float | None]] = DEFAULT_SCHEDULE,
        max_running: int = 10,
        repositories: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.schedule = tuple(schedule)
        self.max_running = max_running
        self.repositories = None if repositories is None else set(repositories)
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._conversations: dict[str, _Conversation] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietHTTPServer((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._httpd.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalOpenHandsServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="openhands-local-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LocalOpenHandsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The two environment variables that point openhands-magics at this server."""
        return {"OPENHANDS_BASE_URL": self.base_url, "OPENHANDS_API_KEY": self.api_key}

    def __repr__(self) -> str:
        return f"LocalOpenHandsServer(base_url={self.base_url!r})"

    # ------------------------------------------------------------------ test controls
    def inject(self, fault: Fault | None = None, **fields: Any) -> Fault:
        fault = fault or Fault(**fields)
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_status(self, conversation_id: str, status: str) -> None:
        with self._lock:
            conversation = self._conversations[conversation_id]
            conversation.forced_status, conversation.forced_at = status, time.time()

    def status_of(self, conversation_id: str) -> str:
        with self._lock:
            return self._conversations[conversation_id].status_at(time.time())[0]

    def conversation_ids(self) -> list[str]:
        with self._lock:
            return list(self._conversations)

    def posts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    # ------------------------------------------------------------------ request handling (called by the handler)
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _authorized(self, header: str | None) -> bool:
        return header == f"Bearer {self.api_key}"

    def _create(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or not isinstance(body.get("initial_user_msg"), str):
            return 422, {"detail": [{"loc": ["body", "initial_user_msg"], "msg": "Field required"}]}, {}
        extra = sorted(set(body) - _ALLOWED_FIELDS)
        if extra:
            return 422, {"detail": [{"loc": ["body", name], "msg": "Extra inputs are not permitted"} for name in extra]}, {}
        repository = body.get("repository")
        if repository is not None and (
            not isinstance(repository, str) or (self.repositories is not None and repository not in self.repositories)
        ):
            return 401, f"Git provider authentication failed: no access to repository {repository}", {}
        now = time.time()
        with self._lock:
            running = sum(c.status_at(now)[0] in _ACTIVE for c in self._conversations.values())
            if running >= self.max_running:
                return 429, {"error": f"Rate limit exceeded: {self.max_running} conversations running"}, {"Retry-After": "30"}
            conversation = _Conversation(uuid.uuid4().hex, body["initial_user_msg"], repository, now, self.schedule)
            self._conversations[conversation.conversation_id] = conversation
        status = conversation.status_at(now)[0]
        return 200, {"status": "ok", "conversation_id": conversation.conversation_id, "conversation_status": status, "message": None}, {}

    def _read(self, conversation_id: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            if conversation is None:
                return 404, {"detail": "Not Found"}, {}
            return 200, conversation.as_json(time.time()), {}

    def _page(self, conversation_id: str) -> str | None:
        with self._lock:
            conversation = self._conversations.get(conversation_id)
            info = conversation.as_json(time.time()) if conversation else None
        if info is None:
            return None
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info.items())
        return f"<!doctype html><title>{html.escape(info['title'])}</title><h1>Local OpenHands</h1><table>{rows}</table>"


def _make_handler(server: LocalOpenHandsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "LocalOpenHands/1"
        # Headers and body go out as two writes; with Nagle on, each keep-alive answer waits ~40 ms for an ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and notebooks read stdout
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) and content_type != "application/json" else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode(errors="replace")

        def _handle(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body() if method == "POST" else None
            server.requests.append(RecordedRequest(method, path, self.headers.get("Authorization"), body))
            fault = server._take_fault(method, path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the connection end, no answer
                    return
                raw = fault.body if isinstance(fault.body, (bytes, str)) else json.dumps(fault.body).encode()
                self._send(fault.status, raw if isinstance(raw, bytes) else raw.encode(), fault.headers)
                return
            page = _PAGE_PATH.match(path)
            if method == "GET" and page:
                text = server._page(page.group(1))
                self._send(200 if text else 404, text or "not found", content_type="text/html; charset=utf-8")
                return
            if not path.startswith("/api/"):
                self._send(404, {"detail": "Not Found"})
                return
            if not server._authorized(self.headers.get("Authorization")):
                self._send(401, {"error": "NoCredentialsError"})
                return
            match = _CONVERSATION_PATH.match(path)
            if method == "POST" and path == "/api/conversations":
                self._send(*server._create(body))
            elif method == "GET" and match:
                self._send(*server._read(match.group(1)))
            else:
                self._send(404 if method == "GET" else 405, {"detail": "Not Found" if method == "GET" else "Method Not Allowed"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler
