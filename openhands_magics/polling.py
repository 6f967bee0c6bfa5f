"""Polling: each conversation's pace (:class:`Watch`), and the polling *source of updates* that feeds a server's
:class:`~.tracker.Tracker` from the I/O thread (:class:`PollingSource`).

Why one source per server: OpenHands Cloud allows about 100 requests a minute per user, and conversations started
together would otherwise poll in bursts. The source reads every due conversation (and start task) in one batched
request per tick on V1 (``?ids=``, up to 99), and spreads V0's one-by-one reads over the interval. Each conversation
keeps its own pace in its :class:`Watch`: fast while it changes, slower (up to ``max_interval``) while it doesn't.

Why a blocking wait no longer polls on its own: it runs in the kernel's thread, which it holds, so anything it
polled itself (and everything the kernel's event loop would have polled) stood still for every other panel until
it returned. Now the one source runs on the I/O thread (:mod:`._io`) for every watched handle alike, and
``handle.wait()``, ``--wait`` and ``batch.wait()`` just wait for the tracker to settle the handle (a threading event
the handle's change sets), so the other panels stay live, Ctrl-C still lands in the waiting thread, and there is
one pace and one request budget for everything in flight.

Beside it, a conversation whose live event stream is open (:mod:`.stream`) is read only every ``STREAMED_CHECK``
seconds: the stream tells its changes at once, and this read catches only what the stream does not carry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import OpenHandsError, RateLimitError
from .models import Conversation, ConversationStatus

if TYPE_CHECKING:
    from .client import AsyncOpenHandsClient
    from .handle import ConversationHandle
    from .tracker import Tracker

__all__ = ["GONE", "STREAMED_CHECK", "PollSchedule", "PollingSource", "Watch", "mark_gone", "outcome_due"]

log = logging.getLogger("openhands_magics")
#: The phase of a conversation (or start task) the server answers ``null`` for: deleted elsewhere, or forgotten.
GONE = "the server no longer has it"
#: How often a conversation whose live event stream is open is still read (the stream tells every change at once;
#: this read only catches what the stream does not carry, such as the title, and a socket that went quiet).
STREAMED_CHECK = 120.0


def mark_gone(handle: ConversationHandle) -> None:
    """The server answered ``null`` for a conversation it had: it was deleted (in the app, by another kernel) or
    forgotten. The handle becomes final, DELETED, so everything waiting for it ends: its panel turns into the final
    card, a batch's row is over and frees its place, a wait returns. Left as it was, it would read "running" for
    ever."""
    handle.update(dataclasses.replace(handle.conversation, status=ConversationStatus.DELETED, phase=GONE))


def outcome_due(handle: ConversationHandle) -> bool:
    """Whether what the agent did is still to be read: its turn is over and not read yet, the conversation exists (a
    start that failed made none) and the server still has it (a deleted one has nothing left to read)."""
    return (
        handle.is_final
        and handle.outcome is None
        and handle.id is not None
        and handle.status != ConversationStatus.DELETED
    )


@dataclass(frozen=True)
class PollSchedule:
    """Poll fast while things change, slow down (up to ``max_interval``) while they don't."""

    interval: float = 2.0
    max_interval: float = 30.0
    growth: float = 1.5

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.max_interval < self.interval or self.growth < 1:
            raise ValueError("need 0 < interval <= max_interval and growth >= 1")


class Watch:
    """One conversation's pace, and what one read's outcome does to its handle."""

    def __init__(self, handle: ConversationHandle, schedule: PollSchedule, now: float) -> None:
        self.handle = handle
        self.schedule = schedule
        self.pause = schedule.interval
        self.next_due = now + schedule.interval
        #: Whether its live event stream is open (then it is read only every ``STREAMED_CHECK`` seconds).
        self.streamed = False

    def stream(self, live: bool, now: float) -> None:
        """Its event stream opened (reads become rare) or closed (polling takes over at once, at its fast pace)."""
        if live == self.streamed:
            return
        self.streamed = live
        self.pause = self.schedule.interval
        self.next_due = now + (STREAMED_CHECK if live else 0.0)

    def succeeded(self, conversation: Conversation | None, now: float) -> bool:
        """Store the snapshot; returns whether to go on watching."""
        if conversation is None:
            mark_gone(self.handle)
            return False
        changed = self.handle.update(conversation)
        self._again(now, self.schedule.interval if changed else self.pause * self.schedule.growth)
        return not self.handle.is_final

    def failed(self, error: OpenHandsError, now: float) -> bool:
        """Show the failure; returns whether to go on (only for errors a later try may fix)."""
        if not error.retryable:
            self.handle.set_note(f"Stopped watching: {error}")
            return False
        pause = self.pause * 2
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            pause = max(pause, error.retry_after)
        self._again(now, pause)
        self.handle.set_note(f"retrying in {self.pause:.0f} s… ({error})")
        return True

    def _again(self, now: float, pause: float) -> None:
        self.pause = min(self.schedule.max_interval, max(self.schedule.interval, pause))
        self.next_due = now + (max(self.pause, STREAMED_CHECK) if self.streamed else self.pause)


class PollingSource:
    """Feeds a tracker by polling: one asyncio task in the I/O thread's loop per server, running while the tracker
    watches anything. It reads what is due, in one batched read a tick, and hands each answer (or the error) to the
    tracker; it never touches a handle itself. ``wake()`` (in the loop) is all the tracker's owner calls."""

    def __init__(self, tracker: Tracker, client: Callable[[], AsyncOpenHandsClient]) -> None:
        self.tracker = tracker
        self._client = client
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Something was tracked (or its pace changed): start the task, or have it look again. In the loop only."""
        if self._wakeup is None or not self.running:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="openhands-poller")
        self._wakeup.set()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        """Never raises (bar cancellation): a task error would only surface as a log line later."""
        assert self._wakeup is not None
        try:
            while (due_at := self.tracker.next_due()) is not None:
                wake = max(self._not_before, due_at)
                if wake > time.monotonic():
                    self._wakeup.clear()
                    # (asyncio.wait, not wait_for: on Python 3.11 wait_for swallows a cancellation that lands just
                    # as the event is set, and the stopping I/O thread then waits for the next due read)
                    waiter = asyncio.ensure_future(self._wakeup.wait())
                    try:
                        await asyncio.wait({waiter}, timeout=wake - time.monotonic())
                    finally:
                        waiter.cancel()
                    continue
                await self._tick()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug here must not become "Task exception was never retrieved"
            log.exception("the poller failed")
            self.tracker.abandon(f"Stopped watching after an internal error ({type(error).__name__}); use .refresh().")

    async def _tick(self) -> None:
        """One read: the most overdue conversations, and those due within the next interval, so conversations
        started a little apart share reads instead of taking turns (the next read is an interval away anyway)."""
        interval = self.tracker.schedule.interval
        due = self.tracker.due(time.monotonic() + interval)
        if not due:
            return
        client = self._client()
        try:
            await client.dialect()
        except OpenHandsError as error:
            for handle in due:
                self.tracker.failed(handle, error, time.monotonic())
            return
        batch = due[: client.batch_size]
        try:
            snapshots = await client.read([h.conversation for h in batch])
        except OpenHandsError as error:
            for handle in batch:
                self.tracker.failed(handle, error, time.monotonic())
        else:
            for handle, snapshot in zip(batch, snapshots):
                self.tracker.apply(handle, snapshot, time.monotonic())
        # A batched API reads at most once an interval; V0's single reads are spread evenly over it.
        gap = interval if client.batch_size > 1 else interval / len(due)
        self._not_before = time.monotonic() + gap
