"""A small OpenHands-compatible HTTP server on 127.0.0.1, for tests and for trying notebooks offline.

It answers like the real OpenHands server (recorded in the project's API notes): the current API **V1** by default,
the old **V0** on request, with Cloud's or a self-hosted server's auth, over real sockets. Each conversation goes
through a :class:`Timeline` the caller chooses (starting, agent working, outcome), a test can force raw status
fields at any time and inject faults (5xx, malformed JSON, slow answers, dropped connections) on the next matching
requests. Standard library only, so it costs nothing to import and runs wherever the package runs.

Layout: :mod:`._http` (sockets, recording, faults, auth), :mod:`._fastapi` (how the real server's framework
answers), :mod:`.v1` and :mod:`.v0` (routes and JSON per API), this module (the public server, timeline, state).
"""

from __future__ import annotations

import html
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import v0, v1
from ._http import AUTH_STYLES, Fault, HttpServer, RecordedRequest, Reply

__all__ = [
    "DEFAULT_TIMELINE", "DEMO_API_KEY", "PLANTED_SESSION_KEY", "Fault", "LocalOpenHandsServer", "RecordedRequest",
    "Timeline",
]

DEMO_API_KEY = "oh-demo-key-local-only"
#: Put in every ``session_api_key`` field: a client must drop it, and its tests can grep for it.
PLANTED_SESSION_KEY = v1.PLANTED_SESSION_KEY
_PAGE_PATH = re.compile(r"/conversations/([^/]+)")


@dataclass(frozen=True)
class Timeline:
    """How every conversation of a server goes, in seconds from its POST.

    ``outcome``: how the agent ends, "finished", "error" or "stuck" (V0: "finished", "error",
    "awaiting_user_input"; "stuck" reads as "error"). ``close_delay`` (V0 only): seconds after the agent ended until
    the status turns STOPPED (``None``: RUNNING for ever, like the real server's hour). ``start_error``: V1, the
    start task ends ERROR with this ``detail`` at the end of ``starting``; V0, the POST answers 500 with this text.
    """

    starting: float = 1.0
    running: float = 3.0
    outcome: str = "finished"
    close_delay: float | None = None
    start_error: str | None = None


DEFAULT_TIMELINE = Timeline()


@dataclass
class Conversation:
    """One conversation the server holds: what was asked, when, and the raw fields a test forced on it."""

    conversation_id: str
    created: float
    timeline: Timeline
    message: str | None  #: the first user message; ``None``: an empty conversation (the agent has nothing to do)
    repository: str | None
    request: dict[str, Any]  #: V1: the start request as the task echoes it; V0: the POST body
    task_id: str = ""  #: V1: the start task's id
    sandbox_id: str = ""
    agent_server_url: str = ""
    fails_in: str | None = None  #: V1: the start phase at whose end the task turns ERROR
    detail: str | None = None  #: V1: the ERROR task's ``detail``
    forced: dict[str, str] = field(default_factory=dict)

    @property
    def ready_at(self) -> float:
        """When starting is over (V1: task READY; V0: status RUNNING)."""
        return self.created + self.timeline.starting


