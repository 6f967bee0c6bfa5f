"""The agent server of the local OpenHands server: where a V1 conversation's ``conversation_url`` points.

On the real server every sandbox runs an agent server (``http://localhost:80NN``); the app server's V1 read gives
its address (the host of ``conversation_url``) and its key (``session_api_key``). Here one agent server on its own
port (127.0.0.1, started and stopped with the app server) serves every conversation, with the key
``PLANTED_SESSION_KEY``. It answers as the real 1.11.0 does (``recorded/README.md``):

- ``/sockets/events/{id}`` (WebSocket, :mod:`._websocket`): first a fresh ``full_state``, then with
  ``resend_mode=all`` every stored event, with ``resend_mode=since&after_timestamp=ISO`` those stamped at or after
  it (none without it), then every new event as it happens (by the server's clock: with a ``ManualClock`` the
  frames come when the test advances it). The key is ``X-Session-API-Key`` or ``?session_api_key=``; a wrong one
  refuses the handshake with **HTTP 403** (the real server closes with 4001 before accepting, which Starlette sends
  as a 403); without any, the socket opens and waits ``socket_auth_timeout`` seconds for a first frame ``{"type":
  "auth", "session_api_key": …}``, closing with **4001** if it is wrong, malformed or late. A valid id of no
  conversation (or one whose sandbox is not running) closes with **4004**; an id that is not a UUID is a 403; past
  ``max_subscribers`` sockets on one conversation a new one closes with **1013**. A client may send a user message
  (``{"role": "user", "content": [...]}``) on the socket: the agent runs on it; anything else it cannot read is
  answered with a ``ServerErrorEvent`` frame.
- REST, same key header (a wrong one: ``401 {"detail": "Unauthorized"}``): ``GET /api/conversations/{id}`` (the
  conversation's state, ``workspace`` included), ``…/agent_final_response``, ``POST …/interrupt``, ``…/pause``,
  ``…/run``, ``…/events`` (a message), ``…/events/respond_to_confirmation``, ``…/confirmation_policy``, ``GET
  …/events/search`` (every stored event at once: the agent server has no batching lag); the workspace's routes
  (``/api/bash/execute_bash_command``, ``/api/file/download``, ``/api/file/upload``: :mod:`._workspace`).

Test controls (through :class:`~.server.LocalOpenHandsServer`): ``block_websockets()`` (a proxy that passes no
WebSockets: the handshake gets a plain ``404``), ``drop_sockets()`` (every open socket is cut, without a closing
frame: a reconnect test), ``sockets(id)`` (how many are open on a conversation).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from . import _agent, _workspace, v1
from ._fastapi import HttpError, Query, boolean_field, dispatch, iso, json_object, page, problem, route
from ._http import HttpServer, RecordedRequest, Reply

if TYPE_CHECKING:
    from ._websocket import WebSocket
    from .server import Conversation, LocalOpenHandsServer

_SOCKET = re.compile(r"/sockets/events/(?P<conversation_id>[^/]+)")
_ITEM = r"/api/conversations/(?P<conversation_id>[^/]+)"
#: Clocks that move with the wall clock: a socket sleeps exactly until its next event is due.
_WALL_CLOCKS = (time.monotonic, time.time, time.perf_counter)


class AgentServer:
    """The agent server's sockets and routes over a :class:`~.server.LocalOpenHandsServer`'s conversations."""

    def __init__(
        self, server: LocalOpenHandsServer, host: str, *, max_subscribers: int, socket_auth_timeout: float
    ) -> None:
        self.server = server
        #: The agent server's directory: each sandbox's workspace is a sub-directory (see :mod:`._workspace`).
        self.root = tempfile.mkdtemp(prefix="openhands-local-agent-")
        weakref.finalize(self, shutil.rmtree, self.root, True)  # (kept through a stop: a test may start it again)
        self.max_subscribers, self.socket_auth_timeout = max_subscribers, socket_auth_timeout
        self.blocked = False
        self._sockets: dict[str, list[WebSocket]] = {}  # open sessions by conversation id (hex); under server._lock
        self._httpd = HttpServer((host, 0), self._answer, auth="none", key="", upgrade=self._session)
        self.requests: list[RecordedRequest] = self._httpd.requests
        bound_host, port = self._httpd.socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{port}"
        self._thread: threading.Thread | None = None
        self.routes = [
            route(("GET",), _ITEM, self.get_conversation),
            route(("GET",), _ITEM + "/agent_final_response", self.final_response),
            route(("POST",), _ITEM + "/interrupt", self.interrupt),
            route(("POST",), _ITEM + "/pause", self.pause),
            route(("POST",), _ITEM + "/run", self.run),
            route(("POST",), _ITEM + "/events", self.send_message),
            route(("GET",), _ITEM + "/events/search", self.search_events),
            route(("POST",), _ITEM + "/events/respond_to_confirmation", self.respond),
            route(("POST",), _ITEM + "/confirmation_policy", self.confirmation_policy),
            route(("POST",), "/api/bash/execute_bash_command", lambda r: _workspace.execute(self.root, r)),
            route(("GET",), "/api/file/download", lambda r: _workspace.download(self.root, r)),
            route(("POST",), "/api/file/upload", lambda r: _workspace.upload(self.root, r)),
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="openhands-local-agent-server", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.drop_sockets()
        self._httpd.close_connections()
        self._httpd.server_close()

    # ------------------------------------------------------------------ test controls
    def _agent_server_blocked(self, blocked: bool) -> None:
        self.blocked = blocked

    def drop_sockets(self) -> int:
        """Cut every open socket (no closing frame); how many there were."""
        with self.server._lock:
            sockets = [ws for group in self._sockets.values() for ws in group]
        for ws in sockets:
            ws.drop()
        return len(sockets)

    def sockets(self, conversation_id: str) -> int:
        """How many sockets are open on a conversation."""
        with self.server._lock:
            return len(self._sockets.get(conversation_id, []))

    def wake(self) -> None:
        """Tell every open socket to look again (an event happened, the clock moved)."""
        with self.server._lock:
            sockets = [ws for group in self._sockets.values() for ws in group]
        for ws in sockets:
            ws.wake()

    # ------------------------------------------------------------------ REST
    def _answer(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/api/") and request.headers.get("x-session-api-key") != v1.PLANTED_SESSION_KEY:
            return Reply(401, {"detail": "Unauthorized"})
        try:
            return dispatch(self.routes, request)
        finally:
            if request.method != "GET":
                self.wake()

    def _conversation(self, conversation_id: str, missing: HttpError | None = None) -> tuple[Conversation, float]:
        """The conversation an agent-server route names (hold ``server._lock``): 422 for an id that is not a UUID,
        ``missing`` (default ``404 Not Found``) if there is none, or its sandbox is not running."""
        problems = v1._path_problems(conversation_id)
        if problems:
            raise HttpError(422, problems)
        found = self._live(uuid.UUID(conversation_id).hex)
        if found is None:
            raise missing or HttpError(404, "Not Found")
        return found, self.server.now()

    def _live(self, conversation_hex: str) -> Conversation | None:
        """The conversation if it exists and its sandbox runs (its agent server is up); hold ``server._lock``."""
        api = self.server._api
        if not isinstance(api, v1.V1Api):
            return None
        conversation, _ = api._find(conversation_hex)
        if conversation is None or v1._sandbox_status(conversation) != "RUNNING":
            return None
        return conversation

    def get_conversation(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET /api/conversations/{id}``: ``ConversationInfo`` (``recorded/agent-conversation-1.11.0.json``)."""
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            return Reply(200, conversation_info(conversation, now))

    def final_response(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET …/agent_final_response``: ``{"response": the last finish's message}``, ``""`` before any."""
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            return Reply(200, {"response": _agent.final_response(conversation, now)})

    def interrupt(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/interrupt``: the agent stops at once (unknown conversation: the real ``400 Bad Request``)."""
        with self.server._lock:
            conversation, now = self._conversation(conversation_id, HttpError(400, "Bad Request"))
            _agent.interrupt(conversation, now)
        return Reply(200, {"success": True})

    def pause(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/pause``: as ``interrupt`` here (the real one lets the current LLM call end first)."""
        with self.server._lock:
            conversation, now = self._conversation(conversation_id, HttpError(400, "Bad Request"))
            _agent.interrupt(conversation, now, pause=True)
        return Reply(200, {"success": True})

    def run(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/run``: go on (or run again); 409 if the agent runs already."""
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            if not _agent.run(conversation, now):
                raise HttpError(409, "Conversation already running. Wait for completion or pause first.")
        return Reply(200, {"success": True})

    def send_message(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/events`` ``{"role", "content", "run"}``: a user message (``run`` defaults to false)."""
        text, run = v1._send_message_request(request.body, v1._path_problems(conversation_id))
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            conversation.follow_ups.append((now, text, run))
            _agent.follow_up(conversation, now, text, run)
        return Reply(200, {"success": True})

    def respond(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/events/respond_to_confirmation`` ``{"accept": bool, "reason": str}``."""
        body = json_object(request.body)
        problems = v1._path_problems(conversation_id)
        if "accept" not in body:
            problems.append(problem("missing", ["body", "accept"], "Field required", body))
        accept = boolean_field(body, "accept", False, problems)
        reason = body.get("reason", "User rejected the action.")
        if not isinstance(reason, str):
            problems.append(problem("string_type", ["body", "reason"], "Input should be a valid string", reason))
        if problems:
            raise HttpError(422, problems)
        wanted = uuid.UUID(conversation_id)
        with self.server._lock:
            conversation, now = self._conversation(conversation_id, HttpError(404, f"Conversation not found: {wanted}"))
            _agent.respond(conversation, now, accept, reason)
        return Reply(200, {"success": True})

    def confirmation_policy(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST …/confirmation_policy`` ``{"policy": {"kind": "AlwaysConfirm" | "NeverConfirm" | "ConfirmRisky"}}``:
        how the real server turns confirmation mode on for one conversation (every step is ``LOW`` risk here, and
        ``ConfirmRisky`` confirms them all the same)."""
        body = json_object(request.body)
        policy = body.get("policy")
        kind = policy.get("kind") if isinstance(policy, dict) else None
        if kind not in _agent.POLICIES:
            expected = ", ".join(repr(name) for name in _agent.POLICIES)
            msg = f"Input tag {kind!r} found using 'kind' does not match any of the expected tags: {expected}"
            raise HttpError(422, [problem("union_tag_invalid", ["body", "policy"], msg, policy)])
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            _agent.set_policy(conversation, now, kind)
        return Reply(200, {"success": True})

    def search_events(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET …/events/search?kind__eq=&page_id=&limit=``: the stored events, oldest first, at once."""
        query = Query(request)
        limit = query.integer("limit", 100, gt=0, le=100)
        query.check()
        with self.server._lock:
            conversation, now = self._conversation(conversation_id)
            stream = [_agent.render(conversation, e, now) for e in _agent.stored(conversation, now)]
        kind = query.text("kind__eq")
        if kind is not None:
            stream = [event for event in stream if event["kind"] == kind]
        items, next_page = page(stream, query.text("page_id"), limit or 100)
        return Reply(200, {"items": items, "next_page_id": next_page})

    # ------------------------------------------------------------------ the WebSocket
    def _session(
        self, request: RecordedRequest, connection: Any, headers: list[tuple[str, str]], raw_path: str
    ) -> None:
        """One ``/sockets/events/{id}`` socket, from the handshake to its end (in the request's thread)."""
        from ._websocket import Closed, WebSocket

        ws = WebSocket(connection, raw_path, headers)
        if self.blocked:
            ws.reject(404, '{"detail":"Not Found"}')
            return
        match = _SOCKET.fullmatch(request.path)
        query = Query(request)
        key = query.text("session_api_key")
        key = request.headers.get("x-session-api-key") if key is None else key
        mode = query.text("resend_mode")
        mode = "all" if mode is None and query.boolean("resend_all", False) else mode
        after = _after(query.text("after_timestamp"))
        refused = (
            match is None
            or v1._uuid_problem(match.group("conversation_id")) is not None
            or mode not in (None, "all", "since")
            or after is False
            or (key is not None and key != v1.PLANTED_SESSION_KEY)
        )
        if refused or match is None:  # Starlette's answer to a socket closed before it was accepted
            ws.reject(403, "")
            return
        if not ws.accept():
            return
        conversation_hex = uuid.UUID(match.group("conversation_id")).hex
        registered = False
        try:
            if key is None and not self._first_frame_auth(ws):
                ws.close(4001, "Authentication failed")
                return
            with self.server._lock:
                conversation = self._live(conversation_hex)
                group = self._sockets.setdefault(conversation_hex, [])
                if conversation is not None and len(group) < self.max_subscribers:
                    group.append(ws)
                    registered = True
                    now = self.server.now()
                    a = _agent.catch_up(conversation, now)
                    frames = [_agent.render(conversation, _snapshot(a, now), now)]
                    if mode == "all" or (mode == "since" and after is not None):
                        since = after.timestamp() if isinstance(after, dt.datetime) else float("-inf")
                        frames += [
                            _agent.render(conversation, e, now)
                            for e in _agent.stored(conversation, now)
                            if e.stamp >= since - 5e-7
                        ]
                    sent = a.count
            if conversation is None:
                ws.close(4004, "Conversation not found")
                return
            if not registered:
                ws.close(1013, "Too many connections for this conversation")
                return
            self._stream(ws, conversation, frames, sent)
        except Closed:
            pass
        finally:
            if registered:
                with self.server._lock:
                    group = self._sockets.get(conversation_hex, [])
                    with contextlib.suppress(ValueError):
                        group.remove(ws)

    def _first_frame_auth(self, ws: WebSocket) -> bool:
        """First-message auth: ``{"type": "auth", "session_api_key": KEY}`` within ``socket_auth_timeout``."""
        deadline = time.monotonic() + self.socket_auth_timeout
        while (left := deadline - time.monotonic()) > 0:
            texts = ws.receive(left)
            if texts:
                try:
                    frame = json.loads(texts[0])
                except ValueError:
                    return False
                return (
                    isinstance(frame, dict)
                    and frame.get("type") == "auth"
                    and frame.get("session_api_key") == v1.PLANTED_SESSION_KEY
                )
        return False

    def _stream(self, ws: WebSocket, conversation: Conversation, frames: list[dict[str, Any]], sent: int) -> None:
        """Send the replay, then each event as it happens; read what the client sends meanwhile."""
        for frame in frames:
            ws.send(json.dumps(frame))
        while True:
            with self.server._lock:
                now = self.server.now()
                a = _agent.catch_up(conversation, now)
                fresh = [json.dumps(_agent.render(conversation, e, now)) for e in a.events(sent) if e.live]
                sent = a.count
                due = _agent.next_due(conversation, a)
            for text in fresh:
                ws.send(text)
            for text in ws.receive(self._wait(due, now)):
                self._client_frame(ws, conversation, text)

    def _wait(self, due: float | None, now: float) -> float:
        """How long a socket may sleep: until its next event on a wall clock, until woken on a ``ManualClock``
        (it tells the server when it moves), briefly on any other clock."""
        from .server import ManualClock

        clock = self.server.clock
        if isinstance(clock, ManualClock):
            return 1.0
        if clock in _WALL_CLOCKS:
            return 1.0 if due is None else min(1.0, max(0.0, due - now))
        return 0.05

    def _client_frame(self, ws: WebSocket, conversation: Conversation, text: str) -> None:
        """A frame from the client: an auth frame (ignored once in), or a user message the agent runs on."""
        try:
            data = json.loads(text)
            if isinstance(data, dict) and data.get("type") == "auth":
                return
            if not isinstance(data, dict) or data.get("role") not in ("user", "system", "assistant", "tool"):
                raise ValueError("1 validation error for Message\nrole\n  Field required")
            content = data.get("content")
            if not isinstance(content, list) or v1._content_problems(content):
                raise ValueError("1 validation error for Message\ncontent\n  Input should be a valid list")
        except ValueError as error:
            with self.server._lock:
                stamp = iso(self.server.now(), naive=True)
            error_event = {
                "id": str(uuid.uuid4()),
                "timestamp": stamp,
                "source": "environment",
                "code": type(error).__name__ if not isinstance(error, json.JSONDecodeError) else "JSONDecodeError",
                "detail": str(error),
                "kind": "ServerErrorEvent",
            }
            ws.send(json.dumps(error_event))
            return
        said = "\n".join(item["text"] for item in content if isinstance(item, dict) and "text" in item)
        with self.server._lock:
            now = self.server.now()
            conversation.follow_ups.append((now, said, True))
            _agent.follow_up(conversation, now, said, True)


def _snapshot(a: _agent.Agent, now: float) -> _agent.Event:
    """The ``full_state`` a new socket gets first (not in the log: it is of this moment)."""
    return _agent.Event(-1, now, "full_state", max(now, a.top), None, str(uuid.uuid4()))


def _after(text: str | None) -> dt.datetime | None | bool:
    """``after_timestamp`` as an aware ``datetime`` (naive: UTC, the server's zone), ``None`` if absent, ``False`` if
    it is not a time (the handshake is refused, as FastAPI's validation of a socket's query does)."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def conversation_info(c: Conversation, now: float) -> dict[str, Any]:
    """``GET {agent}/api/conversations/{id}``: the real ``ConversationInfo``'s keys, in its order."""
    state = _agent.full_state(c, now)
    if "execution_status" in c.forced:
        state["execution_status"] = c.forced["execution_status"]
    named = _agent.ended_by(c, now, c.timeline.title_delay) or "title" in c.forced
    title = v1.conversation_json(c, now)["title"]
    calls = _agent.calls_at(c, now)
    skip = ("agent", "activated_path_rules", "head_is_empty", "tags")
    info = {name: value for name, value in state.items() if name not in skip}
    return {
        **info,
        "hook_config": None,
        "title": title if named else None,
        "metrics": _agent.usage(c, calls) if calls else None,
        "created_at": iso(c.ready_at),
        "updated_at": iso(c.ready_at),
        "forked_from_conversation_id": None,
        "forked_from_event_id": None,
        "tags": {},
        "current_model_id": None,
        "available_models": [],
        "supports_runtime_model_switch": False,
        "launched_agent_profile": None,
        "agent": state["agent"],
        "client_tools": [],
    }
