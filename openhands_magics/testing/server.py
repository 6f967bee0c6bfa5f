"""A small OpenHands-compatible HTTP server on 127.0.0.1, for tests and for trying notebooks offline.

It answers like the real OpenHands server (recorded in the project's API notes): the current API **V1** by default,
the old **V0** on request, with Cloud's or a self-hosted server's auth, over real sockets. Each conversation goes
through a :class:`Timeline` the caller chooses (starting, agent working, outcome, and what the agent leaves: its
answer, git changes, pull requests, cost), a test can force raw status fields at any time, change one conversation's
results (:meth:`LocalOpenHandsServer.set_result`) and inject faults (5xx, malformed JSON, slow answers, dropped
connections) on the next matching requests. Its time is a clock the caller may give (``clock=``, default
``time.monotonic``): with a :class:`ManualClock` a test moves every timeline itself (``clock.advance(5)``) instead of
sleeping on the wall clock. V1 also answers what a client does after the start: follow-up messages,
pending messages, pausing and resuming the sandbox, deleting, the agent's events, its git changes and diffs; and it
has an agent server (``agent_url``, where ``conversation_url`` points) whose WebSocket streams each conversation's
events live, in the shapes recorded from the real 1.11.0 (``recorded/``), with its REST (interrupt, run,
confirmation, final response). Standard library only, but for that WebSocket (the ``websockets`` package, imported
when a socket opens), so it costs nothing to import and runs wherever the package runs.

Layout: :mod:`._http` (sockets, recording, faults, auth), :mod:`._fastapi` (how the real server's framework
answers), :mod:`.v1` and :mod:`.v0` (routes and JSON per API), :mod:`._agent` (what a V1 conversation's agent does,
event by event: the one source of its status and events), :mod:`.agent` (the agent server's socket and routes),
:mod:`._websocket` (the WebSocket over the HTTP server's own sockets), this module (the public server, timeline,
state).
"""

from __future__ import annotations

import html
import re
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _agent, v0, v1
from ._device import DeviceFlow
from ._http import AUTH_STYLES, Fault, HttpServer, RecordedRequest, Reply
from .agent import AgentServer

