"""Fan-out: one task over many items, at most ``max_running`` conversations at a time.

``session.map(task, items, ...)`` (or ``openhands_magics.map``) returns a :class:`Batch` at once, its queue already
running. The queue is a small scheduler in the I/O thread's loop (:mod:`._io`), fed by the server's tracker: each
row's handle tells the batch when it changes (a final row frees its place), and the scheduler sends the next starts
with the connection's async client, so no thread waits on a POST and the queue goes on the same way whether the
kernel is idle, runs a cell that computes for minutes, or blocks in ``.wait()``. Every conversation is watched by the
server's one polling source (one batched read a tick for the whole batch); what the agent did is read by the
connection when a turn ends.

A start refused with 429 goes back to the queue, which pauses for the server's ``Retry-After`` (at least
:data:`MIN_RATE_PAUSE`): a 429 started nothing, so nothing is started twice. Any other failed start is a failed row
with the server's reason in its ``error``, and the rest go on. Every id is recorded (on the handle, in ``history()``,
on disk) the moment the server answers. A self-hosted server at its sandbox limit refuses nothing: it pauses its
oldest sandboxes to start another, a running row's too; the first row paused so sets ``max_running`` to the rows
still running (``learned_sandboxes``), and the paused rows are resumed, oldest first, as places free.

A row is over (:attr:`Row.over`) however its conversation ends: finished, failed, stuck, its start task failed,
deleted (the server answers ``null`` for it: :func:`~.polling.mark_gone`), and only once what the agent did has been
read (or its read failed). The batch is done when every row is over; ``.wait()`` returns once the batch's views were
told so (the final grid is drawn, with every answer in it).

Threads: a row's state changes only in the I/O loop (``cancel()`` too is carried out there); views (the grid, a
blocking ``.wait()``) are told through the batch's listeners, from that loop; ``.wait()`` blocks on a
:class:`threading.Event` they set.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._io import get_io
from .errors import ConcurrencyLimitError, OpenHandsError, RateLimitError, ValidationError
from .models import ConversationStatus, Outcome
from .polling import outcome_due
from .validation import printable

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .endpoint import Endpoint
    from .session import Session

__all__ = ["Batch"]

log = logging.getLogger("openhands_magics")
T = TypeVar("T")
QUEUED, STARTING, STARTED, FAILED, CANCELLED = "QUEUED", "STARTING", "STARTED", "FAILED", "CANCELLED"
#: Pause after a 429 that gave no ``Retry-After`` (or one that is not a number).
DEFAULT_RATE_PAUSE = 30.0
#: The shortest pause after a 429, also when ``Retry-After`` says 0 (or less), i.e. "now": the refused rows go out
#: again on the next round, not in a busy loop of refused POSTs while the server keeps saying 0.
MIN_RATE_PAUSE = 0.5
#: How often the batch asks the connection again for what the agent did of a row whose read broke (then the row is
#: over with the problem, so one broken read never keeps the batch from ending).
OUTCOME_ASKS = 2
#: A start on its way when the I/O thread stopped (``close()``, ``%unload_ext``): the server may have started it, so
#: it is not sent again.
INTERRUPTED = (
    "its start was interrupted (the session closed) before the server answered; it may have started: "
    "%openhands list shows it"
)
#: How conversations end well (the row has no error): the agent finished, or (V0) its turn ended with a question.
_ENDED_WELL = frozenset({ConversationStatus.FINISHED, ConversationStatus.WAITING_FOR_INPUT})


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
    state: str = QUEUED  # QUEUED, STARTING while its POST is on its way, FAILED, CANCELLED, or STARTED
    #: Why its start failed (the POST's error); None once started.
    refusal: str | None = None
    #: The item as text (``str(item)``, neutralised), for the table and the grid.
    label: str = ""
    #: When the batch last handed its running conversation back to the tracker (see ``Batch._pump``).
    rewatched: float = 0.0
    #: When, and how often, the batch asked the connection again for what the agent did (see ``Batch._pump``).
    asked: float = 0.0
    asks: int = 0
    #: Its resume is on its way (a row the server paused: see ``Batch._pump``).
    resuming: bool = False

    @property
    def status(self) -> str:
        return self.handle.status or "?" if self.handle is not None else self.state

    @property
    def running(self) -> bool:
        """Whether it holds one of the ``max_running`` places: its POST (or its resume) is on its way, or its
        conversation is not final and not set aside (:attr:`set_aside`). A final one frees its place at once, while
        its answer is still being read."""
        return (
            self.state == STARTING
            or self.resuming
            or (
                self.state == STARTED
                and self.handle is not None
                and not self.handle.is_final
                and not self.handle.paused_elsewhere
            )
        )

    @property
    def set_aside(self) -> bool:
        """Its sandbox was paused by the server (at its sandbox limit, it pauses its oldest to start another) and
        waits for a place to be resumed in; it holds none meanwhile."""
        handle = self.handle
        return (
            self.state == STARTED
            and not self.resuming
            and handle is not None
            and handle.paused_elsewhere
            and not handle.is_final
        )

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
        raise ValidationError(
            f"map() takes a list of items, not one {type(items).__name__} (it would map each "
            f"character of {one}): for one item write [{one}]."
        )
    try:
        iterator = iter(items)
    except TypeError:
        raise ValidationError(f"map() takes a list (or any iterable) of items, got {type(items).__name__}.") from None
    try:
        listed = list(iterator)
    except Exception as error:
        raise ValidationError(
            f"Reading the items failed ({type(error).__name__}: {_said(error)}); nothing was started."
        ) from None
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
            what = (
                f"The task function failed for item {_shown(item)}"
                if callable(task)
                else f"The task template failed for item {_shown(item)}"
            )
            hint = "" if callable(task) else "; use {item} (and double other braces: {{ }})"
            raise ValidationError(
                f"{what}: {type(error).__name__}: {_said(error)}{hint}. Nothing was started."
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
        max_cost: float | None = None,
        branch: str | None = None,
        model: str | None = None,
        plan: bool = False,
        instructions: str | None = None,
        title: str | None = None,
        share: bool = False,
        secrets: Any = None,
        sandbox: str | None = None,
        upload: Any = None,
        returns: Any = None,
    ) -> None:
        """Every argument is checked here, before anything is sent (and before the endpoint is resolved from the
        environment): a wrong one is one ValidationError line. ``branch`` ... ``sandbox``: every start's settings
        (:class:`~.start_options.StartOptions`). ``upload``: files put in every conversation's workspace before its
        agent runs; ``returns``: each one's structured result, a column per field."""
        from ._secrets import secrets as known_secrets
        from .handle import validate_max_cost
        from .start_options import StartOptions
        from .validation import validate_repository

        #: Every start's settings (checked first: a secret missing from the environment starts nothing).
        self.options = StartOptions.make(
            branch=branch,
            model=model,
            plan=plan,
            instructions=instructions,
            title=title,
            share=share,
            secrets=secrets,
            sandbox=sandbox,
        )

        #: Each row's budget guard (``handle.max_cost``): its agent is interrupted once its live cost passes it.
        self.max_cost = validate_max_cost(max_cost)
        if not isinstance(max_running, int) or isinstance(max_running, bool) or max_running < 1:
            raise ValidationError(f"max_running must be a whole number from 1 on, got {_shown(max_running)}.")
        if not (isinstance(task, str) or callable(task)):
            raise ValidationError(
                f"task must be a template with {{item}} or a function of the item, got {type(task).__name__}."
            )
        if repository is not None and not isinstance(repository, str):
            raise ValidationError(f"repository must be text like owner/repo, got {type(repository).__name__}.")
        repository = validate_repository(repository) if repository else None
        from .results import schema_of
        from .session import prepared_uploads, with_extras

        #: What each conversation gets in its workspace (``upload=``), and the schema of its result (``returns=``).
        self.uploads, self.schema = prepared_uploads(upload), schema_of(returns)
        listed = _items(items)
        messages = [with_extras(m, self.uploads, self.schema) for m in _messages(task, listed)]
        self._session, self.endpoint = session, session._endpoint(endpoint)  # (a URL string is not one)
        self.repository, self.max_running = repository, max_running
        known = known_secrets()
        self.rows = [
            Row(i, item, message, label=_label(item, known)) for i, (item, message) in enumerate(zip(listed, messages))
        ]
        self._connection = session.connection(self.endpoint)
        self._io = get_io()
        self._paused_until = 0.0
        #: The account's limit as the first "too many running" 429 taught it (None: none seen); while ``_full``,
        #: no start goes out until a row ends (or :data:`DEFAULT_RATE_PAUSE` passed: one may end elsewhere).
        self.learned_limit: int | None = None
        #: The server's sandbox limit as its first pause of a running row taught it (None: none seen): a self-hosted
        #: server at its limit pauses its oldest sandboxes to start another instead of refusing it, so the batch runs
        #: no more than were still running then, and resumes the rows it paused (oldest first) as places free.
        self.learned_sandboxes: int | None = None
        self._full = False
        self._full_until = 0.0
        self._ended_when_full = 0
        #: The batch's listeners, told (in the I/O loop) after every round of the queue: the grid, a blocking wait.
        self._views: list[Callable[[], None]] = []
        self._pump_due: asyncio.AbstractEventLoop | None = None  # the loop a round is due in
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the starts on their way (asyncio keeps only weak references)

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
        failed = sum(
            1
            for r in self.rows
            if r.state == FAILED or (r.handle is not None and r.handle.is_final and r.handle.status != "FINISHED")
        )
        cancelled = sum(1 for r in self.rows if r.state == CANCELLED)
        aside = sum(1 for r in self.rows if r.set_aside)
        line = f"{finished}/{len(self.rows)} finished · {running} running · {queued} queued · {failed} failed"
        line += f" · {cancelled} cancelled" if cancelled else ""
        if self.learned_sandboxes is not None and (aside or queued):
            paused = f" · {aside} paused by the server, resumed in turn" if aside else ""
            line += f"{paused} (its sandboxes: at most {self.learned_sandboxes} at once)"
        if self.learned_limit is not None and queued:
            waiting = " · waiting for a slot" if self._full else ""
            line += f"{waiting} (the account runs at most {self.learned_limit} at once)"
        return line

    def results(self) -> list[dict[str, Any]]:
        """A record per item, in order: item, status, id, task_id, url, title, answer, error."""
        records = []
        for row in self.rows:
            h = row.handle
            records.append(
                {
                    "item": row.item,
                    "status": row.status,
                    "id": h.id if h else None,
                    "task_id": h.task_id if h else None,
                    "url": h.url if h else None,
                    "title": h.title if h else None,
                    "answer": h.outcome.answer if h is not None and h.outcome is not None else None,
                    "error": row.error,
                    **(self._result_columns(h) if self.schema is not None else {}),
                }
            )
        return records

    def _result_columns(self, handle: ConversationHandle | None) -> dict[str, Any]:
        """A column per field of the result (``returns=``), and why a row has none."""
        outcome = handle.outcome if handle is not None else None
        assert self.schema is not None
        return {
            **self.schema.row(outcome.result if outcome is not None else None),
            "result_error": outcome.result_error if outcome is not None else None,
        }

    def to_dataframe(self) -> Any:
        try:
            import pandas
        except ImportError:
            from .errors import ConfigurationError

            raise ConfigurationError("to_dataframe() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.results())

    def cancel(self) -> int:
        """Cancel the queued rows (those started go on); returns how many. Carried out in the I/O loop, so no row
        starts while it is being cancelled."""

        def cancel_queued() -> int:
            queued = [row for row in self.rows if row.state == QUEUED]
            for row in queued:
                row.state = CANCELLED
            self._tell()
            return len(queued)

        return self._in_loop(cancel_queued)

    # ------------------------------------------------------------------ the queue (in the I/O loop)
    def start(self) -> Batch:
        """Run the queue (in the I/O thread's loop, with a kernel or without); ``.wait()`` waits for it."""
        self._kick()
        return self

    def _in_loop(self, function: Callable[[], T]) -> T:
        """``function()`` in the I/O loop, its result here (at once when called there)."""
        if self._io.in_loop():
            return function()

        async def call() -> T:
            return function()

        return self._io.submit(call()).result()

    def _kick(self, _handle: ConversationHandle | None = None) -> None:
        """Something changed (a row's handle, a start's answer, a pause's end): one round of the queue, soon, in the
        I/O loop; changes arriving together share one round. From any thread; a row's handle calls it."""
        if threading.current_thread().name == self._io.name and not self._io.in_loop():
            return  # the I/O thread is stopping (close, %unload_ext): nothing more starts; .wait() resumes the queue
        loop = self._io.loop()
        if self._pump_due is loop:  # (a round due in a loop that stopped before it ran does not count)
            return
        self._pump_due = loop
        try:
            loop.call_soon_threadsafe(self._pump)
        except RuntimeError:  # (that loop closed meanwhile: the next kick starts another)
            self._pump_due = None

    def _due(self) -> list[Row]:
        """The rows that may go on now, as many as there are free places: first those the server paused (to be
        resumed, oldest first), then the queued ones (to be started); none while a 429 paused the queue or the
        account is full (until one of its rows ends)."""
        now = time.monotonic()
        if now < self._paused_until:
            return []
        if self._full:
            if self._ended() == self._ended_when_full and now < self._full_until:
                return []
            self._full = False
        if self.learned_sandboxes is None and any(row.set_aside for row in self.rows):
            running = sum(1 for row in self.rows if row.running)
            self.learned_sandboxes = self.max_running = max(1, min(self.max_running, running))
        free = self.max_running - sum(1 for row in self.rows if row.running)
        waiting = [row for row in self.rows if row.set_aside] + [row for row in self.rows if row.state == QUEUED]
        return waiting[: max(0, free)]

    def _pump(self) -> None:
        """One round: hand back to the tracker what nobody follows, send the starts there are places for, tell the
        views. When something is due later (a 429's pause, a retry's gap), a timer kicks the next round."""
        self._pump_due = None
        if not self._io.in_loop():  # (a round scheduled just before the I/O thread began to stop)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now, gap = time.monotonic(), self._session.schedule_for(self.endpoint).max_interval
        later: list[float] = []
        for row in self.rows:
            handle = row.handle
            if handle is None or handle.watching:
                continue
            if not handle.is_final:
                # A running row nobody watches (its panel's "Stop watching", the tracker gave up on an error, the
                # session closed) would hold its place for ever: back to the tracker, at most once a slowest poll.
                if now - row.rewatched >= gap:
                    row.rewatched = now
                    self._connection.watch(handle)
                else:
                    later.append(row.rewatched + gap)
            elif outcome_due(handle):  # final, and what it did is unread: its read broke, or was dropped
                if row.asks >= OUTCOME_ASKS:
                    handle.set_outcome(Outcome(problems=(f"reading what the agent did failed {row.asks + 1} times",)))
                elif now - row.asked >= gap:
                    row.asked, row.asks = now, row.asks + 1
                    self._connection.read_outcome_soon(handle)
                else:
                    later.append(row.asked + gap)
        if now < self._paused_until:
            later.append(self._paused_until)
        if self._full:
            later.append(self._full_until)
        for row in self._due():
            if row.set_aside:
                row.resuming = True
                task = asyncio.get_running_loop().create_task(self._resume(row), name="openhands-batch-resume")
            else:
                row.state = STARTING
                task = asyncio.get_running_loop().create_task(self._send_start(row), name="openhands-batch-start")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if later:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, min(later) - now), self._kick)
        self._tell()

    async def _send_start(self, row: Row) -> None:
        """One POST, by the I/O loop's client: the row starts (recorded at once, then watched) or is refused."""
        try:
            first = None if self.uploads else row.message  # (with files: started idle, the task sent after them)
            conversation = await self._connection.start_in_loop(first, self.repository, self.options)
        except asyncio.CancelledError:  # the I/O thread stops: the server may have started it, so never again
            row.state, row.refusal = FAILED, INTERRUPTED
            self._tell()
            raise
        except ConcurrencyLimitError as error:  # nothing was started: back in the queue, until a row ends
            row.state = QUEUED
            self._account_full(error)
        except RateLimitError as error:  # nothing was started: back in the queue, which pauses
            row.state = QUEUED
            self._paused_until = max(self._paused_until, time.monotonic() + rate_pause(error))
        except OpenHandsError as error:
            row.state, row.refusal = FAILED, str(error)
        except Exception as error:  # a bug must not leave the row STARTING for ever
            log.exception("starting a batch's conversation failed")
            row.state, row.refusal = FAILED, f"The start failed ({type(error).__name__}: {_said(error)})."
        else:
            handle = self._session.record(conversation, self.endpoint, remember=True)
            handle.start_options = self.options or None
            self._connection.report_ignored(handle, conversation)
            handle.max_cost, handle.returns = self.max_cost, self.schema
            problem = await self._deliver(handle, row.message) if self.uploads else None
            row.handle, row.state = handle, STARTED if problem is None else FAILED
            if problem is not None:
                row.refusal = problem
                handle.set_note(problem, sticky=True)
            else:
                handle.subscribe(self._kick)
                self._connection.watch(handle)
        self._kick()

    async def _resume(self, row: Row) -> None:
        """Resume a row the server paused (which may pause the oldest sandbox again: a finished row's, first)."""
        assert row.handle is not None
        try:
            await self._connection.resume_in_loop(row.handle)
        except asyncio.CancelledError:
            raise
        except OpenHandsError as error:  # (tried again at the next round, after a slowest poll's gap)
            log.info("resuming %s failed: %s", row.handle.reference, error)
            self._paused_until = max(self._paused_until, time.monotonic() + DEFAULT_RATE_PAUSE / 6)
        except Exception:
            log.exception("resuming a batch's conversation failed")
        finally:
            row.resuming = False
        self._kick()

    async def _deliver(self, handle: ConversationHandle, message: str) -> str | None:
        try:
            return await self._connection.deliver_in_loop(handle, self.uploads, message)
        except Exception as error:  # a bug must not leave the row STARTING for ever
            log.exception("uploading a batch's files failed")
            return f"Uploading the files failed ({type(error).__name__}: {_said(error)}); it waits idle."

    def _ended(self) -> int:
        return sum(1 for row in self.rows if row.handle is not None and row.handle.is_final)

    def _account_full(self, error: ConcurrencyLimitError) -> None:
        """A start refused for too many running: the first one sets ``max_running`` to the number then running
        (the server's count, else its limit, else this batch's running rows), and no start goes out again until
        one of the rows ends, or after :data:`DEFAULT_RATE_PAUSE` (one may end outside this batch)."""
        if self.learned_limit is None:
            started = sum(1 for row in self.rows if row.handle is not None and not row.handle.is_final)
            learned = error.running if error.running else error.limit if error.limit else max(1, started)
            self.learned_limit = self.max_running = max(1, min(self.max_running, learned))
        self._full, self._ended_when_full = True, self._ended()
        self._full_until = time.monotonic() + (error.retry_after or DEFAULT_RATE_PAUSE)

    def _tell(self) -> None:
        for view in list(self._views):
            try:
                view()
            except Exception:  # a broken view must not stop the queue
                log.exception("a view of a batch failed")

    def wait(self, timeout: float | None = None) -> Batch:
        """Block until every row is over (queued ones started as places free up, every answer read) and the
        batch's views were told so; WaitTimeout after ``timeout``. The queue and the tracker go on in the I/O
        thread meanwhile (other panels stay live); this only waits for them."""
        from .errors import WaitTimeout
        from .validation import validate_seconds

        timeout = validate_seconds(timeout, "timeout")
        if self._io.in_loop():
            raise ValidationError("wait() cannot be called from a view or a listener; use it in a cell.")
        deadline = None if timeout is None else time.monotonic() + timeout
        over = threading.Event()

        def seen() -> None:  # (after the views shown before the wait: the final grid is drawn when this is told)
            if self.done:
                over.set()

        self._views.append(seen)
        try:
            self._kick()  # (a round tells the views, this one too, even if nothing is left to start)
            while not over.wait(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"The batch is not over after {timeout:g} s ({self.summary}); it goes on.")
                self._kick()  # (bounds the wait on a round that was lost to a stopping I/O thread)
        finally:
            self._views.remove(seen)
        return self

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

        from IPython.core.getipython import get_ipython  # (not IPython.get_ipython: IPython 9 imports it on each use)
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
