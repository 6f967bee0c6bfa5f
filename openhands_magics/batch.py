"""Fan-out: one task over many items, at most ``max_running`` conversations at a time.

``session.map(task, items, ...)`` (or ``openhands_magics.map``) returns a :class:`Batch` at once. A queue starts the
next conversation as one ends; every conversation is watched by the server's one poller (one batched read a tick
for the whole batch, in the I/O thread). In a kernel the queue runs in the event loop; ``.wait()`` (and any place
without a loop) runs it in the caller's thread, waiting on the poller's changes instead of reading. A start refused
with 429 goes back to the queue, which pauses for the server's ``Retry-After``: a 429 started nothing, so nothing
is started twice. Any other failed start is a failed row, and the rest go on. Every id is recorded (on the handle,
in ``history()``, on disk) the moment the server answers.

A row is over (:attr:`Row.over`) however its conversation ends: finished, failed, stuck, its start task failed,
deleted (the server answers ``null`` for it: :func:`~.polling.mark_gone`), and only once what the agent did has been
read (or its read failed). The batch is done when every row is over, so both drivers stop, and the final grid is
drawn, with every answer in it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import OpenHandsError, RateLimitError, ValidationError
from .models import ConversationStatus, Outcome
from .polling import outcome_due
from .validation import printable

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .session import Endpoint, Session

__all__ = ["Batch"]

log = logging.getLogger("openhands_magics")
QUEUED, FAILED, CANCELLED = "QUEUED", "FAILED", "CANCELLED"
#: Pause after a 429 that gave no ``Retry-After`` (or one that is not a number).
DEFAULT_RATE_PAUSE = 30.0
#: The shortest pause after a 429, also when ``Retry-After`` says 0 (or less), i.e. "now": the refused rows go out
#: again on the next round, not in a busy loop of refused POSTs while the server keeps saying 0.
MIN_RATE_PAUSE = 0.5
#: How a conversation ends well (its row has no error): the agent finished, or (V0) its turn ended with a question.
_ENDED_WELL = frozenset({ConversationStatus.FINISHED, ConversationStatus.WAITING_FOR_INPUT})
_starter: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    """Starts are POSTs of the blocking client, in threads: the event loop never waits for one, and a blocking
    ``.wait()`` in the same kernel can finish a start the loop began (it cannot finish a coroutine of a loop it
    blocks)."""
    global _starter
    if _starter is None:
        _starter = ThreadPoolExecutor(max_workers=4, thread_name_prefix="openhands-start")
    return _starter


def rate_pause(error: RateLimitError) -> float:
    """Seconds the queue pauses after a 429: the server's ``Retry-After`` (0 or less: "now", with the small floor
    of :data:`MIN_RATE_PAUSE`), or :data:`DEFAULT_RATE_PAUSE` when it sent none."""
    if error.retry_after is None:
        return DEFAULT_RATE_PAUSE
    return max(MIN_RATE_PAUSE, error.retry_after)  # (max() also turns a NaN into the floor)


def _shown(item: Any, limit: int = 60) -> str:
    """An item for an error line or a table: its repr, one line, cut; never an error (an item's repr may raise)."""
    try:
        text = repr(item)
    except Exception:
        text = f"<{type(item).__name__}>"
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(item: Any, known: Any) -> str:
    """The item as the table shows it (``str``), made once: a view redraws often, and an item's ``str`` may raise.
    Neutralised for terminals, and with any key the package knows (``known``) blanked: the table is printed and
    saved."""
    from ._secrets import blank

    try:
        text = item if isinstance(item, str) else str(item)
    except Exception:
        text = _shown(item)
    return blank(printable(text), known=known)


@dataclass
class Row:
    """One item of the batch: queued, then its conversation's handle, or why it has none."""

    index: int
    item: Any
    message: str
    handle: ConversationHandle | None = None
    state: str = QUEUED  # QUEUED, "STARTING" while its POST is on its way, FAILED, CANCELLED, or "STARTED"
    #: Why its start failed (the POST's error); None once started.
    refusal: str | None = None
    #: The POST on its way (a thread's): whichever side of the batch sees it done first settles the row.
    pending: Future[Any] | None = None
    #: The batch's own read of what the agent did, when no poller reads it (see ``Batch._unread``).
    reading: Future[Any] | None = None
    #: The item as text (``str(item)``, neutralised), for the table and the grid.
    label: str = ""
    #: When the batch last handed its running conversation back to the poller (see ``Batch._rewatch``).
    rewatched: float = 0.0

    @property
    def status(self) -> str:
        return self.handle.status or "?" if self.handle is not None else self.state

    @property
    def running(self) -> bool:
        """Whether it holds one of the ``max_running`` places: its POST is on its way or its conversation is not
        final. A final one frees its place at once, while its answer is still being read."""
        return self.state == "STARTING" or (self.handle is not None and not self.handle.is_final)

    @property
    def over(self) -> bool:
        """Nothing more will happen to it: cancelled, refused, or its conversation ended (whichever way: finished,
        error, stuck, deleted, a start task that failed) and what the agent did was read, or its read failed."""
        if self.state in (FAILED, CANCELLED):
            return True
        handle = self.handle
        return handle is not None and handle.is_final and not outcome_due(handle)

    @property
    def error(self) -> str | None:
        """Why it did not end well, in the server's words where it gave some: the refused start's error, the start
        task's reason (``ERROR · <detail>``), a failed or vanished sandbox, a conversation the server no longer has.
        None while it runs, and when it finished."""
        if self.refusal is not None:
            return self.refusal
        handle = self.handle
        if handle is None or not handle.is_final or handle.status in _ENDED_WELL:
            return None
        conversation = handle.conversation
        if conversation.phase:
            return conversation.phase
        if conversation.status == ConversationStatus.DELETED:
            return "deleted"
        return f"it ended {conversation.status} (the server gave no reason)"


def _items(items: Any) -> list[Any]:
    """The items as a list; a ValidationError for anything that is not a collection of items."""
    if isinstance(items, (str, bytes, bytearray)):
        one = _shown(items, 40)
        raise ValidationError(f"map() takes a list of items, not one {type(items).__name__} (it would map each "
                              f"character of {one}): for one item write [{one}].")
    try:
        iterator = iter(items)
    except TypeError:
        raise ValidationError(f"map() takes a list (or any iterable) of items, got {type(items).__name__}.") from None
    try:
        listed = list(iterator)
    except Exception as error:
        raise ValidationError(f"Reading the items failed ({type(error).__name__}: {_said(error)}); nothing was "
                              "started.") from None
    if not listed:
        raise ValidationError("map() needs at least one item.")
    return listed


def _said(error: BaseException) -> str:
    text = printable(" ".join(str(error).split()))
    return text if len(text) <= 200 else text[:199] + "…"


def _messages(task: str | Callable[[Any], str], items: list[Any]) -> list[str]:
    """Every message up front, through the same checks a start makes, so no item's message fails after others
    started: whatever goes wrong is one line naming the item, and nothing is sent."""
    from .client import OpenHandsClient

    messages = []
    for item in items:
        try:
            message = task(item) if callable(task) else task.format(item=item)
        except Exception as error:  # the user's template or function: whatever it raises is their line to fix
            what = (f"The task function failed for item {_shown(item)}" if callable(task) else
                    f"The task template failed for item {_shown(item)}")
            hint = "" if callable(task) else "; use {item} (and double other braces: {{ }})"
            raise ValidationError(f"{what}: {type(error).__name__}: {_said(error)}{hint}. Nothing was started."
                                  ) from None
        if not isinstance(message, str) or not message.strip():
            raise ValidationError(f"The task for item {_shown(item)} is empty or not text.")
        try:
            message, _ = OpenHandsClient._start_args(message, None)
        except ValidationError as error:
            raise ValidationError(f"The task for item {_shown(item)}: {error}") from None
        messages.append(message)
    return messages


class Batch:
    """Many conversations of one task: ``.rows``, ``.summary``, ``.wait()``, ``.results()``, ``.to_dataframe()``,
    ``.cancel()``."""

    def __init__(
        self,
        session: Session,
        task: str | Callable[[Any], str],
        items: Iterable[Any],
        *,
        endpoint: Endpoint | None = None,
        repository: str | None = None,
        max_running: int = 10,
    ) -> None:
        """Every argument is checked here, before anything is sent (and before the endpoint is resolved from the
        environment): a wrong one is one ValidationError line."""
        from ._secrets import secrets
        from .validation import validate_repository

        if not isinstance(max_running, int) or isinstance(max_running, bool) or max_running < 1:
            raise ValidationError(f"max_running must be a whole number from 1 on, got {_shown(max_running)}.")
        if not (isinstance(task, str) or callable(task)):
            raise ValidationError("task must be a template with {item} or a function of the item, got "
                                  f"{type(task).__name__}.")
        if repository is not None and not isinstance(repository, str):
            raise ValidationError(f"repository must be text like owner/repo, got {type(repository).__name__}.")
        repository = validate_repository(repository) if repository else None
        listed = _items(items)
        messages = _messages(task, listed)
        self._session, self.endpoint = session, session._endpoint(endpoint)  # (a URL string is not one)
        self.repository, self.max_running = repository, max_running
        known = secrets()
        self.rows = [Row(i, item, message, label=_label(item, known))
                     for i, (item, message) in enumerate(zip(listed, messages))]
        self._paused_until = 0.0
        self._views: list[Callable[[], None]] = []
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ what users read
    @property
    def handles(self) -> list[ConversationHandle]:
        return [row.handle for row in self.rows if row.handle is not None]

    @property
    def done(self) -> bool:
        """Every row is over (see :attr:`Row.over`): its answer, too, is in (or its read failed)."""
        return all(row.over for row in self.rows)

    @property
    def summary(self) -> str:
        """``7/20 finished · 10 running · 3 queued · 0 failed``."""
        finished = sum(1 for r in self.rows if r.handle is not None and r.handle.status == "FINISHED")
        running = sum(1 for r in self.rows if r.running)
        queued = sum(1 for r in self.rows if r.state == QUEUED)
        failed = sum(1 for r in self.rows if r.state == FAILED or (
            r.handle is not None and r.handle.is_final and r.handle.status != "FINISHED"))
        cancelled = sum(1 for r in self.rows if r.state == CANCELLED)
        line = (f"{finished}/{len(self.rows)} finished · {running} running · {queued} queued · {failed} failed")
        return line + (f" · {cancelled} cancelled" if cancelled else "")

    def results(self) -> list[dict[str, Any]]:
        """A record per item, in order: item, status, id, task_id, url, title, answer, error."""
        records = []
        for row in self.rows:
            h = row.handle
            records.append({
                "item": row.item, "status": row.status, "id": h.id if h else None, "task_id": h.task_id if h else None,
                "url": h.url if h else None, "title": h.title if h else None,
                "answer": h.outcome.answer if h is not None and h.outcome is not None else None,
                "error": row.error,
            })
        return records

    def to_dataframe(self) -> Any:
        try:
            import pandas
        except ImportError:
            from .errors import ConfigurationError

            raise ConfigurationError("to_dataframe() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.results())

    def cancel(self) -> int:
        """Cancel the queued rows (those started go on); returns how many."""
        queued = [row for row in self.rows if row.state == QUEUED]
        for row in queued:
            row.state = CANCELLED
        self._changed(None)
        return len(queued)

    # ------------------------------------------------------------------ the queue
    def _due(self) -> list[Row]:
        """The queued rows that may start now: as many as there are free places, unless a 429 paused the queue."""
        if time.monotonic() < self._paused_until:
            return []
        free = self.max_running - sum(1 for row in self.rows if row.running)
        return [row for row in self.rows if row.state == QUEUED][:max(0, free)]

    def _started(self, row: Row, conversation: Any) -> None:
        row.handle = self._session.record(conversation, self.endpoint, remember=True)
        row.state = "STARTED"
        row.handle.subscribe(self._changed)
        self._changed(None)

    def _refused(self, row: Row, error: OpenHandsError) -> None:
        if isinstance(error, RateLimitError):  # nothing was started: back in the queue, which pauses
            row.state = QUEUED
            self._paused_until = max(self._paused_until, time.monotonic() + rate_pause(error))
        else:
            row.state, row.refusal = FAILED, str(error)
        self._changed(None)

    def _changed(self, _handle: ConversationHandle | None) -> None:
        if self._wakeup is not None and self._loop is not None:  # (a handle's change comes from the I/O thread)
            try:
                self._loop.call_soon_threadsafe(self._wakeup.set)
            except RuntimeError:  # that loop is closed: nothing waits on it
                pass
        for view in list(self._views):
            try:
                view()
            except Exception:  # a broken view must not stop the queue
                log.exception("a view of a batch failed")

    def start(self) -> Batch:
        """Run the queue in the running event loop (a kernel's); where there is none, ``.wait()`` runs it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self
        if self._task is None or self._task.done():
            self._wakeup, self._loop = asyncio.Event(), loop
            self._task = loop.create_task(self._drive(), name="openhands-batch")
        return self

    def _submit(self, row: Row) -> Future[Any]:
        row.state = "STARTING"
        client = self._session.client(self.endpoint)
        row.pending = _threads().submit(client.start_conversation, row.message, self.repository)
        return row.pending

    def _settle(self, row: Row) -> None:
        """Take in a finished POST, once: the row starts (recorded at once) or is refused."""
        future = row.pending
        if row.state != "STARTING" or future is None or not future.done():
            return
        row.pending = None
        try:
            conversation = future.result()
        except OpenHandsError as error:
            self._refused(row, error)
            return
        except Exception as error:  # a bug must not leave the row STARTING for ever
            self._refused(row, OpenHandsError(f"The start failed ({type(error).__name__}: {error})."))
            return
        self._started(row, conversation)
        assert row.handle is not None
        self._session.watch(row.handle)

    def _unread(self) -> list[Row]:
        """Rows whose answer is due but that nobody reads: the poller reads it while it still watches the handle
        (``watching`` stays on until then), so a final handle it no longer watches (untracked, its read broke, a
        blocking wait got there first) is read by the batch itself, or the batch would never be done."""
        return [row for row in self.rows if row.handle is not None and outcome_due(row.handle)
                and not row.handle.watching and row.reading is None]

    def _rewatch(self) -> None:
        """A running row nobody watches (its panel's "Stop watching", or the poller gave up on an error) would hold
        its place for ever in the event loop's queue: the batch hands it back to the poller, at most once per
        slowest poll interval, so a row whose reads keep failing is not hammered."""
        now, gap = time.monotonic(), self._session.schedule_for(self.endpoint).max_interval
        for row in self.rows:
            h = row.handle
            if h is not None and not h.is_final and not h.watching and now - row.rewatched >= gap:
                row.rewatched = now
                self._session.watch(h)

    def _read_outcome(self, row: Row) -> Future[Any]:
        assert row.handle is not None
        row.reading = _threads().submit(self._session.client(self.endpoint).outcome, row.handle.conversation)
        return row.reading

    def _take_outcome(self, row: Row) -> None:
        """Take in a finished read of the answer, once: what it read, or why it could not (never nothing)."""
        future = row.reading
        if future is None or not future.done():
            return
        row.reading = None
        try:
            outcome = future.result()
        except OpenHandsError as error:
            outcome = Outcome(problems=(str(error),))
        except Exception as error:  # a bug must not leave the batch waiting for this answer for ever
            log.exception("reading the outcome of a batch's conversation failed")
            outcome = Outcome(problems=(f"reading it failed ({type(error).__name__})",))
        if row.handle is not None and outcome_due(row.handle):  # (a blocking wait may have read it meanwhile)
            row.handle.set_outcome(outcome)

    def _conclude_now(self, handle: ConversationHandle) -> None:
        """Read the answer with the blocking client (``.wait()``); a failure is kept as the outcome's problem, so
        the row is over either way."""
        try:
            self._session.conclude(handle)
        except OpenHandsError as error:
            handle.set_outcome(Outcome(problems=(str(error),)))
        except Exception as error:  # (as in the poller: a bug must not keep the batch from ending)
            log.exception("reading the outcome of %s failed", handle.reference)
            handle.set_outcome(Outcome(problems=(f"reading it failed ({type(error).__name__})",)))

    async def _drive(self) -> None:
        while not self.done:
            starting = [self._submit(row) for row in self._due()]
            reading = [self._read_outcome(row) for row in self._unread()]
            for row in [r for r in self.rows if r.pending is not None or r.reading is not None]:
                for future in (row.pending, row.reading):
                    if future is None:
                        continue
                    try:
                        await asyncio.wrap_future(future)
                    except Exception:  # (settled below, whatever it was)
                        pass
                self._settle(row)
                self._take_outcome(row)
            assert self._wakeup is not None
            if starting or reading:
                continue
            self._rewatch()
            self._wakeup.clear()
            if self.done:  # (the last answer came in while the others were awaited)
                break
            pause = max(0.0, self._paused_until - time.monotonic()) or self._session.schedule.interval
            try:
                await asyncio.wait_for(self._wakeup.wait(), pause)
            except asyncio.TimeoutError:
                pass

    def wait(self, timeout: float | None = None) -> Batch:
        """Block until every row is over (queued ones started as places free up, every answer read); WaitTimeout
        after ``timeout``. Its conversations are watched by the server's one poller (in the I/O thread, so other
        panels stay live); this waits for their changes."""
        import threading

        from .validation import validate_seconds

        timeout = validate_seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        changed = threading.Event()
        self._views.append(changed.set)  # (every row's change calls the batch's views)
        try:
            self._wait(changed, deadline, timeout)
        finally:
            self._views.remove(changed.set)
        return self

    def _wait(self, changed: Any, deadline: float | None, timeout: float | None) -> None:
        from .errors import WaitTimeout

        while not self.done:
            changed.clear()
            for row in self._due():
                self._submit(row)
            for row, pending in [(r, r.pending) for r in self.rows if r.state == "STARTING" and r.pending is not None]:
                try:
                    pending.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
                except Exception:  # (settled below; a timeout leaves it starting, and the deadline says so)
                    pass
                self._settle(row)
            for row in self.rows:  # the poller follows every live row (also one whose panel stopped watching)
                if row.handle is not None and not row.handle.is_final and not row.handle.watching:
                    self._session.watch(row.handle)
            for row in self.rows:  # every answer due that the poller will not read (it no longer watches the row)
                if row.handle is not None and outcome_due(row.handle) and not row.handle.watching:
                    self._conclude_now(row.handle)
            if self.done:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise WaitTimeout(f"The batch is not over after {timeout:g} s ({self.summary}); it goes on.")
            pause = self._session.schedule_for(self.endpoint).interval  # (a 429's pause, a start's end: look again)
            changed.wait(pause if deadline is None else min(pause, deadline - now))

    def _repr_html_(self) -> str:
        from .views import grid_html

        return grid_html(self)

    def _ipython_display_(self) -> None:
        """A grid that follows the batch (at most two redraws a second) in a kernel; the final grid as HTML once
        every row is over, so a saved notebook keeps it; a text table elsewhere.

        Rows change wherever updates arrive (the I/O thread, or the kernel's during a blocking ``.wait()``): a
        redraw is decided under a lock, so the final grid is drawn once and the live one never after it; once
        final, the grid widget is closed with its layout and style, so no comm of it stays open."""
        import threading

        from IPython import get_ipython
        from IPython.display import display

        from .views import grid_html

        shell = get_ipython()
        if getattr(shell, "kernel", None) is None:
            print(repr(self))
            return
        if self.done:
            display({"text/html": grid_html(self), "text/plain": repr(self)}, raw=True)
            return
        import ipywidgets as widgets

        from .panel import close_widgets

        grid = widgets.HTML(grid_html(self, live=True))
        shown = display(grid, display_id=True)
        lock = threading.Lock()
        state = {"due": False, "over": False}

        def redraw() -> None:
            with lock:
                if state["over"]:
                    return
                state["due"] = False
                state["over"] = over = self.done
                if not over:
                    grid.value = grid_html(self, live=True)
                    return
            if follow in self._views:
                self._views.remove(follow)
            shown.update({"text/html": grid_html(self), "text/plain": repr(self)}, raw=True)
            close_widgets(grid)

        def follow() -> None:
            if self.done:  # the last change: the final grid at once (a blocking .wait() may hold the loop)
                redraw()  # (a redraw still due finds the grid over and draws nothing)
                return
            with lock:
                if state["due"] or state["over"]:
                    return
                try:
                    loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
                except RuntimeError:  # no loop in this thread (a blocking .wait()): draw now
                    loop = None
                state["due"] = loop is not None
            if loop is None:
                redraw()
            else:
                loop.call_later(0.5, redraw)

        self._views.append(follow)

    def __repr__(self) -> str:
        from .views import plain

        lines = [self.summary]
        for row in self.rows:  # every server text (status, error) neutralised: this goes to terminals
            where = row.handle.url if row.handle is not None and row.handle.url else (row.error or "")
            lines.append(f"{row.index:>3}  {plain(row.status):<10}  {plain(row.label)[:30]:<30}  {plain(where)[:100]}")
        return "\n".join(lines)
