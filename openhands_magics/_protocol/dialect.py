"""The one small interface both API dialects implement, so callers never branch on which one a server speaks."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, OpenHandsError, ProtocolError, UnsupportedApiError
from ..models import Change, Conversation, ConversationStatus, FileDiff, Outcome, not_found
from .common import Call, Operation, Steps, Wait, expect_json

if TYPE_CHECKING:
    from ..start_options import StartOptions

#: How long a follow-up waits (seconds, counted in the pauses it asks for) for a resumed sandbox to run again.
RESUME_TIMEOUT = 60.0
#: The pause between two reads while it waits.
RESUME_INTERVAL = 1.0
#: Sandbox states from which no resume leads back to RUNNING: waiting for them would only run out the time.
_SANDBOX_LOST = frozenset({"ERROR", "MISSING"})


@dataclass(frozen=True)
class Page:
    """One page of the account's conversations, newest first, and the token for the next (None: the last page)."""

    items: tuple[Conversation, ...]
    next_page_id: str | None


@dataclass(frozen=True)
class EventsPage:
    """One page of a conversation's events as the server sent them (raw mappings, for :func:`..events.parse`),
    oldest first, and the token for the next (None: the last page)."""

    items: tuple[Mapping[str, Any], ...]
    next_page_id: str | None


