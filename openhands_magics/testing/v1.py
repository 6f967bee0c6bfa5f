"""OpenHands' current API, V1 (``/api/v1/app-conversations``), as the real app server (1.11.0) answers it.

A POST answers a *start task*, not a conversation. The task goes through the real server's start phases in equal
slices of ``timeline.starting`` and ends READY (with ``app_conversation_id``) or ERROR (with ``detail``, possibly
empty: a repository the key cannot use shows up here, after a 200 POST). Unknown body fields are ignored, so a V0
body starts an empty conversation. Reads are batched lists with ``null`` for unknown ids, and the two list routes
validate ids differently (422 vs 400), as on the real server. A conversation has two statuses: ``sandbox_status``
stays RUNNING after the agent ended, ``execution_status`` is the agent's. Every ``/api/conversations`` (V0) route
is gone: 404.
"""

from __future__ import annotations

import secrets
import string
import uuid
from typing import TYPE_CHECKING, Any

from ._fastapi import HttpError, Query, dispatch, iso, json_object, page, problem, route, string_problems
from ._http import RecordedRequest, Reply

if TYPE_CHECKING:
    from .server import Conversation, LocalOpenHandsServer

PLANTED_SESSION_KEY = "sess-PLANTED-do-not-leak-7d1e"
#: The start phases, in the real server's order (``AppConversationStartTaskStatus``), before READY or ERROR.
PHASES = (
    "WORKING", "WAITING_FOR_SANDBOX", "PREPARING_REPOSITORY", "RUNNING_SETUP_SCRIPT", "SETTING_UP_GIT_HOOKS",
    "SETTING_UP_SKILLS", "STARTING_CONVERSATION",
)
ENDED = frozenset({"finished", "error", "stuck"})  #: terminal ``execution_status`` values
_REQUEST_DEFAULTS: dict[str, Any] = {  # AppConversationStartRequest as the task echoes it
    "sandbox_id": None, "conversation_id": None, "initial_message": None, "system_message_suffix": None,
    "processors": None, "llm_model": None, "agent_profile_id": None, "selected_repository": None,
    "selected_branch": None, "git_provider": None, "suggested_task": None, "title": None, "trigger": None,
    "pr_number": [], "parent_conversation_id": None, "agent_type": "default", "public": None, "plugins": None,
    "secrets": None,
}
_ID = r"/api/v1/app-conversations"
_HEX = frozenset(string.hexdigits)
_ZERO_TOKENS = {
    "model": "", "prompt_tokens": 0, "completion_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
    "reasoning_tokens": 0, "context_window": 0, "per_turn_token": 0, "response_id": "",
}


# ---------------------------------------------------------------------------------------------------- the timeline
def task_status(c: Conversation, now: float) -> tuple[str, float]:
    """The start task's status at ``now`` and when it began."""
    slice_ = c.timeline.starting / len(PHASES)
    last = PHASES.index(c.fails_in) if c.fails_in else len(PHASES) - 1
    ends = c.created + slice_ * (last + 1)
    if now >= ends:
        return ("ERROR" if c.fails_in else "READY"), ends
    phase = min(int((now - c.created) / slice_), last)
    return PHASES[phase], c.created + slice_ * phase


def execution_status(c: Conversation, now: float) -> str:
    """The agent: idle without a first message, running for ``timeline.running`` after READY, then the outcome."""
    if "execution_status" in c.forced:
        return c.forced["execution_status"]
    if c.message is None:
        return "idle"
    return "running" if now < c.ready_at + c.timeline.running else c.timeline.outcome


def _sandbox_status(c: Conversation) -> str:
    """The sandbox: RUNNING from READY on, even long after the agent ended (18 minutes observed)."""
    return c.forced.get("sandbox_status", "RUNNING")


def exists(c: Conversation, now: float) -> bool:
    """Whether the conversation exists (its start task is READY)."""
    return task_status(c, now)[0] == "READY"


