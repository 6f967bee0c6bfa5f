"""The V1 dialect (``/api/v1/app-conversations``): OpenHands 1.7 and later, and OpenHands Cloud.

A start is a POST that answers a *start task* (its own id, a phase such as WAITING_FOR_SANDBOX, then READY with
``app_conversation_id``, or ERROR with ``detail``). Reads are batched: ``?ids=A&ids=B`` answers a list with ``null``
for unknown ids; there is no single GET (405). The agent's progress is ``execution_status``, never
``sandbox_status``: the sandbox stays RUNNING long after the agent finished.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConflictError, NotFoundError, ProtocolError, ValidationError
from ..models import (
    SHARED_FIELDS,
    Change,
    Conversation,
    ConversationStatus,
    FileDiff,
    cost_from,
    optional_str,
    parse_time,
    public_fields,
    shared_fields,
)
from ..start_options import StartOptions, ignored
from ..validation import validate_user_conversation_id
from . import agent
from .common import Call, Operation, error_for, expect_json, expect_list, item_path, server_said
from .dialect import Dialect, EventsPage, Page

START_PATH = "/api/v1/app-conversations"
CONVERSATIONS_PATH = "/api/v1/app-conversations"
TASKS_PATH = "/api/v1/app-conversations/start-tasks"
SEARCH_PATH = "/api/v1/app-conversations/search"
SANDBOXES_PATH = "/api/v1/sandboxes"
ITEM_PATH = CONVERSATIONS_PATH + "/{}"
SANDBOX_PATH = SANDBOXES_PATH + "/{}"
EVENTS_PATH = "/api/v1/conversation/{}/events/search"  # (singular "conversation", no "app-")
PENDING_PATH = "/api/v1/conversations/{}/pending-messages"  # (plural "conversations", no "app-")
#: The most events one page of events search holds (the server refuses more).
EVENTS_LIMIT = 100
#: Where the agent's workspace is: repositories are cloned under it (``/workspace/project/<repo name>``); the web
#: app asks for the changes of this directory, and the server finds the repositories in it.
WORKSPACE = "/workspace/project"
#: How far back (pages of 100 events, newest first) to look for the agent's last message.
ANSWER_PAGES = 3
MAX_IDS = 99  # the server answers 400 "Too many ids requested. Maximum is 99." from 100 on (start tasks allow 100)
#: The version that added the routes to the agent's workspace (``git/changes``, ``git/diff``): 1.7.0 has none.
GIT_ROUTES_SINCE = "1.8"

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
    {"id", "updated_at", "sandbox_status", "execution_status", "sandbox_id", "metrics", *SHARED_FIELDS}
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
    """The hex form of a UUID written either way, or None. ``uuid.UUID`` alone would take ``_`` and ``+`` too (and,
    given the two forms only, gives what this gives: the 32 digits, lower case)."""
    return value.replace("-", "").lower() if isinstance(value, str) and _UUID.fullmatch(value) else None


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

    def start(
        self,
        message: str | None,
        repository: str | None,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Operation[Conversation]:
        """``message`` None: no ``initial_message``, so the conversation waits ``idle`` once ready (files can be
        uploaded, then ``send`` runs it); the real 1.11.0 runs an ``initial_message`` even with ``run: false``."""
        payload: dict[str, Any] = {}
        if message is not None:
            payload["initial_message"] = {"content": [{"type": "text", "text": message}]}
        if repository:
            payload["selected_repository"] = repository
        if options:  # (every field is 1.11.0's: selected_branch, llm_model, agent_type, system_message_suffix, ...)
            payload.update(options.v1_fields())
        if conversation_id is not None:  # honoured by the server (recorded on 1.11.0); a second start with it fails
            payload["conversation_id"] = self.normalize_id(conversation_id)
        call = Call("POST", START_PATH, json=payload, route="start", api=self.name)
        response = yield call
        body = expect_json(response, call, self.base_url, repository=repository)
        if not isinstance(body, Mapping) or "id" not in body:
            raise ProtocolError("The server's answer to the new conversation has no start task id.")
        started = self.from_task(body, repository=repository)
        left_out = ignored(options, body.get("request")) if options else []
        return dataclasses.replace(started, ignored=tuple(left_out)) if left_out else started

    def read(self, snapshots: Sequence[Conversation]) -> Operation[list[Conversation | None]]:
        """An id that is no UUID (from a saved notebook, the record, a hand-made snapshot) is not sent: the server
        would refuse the whole batch for it (400). That one reads as unknown (None); the others are read."""
        results: list[Conversation | None] = [None if _malformed(s) else s for s in snapshots]
        pending = [
            (i, s) for i, s in enumerate(results) if s is not None and s.conversation_id is None and s.start_task_id
        ]
        if pending:
            call = Call(
                "GET",
                TASKS_PATH,
                params=tuple(("ids", as_uuid(s.start_task_id) or "") for _, s in pending),
                route="batch",
                api=self.name,
            )
            answers = expect_list((yield call), call, self.base_url, len(pending))
            for (i, snapshot), task in zip(pending, answers):
                results[i] = None if task is None else self.from_task(task, previous=snapshot)
        started = [(i, s) for i, s in enumerate(results) if s is not None and s.conversation_id is not None]
        if started:
            call = Call(
                "GET",
                CONVERSATIONS_PATH,
                params=tuple(("ids", as_uuid(s.conversation_id) or "") for _, s in started),
                route="batch",
                api=self.name,
            )
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
        request: Mapping[str, Any] = task["request"] if isinstance(task.get("request"), Mapping) else {}
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
            requested_at=parse_time(task.get("created_at"), "created_at")
            or (previous.requested_at if previous else None),
            start_task_status=raw_status,
            extra=public_fields(task, _TASK_FIELDS),
        )

    def from_conversation(self, item: Any, *, previous: Conversation | None = None) -> Conversation:
        if not isinstance(item, Mapping):
            raise ProtocolError(f"The server sent a {type(item).__name__} where a conversation was expected.")
        sandbox = _text(item.get("sandbox_status"), "sandbox_status")
        execution = _text(item.get("execution_status"), "execution_status")
        status, phase = derive_status(sandbox, execution)
        conversation_id = server_id(item.get("id"), "conversation id")
        agent.remember(self.base_url, conversation_id, item)  # (the session key goes there, and nowhere else)
        return Conversation(
            conversation_id=conversation_id,
            status=status,
            phase=phase,
            **shared_fields(item, updated="updated_at"),
            api=self.name,
            start_task_id=previous.start_task_id if previous else None,
            requested_at=previous.requested_at if previous else None,
            start_task_status=previous.start_task_status if previous else None,
            sandbox_status=sandbox,
            execution_status=execution,
            sandbox_id=optional_str(item.get("sandbox_id"), "sandbox_id"),
            cost=cost_from(item.get("metrics")),
            extra=public_fields(item, _CONVERSATION_FIELDS),
        )

    # ------------------------------------------------------------------ after the start
    def search(self, limit: int, page_id: str | None = None) -> Operation[Page]:
        items, next_page = yield from self._page(SEARCH_PATH, "items", limit, page_id)
        return Page(tuple(self.from_conversation(item) for item in items if item is not None), next_page)

    def send(self, snapshot: Conversation, text: str) -> Operation[None]:
        conversation_id = _started(snapshot, "take a message")
        payload = {"role": "user", "content": [{"type": "text", "text": text}], "run": True}
        once = (
            f"the message may have been sent anyway; check {self.conversation_url(conversation_id)} (its latest "
            "messages) before sending it again"
        )
        call = Call(
            "POST",
            item_path(ITEM_PATH + "/send-message", conversation_id, "conversation id"),
            json=payload,
            route="item",
            once=once,
        )
        response = yield call
        if response.status_code == 409:
            raise ConflictError(
                f"Conversation {conversation_id} is paused: resume it first (`conv.resume()` or "
                f"`%openhands resume {conversation_id}`).",
                status_code=409,
            )
        expect_json(response, call, self.base_url)

    def running(self, snapshot: Conversation) -> Conversation:
        """A message sent with ``run`` sets the agent running in a running sandbox (the real server reads
        ``running`` at once): so the turn it starts is not taken for the previous one's end."""
        return dataclasses.replace(super().running(snapshot), execution_status="running", sandbox_status="RUNNING")

    def pause(self, snapshot: Conversation) -> Operation[None]:
        yield from self._sandbox(snapshot, "pause")

    def resume(self, snapshot: Conversation) -> Operation[None]:
        yield from self._sandbox(snapshot, "resume")

    def _sandbox(self, snapshot: Conversation, verb: str) -> Operation[None]:
        """Pausing and resuming act on the conversation's sandbox; its id comes from a fresh read (a snapshot from
        before the start task was ready has none, and an old one may name a sandbox since replaced)."""
        _started(snapshot, f"be {verb}d")
        (fresh,) = yield from self.read([snapshot])
        if fresh is None:
            raise not_found_error(snapshot)
        if not fresh.sandbox_id:
            raise ConflictError(f"Conversation {fresh.conversation_id} has no sandbox to {verb}: it is archived.")
        call = Call("POST", item_path(SANDBOX_PATH + "/" + verb, fresh.sandbox_id, "sandbox id"), route="sandbox")
        expect_json((yield call), call, self.base_url)

    def delete(self, snapshot: Conversation) -> Operation[None]:
        conversation_id = _started(snapshot, "be deleted")
        call = Call("DELETE", item_path(ITEM_PATH, conversation_id, "conversation id"), route="item")
        expect_json((yield call), call, self.base_url)

    def lookup(self, path: str, params: tuple[tuple[str, str], ...]) -> Operation[Any]:
        """A GET of one of the app server's lists (the user's repositories, a repository's branches, the models:
        :mod:`..suggestions`), its decoded answer."""
        call = Call("GET", path, params=params, route="probe", api=self.name)
        return expect_json((yield call), call, self.base_url)

    def update(self, snapshot: Conversation, fields: Mapping[str, Any]) -> Operation[Conversation]:
        """``PATCH`` what the web app changes: ``public`` (its share switch) and ``title`` (its rename). 1.11.0 takes
        both in the start request without keeping them, so ``--share`` and ``--title`` are set this way (see
        ``Connection._keep_options``)."""
        conversation_id = _started(snapshot, "be changed")
        call = Call("PATCH", item_path(ITEM_PATH, conversation_id, "conversation id"), json=dict(fields), route="item")
        return self.from_conversation(expect_json((yield call), call, self.base_url), previous=snapshot)

    def answer(self, snapshot: Conversation) -> Operation[str | None]:
        """Newest events first, back to the latest user message: the agent's finish message or its last message
        of this turn. (A server whose sandboxes are plain processes keeps no events: None there.)"""
        conversation_id = _started(snapshot, "have an answer")
        page_id: str | None = None
        for _ in range(ANSWER_PAGES):
            params = (("sort_order", "TIMESTAMP_DESC"), ("limit", "100")) + ((("page_id", page_id),) if page_id else ())
            page = yield from self._events_page(conversation_id, params)
            for event in page.items:
                if event.get("kind") == "MessageEvent" and event.get("source") == "user":
                    return None  # the latest turn has no answer yet
                text = agent_text(event)
                if text is not None:
                    return text
            page_id = page.next_page_id
            if not page_id:
                break
        return None

    def events(
        self, snapshot: Conversation, since: str | None = None, page_id: str | None = None
    ) -> Operation[EventsPage]:
        """One page (oldest first, at most 100) of the conversation's events, from ``since`` (the ISO time stamp of
        the latest event already seen, as the server wrote it: events at that very time come again)."""
        conversation_id = _started(snapshot, "have events")
        params: tuple[tuple[str, str], ...] = (("sort_order", "TIMESTAMP"), ("limit", str(EVENTS_LIMIT)))
        if since:
            params += (("timestamp__gte", since),)
        if page_id:
            params += (("page_id", page_id),)
        return (yield from self._events_page(conversation_id, params))

    def _events_page(self, conversation_id: str, params: tuple[tuple[str, str], ...]) -> Operation[EventsPage]:
        """One page of ``events/search`` with these parameters: its events (mappings only) and the next page's id."""
        call = Call(
            "GET",
            item_path(EVENTS_PATH, conversation_id, "conversation id"),
            params=params,
            route="item",
            api=self.name,
        )
        body = expect_json((yield call), call, self.base_url)
        items = body.get("items") if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError("The server's events answer has no list of items: is it an OpenHands server?")
        next_page = body.get("next_page_id")
        return EventsPage(
            tuple(i for i in items if isinstance(i, Mapping)),
            str(next_page) if isinstance(next_page, (str, int)) and next_page != "" else None,
        )

    def queue_message(self, snapshot: Conversation, text: str) -> Operation[None]:
        """A follow-up sent while the conversation is still starting: queued on the server for its start task (or
        the conversation, once it exists), delivered when it is ready."""
        if snapshot.conversation_id is not None:
            target = snapshot.conversation_id
        else:
            target = "task-" + server_id(snapshot.start_task_id, "start task id")
        call = Call(
            "POST",
            item_path(PENDING_PATH, target, "conversation id"),
            json={"role": "user", "content": [{"type": "text", "text": text}]},
            route="item",
            once=f"the message may have been queued anyway; check {self.conversation_url(target)} before sending it "
            "again",
        )
        response = yield call
        if response.status_code == 429:
            raise ConflictError(
                "The server already holds 10 messages for this conversation until it starts: wait for it to start.",
                status_code=429,
            )
        expect_json(response, call, self.base_url)

    def changes(self, snapshot: Conversation) -> Operation[tuple[Change, ...]]:
        conversation_id = _started(snapshot, "have changes")
        call = Call(
            "GET",
            item_path(ITEM_PATH + "/git/changes", conversation_id, "conversation id"),
            params=(("path", WORKSPACE),),
            route="agent",
            since=GIT_ROUTES_SINCE,
        )
        body = expect_json((yield call), call, self.base_url)
        if not isinstance(body, list):
            raise ProtocolError("The server's git changes answer is not a list: is it an OpenHands server?")
        return tuple(
            Change(str(item["status"]).upper(), str(item["path"]))
            for item in body
            if isinstance(item, Mapping) and isinstance(item.get("path"), str) and isinstance(item.get("status"), str)
        )

    def diff(self, snapshot: Conversation, path: str) -> Operation[FileDiff]:
        conversation_id = _started(snapshot, "have a diff")
        where = path if path.startswith("/") else f"{WORKSPACE}/{path}"
        call = Call(
            "GET",
            item_path(ITEM_PATH + "/git/diff", conversation_id, "conversation id"),
            params=(("path", where),),
            route="agent",
            since=GIT_ROUTES_SINCE,
        )
        response = yield call
        if response.status_code == 502 and "Agent server error: 400" in server_said(response)[0]:
            raise NotFoundError(
                f"No diff of {path[:200]!r}: it is not a file the agent changed (see conv.changes()).", status_code=502
            )
        if not response.is_success:
            raise error_for(response, call, self.base_url)
        body = expect_json(response, call, self.base_url)
        if not isinstance(body, Mapping):
            raise ProtocolError("The server's git diff answer is not an object: is it an OpenHands server?")
        original, modified = body.get("original"), body.get("modified")
        return FileDiff(
            path, original if isinstance(original, str) else None, modified if isinstance(modified, str) else None
        )


