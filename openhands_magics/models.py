"""One model of a conversation, whichever API the server speaks.

OpenHands has two APIs (see ``_protocol``): V1 describes a conversation with a start task's phase, a
``sandbox_status`` and an ``execution_status``; V0 with one ``status`` (plus the agent's state, read from its events).
Each dialect turns its answer into the same immutable :class:`Conversation`, whose ``status`` is one word a person
understands (:class:`ConversationStatus`) and whose raw fields stay beside it for whoever needs them.

The server's schema grows over time, so unknown fields are kept in ``extra`` rather than rejected, and a missing
optional field is ``None`` rather than an error. Secrets the server sends back (``session_api_key``) are dropped
before a model is built: they never reach ``extra``, a repr or a view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotFoundError, ProtocolError

__all__ = [
    "FINAL_STATUSES",
    "SECRET_FIELDS",
    "Conversation",
    "ConversationStatus",
    "Extra",
    "is_final_status",
    "not_found",
    "parse_time",
]


class ConversationStatus:
    """The statuses shown to people. Plain strings, not an Enum: a value this version does not know is shown as it
    is (upper-cased), never a crash of the poller."""

    STARTING = "STARTING"  # the start task (V1) or the runtime (V0) is being set up; ``phase`` says which step
    RUNNING = "RUNNING"  # the agent works
    FINISHED = "FINISHED"  # the agent is done with the task
    WAITING_FOR_INPUT = "WAITING FOR INPUT"  # the agent's turn is over and it waits for a message (V0)
    WAITING_FOR_CONFIRMATION = "WAITING FOR CONFIRMATION"  # the agent asks to confirm an action
    IDLE = "IDLE"  # V1: ready, no run started yet
    PAUSED = "PAUSED"  # paused by the user, or its sandbox was paused (Cloud pauses old ones past 10 running)
    STUCK = "STUCK"  # the agent detected it loops
    ERROR = "ERROR"  # the start or the agent failed; ``phase`` holds the reason when the server gave one
    STOPPED = "STOPPED"  # V0: the server closed the conversation; V1: its sandbox is gone
    ARCHIVED = "ARCHIVED"  # V0


#: Final *for watching*: the agent is done or cannot go on without someone, so polling stops and ``--wait`` returns.
#: PAUSED and WAITING FOR CONFIRMATION are not final: the user can go on in the OpenHands app, and the panel shows it.
FINAL_STATUSES: frozenset[str] = frozenset(
    {
        ConversationStatus.FINISHED,
        ConversationStatus.WAITING_FOR_INPUT,
        ConversationStatus.STUCK,
        ConversationStatus.ERROR,
        ConversationStatus.STOPPED,
        ConversationStatus.ARCHIVED,
    }
)

#: Fields of server answers that are secrets (the sandbox's key): dropped on arrival, never stored or shown.
SECRET_FIELDS: frozenset[str] = frozenset({"session_api_key"})


def is_final_status(status: str | None) -> bool:
    return status is not None and status.upper() in FINAL_STATUSES


def parse_time(value: Any, name: str) -> dt.datetime | None:
    """Parse OpenHands' ISO 8601 times; naive ones are UTC (start tasks read back carry no zone)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected an ISO 8601 string.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"The server sent an unreadable {name}: {value[:40]!r}.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected a string.")


class Extra(Mapping[str, Any]):
    """A read-only mapping of the server's other fields; unlike ``MappingProxyType`` it copies and pickles, so a
    snapshot works with ``copy``, ``dataclasses.asdict`` and ``%store``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Extra({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Extra, (self._data,))


def shared_fields(body: Mapping[str, Any], *, updated: str) -> dict[str, Any]:
    """The fields both APIs send under the same names, and the last change under the name its API gives it."""
    return {
        "title": optional_str(body.get("title"), "title"),
        "created_at": parse_time(body.get("created_at"), "created_at"),
        "updated_at": parse_time(body.get(updated), updated),
        "selected_repository": optional_str(body.get("selected_repository"), "selected_repository"),
        "trigger": optional_str(body.get("trigger"), "trigger"),
    }


def public_fields(payload: Mapping[str, Any], known: frozenset[str] | set[str]) -> Extra:
    """What goes into ``extra``: the fields no dialect reads, minus the secrets."""
    return Extra({k: v for k, v in payload.items() if k not in known and k not in SECRET_FIELDS})


@dataclass(frozen=True)
class Conversation:
    """One snapshot of a conversation, as the server described it.

    ``conversation_id`` is None while a V1 start task is still preparing it; ``start_task_id`` is None on V0.
    ``status`` is the derived status (:class:`ConversationStatus`); ``phase`` adds the start step ("waiting for
    sandbox") or the reason for an ERROR. The raw status fields of each API are kept as the server sent them.
    """

    conversation_id: str | None
    status: str | None = None
    phase: str | None = None
    title: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    selected_repository: str | None = None
    trigger: str | None = None
    api: str = "v1"
    start_task_id: str | None = None
    #: When the start was asked for (the start task's creation): where the elapsed time begins.
    requested_at: dt.datetime | None = None
    # raw fields, V1
    start_task_status: str | None = None
    sandbox_status: str | None = None
    execution_status: str | None = None
    # raw fields, V0
    server_status: str | None = None
    agent_state: str | None = None
    extra: Mapping[str, Any] = field(default_factory=Extra, compare=False, repr=False)

    @property
    def id(self) -> str | None:
        return self.conversation_id

    @property
    def is_final(self) -> bool:
        return is_final_status(self.status)

    @property
    def is_started(self) -> bool:
        """Whether the conversation itself exists (its id is known), not just its start task."""
        return self.conversation_id is not None

    @property
    def started_at(self) -> dt.datetime | None:
        """When it began, as far as anyone waiting for it is concerned."""
        return self.requested_at or self.created_at

    @property
    def status_line(self) -> str:
        """``STARTING · waiting for sandbox``, ``ERROR · no access to the repository``, ``RUNNING``."""
        status = self.status or "?"
        return f"{status} · {self.phase}" if self.phase else status


def not_found(previous: Conversation) -> NotFoundError:
    """The server answered ``null`` for a conversation (or start task) it knew before, or never knew."""
    which = previous.conversation_id or f"start task {previous.start_task_id}"
    return NotFoundError(f"Conversation {which} was not found: check the id and the base URL.")
