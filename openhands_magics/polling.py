"""Watching a conversation until its status is final: an async poller for the kernel's event loop, and a blocking
wait for ``--wait``/``handle.wait()``. Both run the same :class:`PollLoop` state machine, so their backoff,
``Retry-After`` handling and error notes cannot drift apart.

Why the blocking wait polls with the *sync* client instead of re-entering the kernel's running loop with
nest-asyncio: patching the kernel's loop is global and fragile, and a plain blocking loop is interruptible by the
kernel's stop button (SIGINT lands in ``time.sleep``). Widget updates made from the cell still reach the browser,
because ipykernel sends them on its own I/O thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import OpenHandsError, RateLimitError, WaitTimeout
from .models import Conversation

if TYPE_CHECKING:
    from .client import AsyncOpenHandsClient, OpenHandsClient
    from .handle import ConversationHandle

__all__ = ["PollLoop", "PollSchedule", "Watcher", "wait_until_final", "watch"]

log = logging.getLogger("openhands_magics")


@dataclass(frozen=True)
class PollSchedule:
    """Poll fast while things change, slow down (up to ``max_interval``) while they don't.

    OpenHands Cloud rate-limits each user (about 100 requests a minute), and a conversation often runs for many
    minutes, so a fixed 1-second poll of a few conversations would trip 429s.
    """

    interval: float = 2.0
    max_interval: float = 30.0
    growth: float = 1.5
    #: Between polls the views redraw this often, so the elapsed time keeps moving without asking the server.
    redraw_every: float = 1.0

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.max_interval < self.interval or self.growth < 1 or self.redraw_every <= 0:
            raise ValueError("need 0 < interval <= max_interval, growth >= 1 and redraw_every > 0")


class PollLoop:
    """One watch's state: the next pause, and what one fetch's outcome does to the handle."""

    def __init__(self, handle: ConversationHandle, schedule: PollSchedule) -> None:
        self.handle = handle
        self.schedule = schedule
        self.pause = schedule.interval

    @property
    def done(self) -> bool:
        return self.handle.is_final

    def succeeded(self, conversation: Conversation) -> bool:
        """Store the snapshot; returns whether the status changed."""
        changed = self.handle.update(conversation)
        self.pause = self.schedule.interval if changed else min(self.schedule.max_interval, self.pause * self.schedule.growth)
        return changed

    def failed(self, error: OpenHandsError) -> bool:
        """Show the failure; returns whether polling should go on (only for errors a later try may fix)."""
        if not error.retryable:
            self.handle.set_note(f"Stopped watching: {error}")
            return False
        self.pause = min(self.schedule.max_interval, self.pause * 2)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            self.pause = max(self.pause, error.retry_after)
        self.handle.set_note(f"retrying in {self.pause:.0f} s… ({error})")
        return True


async def watch(handle: ConversationHandle, client: AsyncOpenHandsClient, schedule: PollSchedule) -> None:
    """Poll until final. Never raises (bar cancellation): a task error would only surface as a log line later."""
    loop = PollLoop(handle, schedule)
    try:
        while not loop.done:
            await _pause_redrawing(handle, loop.pause, schedule.redraw_every)
            if loop.done:  # a blocking wait may have finished the job while this task slept
                break
            try:
                loop.succeeded(await client.get_conversation(handle.id))
            except OpenHandsError as error:
                if not loop.failed(error):
                    return
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a bug here must not become "Task exception was never retrieved"
        log.exception("watching conversation %s failed", handle.id)
        handle.set_note(f"Stopped watching after an internal error ({type(error).__name__}); use conv.refresh().")


async def _pause_redrawing(handle: ConversationHandle, seconds: float, redraw_every: float) -> None:
    """Sleep until the next poll; redraw the views on the way (a redraw that changes no text sends nothing)."""
    clock = asyncio.get_running_loop()
    deadline = clock.time() + seconds
    while (left := deadline - clock.time()) > 0:
        await asyncio.sleep(min(redraw_every, left))
        if not handle.is_final:
            handle.redraw()


class Watcher:
    """An asyncio task running :func:`watch`, with the stop handle the panel and ``%unload_ext`` need."""

    def __init__(
        self,
        handle: ConversationHandle,
        client: AsyncOpenHandsClient,
        schedule: PollSchedule,
        on_done: Callable[[Watcher], None] | None = None,
    ) -> None:
        self.handle = handle
        self._on_done = on_done
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            watch(handle, client, schedule), name=f"openhands-watch-{handle.id}"
        )
        self.task.add_done_callback(self._finished)

    @property
    def running(self) -> bool:
        return not self.task.done()

    def stop(self) -> None:
        self.task.cancel()

    def _finished(self, _task: asyncio.Task[None]) -> None:
        if self._on_done is not None:
            self._on_done(self)


def wait_until_final(
    handle: ConversationHandle,
    client: OpenHandsClient,
    schedule: PollSchedule,
    *,
    timeout: float | None = None,
    on_change: Callable[[ConversationHandle], None] | None = None,
) -> Conversation:
    """Block until the status is final. Retryable errors are shown on the handle and retried; others raise."""
    loop = PollLoop(handle, schedule)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not loop.done:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(
                f"Still {handle.status} after {timeout:g} s; the conversation goes on: {handle.url}"
            )
        time.sleep(loop.pause if remaining is None else min(loop.pause, remaining))
        try:
            if loop.succeeded(client.get_conversation(handle.id)) and on_change is not None:
                on_change(handle)
        except OpenHandsError as error:
            if not loop.failed(error):
                raise
    return handle.conversation
