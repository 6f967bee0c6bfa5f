"""The tracker: what is in flight on one server, with no I/O of its own.

It holds every watched handle with its pace (:class:`~.polling.Watch`), says which are due, and settles a handle from
whatever a *source of updates* hands it: :meth:`Tracker.apply` for a snapshot (``None``: the server no longer has it,
so it ends DELETED), :meth:`Tracker.failed` for an error (retried with backoff, or watching stops with the reason).
Two sources feed it: :class:`~.polling.PollingSource`, and beside it the live event stream
(:class:`~.stream.StreamSource`), which calls the same :meth:`Tracker.apply` with the snapshot an
``execution_status`` event makes, and :meth:`Tracker.streamed` when its socket opens or closes (a streamed
conversation is polled rarely). The tracker tells its owner when a handle can be streamed (``on_started``: it has
a conversation id) and when it no longer needs to be (``on_left``), so sockets follow what is watched.

When a turn ends, what the agent did (its answer, the changed files) must be read before watching ends, so the final
card shows it: the tracker asks its owner to read it (``read_outcome``) and keeps the handle "watching" until
:meth:`Tracker.concluded`. A follow-up tracked meanwhile makes that read old, and it is dropped.

Every method runs in the I/O thread's loop (the connection marshals calls there), so the tracker needs no lock: the
handles it writes guard what crosses to the kernel's thread themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import OpenHandsError
from .models import Conversation, Outcome
from .polling import PollSchedule, Watch, outcome_due

if TYPE_CHECKING:
    from .handle import ConversationHandle

__all__ = ["Tracker"]

log = logging.getLogger("openhands_magics")


class Tracker:
    """The watched handles of one server: ``track`` / ``untrack``, what is ``due``, and the source's ``apply`` /
    ``failed``. ``read_outcome(handle)`` is the owner's, and ends in :meth:`concluded`; ``gave_up(handle, error)`` is
    told an error retrying cannot fix, before watching ends (a blocking wait raises it)."""

    def __init__(
        self,
        schedule: PollSchedule,
        *,
        read_outcome: Callable[[ConversationHandle], None],
        gave_up: Callable[[ConversationHandle, OpenHandsError], None] | None = None,
        on_started: Callable[[ConversationHandle], None] | None = None,
        on_left: Callable[[ConversationHandle], None] | None = None,
    ) -> None:
        self.schedule = schedule
        self._read_outcome = read_outcome
        self._gave_up = gave_up
        self._on_started = on_started
        self._on_left = on_left
        self._watches: dict[int, Watch] = {}
        #: Handles whose turn just ended, while what the agent did is read (their panel still says "watching"), each
        #: with the turn that read is of (``turn_started_at`` when it began): a later turn makes it old.
        self._concluding: dict[int, tuple[ConversationHandle, object]] = {}

    def __len__(self) -> int:
        return len(self._watches) + len(self._concluding)

    def __contains__(self, handle: object) -> bool:
        return id(handle) in self._watches or id(handle) in self._concluding

    @property
    def handles(self) -> list[ConversationHandle]:
        return [w.handle for w in self._watches.values()] + [handle for handle, _ in self._concluding.values()]

    # ------------------------------------------------------------------ the owner's side
    def track(self, handle: ConversationHandle, now: float, schedule: PollSchedule | None = None) -> None:
        """Watch ``handle`` until it is final and what it did was read, or it is untracked."""
        if schedule is not None:
            self.schedule = schedule
        self._concluding.pop(id(handle), None)  # a follow-up while the last turn's outcome was read: that one is old
        if id(handle) in self._watches:
            return
        if handle.is_final:  # (it got there before it was tracked: read what it did, or it is done)
            self._end(handle)
            return
        self._watches[id(handle)] = Watch(handle, self.schedule, now)
        handle.set_watching(True)
        self._started(handle)

    def untrack(self, handle: ConversationHandle) -> None:
        """Watching ends (the server's client closed, the source broke, an error retrying cannot fix)."""
        if self._drop(handle):
            handle.set_watching(False)
            self._left(handle)

    # The loop's halves of ``handle.watch()`` and ``handle.stop_watching()``. Whether a handle is watched is the word
    # its caller's thread said last, before sending its half here; a half that comes after the other word was said
    # does nothing. So "Stop watching" never vanishes for a moment, and a handle never says it is watched while
    # nothing tracks it.
    def watched(self, handle: ConversationHandle, now: float, schedule: PollSchedule | None = None) -> None:
        """Track it, unless the caller said "not watched" since (a stop, whose half comes next)."""
        if handle.watching:
            self.track(handle, now, schedule)

    def unwatched(self, handle: ConversationHandle) -> None:
        """Its watch ends, unless the caller said "watched" again since (``handle.watch()`` again, a batch taking
        back a row nobody watches): then the watch goes on."""
        if not handle.watching and self._drop(handle):
            self._left(handle)

    def _drop(self, handle: ConversationHandle) -> bool:
        return self._watches.pop(id(handle), None) is not None or self._concluding.pop(id(handle), None) is not None

    def streamed(self, handle: ConversationHandle, live: bool, now: float) -> None:
        """The handle's event stream opened (``live``: it is read rarely, the stream tells its changes) or closed
        (it is polled again at once)."""
        watch = self._watches.get(id(handle))
        if watch is not None:
            watch.stream(live, now)

    def poll_soon(self, handle: ConversationHandle, now: float) -> None:
        """Read this one at the next tick, whatever its pace (a source doubts what it heard)."""
        watch = self._watches.get(id(handle))
        if watch is not None:
            watch.next_due = min(watch.next_due, now)

    def is_streamed(self, handle: ConversationHandle) -> bool:
        watch = self._watches.get(id(handle))
        return watch is not None and watch.streamed

    def _started(self, handle: ConversationHandle) -> None:
        if self._on_started is not None and handle.id is not None:
            self._on_started(handle)

    def _left(self, handle: ConversationHandle) -> None:
        if self._on_left is not None:
            self._on_left(handle)

    def close(self) -> None:
        """Stop every watch (``%unload_ext``)."""
        for handle in self.handles:
            self.untrack(handle)

    def abandon(self, note: str) -> None:
        """The source broke: every watch ends, saying so."""
        for handle in self.handles:
            handle.set_note(note)
            self.untrack(handle)

    def next_due(self) -> float | None:
        """When the next read is due; None when nothing is to be read (the source may stop)."""
        return min((w.next_due for w in self._watches.values()), default=None)

    def due(self, horizon: float) -> list[ConversationHandle]:
        """The handles to read now, most overdue first: those due by ``horizon``. One that became final meanwhile (a
        refresh, a blocking read) is not read again: it is settled."""
        for watch in [w for w in self._watches.values() if w.handle.is_final]:
            del self._watches[id(watch.handle)]
            self._end(watch.handle)
        due = sorted((w for w in self._watches.values() if w.next_due <= horizon), key=lambda w: w.next_due)
        return [w.handle for w in due]

    # ------------------------------------------------------------------ a source's side
    def apply(self, handle: ConversationHandle, conversation: Conversation | None, now: float) -> None:
        """A fresh snapshot of a tracked handle (``None``: the server no longer has it)."""
        watch = self._watches.get(id(handle))
        if watch is None:  # untracked while the read was on its way
            return
        was = handle.conversation.sandbox_status
        if not watch.succeeded(conversation, now):
            del self._watches[id(handle)]
            self._end(handle)
            return
        if was != "RUNNING" and handle.conversation.sandbox_status == "RUNNING":
            self._sandbox_up(handle, now)
        if not watch.streamed:
            self._started(handle)

    def _sandbox_up(self, handle: ConversationHandle, now: float) -> None:
        """A sandbox of this server came up (a start, a resume). A self-hosted server at its limit pauses its oldest
        sandboxes first, and a paused sandbox's stream tells nothing (its agent server is frozen): the streamed
        conversations, read only rarely, are read now."""
        for watch in self._watches.values():
            if watch.streamed and watch.handle is not handle:
                watch.next_due = min(watch.next_due, now)

    def failed(self, handle: ConversationHandle, error: OpenHandsError, now: float) -> None:
        """A read of a tracked handle failed: retried later, or (an error retrying cannot fix) watching ends."""
        watch = self._watches.get(id(handle))
        if watch is None:
            return
        if watch.failed(error, now):
            return
        if self._gave_up is not None:
            self._gave_up(handle, error)
        self.untrack(handle)

    def concluded(self, handle: ConversationHandle, outcome: Outcome | None) -> None:
        """What the agent did was read (``None``: the read broke; the card shows the status alone)."""
        concluding = self._concluding.pop(id(handle), None)
        if concluding is None:  # a follow-up or untrack made this read old
            return
        if handle.turn_started_at != concluding[1]:
            # A follow-up began in the caller's thread while this read was on its way, and its watch is on its way
            # to the loop: the read is the last turn's, and the new turn is watched (its panel must stay live).
            return
        if outcome is not None:
            handle.set_outcome(outcome)
        handle.set_watching(False)
        self._left(handle)

    def _end(self, handle: ConversationHandle) -> None:
        if outcome_due(handle):
            self._concluding[id(handle)] = (handle, handle.turn_started_at)
            self._read_outcome(handle)
        else:
            handle.set_watching(False)
            self._left(handle)
