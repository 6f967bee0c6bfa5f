"""OpenHands' old API, V0 (``/api/conversations``), as 1.6.0 (the last release with it) answers it.

The POST validates its body strictly (unknown fields: 422) and answers the conversation's id at once. The status is
STARTING for ``timeline.starting``, then RUNNING, and it *stays* RUNNING after the agent ended: only the server's
idle-close (``timeline.close_delay``) turns it STOPPED. What the agent did is in the event stream
(``/api/conversations/{id}/events``), shaped like the real one. An unknown id reads as ``200 null``, not 404. The V1
read routes answer too, with nothing in them, as on 1.6.0 (which serves both APIs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fastapi import HttpError, Query, dispatch, iso, json_object, page, problem, route, string_problems
from ._http import RecordedRequest, Reply
from .v1 import PLANTED_SESSION_KEY, V1Api

if TYPE_CHECKING:
    from .server import Conversation, LocalOpenHandsServer

_BODY_FIELDS = (  # InitSessionRequest, extra='forbid': anything else is a 422
    "repository",
    "git_provider",
    "selected_branch",
    "initial_user_msg",
    "image_urls",
    "replay_json",
    "suggested_task",
    "create_microagent",
    "conversation_instructions",
    "mcp_config",
)
ENDED = frozenset({"finished", "error", "awaiting_user_input", "stopped"})  #: agent states after the agent's turn
_RUNTIME = {"STARTING": "STATUS$STARTING_RUNTIME", "RUNNING": "STATUS$RUNTIME_STARTED", "ERROR": "STATUS$ERROR"}


# ---------------------------------------------------------------------------------------------------- the timeline
def _outcome(c: Conversation) -> str:
    """The agent state the agent ends in: without a message it waits for one at once; V0 has no "stuck"."""
    if c.message is None:
        return "awaiting_user_input"
    return "error" if c.timeline.outcome == "stuck" else c.timeline.outcome


def _agent_end(c: Conversation) -> float:
    return c.ready_at if c.message is None else c.ready_at + c.timeline.running


def _closed_at(c: Conversation) -> float | None:
    delay = c.timeline.close_delay
    return None if delay is None else _agent_end(c) + delay


def state(c: Conversation, now: float) -> dict[str, str]:
    """``status`` and ``agent_state`` at ``now`` (forced fields win)."""
    closed = _closed_at(c)
    if now < c.ready_at:
        status, agent = "STARTING", "loading"
    elif now < _agent_end(c):
        status, agent = "RUNNING", "running"
    elif closed is None or now < closed:
        status, agent = "RUNNING", _outcome(c)
    else:
        status, agent = "STOPPED", "stopped"
    return {"status": c.forced.get("status", status), "agent_state": c.forced.get("agent_state", agent)}


def active(c: Conversation, now: float) -> bool:
    """Starting, or running with an agent that has not ended."""
    now_state = state(c, now)
    return now_state["status"] in ("STARTING", "RUNNING") and now_state["agent_state"] not in ENDED


# ---------------------------------------------------------------------------------------------------- JSON shapes
def _state_changed(agent_state: str, reason: str = "") -> dict[str, Any]:
    return {
        "source": "environment",
        "message": "",
        "observation": "agent_state_changed",
        "content": "",
        "extras": {"agent_state": agent_state, "reason": reason},
    }


def _message(source: str, text: str, *, wait_for_response: bool) -> dict[str, Any]:
    args: dict[str, Any] = {"content": text, "file_urls": None, "image_urls": []}
    args.update(wait_for_response=wait_for_response, security_risk=-1)
    return {"source": source, "message": text, "action": "message", "args": args}


def _last_word(c: Conversation) -> dict[str, Any]:
    """The agent's last event before it stops: a ``finish``, an error, or a question for the user."""
    outcome = _outcome(c)
    if outcome == "finished":
        text = "All done! What's next on the agenda?"
        args = {"final_thought": text, "outputs": {}, "thought": ""}
        return {"source": "agent", "message": text, "action": "finish", "args": args}
    if outcome == "error":
        text = "The agent hit an error (local server)."
        return {"source": "agent", "message": text, "observation": "error", "content": text, "extras": {"error_id": ""}}
    return _message("agent", "What should I do next?", wait_for_response=True)


def events(c: Conversation, now: float) -> list[dict[str, Any]]:
    """The conversation's event stream up to ``now`` (it follows the timeline, not forced fields)."""
    timed = [(c.created, _state_changed("loading"))]
    if c.message is not None:
        timed.append((c.created, _message("user", c.message, wait_for_response=False)))
        timed.append((c.ready_at, _state_changed("running")))
        timed.append((_agent_end(c), _last_word(c)))
    timed.append((_agent_end(c), _state_changed(_outcome(c))))
    closed = _closed_at(c)
    if closed is not None:
        timed.append((closed, _state_changed("stopped")))
    shown = [(moment, event) for moment, event in timed if moment <= now]
    return [{"id": n, "timestamp": iso(moment, naive=True), **event} for n, (moment, event) in enumerate(shown)]


