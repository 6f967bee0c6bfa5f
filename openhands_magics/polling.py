"""Watching conversations until they are final: one :class:`Poller` per server and key for the whole kernel, and a
blocking wait for ``--wait`` / ``handle.wait()``. Both keep each conversation's pace in the same :class:`Watch`, so
their backoff, ``Retry-After`` handling and notes cannot drift apart.

Why one poller: OpenHands Cloud allows about 100 requests a minute per user, and conversations started together
would otherwise poll in bursts. The poller reads every due conversation (and start task) in one batched request per
tick on V1 (``?ids=``, up to 99), and spreads V0's one-by-one reads over the interval. Each conversation keeps its
own pace: fast while it changes, slower (up to ``max_interval``) while it doesn't.

Why the blocking wait polls with the *sync* client instead of re-entering the kernel's running loop with
nest-asyncio: patching the kernel's loop is global and fragile, and a plain blocking loop is interruptible by the
kernel's stop button (SIGINT lands in ``time.sleep``). Widget updates made from the cell still reach the browser,
because ipykernel sends them on its own I/O thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import OpenHandsError, RateLimitError, WaitTimeout
from .models import Conversation, ConversationStatus, Outcome
from .validation import printable

if TYPE_CHECKING:
    from .client import AsyncOpenHandsClient, OpenHandsClient
    from .handle import ConversationHandle

__all__ = ["GONE", "PollSchedule", "Poller", "Watch", "mark_gone", "outcome_due", "wait_until_final"]

log = logging.getLogger("openhands_magics")
#: The phase of a conversation (or start task) the server answers ``null`` for: deleted elsewhere, or forgotten.
GONE = "the server no longer has it"


def mark_gone(handle: ConversationHandle) -> None:
    """The server answered ``null`` for a conversation it had: it was deleted (in the app, by another kernel) or
    forgotten. The handle becomes final, DELETED, so everything waiting for it ends: its panel turns into the final
    card, a batch's row is over and frees its place, a wait returns. Left as it was, it would read "running" for
    ever."""
    handle.update(dataclasses.replace(handle.conversation, status=ConversationStatus.DELETED, phase=GONE))


def outcome_due(handle: ConversationHandle) -> bool:
    """Whether what the agent did is still to be read: its turn is over and not read yet, the conversation exists (a
    start that failed made none) and the server still has it (a deleted one has nothing left to read)."""
    return (handle.is_final and handle.outcome is None and handle.id is not None
            and handle.status != ConversationStatus.DELETED)


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
        self.next_due = now + self.pause


class Poller:
    """Watches every tracked handle of one server and key with one asyncio task in the kernel's loop.

    ``track`` / ``untrack`` are all callers need; the task starts with the first handle and ends with the last.
    """

    def __init__(self, client: AsyncOpenHandsClient, schedule: PollSchedule) -> None:
        self.client = client
        self.schedule = schedule
        self._watches: dict[int, Watch] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._not_before = 0.0
        #: Handles whose turn just ended, while what the agent did is read (their panel still says "watching").
        self._concluding: dict[int, asyncio.Task[None]] = {}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def track(self, handle: ConversationHandle) -> None:
        """Watch ``handle`` until it is final, untracked, or the poller closes. Needs a running event loop."""
        loop = asyncio.get_running_loop()
        concluding = self._concluding.pop(id(handle), None)
        if concluding is not None:  # a follow-up while the last turn's outcome was being read: that one is old
            concluding.cancel()
        if handle.is_final or id(handle) in self._watches:
            return
        self._watches[id(handle)] = Watch(handle, self.schedule, loop.time())
        handle.set_watching(True)
        if not self.running:
            self._task = loop.create_task(self._run(), name="openhands-poller")
        self._wakeup.set()

    def untrack(self, handle: ConversationHandle) -> None:
        concluding = self._concluding.pop(id(handle), None)
        if concluding is not None:
            concluding.cancel()
        if self._watches.pop(id(handle), None) is not None or concluding is not None:
            handle.set_watching(False)

    def close(self) -> None:
        """Stop the task and every watch (``%unload_ext``); the async client is closed by its owner."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for watch in list(self._watches.values()):
            self.untrack(watch.handle)
        for task in list(self._concluding.values()):
            task.cancel()

    async def _run(self) -> None:
        """Never raises (bar cancellation): a task error would only surface as a log line later."""
        loop = asyncio.get_running_loop()
        try:
            while self._watches:
                wake = max(self._not_before, min(w.next_due for w in self._watches.values()))
                if wake > loop.time():
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), wake - loop.time())
                    except asyncio.TimeoutError:
                        pass
                    continue
                await self._tick(loop)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug here must not become "Task exception was never retrieved"
            log.exception("the poller failed")
            for watch in list(self._watches.values()):
                watch.handle.set_note(f"Stopped watching after an internal error ({type(error).__name__}); use .refresh().")
                self.untrack(watch.handle)

    async def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """One read: the most overdue conversations, and those due within the next interval, so conversations
        started a little apart share reads instead of taking turns (the next read is an interval away anyway)."""
        for watch in [w for w in self._watches.values() if w.handle.is_final]:  # a blocking wait got there first
            self.untrack(watch.handle)
        horizon = loop.time() + self.schedule.interval
        due = sorted((w for w in self._watches.values() if w.next_due <= horizon), key=lambda w: w.next_due)
        if not due:
            return
        try:
            await self.client.dialect()
        except OpenHandsError as error:
            self._settle(due, loop, error=error)
            return
        batch = due[: self.client.batch_size]
        try:
            snapshots = await self.client.read([w.handle.conversation for w in batch])
        except OpenHandsError as error:
            self._settle(batch, loop, error=error)
        else:
            self._settle(batch, loop, snapshots=snapshots)
        # A batched API reads at most once an interval; V0's single reads are spread evenly over it.
        gap = self.schedule.interval if self.client.batch_size > 1 else self.schedule.interval / len(due)
        self._not_before = loop.time() + gap

    def _settle(
        self,
        watches: list[Watch],
        loop: asyncio.AbstractEventLoop,
        *,
        snapshots: list[Conversation | None] | None = None,
        error: OpenHandsError | None = None,
    ) -> None:
        now = loop.time()
        for i, watch in enumerate(watches):
            if id(watch.handle) not in self._watches:  # untracked while the read was on its way
                continue
            go_on = watch.failed(error, now) if error is not None else watch.succeeded(snapshots[i], now)  # type: ignore[index]
            if go_on:
                continue
            handle = watch.handle
            if outcome_due(handle):
                del self._watches[id(handle)]
                self._concluding[id(handle)] = loop.create_task(self._conclude(handle), name="openhands-outcome")
            else:
                self.untrack(handle)

    async def _conclude(self, handle: ConversationHandle) -> None:
        """Read what the agent did (its answer, the changed files) before watching ends, so the final card shows
        it. A failure leaves a line in ``outcome.problems``; it never stops the poller."""
        outcome: Outcome | None = None
        try:
            outcome = await self.client.outcome(handle.conversation)
        except OpenHandsError as error:
            outcome = Outcome(problems=(str(error),))
        except Exception:  # a bug must not leave the panel watching for ever
            log.exception("reading the outcome of %s failed", handle.reference)
        finally:
            if self._concluding.pop(id(handle), None) is not None:
                if outcome is not None:
                    handle.set_outcome(outcome)
                handle.set_watching(False)


def wait_until_final(
    handle: ConversationHandle,
    client: OpenHandsClient,
    schedule: PollSchedule,
    *,
    timeout: float | None = None,
    on_change: Callable[[ConversationHandle], None] | None = None,
) -> Conversation:
    """Block until the status is final. Retryable errors are shown on the handle and retried; others raise."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = Watch(handle, schedule, time.monotonic())
    while not handle.is_final:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            where = handle.url or f"start task {handle.task_id}"
            raise WaitTimeout(f"Still {printable(handle.conversation.status_line)} after {timeout:g} s; it goes on: {where}")
        time.sleep(max(0.0, (watch.next_due if deadline is None else min(watch.next_due, deadline)) - now))
        if time.monotonic() < watch.next_due:  # woke for the deadline
            continue
        before = handle.conversation.status_line
        try:
            (snapshot,) = client.read([handle.conversation], deadline=deadline)
        except OpenHandsError as error:
            if not watch.failed(error, time.monotonic()):
                raise
            continue
        watch.succeeded(snapshot, time.monotonic())  # (None: deleted elsewhere, so the handle ends DELETED)
        if handle.conversation.status_line != before and on_change is not None:
            on_change(handle)
    return handle.conversation
