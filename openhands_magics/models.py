"""The conversation data model: an immutable snapshot of ``GET /api/conversations/{id}``.

The server's schema grows over time (``runtime_status``, ``pr_number``, ``conversation_version`` … appeared after the
fields we rely on), so unknown fields are kept in ``extra`` rather than rejected, and a missing optional field is
``None`` rather than an error. Only ``conversation_id`` is required.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import ProtocolError
from .validation import validate_conversation_id

__all__ = ["FINAL_STATUSES", "Conversation", "ConversationStatus", "is_final_status"]


class ConversationStatus:
    """The status strings OpenHands uses (``openhands/storage/data_models/conversation_status.py``).

    Plain strings, not an Enum: a status this version does not know must still be shown, not crash the poller.
    """

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ARCHIVED = "ARCHIVED"
    ERROR = "ERROR"


#: Statuses after which a conversation does not change by itself, so polling stops.
FINAL_STATUSES: frozenset[str] = frozenset(
    {ConversationStatus.STOPPED, ConversationStatus.ARCHIVED, ConversationStatus.ERROR}
)

_KNOWN_FIELDS = (
    "conversation_id",
    "title",
    "status",
    "created_at",
    "last_updated_at",
    "selected_repository",
    "trigger",
)


def is_final_status(status: str | None) -> bool:
    return status is not None and status.upper() in FINAL_STATUSES


def _parse_time(value: Any, name: str) -> dt.datetime | None:
    """Parse OpenHands' ISO 8601 times; naive ones are UTC (the server stores ``datetime.now(timezone.utc)``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected an ISO 8601 string.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"The server sent an unreadable {name}: {value[:40]!r}.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected a string.")


@dataclass(frozen=True)
class Conversation:
    """One snapshot of a conversation as the server described it."""

    conversation_id: str
    status: str | None = None
    title: str | None = None
    created_at: dt.datetime | None = None
    last_updated_at: dt.datetime | None = None
    selected_repository: str | None = None
    trigger: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @property
    def id(self) -> str:
        return self.conversation_id

    @property
    def is_final(self) -> bool:
        return is_final_status(self.status)

    @classmethod
    def from_json(cls, payload: Any) -> Conversation:
        """Build from a decoded JSON body; raises ProtocolError (never KeyError/TypeError) on a bad shape."""
        if not isinstance(payload, Mapping):
            raise ProtocolError(f"The server sent a {type(payload).__name__} where a conversation object was expected.")
        raw_id = payload.get("conversation_id")
        if not isinstance(raw_id, str):
            raise ProtocolError("The server's answer has no conversation_id.")
        status = _optional_str(payload.get("status"), "status")
        return cls(
            conversation_id=validate_conversation_id(raw_id),
            status=status.upper() if status else None,
            title=_optional_str(payload.get("title"), "title"),
            created_at=_parse_time(payload.get("created_at"), "created_at"),
            last_updated_at=_parse_time(payload.get("last_updated_at"), "last_updated_at"),
            selected_repository=_optional_str(payload.get("selected_repository"), "selected_repository"),
            trigger=_optional_str(payload.get("trigger"), "trigger"),
            extra=MappingProxyType({k: v for k, v in payload.items() if k not in _KNOWN_FIELDS}),
        )
