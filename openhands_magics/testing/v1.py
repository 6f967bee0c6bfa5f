"""OpenHands' current API, V1 (``/api/v1/app-conversations``), as the real app server (1.11.0) answers it.

A POST answers a *start task*, not a conversation. The task goes through the real server's start phases in equal
slices of ``timeline.starting`` and ends READY (with ``app_conversation_id``) or ERROR (with ``detail``, possibly
empty: a repository the key cannot use shows up here, after a 200 POST). Unknown body fields are ignored, so a V0
body starts an empty conversation. Reads are batched lists with ``null`` for unknown ids, and the two list routes
validate ids differently (422 vs 400), as on the real server. The start request's ``title`` and ``public`` are
taken (echoed) but not applied, as on 1.11.0 (its conversations are named from the first message, and only
``PATCH`` makes one public, until its agent's status next changes: its webhook then saves the conversation afresh,
without ``public``); a ``sandbox_id`` is reused if it exists, else the task fails "Sandbox not found: ID".
Past ``max_running`` a start is Cloud's 429. A conversation has two statuses: ``sandbox_status`` stays RUNNING
after the agent ended, ``execution_status`` is the agent's (``null`` while the sandbox is not
RUNNING). Every ``/api/conversations`` (V0) route is gone: 404.

After the start: ``send-message`` (a follow-up; with ``run`` the agent runs again at once), ``pending-messages``
(queued while starting; only ``task-{task id}`` is delivered, at READY), pausing and resuming the sandbox
(``/api/v1/sandboxes/{id}/pause``), DELETE, the agent's events (``/api/v1/conversation/{id}/events/search``: see
:func:`events`, with the real agent server's batching lag when the timeline has steps) and what it left in the
workspace (``git/changes``, ``git/diff``, ``file``), each with the real server's errors. The agent's status and events
come from :mod:`._agent` (so they agree with the agent server's WebSocket). Pausing the sandbox does not stop the
agent's clock: a run whose time passed while paused reads as ended after the resume.

Quirks of the real server a client must read right: deleting a conversation's sandbox (``DELETE
/api/v1/sandboxes/{id}?sandbox_id={id}``: the real route reads the id from the query) leaves the conversation with
``sandbox_status`` MISSING, a follow-up answered ``404 "Sandbox not found for conversation …"`` and pausing or
resuming answered FastAPI's bare 404, as for a sandbox whose process died. :func:`set_version` answers as an older
server: before 1.8 there is no ``git/changes`` or ``git/diff`` route (FastAPI's ``404 {"detail": "Not Found"}``).
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import uuid
from typing import TYPE_CHECKING, Any

from ._fastapi import (
    HttpError,
    Problem,
    Query,
    boolean_field,
    dispatch,
    iso,
    json_object,
    page,
    problem,
    route,
    string_problems,
)
from . import _agent, _lists, _workspace
from ._agent import ENDED, WORKSPACE
from ._http import RecordedRequest, Reply

if TYPE_CHECKING:
    from .server import Conversation, LocalOpenHandsServer

PLANTED_SESSION_KEY = "sess-PLANTED-do-not-leak-7d1e"
#: The start phases, in the real server's order (``AppConversationStartTaskStatus``), before READY or ERROR.
PHASES = (
    "WORKING",
    "WAITING_FOR_SANDBOX",
    "PREPARING_REPOSITORY",
    "RUNNING_SETUP_SCRIPT",
    "SETTING_UP_GIT_HOOKS",
    "SETTING_UP_SKILLS",
    "STARTING_CONVERSATION",
)
_REQUEST_DEFAULTS: dict[str, Any] = {  # AppConversationStartRequest as the task echoes it
    "sandbox_id": None,
    "conversation_id": None,
    "initial_message": None,
    "system_message_suffix": None,
    "processors": None,
    "llm_model": None,
    "agent_profile_id": None,
    "selected_repository": None,
    "selected_branch": None,
    "git_provider": None,
    "suggested_task": None,
    "title": None,
    "trigger": None,
    "pr_number": [],
    "parent_conversation_id": None,
    "agent_type": "default",
    "public": None,
    "plugins": None,
    "secrets": None,
}
#: ``AgentType``: the default agent, or the planning agent that writes a plan first.
AGENT_TYPES = ("default", "plan")
_ID = r"/api/v1/app-conversations"
_ITEM = _ID + r"/(?P<conversation_id>[^/]+)"
_HEX = frozenset(string.hexdigits)
CHANGE_STATUSES = ("ADDED", "UPDATED", "DELETED", "MOVED")
SORT_ORDERS = ("TIMESTAMP", "TIMESTAMP_DESC")  #: ``EventSortOrder``
#: What ``events/search`` shows of a timeline without steps (as before the agent server was modelled): the user's
#: messages, the status changes, the finish action and its observation.
_PLAIN_EVENTS = frozenset({"message", "status", "finish", "finish_observation"})
#: Routes that came after 1.7.0 (the first server with V1 only), by the version that added them.
LATER_ROUTES = {(1, 8): (_ITEM + "/git/changes", _ITEM + "/git/diff")}
_ZERO_TOKENS = {
    "model": "",
    "prompt_tokens": 0,
    "completion_tokens": 0,
    "cache_read_tokens": 0,
    "cache_write_tokens": 0,
    "reasoning_tokens": 0,
    "context_window": 0,
    "per_turn_token": 0,
    "response_id": "",
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


def ended_once(c: Conversation, now: float) -> bool:
    """Whether the agent ended a run by ``now``: what its changes, pull requests and metrics wait for."""
    return _agent.ended_by(c, now)


def agent_status(c: Conversation, now: float) -> str:
    """The agent by its events (see :mod:`._agent`): idle before its first run, running, then the outcome."""
    return _agent.status_at(c, now)


def execution_status(c: Conversation, now: float) -> str | None:
    """The agent's status as the server reports it: ``None`` while the sandbox is not RUNNING (forced fields win)."""
    if "execution_status" in c.forced:
        return c.forced["execution_status"]
    return agent_status(c, now) if _sandbox_status(c) == "RUNNING" else None