__all__ = [
    "DEFAULT_TIMELINE",
    "DEMO_API_KEY",
    "PLANTED_SESSION_KEY",
    "Fault",
    "LocalOpenHandsServer",
    "ManualClock",
    "RecordedRequest",
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

    What the agent leaves (V1 only; :meth:`LocalOpenHandsServer.set_result` changes it for one conversation):
    ``answer``, the text of its finish; ``changes``, git changes as (status, path) with status ADDED, UPDATED, DELETED
    or MOVED and a path relative to ``/workspace/project``; ``pr_numbers``; ``cost`` and tokens, the conversation's
    ``metrics``. Changes, pull requests and metrics show once the agent ended a run. ``keeps_events=False``: a
    self-hosted server whose sandboxes are plain processes, which keeps no events and whose metrics stay zero.

    What the agent does on its way (V1; the agent server's WebSocket streams it, see :mod:`._agent`): ``steps``,
    what it runs during ``running``, evenly spread (step *k* of *n* at *k*/(*n*+1) of it): a shell command
    (``"pytest -q"``, a ``TerminalAction``), ``"edit:PATH"`` (a ``FileEditorAction`` on ``PATH``, relative to the
    workspace) or ``"error:TEXT"`` (an ``AgentErrorEvent``, after which the agent goes on). ``confirm``: the agent
    waits for a confirmation (``respond_to_confirmation``) before each step's action runs. ``title_delay``: the
    title arrives that long after the run ended (the real server asks the LLM for it after the finish).
    ``search_batch``/``search_flush``: a timeline with steps reaches the app server's ``events/search`` in batches
    of that many events, or that many seconds after the first one not sent yet (the real quirk: 5 and 30 s); a
    timeline without steps answers ``events/search`` at once, with the messages, statuses and finish only.
    """

    starting: float = 1.0
    running: float = 3.0
    outcome: str = "finished"
    close_delay: float | None = None
    start_error: str | None = None
    answer: str = "Done."
    changes: tuple[tuple[str, str], ...] = ()
    pr_numbers: tuple[int, ...] = ()
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    keeps_events: bool = True
    steps: tuple[str, ...] = ()
    confirm: bool = False
    title_delay: float = 0.0
    search_batch: int = 5
    search_flush: float = 30.0


DEFAULT_TIMELINE = Timeline()


class ManualClock:
    """A clock that moves only when told: ``LocalOpenHandsServer(clock=clock)``, then ``clock.advance(seconds)``
    walks every conversation's timeline forward at once (a 10-minute run ends in no time, and nothing moves while
    the test looks). Safe to read from the server's threads while the test advances it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._listeners: list[weakref.WeakMethod[Callable[[], None]]] = []

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move on ``seconds`` (not backwards: a timeline never rewinds); the new time. The servers on this clock
        hear of it at once (their open WebSockets send what became due)."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward, not by {seconds!r}")
        with self._lock:
            self._now += seconds
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            callback = listener()
            if callback is not None:
                callback()
        return now

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a bound method, held weakly) after each :meth:`advance`."""
        with self._lock:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            self._listeners.append(weakref.WeakMethod(callback))

    def __repr__(self) -> str:
        return f"ManualClock({self():g})"


@dataclass(slots=True)  # slots: a server may hold thousands (the client's memory tests start them by the thousand)
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
    #: V1: the workspace's directory on this machine (made when first written; see :mod:`._workspace`)
    workspace: str = ""
    fails_in: str | None = None  #: V1: the start phase at whose end the task turns ERROR
    detail: str | None = None  #: V1: the ERROR task's ``detail``
    forced: dict[str, str] = field(default_factory=dict)
    #: V1: follow-up messages as (when, text, whether the agent runs on it), oldest first
    follow_ups: list[tuple[float, str, bool]] = field(default_factory=list)
    paused: bool = False  #: V1: the sandbox was paused (and not resumed since)
    deleted: bool = False  #: V1: deleted; reads answer as for an unknown id
    #: V1: ``public`` as the conversation has it: 1.11.0 takes it in the start request without applying it, so only
    #: a PATCH (the web app's share switch) sets it.
    public: bool | None = None
    public_at: float = float("-inf")  #: V1: when a PATCH set ``public`` (the next status change forgets it)
    #: V1: the title a PATCH gave, and when (the server's own naming, after the first turn, replaces an earlier one)
    renamed: tuple[str, float] | None = None
    results: dict[str, Any] = field(default_factory=dict)  #: V1: ``set_result`` overrides of the timeline's results
    #: V1: messages queued (``pending-messages``) for delivery at READY, as (when, text)
    pending: list[tuple[float, str]] = field(default_factory=list)
    agent: _agent.Agent | None = None  #: V1: what its agent did so far (made on first use; see :mod:`._agent`)

    @property
    def ready_at(self) -> float:
        """When starting is over (V1: task READY; V0: status RUNNING)."""
        return self.created + self.timeline.starting


#: Cloud's concurrency limits (OpenHands PR 14168): conversations running at once for a personal organisation, and
#: the default for a team one. ``LocalOpenHandsServer(max_running=PERSONAL_LIMIT)`` answers as a personal account.
PERSONAL_LIMIT, TEAM_LIMIT = 3, 10


class LocalOpenHandsServer:
    """Start with ``with LocalOpenHandsServer() as server:`` or ``server.start()``; ``server.base_url`` is where.

    ``api``: "v1" (current) or "v0" (1.6.0, which also answers V1 reads). ``auth``: "bearer" (Cloud),
    "session-key" (self-hosted with ``SESSION_API_KEY``) or "none". Past ``max_running`` conversations whose agent
    has not ended, a POST answers Cloud's 429 (``CONCURRENCY_LIMIT_REACHED``; Cloud's limits are
    :data:`PERSONAL_LIMIT` and :data:`TEAM_LIMIT`). ``max_sandboxes`` (V1): a self-hosted server's sandbox limit
    (Docker's ``max_num_sandboxes``, 5 by default there; ``None``: none): a start of a new sandbox, or a resume, first
    pauses the oldest running sandboxes until it fits, whatever their agents are doing (the real
    ``pause_old_sandboxes``), and answers as usual. ``repositories``: the repositories the key may use (``None``: any).
    ``clock``: where its time comes from, in seconds (default ``time.monotonic``; a :class:`ManualClock` in tests);
    time stamps it sends are wall-clock times that move with it.

    V1 has an agent server too (:mod:`.agent`), on its own port: ``agent_url``, where every ``conversation_url``
    points (key ``PLANTED_SESSION_KEY``): its WebSocket streams each conversation's events. ``max_subscribers``:
    sockets one conversation takes (the real 50; one more closes with 1013). ``socket_auth_timeout``: how long a
    socket opened without a key waits for its first-frame auth (the real 10 s). See :meth:`block_websockets`,
    :meth:`drop_sockets`, :meth:`sockets` and :meth:`events`. ``device_flow``: Cloud's device-code login
    (``server.device.confirm()`` plays the user confirming the code; see :mod:`._device`). ``compress``: its answers
    are gzipped for a client that accepts it, as a reverse proxy in front of the server (nginx, a CDN) sends them.
    """

    def __init__(
        self,
        api_key: str = DEMO_API_KEY,
        *,
        api: str = "v1",
        auth: str = "bearer",
        timeline: Timeline = DEFAULT_TIMELINE,
        max_running: int = 10,
        max_sandboxes: int | None = None,
        repositories: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_subscribers: int = 50,
        socket_auth_timeout: float = 10.0,
        device_flow: bool = False,
        compress: bool = False,
    ) -> None:
        if api not in ("v1", "v0"):
            raise ValueError(f"api must be 'v1' or 'v0', not {api!r}")
        if auth not in AUTH_STYLES:
            raise ValueError(f"auth must be one of {AUTH_STYLES}, not {auth!r}")
        api_class = v1.V1Api if api == "v1" else v0.V0Api
        if timeline.outcome not in api_class.OUTCOMES:
            raise ValueError(f"a {api} timeline ends in one of {api_class.OUTCOMES}, not {timeline.outcome!r}")
        _results(
            answer=timeline.answer,
            changes=timeline.changes,
            pr_numbers=timeline.pr_numbers,
            cost=timeline.cost,
            prompt_tokens=timeline.prompt_tokens,
            completion_tokens=timeline.completion_tokens,
            keeps_events=timeline.keeps_events,
        )
        _check_agent_fields(timeline)
        if not callable(clock):
            raise ValueError(f"clock must be a function giving seconds (time.monotonic, a ManualClock), not {clock!r}")
        self.clock = clock
        #: What to add to the clock's reading to get the epoch seconds the JSON's time stamps are made of.
        self._epoch = time.time() - clock()
        self.api_key, self.api, self.auth, self.timeline = api_key, api, auth, timeline
        self.max_running = max_running
        if max_sandboxes is not None and (api != "v1" or not isinstance(max_sandboxes, int) or max_sandboxes < 1):
            raise ValueError(f"max_sandboxes is a V1 server's limit, a number above 0, not {max_sandboxes!r}")
        self.max_sandboxes = max_sandboxes
        self.repositories = None if repositories is None else frozenset(repositories)
        #: Whether the account has a git provider token (Cloud's users do; the real self-hosted server has none):
        #: without one the repository and branch lists answer 403 (:mod:`._lists`).
        self.git_token = True
        self._lock = threading.RLock()  # handler threads and the test's thread share the conversations
        self._conversations: list[Conversation] = []
        self._agent_server: AgentServer | None = None
        if api == "v1":
            self._agent_server = AgentServer(
                self, host, max_subscribers=max_subscribers, socket_auth_timeout=socket_auth_timeout
            )
        self._api: v1.V1Api | v0.V0Api = api_class(self)
        self._httpd = HttpServer((host, port), self._answer, auth=auth, key=api_key, compress=compress)
        self.requests: list[RecordedRequest] = self._httpd.requests
        host, port = self._httpd.socket.getsockname()[:2]
        self._base_url = f"http://{host}:{port}"
        #: ``device_flow=True``: Cloud's device-code login (:mod:`._device`), as OpenHands' CLI uses it.
        self.device: DeviceFlow | None = DeviceFlow(self._base_url, api_key) if device_flow else None
        self._thread: threading.Thread | None = None
        if isinstance(clock, ManualClock):
            clock.on_advance(self._clock_moved)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (still known once the server stopped)."""
        return self._base_url

    @property
    def agent_url(self) -> str:
        """V1: the agent server, ``http://127.0.0.1:PORT`` (the host of every ``conversation_url``)."""
        if self._agent_server is None:
            raise ValueError("a V0 server has no agent server")
        return self._agent_server.url

    def start(self) -> LocalOpenHandsServer:
        """Serve in a background thread (idempotent); the agent server too."""
        if self._agent_server is not None:
            self._agent_server.start()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="openhands-local-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: no new connection, and the open ones (a keep-alive client's) are closed too, so once this
        returns no request is answered or acted on."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._agent_server is not None:
            self._agent_server.stop()

    def __enter__(self) -> LocalOpenHandsServer:  # noqa: PYI034 (typing.Self is Python 3.11+)
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """The two environment variables that point openhands-magics at this server."""
        return {"OPENHANDS_BASE_URL": self.base_url, "OPENHANDS_API_KEY": self.api_key}

    def __repr__(self) -> str:
        return f"LocalOpenHandsServer(base_url={self.base_url!r}, api={self.api!r})"

    def now(self) -> float:
        """The server's time: epoch seconds, moving as its clock does."""
        return self._epoch + self.clock()

    # ------------------------------------------------------------------ test controls
    def inject(self, fault: Fault | None = None, **fields: Any) -> Fault:
        """Answer the next matching request(s) with a fault; see :class:`Fault` for ``fields``."""
        fault = fault or Fault(**fields)
        self._httpd.inject(fault)
        return fault

    def block_websockets(self, blocked: bool = True) -> None:
        """V1: refuse WebSockets from now on (``blocked=False``: take them again), like a proxy that passes none:
        a handshake gets a plain ``404``; the sockets already open stay (see :meth:`drop_sockets`)."""
        self._agent()._agent_server_blocked(blocked)

    def drop_sockets(self) -> int:
        """V1: cut every open WebSocket at once, without a closing frame (a network cut: reconnect tests); how
        many were open."""
        return self._agent().drop_sockets()

    def sockets(self, conversation_id: str) -> int:
        """V1: how many WebSockets are open on a conversation now (a test waits for its client to be in)."""
        return self._agent().sockets(conversation_id)

    def events(self, conversation_id: str) -> list[dict[str, Any]]:
        """V1: the conversation's stored events now, as a ``resend_mode=all`` replay sends them (the agent server's
        view: no batching lag), for assertions."""
        with self._lock:
            conversation = self._existing(conversation_id)
            now = self.now()
            return [_agent.render(conversation, e, now) for e in _agent.stored(conversation, now)]

    def posts(self) -> list[RecordedRequest]:
        """The POST requests to the API received so far (not the device login's ``/oauth/`` ones)."""
        return [r for r in self.requests if r.method == "POST" and not r.path.startswith("/oauth/")]

    def agent_requests(self) -> list[RecordedRequest]:
        """V1: the requests its agent server received so far (the workspace's routes, the controls)."""
        return list(self._agent_server.requests) if self._agent_server is not None else []

    def conversation_ids(self) -> list[str]:
        """Ids of the conversations that exist now (V1: once their start task is READY), oldest first."""
        now = self.now()
        with self._lock:
            return [c.conversation_id for c in self._conversations if self._api.exists(c, now)]

    def task_ids(self) -> list[str]:
        """V1: ids of every start task, oldest first; V0: ``[]``."""
        with self._lock:
            return [c.task_id for c in self._conversations if c.task_id]

    def running_count(self) -> int:
        """Conversations whose agent has not ended (starting ones included): what ``max_running`` counts."""
        now = self.now()
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

    def state_of(self, conversation_id: str) -> dict[str, str | None]:
        """The raw status fields now: V1 ``execution_status`` (``None`` while the sandbox is not RUNNING),
        ``sandbox_status``; V0 ``status``, ``agent_state``."""
        with self._lock:
            fields: dict[str, str | None] = {**self._api.state(self._existing(conversation_id), self.now())}
            return fields

    def set_result(
        self,
        conversation_id: str,
        *,
        answer: str | None = None,
        changes: Iterable[tuple[str, str]] | None = None,
        pr_numbers: Iterable[int] | None = None,
        cost: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        diffs: Mapping[str, tuple[str | None, str | None]] | None = None,
    ) -> None:
        """V1: what this conversation's agent leaves, over the timeline's (only the given ones change).

        ``diffs`` maps a changed path to (original, modified); a changed path without one gets "old line\\n" /
        "new line\\n" (``None`` for the original of an ADDED file and the modified of a DELETED one). A new
        ``answer`` is for runs that end from now on: runs that already ended keep theirs.
        """
        if self.api != "v1":
            raise ValueError("set_result is for V1 conversations: V0 has no git changes, pull requests or metrics")
        given = {
            "answer": answer,
            "changes": changes,
            "pr_numbers": pr_numbers,
            "cost": cost,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "diffs": diffs,
        }
        fields = _results(**{name: value for name, value in given.items() if value is not None})
        with self._lock:
            conversation = self._existing(conversation_id)
            if "answer" in fields:
                v1.keep_answers(conversation, self.now())
            conversation.results.update(fields)

    # ------------------------------------------------------------------ used by the API modules (.v1, .v0)
    def _open(self, **fields: Any) -> Conversation | None:
        """Add a conversation starting now, or ``None`` if ``max_running`` conversations are already running."""
        now = self.now()
        with self._lock:
            if self.running_count() >= self.max_running:
                return None
            chosen = fields.pop("conversation_id", None)  # (a client-chosen id, checked by the API module)
            conversation = Conversation(chosen or uuid.uuid4().hex, now, self.timeline, **fields)
            self._conversations.append(conversation)
            return conversation

    def _workspace_of(self, sandbox_id: str) -> str:
        """V1: the directory of a new sandbox's workspace (under the agent server's: see :mod:`._workspace`)."""
        if self._agent_server is None:
            return ""
        folder = os.path.join(self._agent_server.root, "sandboxes", sandbox_id)
        os.makedirs(folder, exist_ok=True)
        return folder

    def _snapshot(self) -> tuple[list[Conversation], float]:
        """The conversations (oldest first) and the time to read them at; hold ``_lock`` while rendering them."""
        return list(self._conversations), self.now()

    def _rate_limited(self) -> Reply:
        """The answer to a POST past ``max_running``: Cloud's since April 2026 (OpenHands PR 14168, the shape its
        web app reads, OpenHands issue 15469): 429 ``{"detail": {"error": "CONCURRENCY_LIMIT_REACHED", ...}}``."""
        running = self.running_count()
        detail = {
            "error": "CONCURRENCY_LIMIT_REACHED",
            "message": f"You have reached the maximum of {self.max_running} concurrent conversations.",
            "limit": self.max_running,
            "current": running,
        }
        return Reply(429, {"detail": detail})

    def _sandbox_known(self, sandbox_id: str) -> bool:
        """Whether a sandbox of that id exists (a start may reuse it: ``sandbox_id``)."""
        with self._lock:
            return any(c.sandbox_id == sandbox_id for c in self._conversations)

    # ------------------------------------------------------------------ internals
    def _agent(self) -> AgentServer:
        if self._agent_server is None:
            raise ValueError("a V0 server has no agent server (no WebSockets)")
        return self._agent_server

    def _clock_moved(self) -> None:
        """The ``ManualClock`` moved: open sockets send what became due."""
        if self._agent_server is not None:
            self._agent_server.wake()

    def _has(self, conversation_id: str) -> bool:
        """Whether a conversation with this id was ever started here (deleted ones included: the id stays taken)."""
        with self._lock:
            return any(c.conversation_id == conversation_id for c in self._conversations)

    def _existing(self, conversation_id: str) -> Conversation:
        now = self.now()
        for conversation in self._conversations:
            if conversation.conversation_id == conversation_id and self._api.exists(conversation, now):
                return conversation
        raise KeyError(conversation_id)

    def _answer(self, request: RecordedRequest) -> Reply:
        page = _PAGE_PATH.fullmatch(request.path)
        if request.method == "GET" and page:
            return self._page(page.group(1))
        if self.device is not None and request.path.startswith("/oauth/device/"):
            return self.device.answer(request)
        if request.path.startswith("/api/"):
            try:
                return self._api.answer(request)
            finally:
                if request.method != "GET" and self._agent_server is not None:
                    self._agent_server.wake()  # a follow-up, a pending message...: open sockets look again
        return Reply(404, {"detail": "Not Found"})

    def _page(self, conversation_id: str) -> Reply:
        """The page a person opens from the notebook's link: the conversation's fields in a table."""
        with self._lock:
            try:
                info = self._api.page_fields(self._existing(conversation_id), self.now())
            except KeyError:
                return Reply(404, "not found", content_type="text/html; charset=utf-8")
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info.items())
        title = html.escape(str(info["title"]))
        text = f"<!doctype html><title>{title}</title><h1>Local OpenHands</h1><table>{rows}</table>"
        return Reply(200, text, content_type="text/html; charset=utf-8")