def _malformed(snapshot: Conversation) -> bool:
    """Whether an id the snapshot holds cannot be a V1 id (a UUID), so that asking for it would spoil a batch."""
    return any(
        value is not None and as_uuid(value) is None for value in (snapshot.conversation_id, snapshot.start_task_id)
    )


def _started(snapshot: Conversation, what: str) -> str:
    if snapshot.conversation_id is None:
        raise ConflictError(
            f"Start task {snapshot.start_task_id} has not created its conversation yet, so it cannot {what}: "
            "try again in a few seconds."
        )
    return snapshot.conversation_id


def not_found_error(snapshot: Conversation) -> NotFoundError:
    return NotFoundError(
        f"Conversation {snapshot.conversation_id} was not found (deleted?): check the id and the base URL."
    )


def agent_text(event: Mapping[str, Any]) -> str | None:
    """The words an event says to the user, if it is the agent speaking: a ``finish`` action's message, or a
    message from the agent."""
    if event.get("source") != "agent":
        return None
    action = event.get("action")
    if event.get("kind") == "ActionEvent" and isinstance(action, Mapping) and action.get("kind") == "FinishAction":
        message = action.get("message")
        return message if isinstance(message, str) else None
    if event.get("kind") == "MessageEvent":
        message = event.get("llm_message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):
            texts = [i["text"] for i in content if isinstance(i, Mapping) and isinstance(i.get("text"), str)]
            return "\n".join(texts) if texts else None
    return None
