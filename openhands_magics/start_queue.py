"""``--queue``: a start the account has no place for yet, sent as soon as one of its running conversations ends.

Cloud (since April 2026) refuses a start past the account's concurrency limit with a 429 (3 running for a personal
organisation, 10 for a team one: :class:`~.errors.ConcurrencyLimitError`). A queued start is a handle at once,
QUEUED with its place in line, so its panel shows it like any conversation; it gets its ids when the start goes
through. The queue has no loop or thread of its own: it lives in the I/O loop beside the connection's tracker, which
tells it when a conversation it watched leaves (``Connection._left``: one ended, so a place may be free), and the
running conversations the 429 was about are watched for that. A conversation this kernel does not watch (started
in the web app) may end too, so a queued start is tried again after :data:`RETRY_EVERY` seconds as well. One start
is on its way at a time, the oldest first; another 429 leaves it at its place. Nothing is sent twice: a 429 started
nothing, and any other failure ends that handle as ERROR with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConcurrencyLimitError, OpenHandsError, RateLimitError
from .models import Conversation, ConversationStatus

if TYPE_CHECKING:
    from .connection import Connection
    from .handle import ConversationHandle
    from .start_options import StartOptions

__all__ = ["StartQueue", "queued_conversation"]

log = logging.getLogger("openhands_magics")
#: Seconds between tries while nothing this kernel watches has ended (a conversation may end elsewhere).
RETRY_EVERY = 30.0


@dataclass
class _Entry:
    handle: ConversationHandle
    message: str
    repository: str | None
    options: StartOptions | None
    limit: int | None


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def queued_conversation(place: int, limit: int | None, api: str) -> Conversation:
    """The snapshot of a start waiting at ``place`` (1: next) for one of ``limit`` running conversations to end."""
    running = f"one of the {limit} running" if limit else "a running one"
    return Conversation(
        None,
        status=ConversationStatus.QUEUED,
        phase=f"{_ordinal(place)} in line: starts as soon as {running} ends",
        api=api,
    )


class StartQueue:
    """The queued starts of one server (its :class:`~.connection.Connection`'s), oldest first."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._entries: list[_Entry] = []  # (touched in the I/O loop only)
        self._sending = False
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def holds(self, handle: ConversationHandle) -> bool:
        return handle.queued

    def add(
        self,
        handle: ConversationHandle,
        message: str,
        repository: str | None,
        options: StartOptions | None,
        refusal: ConcurrencyLimitError,
    ) -> None:
        """Queue ``handle``'s start (from any thread): it goes out once a place frees."""
        entry = _Entry(handle, message, repository, options, refusal.limit)
        self._connection._io.call(self._add, entry)

    def _add(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self._places()
        self._later()

    def slot_freed(self) -> None:
        """The tracker let go of a conversation (in the loop): one may have ended, so the next start is tried."""
        if self._entries:
            self._pump()

    # ------------------------------------------------------------------ in the I/O loop
    def _places(self) -> None:
        for place, entry in enumerate(self._entries, start=1):
            entry.handle.update(queued_conversation(place, entry.limit, entry.handle.conversation.api))

    def _later(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(RETRY_EVERY, self._pump) if self._entries else None

    def _pump(self) -> None:
        if self._sending or not self._entries:
            return
        self._sending = True
        asyncio.get_running_loop().create_task(self._send(self._entries[0]), name="openhands-queued-start")

    async def _send(self, entry: _Entry) -> None:
        connection = self._connection
        try:
            conversation = await connection.start_in_loop(entry.message, entry.repository, entry.options)
        except asyncio.CancelledError:  # the I/O thread stops: it may have started, so it is not sent again
            self._entries.remove(entry)
            entry.handle.update(
                Conversation(None, status=ConversationStatus.ERROR, phase="the session closed before it started")
            )
            raise
        except RateLimitError:  # nothing started: it keeps its place until the next end (or the next try)
            self._sending = False
            self._later()
            return
        except OpenHandsError as error:
            self._entries.remove(entry)
            entry.handle.update(Conversation(None, status=ConversationStatus.ERROR, phase=str(error)))
        except Exception as error:  # a bug must not leave the queue stuck
            log.exception("a queued start failed")
            self._entries.remove(entry)
            entry.handle.update(
                Conversation(None, status=ConversationStatus.ERROR, phase=f"the start failed ({type(error).__name__})")
            )
        else:
            self._entries.remove(entry)
            connection.begin_queued(entry.handle, conversation, entry.options)
        self._sending = False
        self._places()
        self._later()  # (the next one waits for the next end: the place that freed is taken)
