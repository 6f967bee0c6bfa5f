"""The V1 dialect (``/api/v1/app-conversations``): OpenHands 1.7 and later, and OpenHands Cloud.

A start is a POST that answers a *start task* (its own id, a phase such as WAITING_FOR_SANDBOX, then READY with
``app_conversation_id``, or ERROR with ``detail``). Reads are batched: ``?ids=A&ids=B`` answers a list with ``null``
for unknown ids; there is no single GET (405). The agent's progress is ``execution_status``, never
``sandbox_status``: the sandbox stays RUNNING long after the agent finished.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import NotFoundError, ProtocolError, ValidationError
from ..models import Conversation, ConversationStatus, optional_str, parse_time, public_fields, shared_fields
from ..validation import validate_user_conversation_id
from .common import Call, Operation, expect_json, expect_list
from .dialect import Dialect

START_PATH = "/api/v1/app-conversations"
CONVERSATIONS_PATH = "/api/v1/app-conversations"
TASKS_PATH = "/api/v1/app-conversations/start-tasks"
MAX_IDS = 99  # the server answers 400 "Too many ids requested. Maximum is 99." from 100 on (start tasks allow 100)

S = ConversationStatus

_PHASES = {
    "WORKING": "preparing",
    "WAITING_FOR_SANDBOX": "waiting for sandbox",
    "PREPARING_REPOSITORY": "preparing repository",
    "RUNNING_SETUP_SCRIPT": "running setup script",
    "SETTING_UP_GIT_HOOKS": "setting up git hooks",
    "SETTING_UP_SKILLS": "setting up skills",
    "STARTING_CONVERSATION": "starting conversation",
    "READY": "starting conversation",
}
_EXECUTION = {
    "idle": S.IDLE,
    "running": S.RUNNING,
    "paused": S.PAUSED,
    "waiting_for_confirmation": S.WAITING_FOR_CONFIRMATION,
    "finished": S.FINISHED,
    "error": S.ERROR,
    "stuck": S.STUCK,
    "deleting": "DELETING",
}
_AGENT_DONE = {"finished", "error", "stuck"}
_SANDBOX = {  # what the sandbox says when the agent's own status cannot settle it
    "MISSING": (S.STOPPED, "sandbox gone"),
    "ERROR": (S.ERROR, "sandbox failed"),
    "PAUSED": (S.PAUSED, "sandbox paused"),
    "STARTING": (S.STARTING, "starting sandbox"),
}
_NO_REASON = "the start failed and the server gave no reason (often: no access to the repository)"

_TASK_FIELDS = frozenset({"id", "status", "detail", "app_conversation_id", "request", "created_at", "updated_at"})
_CONVERSATION_FIELDS = frozenset(
    {"id", "title", "created_at", "updated_at", "selected_repository", "trigger", "sandbox_status", "execution_status"}
)


def derive_status(sandbox_status: str | None, execution_status: str | None) -> tuple[str | None, str | None]:
    """(status, phase) of a started conversation. The agent's verdict (finished, error, stuck) wins; otherwise a
    sandbox that is gone, failed, paused or starting says more than the agent's last word."""
    execution = (execution_status or "").lower()
    sandbox = (sandbox_status or "").upper()
    if execution in _AGENT_DONE:
        return _EXECUTION[execution], None
    if sandbox in _SANDBOX:
        return _SANDBOX[sandbox]
    if execution:
        return _EXECUTION.get(execution, execution.upper()), None
    if sandbox == "RUNNING":
        return S.RUNNING, None
    return (sandbox or None), None


def task_status(status: str | None, detail: str | None) -> tuple[str, str]:
    """(status, phase) while a start task runs: STARTING and its step, or ERROR and the reason."""
    status = (status or "").upper()
    if status == "ERROR":
        return S.ERROR, detail or _NO_REASON
    return S.STARTING, _PHASES.get(status, status.lower().replace("_", " ") or "starting")


def _text(value: Any, name: str) -> str | None:
    text = optional_str(value, name)
    return " ".join(text.split()) if text else text


_UUID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def as_uuid(value: Any) -> str | None:
    """The hex form of a UUID written either way, or None. ``uuid.UUID`` alone would take ``_`` and ``+`` too."""
    return uuid.UUID(value).hex if isinstance(value, str) and _UUID.fullmatch(value) else None


def server_id(value: Any, what: str) -> str:
    """An id the server sent, as the hex UUID every V1 route accepts; anything else must not reach a URL."""
    hex_id = as_uuid(value)
    if hex_id is None:
        raise ProtocolError(f"The server sent an invalid {what} {str(value)[:60]!r}; refusing to use it.")
    return hex_id