def _sandbox_status(c: Conversation) -> str:
    """The sandbox: RUNNING from READY on, even long after the agent ended (18 minutes observed), unless paused."""
    return c.forced.get("sandbox_status", "PAUSED" if c.paused else "RUNNING")


def set_version(server: LocalOpenHandsServer, version: str) -> None:
    """Answer as OpenHands ``version`` (1.7.0 or later) where it differs from 1.11.0: the routes that came later
    (:data:`LATER_ROUTES`) are missing, so FastAPI answers them ``404 {"detail": "Not Found"}``."""
    api = server._api
    if not isinstance(api, V1Api):
        raise ValueError("set_version is for V1 servers (1.7.0 and later)")
    wanted = tuple(int(part) for part in version.split(".")[:2])
    if wanted < (1, 7):
        raise ValueError(f"V1 servers are 1.7.0 or later, not {version}")
    missing = {pattern for since, patterns in LATER_ROUTES.items() if wanted < since for pattern in patterns}
    api.routes = [r for r in api.all_routes if r[1].pattern not in missing]


def exists(c: Conversation, now: float) -> bool:
    """Whether the conversation exists (its start task is READY, and it was not deleted)."""
    return not c.deleted and task_status(c, now)[0] == "READY"


def active(c: Conversation, now: float) -> bool:
    """Still starting, or started with an agent that has not ended (a paused or deleted one has none running)."""
    status = task_status(c, now)[0]
    if status == "ERROR" or c.deleted:
        return False
    execution = execution_status(c, now)
    return status != "READY" or (execution is not None and execution.lower() not in ENDED)


def result(c: Conversation, name: str) -> Any:
    """One of the agent's results (see ``Timeline``): the conversation's own if ``set_result`` gave it."""
    return c.results[name] if name in c.results else getattr(c.timeline, name)


def keep_answers(c: Conversation, now: float) -> None:
    """Before the answer changes: the runs that already ended keep the answer they ended with (their finish is in
    the agent's events once it caught up)."""
    _agent.catch_up(c, now)


def changes(c: Conversation, now: float) -> list[tuple[str, str]]:
    """The git changes (status, path) by path, once the agent ended a run."""
    return sorted(result(c, "changes"), key=lambda change: change[1]) if ended_once(c, now) else []


