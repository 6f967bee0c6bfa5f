"""``ConversationHandle``: what ``conv = %openhands ...`` returns.

A record of one conversation that owns its verbs: ``refresh``, ``wait``, ``send``, ``pause``, ``resume``, ``delete``,
``changes``, ``diff``, ``files``, ``download``, ``read`` and ``stop_watching`` are carried out through its server's
connection (:mod:`.connection`), as ipyparallel's ``AsyncResult.abort()`` calls its client. The session's tracker writes
fresh snapshots into it from the I/O thread while the kernel's thread reads it, so what crosses is guarded: one lock for
the snapshot and its companions (note, watching, outcome) and for the listeners; listeners are called outside it, in the
thread that made the change (views tolerate the I/O thread: ipykernel sends widget messages from any thread).
It knows both ids: the start task's from the moment the server answered the start, the conversation's from the
moment the start task is ready.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .diffs import Diff
from .errors import ValidationError
from .events import EMPTY_ACTIVITY, Activity, Trajectory
from .models import Change, Conversation, ConversationStatus, Cost, Outcome, PullRequest

if TYPE_CHECKING:
    from .connection import Connection
    from .session import Endpoint, Session
    from .start_options import StartOptions

__all__ = ["ConversationHandle", "Diff", "validate_max_cost"]

log = logging.getLogger("openhands_magics")
Listener = Callable[["ConversationHandle"], None]


def validate_max_cost(value: object) -> float | None:
    """A budget in dollars (``--max-cost``, ``max_cost=``): a positive number, or None for none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValidationError(f"max_cost must be a number of dollars, got {type(value).__name__}.")
    try:
        dollars = float(str(value).strip().lstrip("$"))
    except ValueError:
        raise ValidationError(f"--max-cost takes a number of dollars (e.g. 2.50), got {str(value)[:40]!r}.") from None
    if not 0 < dollars < float("inf"):
        raise ValidationError("--max-cost must be a positive number of dollars.")
    return dollars


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: The card's line for a sandbox paused while this kernel did not ask for it: a self-hosted server pauses its oldest
#: sandboxes to start or resume one past its limit (``max_num_sandboxes``, 5 with Docker), mid-run or not; or a
#: person paused it in the web app.
PAUSED_ELSEWHERE = (
    "not paused from here: a server at its sandbox limit pauses the oldest to start another (or the web app did); "
    "Resume goes on"
)


def _paused_elsewhere(before: Conversation, now: Conversation) -> bool:
    """Its sandbox turned PAUSED between two snapshots (an agent stopped by ``interrupt`` reads PAUSED too, with its
    sandbox running: not this)."""
    return now.sandbox_status == "PAUSED" and before.sandbox_status not in ("PAUSED", None) and not now.is_final