class LocalOpenHandsServer:
    """Start with ``with LocalOpenHandsServer() as server:`` or ``server.start()``; ``server.base_url`` is where.

    ``api``: "v1" (current) or "v0" (1.6.0, which also answers V1 reads). ``auth``: "bearer" (Cloud),
    "session-key" (self-hosted with ``SESSION_API_KEY``) or "none". Past ``max_running`` conversations whose agent
    has not ended, a POST answers 429. ``repositories``: the repositories the key may use (``None``: any).
    """

    def __init__(
        self,
        api_key: str = DEMO_API_KEY,
        *,
        api: str = "v1",
        auth: str = "bearer",
        timeline: Timeline = DEFAULT_TIMELINE,
        max_running: int = 10,
        repositories: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if api not in ("v1", "v0"):
            raise ValueError(f"api must be 'v1' or 'v0', not {api!r}")
        if auth not in AUTH_STYLES:
            raise ValueError(f"auth must be one of {AUTH_STYLES}, not {auth!r}")
        api_class = v1.V1Api if api == "v1" else v0.V0Api
        if timeline.outcome not in api_class.OUTCOMES:
            raise ValueError(f"a {api} timeline ends in one of {api_class.OUTCOMES}, not {timeline.outcome!r}")
        self.api_key, self.api, self.auth, self.timeline = api_key, api, auth, timeline
        self.max_running = max_running
        self.repositories = None if repositories is None else frozenset(repositories)
        self._lock = threading.RLock()  # handler threads and the test's thread share the conversations
        self._conversations: list[Conversation] = []
        self._api: v1.V1Api | v0.V0Api = api_class(self)
        self._httpd = HttpServer((host, port), self._answer, auth=auth, key=api_key)
        self.requests: list[RecordedRequest] = self._httpd.requests
        host, port = self._httpd.socket.getsockname()[:2]
        self._base_url = f"http://{host}:{port}"
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (still known once the server stopped)."""
        return self._base_url

    def start(self) -> LocalOpenHandsServer:
        """Serve in a background thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="openhands-local-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
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
        return f"LocalOpenHandsServer(base_url={self.base_url!r}, api={self.api!r})"

    # ------------------------------------------------------------------ test controls
    def inject(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """Answer the next matching request(s) with a fault; see :class:`Fault` for ``fields``."""
        fault = fault or Fault(**fields)
        self._httpd.inject(fault)
        return fault

    def posts(self) -> list[RecordedRequest]:
        """The POST requests received so far."""
        return [r for r in self.requests if r.method == "POST"]

    def conversation_ids(self) -> list[str]:
        """Ids of the conversations that exist now (V1: once their start task is READY), oldest first."""
        now = time.time()
        with self._lock:
            return [c.conversation_id for c in self._conversations if self._api.exists(c, now)]

    def task_ids(self) -> list[str]:
        """V1: ids of every start task, oldest first; V0: ``[]``."""
        with self._lock:
            return [c.task_id for c in self._conversations if c.task_id]

    def running_count(self) -> int:
        """Conversations whose agent has not ended (starting ones included): what ``max_running`` counts."""
        now = time.time()
        with self._lock:
            return sum(self._api.active(c, now) for c in self._conversations)

    def set_state(self, conversation_id: str, **fields: str) -> None:
        """Force raw status fields from now on, over the timeline.

        V1 takes ``execution_status``, ``sandbox_status``, ``title``; V0 ``status``, ``agent_state``, ``title``.
        """
        unknown = sorted(set(fields) - self._api.FIELDS)
        if unknown:
            raise ValueError(f"{self.api} has no settable field {unknown}; use {sorted(self._api.FIELDS)}")
        with self._lock:
            self._existing(conversation_id).forced.update(fields)

    def state_of(self, conversation_id: str) -> dict[str, str]:
        """The raw status fields now: V1 ``execution_status``, ``sandbox_status``; V0 ``status``, ``agent_state``."""
        with self._lock:
            return self._api.state(self._existing(conversation_id), time.time())

    # ------------------------------------------------------------------ used by the API modules (.v1, .v0)
    def _open(self, **fields: Any) -> Conversation | None:
        """Add a conversation starting now, or ``None`` if ``max_running`` conversations are already running."""
        now = time.time()
        with self._lock:
            if self.running_count() >= self.max_running:
                return None
            conversation = Conversation(uuid.uuid4().hex, now, self.timeline, **fields)
            self._conversations.append(conversation)
            return conversation

    def _snapshot(self) -> tuple[list[Conversation], float]:
        """The conversations (oldest first) and the time to read them at; hold ``_lock`` while rendering them."""
        return list(self._conversations), time.time()

    def _rate_limited(self) -> Reply:
        """The answer to a POST past ``max_running``."""
        error = f"Rate limit exceeded: {self.max_running} conversations running"
        return Reply(429, {"error": error}, {"Retry-After": "30"})

    # ------------------------------------------------------------------ internals
    def _existing(self, conversation_id: str) -> Conversation:
        now = time.time()
        for conversation in self._conversations:
            if conversation.conversation_id == conversation_id and self._api.exists(conversation, now):
                return conversation
        raise KeyError(conversation_id)

    def _answer(self, request: RecordedRequest) -> Reply:
        page = _PAGE_PATH.fullmatch(request.path)
        if request.method == "GET" and page:
            return self._page(page.group(1))
        if request.path.startswith("/api/"):
            return self._api.answer(request)
        return Reply(404, {"detail": "Not Found"})

    def _page(self, conversation_id: str) -> Reply:
        """The page a person opens from the notebook's link: the conversation's fields in a table."""
        with self._lock:
            try:
                info = self._api.page_fields(self._existing(conversation_id), time.time())
            except KeyError:
                return Reply(404, "not found", content_type="text/html; charset=utf-8")
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info.items())
        title = html.escape(str(info["title"]))
        text = f"<!doctype html><title>{title}</title><h1>Local OpenHands</h1><table>{rows}</table>"
        return Reply(200, text, content_type="text/html; charset=utf-8")