def diff(c: Conversation, path: str, status: str) -> tuple[str | None, str | None]:
    """A changed file's (original, modified)."""
    given = c.results.get("diffs", {})
    if path in given:
        return given[path]
    return (None if status == "ADDED" else "old line\n"), (None if status == "DELETED" else "new line\n")


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
    said = c.message if c.message is not None else next((text for _, text, _ in c.follow_ups), "")
    first_line = said.strip().splitlines()
    ended_at = _agent.first_end(c, now)
    named_at = None if ended_at is None else ended_at + c.timeline.title_delay
    named = (named_at is not None and named_at <= now) or c.forced.get("execution_status", "").lower() in ENDED
    title = first_line[0][:60] if first_line and named else f"Conversation {c.conversation_id[:5]}"
    # A rename holds, unless the server's own naming (1.11.0's title callback, once, after the first turn) came
    # after it: that one saves its title over whatever the conversation had.
    if c.renamed is not None and not (named and named_at is not None and c.renamed[1] < named_at):
        title = c.renamed[0]
    ended = ended_once(c, now)
    counted = ended and c.timeline.keeps_events  # a server that keeps no events counts nothing
    usage = dict(_ZERO_TOKENS)
    if counted:
        usage.update(prompt_tokens=result(c, "prompt_tokens"), completion_tokens=result(c, "completion_tokens"))
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
        "pr_number": list(result(c, "pr_numbers")) if ended else [],
        "llm_model": request["llm_model"] or "openai/fake-model",
        "agent_kind": "openhands",
        "metrics": {
            "model_name": "default",
            "accumulated_cost": float(result(c, "cost")) if counted else 0.0,
            "max_budget_per_task": None,
            "accumulated_token_usage": usage,
        },
        "parent_conversation_id": request["parent_conversation_id"],
        "sub_conversation_ids": [],
        # 1.11.0's webhook saves the conversation afresh, without ``public``, at each status change of its agent:
        # a PATCH holds only until the next one (a share made while the agent runs is lost when it finishes).
        "public": c.public if _agent.last_change(c, now) <= c.public_at else None,
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


def events(c: Conversation, now: float) -> list[dict[str, Any]]:
    """What ``events/search`` finds at ``now``, oldest first. A timeline with ``steps`` has every event the agent
    server's webhook sent (its ``full_state`` snapshots too: the one it got when it subscribed, at READY, and the
    live ones), as they reached the app server: in batches of ``timeline.search_batch``, or ``search_flush`` seconds
    after the first one not sent yet (the real agent server's quirk: the app server lags the socket; the recorded
    run of 3 steps makes 20 events, 4 whole batches, so it shows no lag, and a run of 2 makes 17: the last 2 come
    30 s late), sorted by time stamp (a ``stats`` update comes before its action, as on the real one). One without
    steps answers as the server did before the agent server was modelled: the user's messages, the status changes,
    the finish action and its observation, at once. A server that keeps no events has none."""
    if not c.timeline.keeps_events:
        return []
    if c.timeline.steps:
        arrived = _delivered(_agent.app_server_events(c, now), now, c.timeline.search_batch, c.timeline.search_flush)
        stored = sorted(arrived, key=lambda e: e.stamp)  # (sorted by time stamp, as the real one's SQL is)
    else:
        stored = [e for e in _agent.stored(c, now) if e.tag in _PLAIN_EVENTS]
    return [_agent.render(c, e, now) for e in stored]


def _delivered(stored: list[_agent.Event], now: float, size: int, flush: float) -> list[_agent.Event]:
    """The events that reached the app server by ``now``: a batch goes when it holds ``size`` events, or ``flush``
    seconds after its first one came."""
    out: list[_agent.Event] = []
    batch: list[_agent.Event] = []
    first = 0.0
    for event in stored:
        if batch and first + flush <= event.at:
            out += batch
            batch = []
        if not batch:
            first = event.at
        batch.append(event)
        if len(batch) >= size:
            out += batch
            batch = []
    if batch and first + flush <= now:
        out += batch
    return out