def active(c: Conversation, now: float) -> bool:
    """Still starting, or started with an agent that has not ended."""
    status = task_status(c, now)[0]
    return status != "ERROR" and (status != "READY" or execution_status(c, now).lower() not in ENDED)


# ---------------------------------------------------------------------------------------------------- JSON shapes
def task_json(c: Conversation, now: float, *, naive: bool = True) -> dict[str, Any]:
    """An ``AppConversationStartTask``; the POST's answer has ``Z`` times, tasks read back have naive ones."""
    status, since = task_status(c, now)
    reached = PHASES.index(status) if status in PHASES else PHASES.index(c.fails_in) if c.fails_in else len(PHASES)
    return {
        "id": c.task_id,
        "created_by_user_id": None,
        "status": status,
        "detail": c.detail if status == "ERROR" else None,
        "app_conversation_id": c.conversation_id if status == "READY" else None,
        "sandbox_id": c.sandbox_id if reached >= PHASES.index("WAITING_FOR_SANDBOX") else None,
        "agent_server_url": c.agent_server_url if reached >= PHASES.index("STARTING_CONVERSATION") else None,
        "request": c.request,
        "created_at": iso(c.created, naive=naive),
        "updated_at": iso(since, naive=naive),
    }


def conversation_json(c: Conversation, now: float) -> dict[str, Any]:
    """An ``AppConversation``. ``updated_at`` does not move when the agent ends, as on the real server."""
    execution = execution_status(c, now)
    first_line = (c.message or "").strip().splitlines()
    title = first_line[0][:60] if first_line and execution.lower() in ENDED else f"Conversation {c.conversation_id[:5]}"
    request = c.request
    return {
        "id": c.conversation_id,
        "created_by_user_id": None,
        "sandbox_id": c.sandbox_id,
        "selected_repository": c.repository,
        "selected_branch": request["selected_branch"],
        "git_provider": request["git_provider"] or ("github" if c.repository else None),
        "title": c.forced.get("title", title),
        "trigger": request["trigger"],
        "pr_number": [],
        "llm_model": request["llm_model"] or "openai/fake-model",
        "agent_kind": "openhands",
        "metrics": {
            "model_name": "default", "accumulated_cost": 0.0, "max_budget_per_task": None,
            "accumulated_token_usage": dict(_ZERO_TOKENS),
        },
        "parent_conversation_id": request["parent_conversation_id"],
        "sub_conversation_ids": [],
        "public": request["public"],
        "tags": {"archiveworkspacepath": "."},
        "created_at": iso(c.ready_at),
        "updated_at": iso(c.ready_at),
        "sandbox_status": _sandbox_status(c),
        "execution_status": execution,
        "conversation_url": f"{c.agent_server_url}/api/conversations/{c.conversation_id}",
        "session_api_key": PLANTED_SESSION_KEY,
        "acp_server": None,
        "launched_agent_profile": None,
    }