class Dialect(abc.ABC):
    """How one OpenHands API starts and reads conversations. Stateless; one instance per server address."""

    #: "v1" or "v0": what users set with ``api`` and what a :class:`Conversation` records.
    name: str
    #: How many conversations one read request may carry (V1 reads ``?ids=`` lists; V0 one at a time).
    batch_size: int

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    @abc.abstractmethod
    def start(
        self,
        message: str | None,
        repository: str | None,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Operation[Conversation]:
        """POST a new conversation; the snapshot right after (V1: its start task's first phase). ``conversation_id``
        (V1 only): the id the new conversation is to have, chosen by the client (``--once``). ``options``: the
        branch, model, ... (:mod:`..start_options`), as fields this API has."""

    @abc.abstractmethod
    def read(self, snapshots: Sequence[Conversation]) -> Operation[list[Conversation | None]]:
        """Fresh snapshots of these (at most ``batch_size``), in order; None for one the server does not know."""

    @abc.abstractmethod
    def find(self, reference: str) -> Operation[Conversation]:
        """A snapshot for an id a person gave (a conversation id, or on V1 a start task id too)."""

    @abc.abstractmethod
    def normalize_id(self, reference: str) -> str:
        """The id as this API writes it; ValidationError when it cannot be one."""

    # ------------------------------------------------------------------ after the start
    # What only some APIs can do raises one line here; a dialect overrides what its API offers.
    def unsupported(self, what: str) -> UnsupportedApiError:
        return UnsupportedApiError(
            f"The {self.name.upper()} API of {self.base_url} cannot {what}: that needs OpenHands 1.7 or later (V1); "
            "do it in the OpenHands app."
        )

    def search(self, limit: int, page_id: str | None = None) -> Operation[Page]:
        """One page (at most ``limit``, newest first) of the account's conversations."""
        raise self.unsupported("list conversations")

    def _page(self, path: str, key: str, limit: int, page_id: str | None) -> Operation[tuple[list[Any], str | None]]:
        """One page of a paged list (``?limit=&page_id=``): its ``key`` items and the next page's token."""
        params = (("limit", str(limit)),) + ((("page_id", page_id),) if page_id else ())
        call = Call("GET", path, params=params, route="batch", api=self.name)
        body = expect_json((yield call), call, self.base_url)
        items = body.get(key) if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError(f"The server answered {path} without a list of {key}: is it an OpenHands server?")
        next_page = body.get("next_page_id")
        return items, str(next_page) if isinstance(next_page, (str, int)) and next_page != "" else None

    def send(self, snapshot: Conversation, text: str) -> Operation[None]:
        """A follow-up message that runs the agent again: one POST; a 409 (its sandbox is not running) is a
        ConflictError with ``status_code`` 409, and the message was not taken."""
        raise self.unsupported("send a follow-up message")

    def follow_up(
        self,
        snapshot: Conversation,
        text: str,
        *,
        resume_timeout: float = RESUME_TIMEOUT,
        interval: float = RESUME_INTERVAL,
    ) -> Steps[Conversation]:
        """A follow-up, whatever state the sandbox is in: send it; if the sandbox is paused (known from the
        snapshot, or the 409 that says so), resume it, wait until it runs, and send it then. Returns the snapshot
        the accepted message makes (the agent runs: :meth:`running`).

        The message is taken at most once: only a refused one (409: not taken) is sent again, once, after the
        resume; any other failure of the POST (its answer lost, a 5xx, a timeout) is raised with what to check
        (the ``once`` text of :meth:`send`), never sent again. It waits by yielding :class:`Wait` (the driver
        sleeps), for at most ``resume_timeout`` seconds of pauses."""
        if (snapshot.sandbox_status or "").upper() == "PAUSED":  # known paused: no refused POST needed to learn it
            snapshot = yield from self.resume_until_running(snapshot, resume_timeout, interval)
        try:
            yield from self.send(snapshot, text)
        except ConflictError as refused:  # paused since the last read (Cloud pauses old ones past 10 running)
            if refused.status_code != 409:
                raise
            snapshot = yield from self.resume_until_running(snapshot, resume_timeout, interval)
            yield from self.send(snapshot, text)  # a 409 again is raised: the sandbox went away again meanwhile
        return self.running(snapshot)

    def resume_until_running(self, snapshot: Conversation, timeout: float, interval: float) -> Steps[Conversation]:
        """Resume the sandbox, then read until it runs (the fresh snapshot): a read that fails in a way that may
        pass (5xx, a lost answer) is read again at the next pause; a sandbox in error or gone, a conversation
        deleted meanwhile, or ``timeout`` seconds of pauses without RUNNING raise one line."""
        yield from self.resume(snapshot)
        waited, status, problem = 0.0, snapshot.sandbox_status, ""
        while True:
            try:
                (fresh,) = yield from self.read([snapshot])
            except OpenHandsError as error:
                if not error.retryable:
                    raise
                problem = f"; the last read failed: {error}"
            else:
                if fresh is None:
                    raise not_found(snapshot)
                snapshot, status, problem = fresh, (fresh.sandbox_status or "").upper(), ""
                if status == "RUNNING":
                    return snapshot
                if status in _SANDBOX_LOST:
                    raise ConflictError(
                        f"Conversation {snapshot.conversation_id} could not be resumed: its sandbox is {status}, so "
                        "it cannot take messages; its history stays in the OpenHands app, and going on needs a new "
                        "conversation."
                    )
            if waited >= timeout:
                raise ConflictError(
                    f"Conversation {snapshot.conversation_id} did not resume within {timeout:g} s "
                    f"(its sandbox is {status or 'unknown'}); try again later{problem}."
                )
            yield Wait(interval)
            waited += interval

    def running(self, snapshot: Conversation) -> Conversation:
        """The snapshot right after a follow-up was accepted: the agent runs again (the server's answer says only
        that it took the message; the next read confirms)."""
        return dataclasses.replace(snapshot, status=ConversationStatus.RUNNING, phase=None)

    def pause(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("pause a conversation")

    def resume(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("resume a conversation")

    def delete(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("delete a conversation")

    def answer(self, snapshot: Conversation) -> Operation[str | None]:
        """The agent's last message of the latest turn; None while it has none."""
        raise self.unsupported("read the agent's answer")

    def events(
        self, snapshot: Conversation, since: str | None = None, page_id: str | None = None
    ) -> Operation[EventsPage]:
        """One page of the conversation's events (oldest first), from the time stamp ``since``."""
        raise self.unsupported("read the agent's events")

    def queue_message(self, snapshot: Conversation, text: str) -> Operation[None]:
        """A message queued on the server while the conversation is still starting."""
        raise self.unsupported("queue a message for a conversation that is still starting")

    def changes(self, snapshot: Conversation) -> Operation[tuple[Change, ...]]:
        """The files the agent changed in the workspace."""
        raise self.unsupported("read the changed files")

    def diff(self, snapshot: Conversation, path: str) -> Operation[FileDiff]:
        """One changed file before and after."""
        raise self.unsupported("read a diff")

    def outcome(self, snapshot: Conversation) -> Operation[Outcome]:
        """The answer and the changed files together (what a panel shows when the agent is done). A part that fails
        (a paused sandbox cannot list its changes) leaves that part None and a line in ``problems``."""
        parts: dict[str, object] = {}
        problems = []
        for name, part in (("answer", self.answer), ("changes", self.changes)):
            try:
                parts[name] = yield from part(snapshot)
            except OpenHandsError as error:
                problems.append(f"{name}: {error}")
        return Outcome(parts.get("answer"), parts.get("changes"), tuple(problems))  # type: ignore[arg-type]

    def conversation_url(self, conversation_id: str) -> str:
        """The page a person opens: ``{base}/conversations/{id}``."""
        return f"{self.base_url}/conversations/{conversation_id}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"
