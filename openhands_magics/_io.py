"""The one thread that owns the network for everything in flight: a daemon thread running its own asyncio loop.

Why a thread of its own, and not the kernel's event loop: a cell that computes for minutes, or a blocking
``.wait()``, holds the kernel's loop, and every live panel froze with it. ipyparallel's client and OpenHands' own SDK
(``RemoteConversation``) solve this the same way: the network runs in a loop on a thread of its own, and a blocking
caller waits on a result. ipykernel (6.25+, 7) sends comm and display messages from any thread (its iopub socket is
a ``BackgroundSocket`` with an event pipe per thread), so a panel updated here reaches the browser while a cell runs.

It starts on first use (the first watch) and stops on ``Session.close()`` (``%unload_ext``) and at interpreter exit:
every task is cancelled, then every closer registered with :meth:`IOThread.on_stop` runs in the loop (async clients
are closed there, by the loop that made them), the loop is closed and the thread joined. Nothing is left behind.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["IOThread", "get_io"]

log = logging.getLogger("openhands_magics")
T = TypeVar("T")
#: How long stopping waits for the closers and the thread (a stuck close must not hang ``%unload_ext``).
STOP_TIMEOUT = 5.0


class IOThread:
    """A daemon thread with its own event loop. ``submit(coro)`` returns a :class:`concurrent.futures.Future`;
    ``call(fn, *args)`` runs a plain function in the loop soon; ``stop()`` leaves no thread, loop or task."""

    def __init__(self, name: str = "openhands-io") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        #: A stopped thread that may still be finishing (stopped from inside itself, or slow to join): the next
        #: start waits for it, so two I/O threads never run at once.
        self._ending: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def in_loop(self) -> bool:
        """Whether the caller runs in this thread (then it must not block on the loop)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use."""
        ending = self._ending
        if ending is not None and ending is not threading.current_thread():
            ending.join(STOP_TIMEOUT)  # (outside the lock: a closer of the ending loop may take it)
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                if self._ending is not None and not self._ending.is_alive():
                    self._ending = None
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._main, args=(loop, ready), name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            asyncio.set_event_loop(None)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` in the loop; its future can be waited on from any other thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` in the loop, soon, in the order calls were made (never raises here: a failure is
        logged, as a view's would be)."""

        def run() -> None:
            try:
                function(*args)
            except Exception:
                log.exception("openhands: a call in the I/O thread failed")

        if self.in_loop():
            run()
        else:
            self.loop().call_soon_threadsafe(run)

    def on_stop(self, closer: Callable[[], Awaitable[None]]) -> None:
        """``await closer()`` in the loop when it stops (once); for what was made in the loop (an async client)."""
        with self._lock:
            self._closers.append(closer)

    def stop(self) -> None:
        """Run the closers, cancel every task, close the loop, join the thread. Safe to call twice, or never
        started; called from the loop's own thread it only schedules the stop."""
        with self._lock:
            loop, thread, closers = self._loop, self._thread, self._closers
            self._loop, self._thread, self._closers = None, None, []
            self._ending = thread or self._ending
        if loop is None or thread is None:
            return
        if not thread.is_alive():
            loop.close()
            return
        future = asyncio.run_coroutine_threadsafe(_shut_down(closers), loop)
        if threading.current_thread() is thread:  # (a listener stopping everything: finish after it returns)
            return
        try:
            future.result(STOP_TIMEOUT)
        except Exception:
            log.warning("openhands: the I/O thread did not shut down cleanly", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()
            with self._lock:
                if self._ending is thread:
                    self._ending = None


async def _shut_down(closers: list[Callable[[], Awaitable[None]]]) -> None:
    """Every task first (a read in flight ends as cancelled, not as a read on a closed client), then the closers."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for closer in closers:
        try:
            await closer()
        except Exception:
            log.warning("openhands: closing a connection failed", exc_info=True)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    loop.call_soon(loop.stop)


_io = IOThread()


def get_io() -> IOThread:
    """The process's I/O thread (started on first use, not on import)."""
    return _io


atexit.register(_io.stop)