# ---------------------------------------------------------------------------------------------------- requests
def _start_request(body: Any) -> dict[str, Any]:
    """The start request as the task echoes it (unknown fields dropped), or the 422 for a mistyped field."""
    body = json_object(body)
    message = body.get("initial_message")
    problems = string_problems(body, ("selected_repository", "selected_branch", "title", "llm_model"))
    if message is not None and not isinstance(message, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        problems.append(problem("model_attributes_type", ["body", "initial_message"], msg, message))
    elif message is not None and not isinstance(message.get("content", []), list):
        loc = ["body", "initial_message", "content"]
        problems.append(problem("list_type", loc, "Input should be a valid list", message["content"]))
    if problems:
        raise HttpError(422, problems)
    request = {**_REQUEST_DEFAULTS, **{name: body[name] for name in _REQUEST_DEFAULTS if name in body}}
    if message is not None:
        content = [{"cache_prompt": False, **i} if isinstance(i, dict) else i for i in message.get("content", [])]
        request["initial_message"] = {"role": "user", **message, "content": content, "run": message.get("run", False)}
    return request


def _message_text(request: dict[str, Any]) -> str | None:
    message = request["initial_message"]
    if message is None:
        return None
    items = [item for item in message["content"] if isinstance(item, dict)]
    return "\n".join(item.get("text", "") for item in items if item.get("type") == "text")


def _uuid_problem(text: str) -> str | None:
    """Why pydantic (the Rust ``uuid`` crate) refuses ``text`` as a UUID, in its words; ``None`` if it takes it."""
    body = text[9:] if text.lower().startswith("urn:uuid:") else text[1:-1] if text[:1] + text[-1:] == "{}" else text
    for index, char in enumerate(body):
        if char not in _HEX and char != "-":
            return f"invalid character: found `{char}` at {index}"
    groups = body.split("-")
    if len(groups) == 1:
        return None if len(body) == 32 else f"invalid length: found {len(body)}"
    if len(groups) != 5:
        return f"invalid group count: expected 5, found {len(groups)}"
    for index, (group, size) in enumerate(zip(groups, (8, 4, 4, 4, 12))):
        if len(group) != size:
            return f"invalid group length in group {index}: expected {size}, found {len(group)}"
    return None


def _sandbox_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))


