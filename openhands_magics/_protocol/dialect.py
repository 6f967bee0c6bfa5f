"""The one small interface both API dialects implement, so callers never branch on which one a server speaks."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OpenHandsError, ProtocolError, UnsupportedApiError
from ..models import Change, Conversation, FileDiff, Outcome
from .common import Call, Operation, expect_json


@dataclass(frozen=True)
class Page:
    """One page of the account's conversations, newest first, and the token for the next (None: the last page)."""

    items: tuple[Conversation, ...]
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
        """A follow-up message that runs the agent again."""
        raise self.unsupported("send a follow-up message")

    def pause(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("pause a conversation")

    def resume(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("resume a conversation")

    def delete(self, snapshot: Conversation) -> Operation[None]:
        raise self.unsupported("delete a conversation")

    def answer(self, snapshot: Conversation) -> Operation[str | None]:
        """The agent's last message of the latest turn; None while it has none."""
        raise self.unsupported("read the agent's answer")

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