class V1(Dialect):
    name = "v1"
    batch_size = MAX_IDS

    def normalize_id(self, reference: str) -> str:
        try:
            hex_id = as_uuid(validate_user_conversation_id(reference))  # a pasted link gives its id
        except ValidationError:
            hex_id = None
        if hex_id is None:
            raise ValidationError(
                f"{reference[:60]!r} is not a conversation or start task id (expected 32 hex digits, as in the link)."
            )
        return hex_id

    def start(self, message: str, repository: str | None) -> Operation[Conversation]:
        payload: dict[str, Any] = {"initial_message": {"content": [{"type": "text", "text": message}]}}
        if repository:
            payload["selected_repository"] = repository
        call = Call("POST", START_PATH, json=payload, route="start", api=self.name)
        response = yield call
        body = expect_json(response, call, self.base_url, repository=repository)
        if not isinstance(body, Mapping) or "id" not in body:
            raise ProtocolError("The server's answer to the new conversation has no start task id.")
        return self.from_task(body, repository=repository)

    def read(self, snapshots: Sequence[Conversation]) -> Operation[list[Conversation | None]]:
        results: list[Conversation | None] = list(snapshots)
        pending = [(i, s) for i, s in enumerate(snapshots) if s.conversation_id is None and s.start_task_id]
        if pending:
            call = Call("GET", TASKS_PATH, params=tuple(("ids", s.start_task_id or "") for _, s in pending),
                        route="batch", api=self.name)
            answers = expect_list((yield call), call, self.base_url, len(pending))
            for (i, snapshot), task in zip(pending, answers):
                results[i] = None if task is None else self.from_task(task, previous=snapshot)
        started = [(i, s) for i, s in enumerate(results) if s is not None and s.conversation_id is not None]
        if started:
            call = Call("GET", CONVERSATIONS_PATH, params=tuple(("ids", s.conversation_id or "") for _, s in started),
                        route="batch", api=self.name)
            answers = expect_list((yield call), call, self.base_url, len(started))
            just_ready = {i for i, _ in pending}
            for (i, snapshot), item in zip(started, answers):
                if item is not None:
                    results[i] = self.from_conversation(item, previous=snapshot)
                elif i not in just_ready:  # a conversation read before is gone; one whose task just turned READY
                    results[i] = None  # may not be readable yet, and keeps its task's snapshot until the next read
        return results

    def find(self, reference: str) -> Operation[Conversation]:
        ref = self.normalize_id(reference)
        for probe in (Conversation(ref), Conversation(None, start_task_id=ref)):
            (found,) = yield from self.read([probe])
            if found is not None:
                return found
        raise NotFoundError(f"No conversation or start task {ref} on {self.base_url}: check the id and the base URL.")

    # ------------------------------------------------------------------ answers to snapshots
    def from_task(
        self, task: Any, *, previous: Conversation | None = None, repository: str | None = None
    ) -> Conversation:
        if not isinstance(task, Mapping):
            raise ProtocolError(f"The server sent a {type(task).__name__} where a start task was expected.")
        raw_status = _text(task.get("status"), "status")
        detail = _text(task.get("detail"), "detail")
        status, phase = task_status(raw_status, detail)
        request = task.get("request") if isinstance(task.get("request"), Mapping) else {}
        conversation_id = task.get("app_conversation_id")
        return Conversation(
            conversation_id=server_id(conversation_id, "conversation id") if conversation_id else None,
            status=status,
            phase=phase,
            title=previous.title if previous else None,
            updated_at=parse_time(task.get("updated_at"), "updated_at"),
            selected_repository=optional_str(request.get("selected_repository"), "selected_repository")
            or repository
            or (previous.selected_repository if previous else None),
            api=self.name,
            start_task_id=server_id(task.get("id"), "start task id"),
            requested_at=parse_time(task.get("created_at"), "created_at") or (previous.requested_at if previous else None),
            start_task_status=raw_status,
            extra=public_fields(task, _TASK_FIELDS),
        )

    def from_conversation(self, item: Any, *, previous: Conversation | None = None) -> Conversation:
        if not isinstance(item, Mapping):
            raise ProtocolError(f"The server sent a {type(item).__name__} where a conversation was expected.")
        sandbox = _text(item.get("sandbox_status"), "sandbox_status")
        execution = _text(item.get("execution_status"), "execution_status")
        status, phase = derive_status(sandbox, execution)
        return Conversation(
            conversation_id=server_id(item.get("id"), "conversation id"),
            status=status,
            phase=phase,
            **shared_fields(item, updated="updated_at"),
            api=self.name,
            start_task_id=previous.start_task_id if previous else None,
            requested_at=previous.requested_at if previous else None,
            start_task_status=previous.start_task_status if previous else None,
            sandbox_status=sandbox,
            execution_status=execution,
            extra=public_fields(item, _CONVERSATION_FIELDS),
        )