class ConversationHandle:
    """A live reference to one conversation.

    Reading: ``.id``, ``.task_id``, ``.url``, ``.status``, ``.title``, ``.refresh()``, ``.wait()``; live: ``.activity``.
    What it did: ``.answer``, ``.pull_requests``, ``.cost``, ``.changes()``, ``.diff()``, ``.events()``, ``.files()``,
    ``.download(path)``, ``.read(path)``, ``.result`` (``--returns``). Steering: ``.send(text)``, ``.interrupt()``
    (stops the agent), ``.confirm()`` / ``.reject()``, ``.pause()``, ``.resume()`` (the sandbox), ``.delete()``;
    ``.stop_watching()`` only stops this kernel listening.
    """

    def __init__(self, conversation: Conversation, session: Session, endpoint: Endpoint) -> None:
        self._conversation = conversation
        self._session = session
        self.endpoint = endpoint
        self._listeners: list[Listener] = []
        self._lock = threading.RLock()
        #: A short remark shown beside the status ("retrying…", why watching stopped); None when all is well.
        self.note: str | None = None
        #: Whether a poller is watching it right now (the panel's "Stop watching" button follows this).
        self.watching = False
        #: When this kernel first saw it final, if it saw it get there (the end of its elapsed time).
        self.seen_final_at: dt.datetime | None = None
        #: When the latest follow-up was sent (None: the first turn, which began with the start).
        self.turn_started_at: dt.datetime | None = None
        #: What the agent did in its latest turn, once read (when it ended, or on first use of ``.answer``).
        self.outcome: Outcome | None = None
        self._activity: Activity = EMPTY_ACTIVITY
        #: The budget guard (``--max-cost``): past this many dollars of live cost the agent is interrupted, once.
        self.max_cost: float | None = None
        #: The start's settings (``--branch``, ``--share``, ...), to check what the server applied (see
        #: ``Connection._check_options``); None for a conversation not started here.
        self.start_options: StartOptions | None = None
        #: ``--share``: made public again when each turn ends (1.11.0 forgets it at each status change of its agent).
        self.shared = False
        #: ``--title``: given back when each turn ends (1.11.0 names its conversations itself, over the one asked).
        self.title_wanted: str | None = None
        #: Shown as a card of its own (not a fan-out's row): its final card expands to the diff, read with the rest.
        self.card_diff = False
        self.budget_spent = False
        self._sticky_note: str | None = None
        #: Whether this kernel paused its sandbox (and did not resume it since): a pause it did not ask for is noted.
        self._paused_here = False
        #: Its sandbox was paused, not from here (a server at its sandbox limit, the web app), and is still paused.
        self.paused_elsewhere = False
        #: The absolute path of the agent's workspace, once its agent server said it.
        self.workspace_dir: str | None = None
        #: The schema of the structured result asked for (``--returns``), read and checked when a turn ends.
        self.returns: Any = None
        self._skip_display_in: int | None = None
        #: The message it was started with, when this process started it (the card's name until the server's title).
        self.task: str | None = None
        #: A name this package gave it, shown before the server's title (``fix``: "Fix: KeyError in cell 12").
        self.label: str | None = None
        #: The latest follow-up sent from this process, and how many were sent (0: the first turn).
        self.follow_up: str | None = None
        self.follow_ups = 0

    @property
    def _connection(self) -> Connection:
        """Its server's connection, through which every verb is carried out (the same one for every handle there)."""
        return self._session.connection(self.endpoint)

    # ------------------------------------------------------------------ what users read
    @property
    def id(self) -> str | None:
        """The conversation's id; None while its start task is still preparing it (see ``task_id``)."""
        return self._conversation.conversation_id

    @property
    def task_id(self) -> str | None:
        """The start task's id (V1), known from the moment the server answered the start."""
        return self._conversation.start_task_id

    @property
    def url(self) -> str | None:
        """The conversation's page, as soon as its id exists."""
        return f"{self.endpoint.base_url}/conversations/{self.id}" if self.id else None

    @property
    def conversation(self) -> Conversation:
        """The latest snapshot received."""
        return self._conversation

    @property
    def status(self) -> str | None:
        return self._conversation.status

    @property
    def title(self) -> str | None:
        return self._conversation.title

    @property
    def is_final(self) -> bool:
        return self._conversation.is_final

    @property
    def share_url(self) -> str | None:
        """The public link (``--share``), once the server says the conversation is public."""
        public = self._conversation.extra.get("public") is True
        return f"{self.endpoint.base_url}/shared/conversations/{self.id}" if public and self.id else None

    @property
    def queued(self) -> bool:
        """``--queue``: its start waits for a place (no id yet); its first snapshot is the start's answer."""
        c = self._conversation
        return c.status == ConversationStatus.QUEUED and c.conversation_id is None and c.start_task_id is None

    @property
    def reference(self) -> str:
        """The best id to name it by: the conversation's, else the start task's."""
        return self.id or (f"task {self.task_id}" if self.task_id else "a queued start")

    def elapsed(self, now: dt.datetime | None = None) -> float | None:
        """Seconds from creation (or from the latest follow-up) until now, or until it was seen final. None when
        unknown: no creation time, or final before this kernel ever saw it running (V0 then ends it at its last
        activity)."""
        created = self.turn_started_at or self._conversation.started_at
        if created is None:
            return None
        end = now or _now()
        if self.is_final:
            seen = self.seen_final_at or (self._conversation.updated_at if self._conversation.api == "v0" else None)
            if seen is None:
                return None
            end = seen
        return max(0.0, (end - created).total_seconds())

    # ------------------------------------------------------------------ what the agent did
    @property
    def answer(self) -> str | None:
        """The agent's last message of its latest turn, once that turn is over (None before, or when the server
        kept none). Read from the server once, when it ends, and kept."""
        outcome = self._outcome()
        return outcome.answer if outcome else None

    @property
    def pull_requests(self) -> tuple[PullRequest, ...]:
        """The pull requests the agent opened (``.url`` each), from the latest snapshot."""
        return self._conversation.pull_requests

    @property
    def cost(self) -> Cost | None:
        """Cost and tokens so far (``str()`` reads ``$0.12 · 12,345 tokens``): the live stream's when it has one,
        else the latest snapshot's."""
        live = self._activity.cost
        return live if live is not None and self._activity.source == "stream" else self._conversation.cost

    @property
    def activity(self) -> Activity:
        """What the agent is doing (:class:`~.events.Activity`: its step count, last few steps, live cost, the
        action waiting for confirmation), fed by the live event stream or, where there is none, by events search.
        A frozen value, replaced whole: safe to read from any thread."""
        return self._activity

    def events(self) -> Trajectory:
        """Every event of the conversation so far, oldest first (read now from the server's events search, paged;
        works for finished conversations too). ``.to_dataframe()`` gives a pandas DataFrame."""
        return self._connection.events(self)

    def changes(self) -> tuple[Change, ...]:
        """The files the agent changed (``.status``, ``.path``); read now, or kept from when its turn ended."""
        if self.is_final and self.outcome is not None and self.outcome.changes is not None:
            return self.outcome.changes
        return self._connection.changes(self)

    def diff(self, path: str | None = None) -> Diff:
        """The unified diff of one changed file (a path as ``changes()`` lists it), or of all of them."""
        return self._connection.diff(self, path)

    # ------------------------------------------------------------------ the agent's files (its agent server)
    def files(self) -> tuple[str, ...]:
        """The files the agent wrote in its workspace (created or changed since the conversation started; uploads
        too), relative to the workspace, as ``download`` and ``read`` take them. Read now from its agent server."""
        return self._connection.files(self)

    def download(self, path: str, *, text: bool = False) -> bytes | str:
        """A file of the agent's workspace (``path`` relative to it, as ``files()`` lists it): its bytes, or
        with ``text=True`` its text (UTF-8). A path outside the workspace is refused; at most
        ``files.MAX_DOWNLOAD_BYTES``."""
        data = self._connection.download(self, path)
        if not text:
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(f"{path!r} is not UTF-8 text; conv.download({path!r}) gives its bytes.") from None

    def read(self, path: str) -> Any:
        """A file of the agent's workspace as Python: a DataFrame for a CSV, TSV, Parquet or JSON table (pandas
        installed), an image shown inline, text otherwise (bytes when it is not text)."""
        from .files import decode_file

        return decode_file(path, self._connection.download(self, path))

    @property
    def result(self) -> Any:
        """The structured result the agent wrote (``--returns`` / ``returns=``), checked against the schema: a
        dataclass instance for a dataclass schema, else a dict. None until the turn is over, or when it is missing
        or invalid (``result_error`` says why)."""
        outcome = self._outcome()
        return outcome.result if outcome else None

    @property
    def result_error(self) -> str | None:
        """Why there is no ``result`` (one line), when a schema was asked for and the turn is over."""
        outcome = self._outcome()
        return outcome.result_error if outcome else None

    def _outcome(self) -> Outcome | None:
        if self.outcome is None and self.is_final and self.id is not None:
            self._connection.conclude(self)
        return self.outcome

    # ------------------------------------------------------------------ steering
    def send(self, text: str, *, upload: Any = None) -> ConversationHandle:
        """A follow-up: the agent runs again with ``text`` (a paused sandbox is resumed first) and the handle is
        watched again. Returns the handle, so a cell ending with ``conv.send(...)`` shows its live panel.
        ``upload`` (V1): DataFrames, bytes, text or file paths (a list, or a dict of names to values) put in the
        workspace's ``data/`` first, as a start's ``upload``; the message says where they are. Nothing is sent if
        one cannot be read or put there."""
        from .session import prepared_uploads

        self._connection.send(self, text, prepared_uploads(upload))
        return self

    def pause(self) -> ConversationHandle:
        """Pause its sandbox: the agent stops until ``resume()``. (``stop_watching()`` only stops polling.)"""
        self._paused_here = True
        try:
            self._connection.pause(self)
        except BaseException:
            self._paused_here = self._conversation.sandbox_status == "PAUSED"
            raise
        return self

    def resume(self) -> ConversationHandle:
        self._connection.resume(self)
        self._paused_here = False
        return self

    def interrupt(self) -> ConversationHandle:
        """Stop the agent at once (the agent server's ``interrupt``): the conversation stays, and ``send()`` goes on
        from there. (``pause()`` pauses the sandbox; ``stop_watching()`` only stops this kernel listening.)"""
        self._connection.interrupt(self)
        return self

    def confirm(self) -> ConversationHandle:
        """Approve the action the agent waits to have confirmed (``activity.pending``)."""
        self._connection.respond_to_confirmation(self, accept=True)
        return self

    def reject(self, reason: str = "") -> ConversationHandle:
        """Refuse the action the agent waits to have confirmed; ``reason`` is told to the agent."""
        self._connection.respond_to_confirmation(self, accept=False, reason=reason)
        return self

    def delete(self) -> None:
        """Delete the conversation on the server, for good. (The magic asks first; this does not.)"""
        self._connection.delete(self)

    # ------------------------------------------------------------------ reading
    def refresh(self) -> Conversation:
        """Fetch the conversation now (blocking) and update every view of it."""
        return self._connection.refresh(self)

    def wait(self, timeout: float | None = None, *, on_change: Listener | None = None) -> Conversation:
        """Block until the agent is done or cannot go on (see ``FINAL_STATUSES``); WaitTimeout after ``timeout`` s.

        The server's one poller (in the I/O thread) watches it meanwhile, so other panels stay live; ``on_change``
        is called in the waiting thread. Interrupting (Ctrl-C / the kernel's stop button) stops the waiting, not
        the conversation.
        """
        return self._connection.wait(self, timeout=timeout, on_change=on_change)

    def watch(self) -> bool:
        """Have its server's poller follow it until it is final (what a panel does); True once it is watched."""
        return self._connection.watch(self)

    def stop_watching(self) -> None:
        """Stop polling it (the conversation goes on)."""
        self._connection.unwatch(self)

    # ------------------------------------------------------------------ what pollers and views use
    def subscribe(self, listener: Listener) -> None:
        if not callable(listener):
            raise ValidationError(f"subscribe() takes a function of the handle, got {type(listener).__name__}.")
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def is_same(self, conversation: Conversation) -> bool:
        mine = self._conversation
        return bool(
            (mine.start_task_id and mine.start_task_id == conversation.start_task_id)
            or (mine.conversation_id and mine.conversation_id == conversation.conversation_id)
        )

    def update(self, conversation: Conversation, note: str | None = None) -> bool:
        """Store a fresh snapshot; returns whether its status line changed (the poller slows down while it doesn't)."""
        if not self.is_same(conversation) and not self.queued:
            raise ValueError(f"a snapshot of {conversation.conversation_id} given to the handle of {self.reference}")
        with self._lock:
            before = self._conversation
            changed = conversation.status_line != before.status_line
            if conversation.is_final and not before.is_final:
                self.seen_final_at = _now()
            if _paused_elsewhere(before, conversation) and not self._paused_here:
                self._sticky_note, self.paused_elsewhere = PAUSED_ELSEWHERE, True
            elif before.sandbox_status == "PAUSED" and conversation.sandbox_status not in ("PAUSED", None):
                self._paused_here = self.paused_elsewhere = False  # (resumed, from here or elsewhere)
                if self._sticky_note == PAUSED_ELSEWHERE:
                    self._sticky_note = None
            self._conversation, self.note = conversation, note if note is not None else self._sticky_note
        self._notify()
        return changed

    def begin_turn(self, conversation: Conversation, text: str | None = None) -> None:
        """A follow-up (``text``) was accepted: the agent works again, from now; what it did before is the past."""
        with self._lock:
            self.turn_started_at, self.seen_final_at, self.outcome = _now(), None, None
            self._sticky_note = None
            if text is not None:
                self.follow_up, self.follow_ups = text, self.follow_ups + 1
        self.update(conversation)

    def set_outcome(self, outcome: Outcome | None) -> None:
        with self._lock:
            self.outcome = outcome
        self._notify()

    def set_note(self, note: str | None, *, sticky: bool = False) -> None:
        """A remark beside the status; ``sticky``: kept through fresh snapshots until the next turn (why the budget
        guard stopped the agent), where other notes ("retrying…") last until the next good read."""
        with self._lock:
            if sticky:
                self._sticky_note = note
            if note == self.note:
                return
            self.note = note
        self._notify()

    def set_activity(self, activity: Activity) -> None:
        """A fresh activity from the stream or events search; listeners are told as for a status change."""
        with self._lock:
            if activity == self._activity:
                return
            self._activity = activity
        self._notify()

    def set_watching(self, watching: bool) -> None:
        with self._lock:
            if watching == self.watching:
                return
            self.watching = watching
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(self)
            except Exception:  # a broken view must not stop the poller or the other views
                log.exception("a view of conversation %s failed to update", self.reference)

    def skip_display_in(self, execution_count: int) -> None:
        """The magic already displayed this handle; don't show it again as the same cell's ``Out[]``."""
        self._skip_display_in = execution_count

    def _ipython_display_(self) -> None:
        from IPython.core.getipython import get_ipython  # (not IPython.get_ipython: IPython 9 imports it on each use)

        shell = get_ipython()
        if shell is not None and self._skip_display_in == shell.execution_count:
            self._skip_display_in = None
            return
        self._session.show(self)

    def __repr__(self) -> str:
        task = f" task={self.task_id}" if self.task_id else ""
        return f"<ConversationHandle {self.id or '(starting)'}{task} {self.conversation.status_line} {self.url or ''}>"

    def __getstate__(self) -> Any:
        raise TypeError("A ConversationHandle is live and cannot be pickled; keep its .id and .task_id instead.")