def info_json(c: Conversation, now: float, trigger: str) -> dict[str, Any]:
    """A ``ConversationInfo``. ``last_updated_at`` is the agent's last activity, not when the status changed."""
    status = state(c, now)["status"]
    first_line = (c.message or "").strip().splitlines()
    title = first_line[0][:60] if first_line and status != "STARTING" else f"Conversation {c.conversation_id[:5]}"
    activity = [c.created] + [moment for moment in (c.ready_at, _agent_end(c)) if moment <= now]
    return {
        "conversation_id": c.conversation_id,
        "title": c.forced.get("title", title),
        "last_updated_at": iso(max(activity)),
        "status": status,
        "runtime_status": _RUNTIME.get(status),
        "selected_repository": c.repository,
        "selected_branch": c.request.get("selected_branch"),
        "git_provider": c.request.get("git_provider") or ("github" if c.repository else None),
        "trigger": trigger,
        "num_connections": 0,
        "url": f"/api/conversations/{c.conversation_id}" if status in ("STARTING", "RUNNING") else None,
        "session_api_key": PLANTED_SESSION_KEY,
        "created_at": iso(c.created),
        "pr_number": [],
        "conversation_version": "V0",
        "sub_conversation_ids": [],
        "public": None,
        "sandbox_id": None,
    }


# ---------------------------------------------------------------------------------------------------- requests
def _init_session(body: Any) -> dict[str, Any]:
    """The POST body, or the 422 pydantic gives (unknown fields are forbidden)."""
    body = json_object(body)
    problems = string_problems(body, ("repository", "selected_branch", "initial_user_msg"))
    problems += [
        problem("extra_forbidden", ["body", name], "Extra inputs are not permitted", value)
        for name, value in body.items()
        if name not in _BODY_FIELDS
    ]
    if problems:
        raise HttpError(422, problems)
    return dict(body)


class V0Api:
    """The V0 routes over a server's conversations, plus V1's read routes (empty)."""

    FIELDS = frozenset({"status", "agent_state", "title"})
    OUTCOMES = ("finished", "error", "stuck", "awaiting_user_input")  # "stuck" reads as "error": V0 has no stuck

    def __init__(self, server: LocalOpenHandsServer) -> None:
        self.server = server
        # Cloud's keys make the real server tag conversations "openhands_api"; the web UI's are "gui".
        self.trigger = "openhands_api" if server.auth == "bearer" else "gui"
        self.routes = [
            route(("POST",), "/api/conversations", self.start),
            route(("GET",), "/api/conversations", self.search),
            route(("GET",), "/api/conversations/(?P<conversation_id>[^/]+)", self.get),
            route(("GET",), "/api/conversations/(?P<conversation_id>[^/]+)/events", self.get_events),
            *V1Api(server, reads_only=True).routes,
        ]

    # -------------------------------------------------------------- what the server asks
    @staticmethod
    def exists(c: Conversation, now: float) -> bool:
        """A V0 conversation exists from its POST on."""
        return True

    active = staticmethod(active)
    state = staticmethod(state)

    def page_fields(self, c: Conversation, now: float) -> dict[str, Any]:
        """What the conversation's HTML page shows."""
        return info_json(c, now, self.trigger)

    def answer(self, request: RecordedRequest) -> Reply:
        """Answer an ``/api/`` request."""
        return dispatch(self.routes, request)

    # -------------------------------------------------------------- routes
    def start(self, request: RecordedRequest) -> Reply:
        """``POST /api/conversations``: the new conversation's id and status."""
        body = _init_session(request.body)
        repository = body.get("repository")
        if repository and self.server.repositories is not None and repository not in self.server.repositories:
            return Reply(401, f"Unable to access repo {repository}")  # AuthenticationError: a bare JSON string
        if self.server.timeline.start_error is not None:
            return Reply(500, self.server.timeline.start_error, content_type="text/plain; charset=utf-8")
        conversation = self.server._open(message=body.get("initial_user_msg"), repository=repository, request=body)
        if conversation is None:
            return self.server._rate_limited()
        with self.server._lock:
            status = state(conversation, conversation.created)["status"]
        answer = {"status": "ok", "conversation_id": conversation.conversation_id, "message": None}
        return Reply(200, {**answer, "conversation_status": status})

    def get(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET /api/conversations/{id}``: the conversation, or ``200 null`` if there is none."""
        with self.server._lock:
            conversation, now = self._find(conversation_id)
            return Reply(200, info_json(conversation, now, self.trigger) if conversation else None)

    def search(self, request: RecordedRequest) -> Reply:
        """``GET /api/conversations?limit=&page_id=``: conversations, newest first."""
        query = Query(request)
        limit = query.integer("limit", 20)
        query.check()
        with self.server._lock:
            conversations, now = self.server._snapshot()
            items, next_page = page(conversations[::-1], query.text("page_id"), max(limit or 0, 0))
            results = [info_json(c, now, self.trigger) for c in items]
            return Reply(200, {"results": results, "next_page_id": next_page})

    def get_events(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET .../events?start_id=&end_id=&reverse=&limit=``: ``{"events", "has_more"}``, ids inclusive."""
        query = Query(request)
        start_id, end_id = query.integer("start_id", 0), query.integer("end_id", None)
        reverse, limit = query.boolean("reverse", False), query.integer("limit", 20)
        query.check()
        if limit is None or not 0 <= limit <= 100:
            raise HttpError(400, "Invalid limit")
        with self.server._lock:
            conversation, now = self._find(conversation_id)
            if conversation is None:
                raise HttpError(404, f"Conversation {conversation_id} not found")
            stream = events(conversation, now)
        last = len(stream) - 1 if end_id is None else min(end_id, len(stream) - 1)
        chosen = [event for event in stream if (start_id or 0) <= event["id"] <= last]
        chosen = chosen[::-1] if reverse else chosen
        return Reply(200, {"events": chosen[:limit], "has_more": len(chosen) > limit})

    def _find(self, conversation_id: str) -> tuple[Conversation | None, float]:
        conversations, now = self.server._snapshot()
        return next((c for c in conversations if c.conversation_id == conversation_id), None), now
