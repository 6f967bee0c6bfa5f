"""The one small interface both API dialects implement, so callers never branch on which one a server speaks."""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..models import Conversation
from .common import Operation


class Dialect(abc.ABC):
    """How one OpenHands API starts and reads conversations. Stateless; one instance per server address."""

    #: "v1" or "v0": what users set with ``api`` and what a :class:`Conversation` records.
    name: str
    #: How many conversations one read request may carry (V1 reads ``?ids=`` lists; V0 one at a time).
    batch_size: int

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    @abc.abstractmethod
    def start(self, message: str, repository: str | None) -> Operation[Conversation]:
        """POST a new conversation; the snapshot right after (V1: its start task's first phase)."""

    @abc.abstractmethod
    def read(self, snapshots: Sequence[Conversation]) -> Operation[list[Conversation | None]]:
        """Fresh snapshots of these (at most ``batch_size``), in order; None for one the server does not know."""

    @abc.abstractmethod
    def find(self, reference: str) -> Operation[Conversation]:
        """A snapshot for an id a person gave (a conversation id, or on V1 a start task id too)."""

    @abc.abstractmethod
    def normalize_id(self, reference: str) -> str:
        """The id as this API writes it; ValidationError when it cannot be one."""

    def conversation_url(self, conversation_id: str) -> str:
        """The page a person opens: ``{base}/conversations/{id}``."""
        return f"{self.base_url}/conversations/{conversation_id}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"