class V1Api:
    """The V1 routes over a server's conversations. ``reads_only``: the read routes, no conversations (the V1
    side of a V0 server, like 1.6.0's)."""

    FIELDS = frozenset({"execution_status", "sandbox_status", "title"})
    OUTCOMES = ("finished", "error", "stuck")

    def __init__(self, server: LocalOpenHandsServer, *, reads_only: bool = False) -> None:
        self.server, self.reads_only = server, reads_only
        self.routes = [
            route(("GET",), _ID, self.get_conversations),
            route(("GET",), _ID + "/search", self.search_conversations),
            route(("GET",), _ID + "/count", self.count_conversations),
            route(("GET",), _ID + "/start-tasks", self.get_tasks),
            route(("GET",), _ID + "/start-tasks/search", self.search_tasks),
            route(("DELETE", "PATCH"), _ID + "/(?P<conversation_id>[^/]+)", _not_modelled),
        ]
        if not reads_only:
            self.routes.insert(0, route(("POST",), _ID, self.start))

    # -------------------------------------------------------------- what the server asks
    exists = staticmethod(exists)
    active = staticmethod(active)

    @staticmethod
    def state(c: Conversation, now: float) -> dict[str, str]:
        """The raw status fields now."""
        return {"execution_status": execution_status(c, now), "sandbox_status": _sandbox_status(c)}

    @staticmethod
    def page_fields(c: Conversation, now: float) -> dict[str, Any]:
        """What the conversation's HTML page shows."""
        return conversation_json(c, now)

    def answer(self, request: RecordedRequest) -> Reply:
        """Answer an ``/api/`` request."""
        return dispatch(self.routes, request)

    # -------------------------------------------------------------- routes
    def start(self, request: RecordedRequest) -> Reply:
        """``POST /api/v1/app-conversations``: a WORKING start task."""
        echo = _start_request(request.body)
        repository = echo["selected_repository"]
        fails_in, detail = None, None
        if repository and self.server.repositories is not None and repository not in self.server.repositories:
            fails_in, detail = "PREPARING_REPOSITORY", ""  # the clone fails; the real server says nothing more
        elif self.server.timeline.start_error is not None:
            fails_in, detail = PHASES[-1], self.server.timeline.start_error
        conversation = self.server._open(
            message=_message_text(echo),
            repository=repository,
            request=echo,
            task_id=uuid.uuid4().hex,
            sandbox_id=_sandbox_id(),
            agent_server_url=f"http://localhost:{8000 + len(self.server.task_ids())}",
            fails_in=fails_in,
            detail=detail,
        )
        if conversation is None:
            return self.server._rate_limited()
        with self.server._lock:
            return Reply(200, task_json(conversation, conversation.created, naive=False))

    def get_conversations(self, request: RecordedRequest) -> Reply:
        """``GET /api/v1/app-conversations?ids=...``: up to 99 ids (Python's ``UUID()`` parses them), ``null`` for
        unknown ones."""
        query = Query(request)
        ids = query.repeated("ids")
        query.check()
        if len(ids) >= 100:
            raise HttpError(400, "Too many ids requested. Maximum is 99.")
        wanted, invalid = [], []
        for text in ids:
            try:
                wanted.append(uuid.UUID(text).hex)
            except ValueError:
                invalid.append(text)
        if invalid:
            raise HttpError(400, f"Invalid UUID format for ids: {invalid}")
        with self.server._lock:
            conversations, now = self._read(ready_only=True)
            found = {c.conversation_id: c for c in conversations}
            return Reply(200, [conversation_json(found[i], now) if i in found else None for i in wanted])

    def get_tasks(self, request: RecordedRequest) -> Reply:
        """``GET .../start-tasks?ids=...``: up to 100 ids (pydantic parses them: 422), ``null`` for unknown ones."""
        query = Query(request)
        ids = query.repeated("ids")
        for index, text in enumerate(ids):
            why = _uuid_problem(text)
            if why:
                msg = f"Input should be a valid UUID, {why}"
                query.problems.append(problem("uuid_parsing", ["query", "ids", index], msg, text, {"error": why}))
        query.check()
        if len(ids) > 100:
            raise HttpError(400, f"Cannot request more than 100 start tasks at once, got {len(ids)}")
        wanted = [uuid.UUID(text).hex for text in ids]
        with self.server._lock:
            conversations, now = self._read(ready_only=False)
            found = {c.task_id: c for c in conversations}
            return Reply(200, [task_json(found[i], now) if i in found else None for i in wanted])

    def search_conversations(self, request: RecordedRequest) -> Reply:
        """``GET .../search?limit=&page_id=``: conversations, newest first."""
        limit, page_id = _paging(request)
        with self.server._lock:
            conversations, now = self._read(ready_only=True)
            items, next_page = page(conversations[::-1], page_id, limit)
            return Reply(200, {"items": [conversation_json(c, now) for c in items], "next_page_id": next_page})

    def count_conversations(self, request: RecordedRequest) -> Reply:
        """``GET .../count``: how many conversations exist."""
        with self.server._lock:
            return Reply(200, len(self._read(ready_only=True)[0]))

    def search_tasks(self, request: RecordedRequest) -> Reply:
        """``GET .../start-tasks/search?limit=&page_id=``: start tasks, newest first."""
        limit, page_id = _paging(request)
        with self.server._lock:
            conversations, now = self._read(ready_only=False)
            items, next_page = page(conversations[::-1], page_id, limit)
            return Reply(200, {"items": [task_json(c, now) for c in items], "next_page_id": next_page})

    # -------------------------------------------------------------- helpers
    def _read(self, *, ready_only: bool) -> tuple[list[Conversation], float]:
        """The conversations (oldest first; only READY ones if ``ready_only``) and the time to render them at."""
        conversations, now = self.server._snapshot()
        if self.reads_only:
            return [], now
        return [c for c in conversations if not ready_only or exists(c, now)], now


def _paging(request: RecordedRequest) -> tuple[int, str | None]:
    query = Query(request)
    limit = query.integer("limit", 100, gt=0, le=100)
    query.check()
    return limit or 100, query.text("page_id")


def _not_modelled(request: RecordedRequest, conversation_id: str) -> Reply:
    """Routes the real server has on ``/{id}`` (so that GET there is a 405) but this server does not model."""
    return Reply(501, {"detail": "Not modelled by the local OpenHands server"})