def _check_agent_fields(timeline: Timeline) -> None:
    """A ``ValueError`` for a timeline whose agent fields (``steps``, ``confirm``, ``title_delay``, batching) are
    of the wrong type or value."""
    steps = timeline.steps
    if isinstance(steps, str) or not isinstance(steps, tuple) or not all(isinstance(s, str) and s for s in steps):
        raise ValueError(f"steps are a tuple of commands (or 'edit:PATH', 'error:TEXT'), not {steps!r}")
    if not isinstance(timeline.confirm, bool):
        raise ValueError(f"confirm is True or False, not {timeline.confirm!r}")
    numbers = {"title_delay": timeline.title_delay, "search_flush": timeline.search_flush}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} is seconds (0 or more), not {value!r}")
    batch = timeline.search_batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"search_batch is how many events go at once (1 or more), not {batch!r}")


def _results(**fields: Any) -> dict[str, Any]:
    """The results given (see :class:`Timeline`), normalised to tuples, or a ``ValueError`` for a wrong type."""

    def wrong(name: str) -> ValueError:
        return ValueError(f"{name} has the wrong type or value: {fields[name]!r}")

    out = dict(fields)
    if "answer" in fields and not isinstance(fields["answer"], str):
        raise wrong("answer")
    if "keeps_events" in fields and not isinstance(fields["keeps_events"], bool):
        raise wrong("keeps_events")
    if "changes" in fields:
        try:
            out["changes"] = tuple((status, path) for status, path in fields["changes"])
        except (TypeError, ValueError):
            raise wrong("changes") from None
        if any(status not in v1.CHANGE_STATUSES or not isinstance(path, str) for status, path in out["changes"]):
            raise ValueError(f"changes are (status, path) with status in {v1.CHANGE_STATUSES}: {fields['changes']!r}")
    if "pr_numbers" in fields:
        try:
            out["pr_numbers"] = tuple(fields["pr_numbers"])
        except TypeError:
            raise wrong("pr_numbers") from None
        if any(isinstance(n, bool) or not isinstance(n, int) for n in out["pr_numbers"]):
            raise wrong("pr_numbers")
    if "cost" in fields and (isinstance(fields["cost"], bool) or not isinstance(fields["cost"], (int, float))):
        raise wrong("cost")
    for name in ("prompt_tokens", "completion_tokens"):
        if name in fields and (isinstance(fields[name], bool) or not isinstance(fields[name], int)):
            raise wrong(name)
    if "diffs" in fields:
        diffs = fields["diffs"]
        if not isinstance(diffs, Mapping) or not all(
            isinstance(path, str)
            and isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(side is None or isinstance(side, str) for side in pair)
            for path, pair in diffs.items()
        ):
            raise wrong("diffs")
        out["diffs"] = {path.removeprefix(v1.WORKSPACE + "/"): (pair[0], pair[1]) for path, pair in diffs.items()}
    return out