# ---------------------------------------------------------------------------------------------------- requests
def _start_request(body: Any) -> dict[str, Any]:
    """The start request as the task echoes it (unknown fields dropped), or the 422 for a mistyped field."""
    body = json_object(body)
    message = body.get("initial_message")
    problems = string_problems(
        body, ("selected_repository", "selected_branch", "title", "llm_model", "system_message_suffix", "sandbox_id")
    )
    if body.get("agent_type") is not None and body["agent_type"] not in AGENT_TYPES:
        msg = "Input should be 'default' or 'plan'"
        problems.append(
            problem("enum", ["body", "agent_type"], msg, body["agent_type"], {"expected": "'default' or 'plan'"})
        )
    secrets_given = body.get("secrets")
    if secrets_given is not None and (
        not isinstance(secrets_given, dict) or not all(isinstance(v, str) for v in secrets_given.values())
    ):
        problems.append(problem("dict_type", ["body", "secrets"], "Input should be a valid dictionary", secrets_given))
    if body.get("public") is not None:
        boolean_field(body, "public", False, problems)
    if message is not None and not isinstance(message, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        problems.append(problem("model_attributes_type", ["body", "initial_message"], msg, message))
    elif message is not None and not isinstance(message.get("content", []), list):
        loc = ["body", "initial_message", "content"]
        problems.append(problem("list_type", loc, "Input should be a valid list", message["content"]))
    if problems:
        raise HttpError(422, problems)
    request = {**_REQUEST_DEFAULTS, **{name: body[name] for name in _REQUEST_DEFAULTS if name in body}}
    if request["agent_type"] is None:
        request["agent_type"] = "default"
    if isinstance(body.get("public"), (bool, int, str)):
        request["public"] = boolean_field(body, "public", False, [])
    if isinstance(secrets_given, dict):  # (SecretStr: the echo names each secret, never its value)
        request["secrets"] = dict.fromkeys(secrets_given, "**********")
    if message is not None:
        content = [{"cache_prompt": False, **i} if isinstance(i, dict) else i for i in message.get("content", [])]
        request["initial_message"] = {"role": "user", **message, "content": content, "run": message.get("run", False)}
    return request


#: What the real 1.11.0's start task says when the id it was given is taken.
DUPLICATE_ID_DETAIL = "Server error '500 Internal Server Error' for url 'http://localhost:8003/api/conversations'"


def _chosen_id(value: Any) -> str | None:
    """The id a start asked for (any form Python's ``UUID()`` reads), as 32 hex; the 422 when it is none."""
    if value is None:
        return None
    why = _uuid_problem(value) if isinstance(value, str) else "invalid type"
    if why:
        msg = f"Input should be a valid UUID, {why}"
        raise HttpError(422, [problem("uuid_parsing", ["body", "conversation_id"], msg, value, {"error": why})])
    return uuid.UUID(value).hex


def _message_text(request: dict[str, Any]) -> str | None:
    message = request["initial_message"]
    if message is None:
        return None
    items = [item for item in message["content"] if isinstance(item, dict)]
    return "\n".join(item.get("text", "") for item in items if item.get("type") == "text")


def _send_message_request(body: Any, problems: list[Problem]) -> tuple[str, bool]:
    """A follow-up's text and ``run``, or the 422 for the body (with ``problems`` already found in the path)."""
    try:
        body = json_object(body)
    except HttpError as error:
        raise HttpError(422, problems + error.reply.body["detail"]) from None
    role = body.get("role", "user")
    if role != "user":
        msg, ctx = "Input should be 'user'", {"expected": "'user'"}
        problems.append(problem("literal_error", ["body", "role"], msg, role, ctx))
    content = body.get("content")
    if "content" not in body:
        problems.append(problem("missing", ["body", "content"], "Field required", body))
    elif not isinstance(content, list):
        problems.append(problem("list_type", ["body", "content"], "Input should be a valid list", content))
    elif not content:
        msg = "List should have at least 1 item after validation, not 0"
        sizes: dict[str, Any] = {"field_type": "List", "min_length": 1, "actual_length": 0}
        problems.append(problem("too_short", ["body", "content"], msg, content, sizes))
    else:
        problems += _content_problems(content)
    run = boolean_field(body, "run", False, problems)
    if problems:
        raise HttpError(422, problems)
    texts = [item["text"] for item in content if isinstance(item, dict) and item.get("type", "text") == "text"]
    return "\n".join(texts), run


def _content_problems(content: list[Any]) -> list[Problem]:
    """Problems of the items that are neither text nor an image. (Pydantic also lists how each item failed to be an
    ``ImageContent``; only the ``TextContent`` part is written here.)"""
    found = []
    for index, item in enumerate(content):
        loc: list[str | int] = ["body", "content", index, "TextContent"]
        if isinstance(item, dict) and item.get("type") == "image" and isinstance(item.get("image_urls"), list):
            continue
        if not isinstance(item, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            found.append(problem("model_attributes_type", loc, msg, item))
        elif "text" not in item:
            found.append(problem("missing", [*loc, "text"], "Field required", item))
        elif not isinstance(item["text"], str):
            found.append(problem("string_type", [*loc, "text"], "Input should be a valid string", item["text"]))
    return found


def _path_problems(conversation_id: str) -> list[Problem]:
    """The 422 item for a ``conversation_id: UUID`` path parameter that pydantic refuses."""
    why = _uuid_problem(conversation_id)
    if why is None:
        return []
    msg = f"Input should be a valid UUID, {why}"
    return [problem("uuid_parsing", ["path", "conversation_id"], msg, conversation_id, {"error": why})]


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


def _token(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def _sandbox_id() -> str:
    return _token(22)


class V1Api:
    """The V1 routes over a server's conversations. ``reads_only``: the read routes, no conversations (the V1
    side of a V0 server, like 1.6.0's)."""

    FIELDS = frozenset({"execution_status", "sandbox_status", "title"})
    OUTCOMES = ("finished", "error", "stuck")

    def __init__(self, server: LocalOpenHandsServer, *, reads_only: bool = False) -> None:
        self.server, self.reads_only = server, reads_only
        #: Sandboxes deleted (``DELETE /api/v1/sandboxes/{id}``): their conversations stay, their sandbox is gone.
        self.deleted_sandboxes: set[str] = set()
        #: Pending messages queued, by the id of their path (any text: the real route does not check it).
        self.pending: dict[str, int] = {}
        self.routes = [
            route(("GET",), _ID, self.get_conversations),
            route(("GET",), _ID + "/search", self.search_conversations),
            route(("GET",), _ID + "/count", self.count_conversations),
            route(("GET",), _ID + "/start-tasks", self.get_tasks),
            route(("GET",), _ID + "/start-tasks/search", self.search_tasks),
            route(("POST",), _ITEM + "/send-message", self.send_message),
            route(("GET",), _ITEM + "/git/changes", self.git_changes),
            route(("GET",), _ITEM + "/git/diff", self.git_diff),
            route(("GET",), _ITEM + "/file", self.read_file),
            route(("DELETE",), _ITEM, self.delete),
            route(("PATCH",), _ITEM, self.update),
            route(("POST",), r"/api/v1/sandboxes/(?P<sandbox_id>[^/]+)/(?P<action>pause|resume)", self.sandbox),
            route(("DELETE",), r"/api/v1/sandboxes/(?P<path_id>[^/]+)", self.delete_sandbox),
            route(("GET",), r"/api/v1/conversation/(?P<conversation_id>[^/]+)/events/search", self.search_events),
            route(("POST",), r"/api/v1/conversations/(?P<path_id>[^/]+)/pending-messages", self.pending_message),
            *_lists.routes(server),
        ]
        if not reads_only:
            self.routes.insert(0, route(("POST",), _ID, self.start))
        #: Every route of 1.11.0 (``routes`` is what this server answers: fewer as an older version).
        self.all_routes = list(self.routes)

    # -------------------------------------------------------------- what the server asks
    exists = staticmethod(exists)
    active = staticmethod(active)

    @staticmethod
    def state(c: Conversation, now: float) -> dict[str, str | None]:
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
        sandbox_id = echo["sandbox_id"] or _sandbox_id()
        if echo["sandbox_id"] and not self.server._sandbox_known(echo["sandbox_id"]):
            fails_in, detail = "WAITING_FOR_SANDBOX", f"Sandbox not found: {echo['sandbox_id']}"
        chosen = _chosen_id(echo["conversation_id"])
        if chosen is not None and self.server._has(chosen):
            # The real 1.11.0 does not deduplicate: a new start task, which ends ERROR when the agent server
            # refuses the id it already has (recorded in the API notes).
            fails_in, detail, chosen = PHASES[-1], DUPLICATE_ID_DETAIL, None
        if not echo["sandbox_id"]:  # (a new sandbox, not one reused)
            self._make_room()
        conversation = self.server._open(
            conversation_id=chosen,
            message=_message_text(echo),
            repository=repository,
            request=echo,
            task_id=uuid.uuid4().hex,
            sandbox_id=sandbox_id,
            agent_server_url=self.server.agent_url,
            workspace=self.server._workspace_of(sandbox_id),
            fails_in=fails_in,
            detail=detail,
        )
        if conversation is None:
            return self.server._rate_limited()
        with self.server._lock:
            return Reply(200, task_json(conversation, conversation.created, naive=False))

    def update(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``PATCH /api/v1/app-conversations/{id}`` (``AppConversationUpdateRequest``): the title and ``public``
        (the web app's share switch) of a conversation; the others (repository, branch) are not modelled."""
        body = json_object(request.body)
        problems = string_problems(body, ("title", "selected_repository", "selected_branch"))
        public = boolean_field(body, "public", False, problems) if body.get("public") is not None else None
        if problems:
            raise HttpError(422, problems)
        conversation, now = self._find(conversation_id.replace("-", "").lower())
        if conversation is None or not exists(conversation, now):
            return Reply(404, {"detail": "unknown_app_conversation"})
        with self.server._lock:
            if body.get("title") is not None:
                conversation.renamed = (body["title"], now)
            if public is not None:
                conversation.public, conversation.public_at = public, now
            return Reply(200, conversation_json(conversation, now))

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

    def send_message(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``POST .../{id}/send-message``: a follow-up; with ``run`` the agent runs on it at once. The sandbox must
        be RUNNING: 410 if gone, 503 in error, 409 otherwise (paused, starting)."""
        text, run = _send_message_request(request.body, _path_problems(conversation_id))
        wanted = uuid.UUID(conversation_id)
        with self.server._lock:
            conversation, now = self._find(wanted.hex)
            if conversation is None:
                raise HttpError(404, f"Conversation {wanted} not found")
            if conversation.sandbox_id in self.deleted_sandboxes:
                raise HttpError(404, f"Sandbox not found for conversation {wanted}")
            sandbox = _sandbox_status(conversation)
            if sandbox == "MISSING":
                raise HttpError(410, "Conversation is archived. The sandbox no longer exists.")
            if sandbox == "ERROR":
                raise HttpError(503, "Sandbox is in an error state and cannot accept messages.")
            if sandbox != "RUNNING":
                resume = f"Use POST /api/v1/sandboxes/{conversation.sandbox_id}/resume to resume it first."
                raise HttpError(409, f"Sandbox is {sandbox}. {resume}")
            conversation.follow_ups.append((now, text, run))
            _agent.follow_up(conversation, now, text, run)
        return Reply(200, {"success": True, "sandbox_status": "RUNNING", "message": None})

    def sandbox(self, request: RecordedRequest, sandbox_id: str, action: str) -> Reply:
        """``POST /api/v1/sandboxes/{id}/pause`` or ``/resume``: FastAPI's bare 404 for a sandbox that is not there
        (unknown, deleted, or MISSING: its process died)."""
        with self.server._lock:
            found = [c for c in self._read(ready_only=True)[0] if c.sandbox_id == sandbox_id]
            if not found or any(_sandbox_status(c) == "MISSING" for c in found):
                raise HttpError(404, "Not Found")
            if action == "resume" and any(c.paused for c in found):
                self._make_room()
            for conversation in found:
                conversation.paused = action == "pause"
        return Reply(200, {"success": True})

    def _make_room(self) -> None:
        """Past ``max_sandboxes``, pause the oldest running sandboxes until one more fits (the real
        ``pause_old_sandboxes(max_num_sandboxes - 1)``, before a sandbox starts or resumes)."""
        limit = self.server.max_sandboxes
        if limit is None:
            return
        with self.server._lock:
            running: dict[str, list[Conversation]] = {}
            for c in self._read(ready_only=True)[0]:  # (oldest first)
                if not c.deleted and _sandbox_status(c) == "RUNNING":
                    running.setdefault(c.sandbox_id, []).append(c)
            for sandbox in list(running)[: max(0, len(running) - (limit - 1))]:
                for c in running[sandbox]:
                    c.paused = True

    def delete_sandbox(self, request: RecordedRequest, path_id: str) -> Reply:
        """``DELETE /api/v1/sandboxes/{id}?sandbox_id={id}``: the real route names its path parameter ``id`` but
        reads ``sandbox_id``, so the id must be in the query too (422 without it; the query's id is the one
        deleted). Its conversations read MISSING from now on."""
        query = Query(request)
        wanted = query.required("sandbox_id")
        query.check()
        with self.server._lock:
            found = [c for c in self._read(ready_only=True)[0] if c.sandbox_id == wanted]
            if wanted is None or not found or wanted in self.deleted_sandboxes:  # (None: query.check() raised)
                raise HttpError(404, "Not Found")
            self.deleted_sandboxes.add(wanted)
            for conversation in found:
                conversation.forced["sandbox_status"] = "MISSING"
        return Reply(200, {"success": True})

    def delete(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``DELETE .../{id}``: the id is read by Python's ``UUID()`` (400), then it must exist (404)."""
        try:
            wanted = uuid.UUID(conversation_id).hex
        except ValueError:
            raise HttpError(400, "Invalid conversation ID format") from None
        with self.server._lock:
            conversation, _ = self._find(wanted)
            if conversation is None:
                raise HttpError(404, "Conversation not found")
            conversation.deleted = True
        return Reply(200, {"success": True})

    def git_changes(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET .../{id}/git/changes?path=``: the changes of the repository at ``path`` (none elsewhere)."""
        conversation, now, path = self._agent_server(request, conversation_id, "path")
        if path.rstrip("/") != WORKSPACE:
            return Reply(200, [])
        return Reply(200, [{"status": status, "path": name} for status, name in changes(conversation, now)])

    def git_diff(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET .../{id}/git/diff?path=``: a changed file's original and modified text; the agent server refuses
        any other path (400), which the app server passes on as a 502."""
        conversation, now, path = self._agent_server(request, conversation_id, "path")
        changed = {name: status for status, name in changes(conversation, now)}
        name = path[len(WORKSPACE) + 1 :] if path.startswith(WORKSPACE + "/") else None
        if name not in changed:
            raise HttpError(502, "Agent server error: 400")
        original, modified = diff(conversation, name, changed[name])
        return Reply(200, {"modified": modified, "original": original})

    def read_file(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET .../{id}/file?file_path=``: a JSON string, the file's text; ``""`` for anything it cannot read."""
        query = Query(request)
        query.problems += _path_problems(conversation_id)
        query.check()
        file_path = query.text("file_path")
        file_path = WORKSPACE + "/PLAN.md" if file_path is None else file_path
        with self.server._lock:
            conversation, now = self._find(uuid.UUID(conversation_id).hex)
            if conversation is None or _sandbox_status(conversation) != "RUNNING":
                return Reply(200, "")
            written = _workspace.read_text(conversation.workspace, file_path) if conversation.workspace else ""
            changed = {name: status for status, name in changes(conversation, now)}
            name = file_path[len(WORKSPACE) + 1 :] if file_path.startswith(WORKSPACE + "/") else None
            modified = diff(conversation, name, changed[name])[1] if name in changed else None
        return Reply(200, written or modified or "")

    def search_events(self, request: RecordedRequest, conversation_id: str) -> Reply:
        """``GET /api/v1/conversation/{id}/events/search?kind__eq=&sort_order=&page_id=&limit=``: the events, oldest
        first by default. An unknown conversation has none; an id that is not a UUID breaks the route (500). Unlike
        the real server, a ``kind__eq`` that names no event class is not a 422: it just finds nothing."""
        query = Query(request)
        limit = query.integer("limit", 100, gt=0, le=100)
        order = query.text("sort_order")
        order = "TIMESTAMP" if order is None else order
        if order not in SORT_ORDERS:
            expected = "'TIMESTAMP' or 'TIMESTAMP_DESC'"
            query.problems.append(
                problem("enum", ["query", "sort_order"], f"Input should be {expected}", order, {"expected": expected})
            )
        query.check()
        try:
            wanted = uuid.UUID(conversation_id).hex
        except ValueError:
            return Reply(500, "Internal Server Error", content_type="text/plain; charset=utf-8")
        kind = query.text("kind__eq")
        since, until = _moment(query, "timestamp__gte"), _moment(query, "timestamp__lt")
        query.check()
        with self.server._lock:
            conversation, now = self._find(wanted)
            stream = events(conversation, now) if conversation else []
        if kind is not None:
            stream = [event for event in stream if event["kind"] == kind]
        if since is not None:
            stream = [event for event in stream if _naive(event["timestamp"]) >= since]
        if until is not None:
            stream = [event for event in stream if _naive(event["timestamp"]) < until]
        if order == "TIMESTAMP_DESC":
            stream.reverse()
        items, next_page = page(stream, query.text("page_id"), limit or 100)
        return Reply(200, {"items": items, "next_page_id": next_page})

    def pending_message(self, request: RecordedRequest, path_id: str) -> Reply:
        """``POST /api/v1/conversations/{id}/pending-messages``: 201 ``{"id", "queued": true, "position"}`` for any
        id (at most 10 a id: 429). As on the real server, only what is queued before READY under ``task-{task id}``
        (what the web app sends) or the conversation's id with hyphens is delivered, at READY, as a user message
        the agent runs on; anything else (the bare task id, a conversation that runs already) is queued for ever."""
        body = request.body
        if not isinstance(body, dict):
            raise HttpError(400, "Invalid request body")
        content = body.get("content")
        if not content or not isinstance(content, list):
            raise HttpError(400, "content must be a non-empty list")
        bad = [index for index, item in enumerate(content) if _content_problems([item])]
        if bad:
            msg = f"Invalid content format: {len(bad)} validation errors for list[TextContent | ImageContent]"
            raise HttpError(400, msg)
        texts = [item["text"] for item in content if isinstance(item, dict) and item.get("type", "text") == "text"]
        with self.server._lock:
            queued = self.pending.get(path_id, 0)
            if queued >= 10:
                raise HttpError(429, "Too many pending messages. Maximum 10 messages per conversation.")
            self.pending[path_id] = queued + 1
            conversations, now = self.server._snapshot()
            for conversation in conversations:
                hyphenated = str(uuid.UUID(conversation.conversation_id))
                if path_id in (f"task-{conversation.task_id}", hyphenated) and now < conversation.ready_at:
                    conversation.pending.append((now, "\n".join(texts)))
        return Reply(201, {"id": str(uuid.uuid4()), "queued": True, "position": queued + 1})

    # -------------------------------------------------------------- helpers
    def _find(self, conversation_hex: str) -> tuple[Conversation | None, float]:
        """The conversation with this id if it exists now, and the time to render it at; hold ``_lock``."""
        conversations, now = self._read(ready_only=True)
        return next((c for c in conversations if c.conversation_id == conversation_hex), None), now

    def _agent_server(
        self, request: RecordedRequest, conversation_id: str, name: str
    ) -> tuple[Conversation, float, str]:
        """For the routes the app server passes on to the sandbox's agent server: the conversation, the time and the
        required query parameter ``name``, or the error: 422, 404 if not there or not running, 409 if paused."""
        query = Query(request)
        query.problems += _path_problems(conversation_id)
        value = query.required(name)
        query.check()
        wanted = uuid.UUID(conversation_id)
        with self.server._lock:
            conversation, now = self._find(wanted.hex)
            sandbox = _sandbox_status(conversation) if conversation else None
        if sandbox == "PAUSED":
            raise HttpError(409, "Sandbox is paused; resume it before reading git state.")
        if conversation is None or sandbox != "RUNNING":
            raise HttpError(404, f"Conversation {wanted} is not reachable")
        return conversation, now, value or ""

    def _read(self, *, ready_only: bool) -> tuple[list[Conversation], float]:
        """The conversations (oldest first; only READY ones if ``ready_only``) and the time to render them at."""
        conversations, now = self.server._snapshot()
        if self.reads_only:
            return [], now
        return [c for c in conversations if not ready_only or exists(c, now)], now


def _naive(text: str) -> dt.datetime:
    """A time stamp as a naive UTC ``datetime`` (aware ones converted; naive ones are UTC, the server's zone)."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _moment(query: Query, name: str) -> dt.datetime | None:
    """An optional ``datetime`` query parameter, or a 422 problem."""
    raw = query.text(name)
    if raw is None:
        return None
    try:
        return _naive(raw)
    except ValueError:
        msg = "Input should be a valid datetime or date, invalid character in year"
        query.problems.append(problem("datetime_from_date_parsing", ["query", name], msg, raw))
        return None


def _paging(request: RecordedRequest) -> tuple[int, str | None]:
    query = Query(request)
    limit = query.integer("limit", 100, gt=0, le=100)
    query.check()
    return limit or 100, query.text("page_id")
