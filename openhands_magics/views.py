"""How a conversation looks: one plain-text line, and an HTML card. No widget imports here, so terminals, nbconvert
and papermill get the same words as the live panel without paying for ipywidgets.

Every view is a function of one value, a frozen :class:`Card` made from a handle (``Card.of(handle)``): what the card
shows, read once, with everything the server sent (title, status, phase, repository, the agent's answer, file paths,
PR pages) already neutralised: control characters are marks, and only the answer keeps its line breaks. The HTML
views escape each text where it goes into markup. A view redraws when the Card changes, so "did anything change" is
one comparison of two values, the same for the panel and the text line, whichever thread asks.

Views read only what the handle already holds (``handle.outcome``, the snapshot's pull requests and cost), never
``.answer`` or ``.changes()``: those may ask the server, and a view runs wherever updates arrive.

The card, the list (:mod:`.listing`) and the fan-out grid share one link helper (:func:`link`) and one table helper
(:func:`html_table`), so a link opens the same way and a table looks the same everywhere.

The card is named for a person: the link's text is the conversation's title, or, until the server names it (its
placeholder "Conversation 3c356" is no name), the first words of the task; the URL is on hover. Ids are shortened
in the view, whole on hover and when copied. Times are the kernel's local time with the zone named and the UTC time
on hover (HTML without scripts cannot know the browser's zone).

The live card's elapsed time is whole minutes, redrawn by the panel when the minute changes (one message a minute
while it runs). It used to tick in the browser, as a CSS animation started at the elapsed time the kernel knew; but
a browser restarts an animation whenever its element is shown again (a theme switch, a tab switch, a folded output),
so that clock jumped back to the kernel's last value. A clock drawn by the kernel never goes back.

A live card knows it may outlive its kernel: it carries its last known state as words ("last seen RUNNING at 16:42
UTC"), shown instead of its status by a style rule once ipywidgets marks the view disconnected (a kernel restart).
The saved copy beside the live panel (:mod:`.display`) is drawn the same way: a notebook reopened later shows what
was last seen, never a live status it cannot know.

The activity feed (the agent's last few steps, from ``handle.activity``: :mod:`.events`) is part of the Card too: a
live card lists them as one-liners under a step count and the live cost; a final card folds them into a collapsed
"N steps". Events come much faster than a person reads, so the Card only says what the feed shows; *when* to redraw
a feed that moved is the panel's business (at most two a second, :mod:`.panel`), while a status change is drawn at
once. Step texts arrive neutralised by :mod:`.events`; a view does not trust that, and removes terminal escape
sequences and control characters again before escaping them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import operator
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from .models import real_title
from .validation import printable

if TYPE_CHECKING:
    from .events import Activity, Event
    from .handle import ConversationHandle
    from .models import Cost, PullRequest

__all__ = [
    "BADGE_COLORS",
    "FEED_LINES",
    "Card",
    "Step",
    "RedrawGate",
    "cost_text",
    "format_elapsed",
    "grid_html",
    "html_card",
    "html_table",
    "link",
    "one_line",
    "plain",
    "pr_links",
    "status_badge",
    "status_change_line",
    "text_summary",
]

#: background colors of the status badge; an unknown status gets the last one.
BADGE_COLORS: dict[str, str] = {
    "STARTING": "#b7791f",
    "RUNNING": "#2b6cb0",
    "FINISHED": "#2f855a",
    "WAITING FOR INPUT": "#6b46c1",
    "WAITING FOR CONFIRMATION": "#c05621",
    "IDLE": "#718096",
    "PAUSED": "#718096",
    "STUCK": "#c05621",
    "ERROR": "#c53030",
    "STOPPED": "#4a5568",
    "ARCHIVED": "#718096",
    "DELETED": "#4a5568",
    "QUEUED": "#a0aec0",
    "FAILED": "#c53030",
    "CANCELLED": "#a0aec0",
    "?": "#6b46c1",
}

#: The answer's visible part in the card; the rest is one click away ("show more").
ANSWER_PREVIEW_CHARS = 400
ANSWER_PREVIEW_LINES = 6
#: Past this even the unfolded answer is cut: the card travels to the browser whole, on every redraw.
ANSWER_FULL_CHARS = 20_000
#: The answer's excerpt on the second line of the text summary.
ANSWER_TEXT_CHARS = 200
#: Changed files listed by path in the card; the others are counted.
FILES_SHOWN = 8
#: The diff a final card expands to shows at most this many lines (``conv.diff()`` shows more, ``str()`` all).
CARD_DIFF_LINES = 400
PROBLEM_CHARS = 160
#: The feed's lines: the agent's last steps (``Activity.recent`` keeps five).
FEED_LINES = 5
#: One feed line at most this many characters (the browser cuts it to the card's width anyway).
FEED_CHARS = 160
#: Terminal escape sequences (CSI, OSC, two-character ones): removed from step texts, whoever made them.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_ERROR_COLOR = "#c53030"

_CHANGE_LETTERS = {"ADDED": "A", "UPDATED": "M", "DELETED": "D", "MOVED": "R"}
_MUTED = "color:#718096"
LINK_STYLE = "color:var(--jp-content-link-color,#1a73e8);text-decoration:underline"
#: One cell of every table the package draws (the list, the fan-out grid).
CELL_STYLE = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid var(--jp-border-color2,#ddd)"
#: The card's name (the link text) at most this long; the task's first words are cut at a word.
NAME_CHARS = 80
TASK_WORDS_CHARS = 60
#: How many characters of an id the views show (the whole id is on hover and in what is copied).
SHORT_ID = 8

#: What only a live card has: a card that may shrink to a narrow output (ipywidgets' HTML box would not), and its
#: stale state, shown instead of its live one once ipywidgets marks the view disconnected (the kernel restarted or
#: is gone); the panel's controls and ipywidgets' broken-link marks go then.
_LIVE_STYLE = (
    "<style>.openhands-panel .widget-html-content{min-width:0;max-width:100%}"
    ".openhands-conversation .oh-stale{display:none}"
    ".jupyter-widgets-disconnected .openhands-conversation .oh-stale{display:inline}"
    ".jupyter-widgets-disconnected .openhands-conversation .oh-live,"
    ".jupyter-widgets-disconnected .openhands-conversation .openhands-feed,"
    ".openhands-panel.jupyter-widgets-disconnected .openhands-control{display:none!important}"
    ".openhands-panel.jupyter-widgets-disconnected::before,"
    ".openhands-panel .jupyter-widgets-disconnected::before{display:none!important}</style>"
)
#: A copyable id: a few characters shown, the whole id selected by one click, copied whole, and on hover.
_ID_STYLE = (
    "display:inline-block;max-width:9ch;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;"
    "vertical-align:bottom;user-select:all;cursor:text;font-size:95%"
)


def plain(text: str) -> str:
    """Server text made safe for a terminal line: control characters (newlines, escapes) become visible marks."""
    return printable(text)


def one_line(text: str, limit: int) -> str:
    """An excerpt of multi-line server text for one line: line breaks shown as ⏎ (a reader sees there were several
    lines, and none can be forged), other control characters as marks, cut at ``limit`` characters."""
    flat = plain(" ⏎ ".join(line.strip() for line in text.strip().splitlines() if line.strip()))
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _multiline(text: str) -> str:
    """Server text that may keep its line breaks and tabs (shown with ``white-space:pre-wrap``), but no other
    control or format character: no escape sequence, NUL or right-to-left override reaches the page."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c if c in "\n\t" or c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def _preview(text: str) -> tuple[str, bool]:
    """The answer's first lines, cut near ``ANSWER_PREVIEW_CHARS`` (at a space when one is close); and whether
    anything was left out."""
    short = "\n".join(text.split("\n")[:ANSWER_PREVIEW_LINES])
    if len(short) > ANSWER_PREVIEW_CHARS:
        short = short[:ANSWER_PREVIEW_CHARS]
        space = short.rfind(" ")
        if space > ANSWER_PREVIEW_CHARS - 40:
            short = short[:space]
    short = short.rstrip()
    return short, short != text.rstrip()


def _is_web_url(url: str | None) -> bool:
    return url is not None and url.lower().startswith(("https://", "http://"))


def _text(value: str | None) -> str | None:
    """Server text for a Card: control characters as marks; None (or nothing) stays None."""
    return printable(value) if value else None


def cost_text(cost: Cost | None) -> str | None:
    """``$0.12 · 12,345 tokens``, or None when it says nothing (unknown, or all zero)."""
    if cost is None or not (cost.usd or cost.tokens):
        return None
    return str(cost)


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@functools.lru_cache(maxsize=4096)  # (a Card is made on every update: the creation time is formatted once)
def _local_time(value: dt.datetime | None) -> str | None:
    return value.astimezone().strftime("%Y-%m-%d %H:%M %Z") if value else None


@functools.lru_cache(maxsize=4096)
def _utc_time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if value else None


def time_html(value: dt.datetime | None) -> str:
    """A moment as the card and the list write it: the kernel's local time with its zone, the UTC time on hover."""
    if value is None:
        return ""
    e = html.escape
    return f'<span title="{e(_utc_time(value) or "", quote=True)}">{e(_local_time(value) or "")}</span>'


def id_html(value: str | None) -> str:
    """An id as the views show it: its first characters, the whole id on hover, selected whole by a click and
    copied whole (the cut is drawn by the browser; a front end that drops the style shows it all)."""
    if not value:
        return ""
    e = html.escape
    return f'<code class="openhands-id" title="{e(value, quote=True)}" style="{_ID_STYLE}">{e(value)}</code>'


def minutes_text(seconds: float) -> str:
    """Elapsed time in whole minutes, as the live card draws it (it changes once a minute)."""
    minutes = int(max(0, seconds)) // 60
    if not minutes:
        return "under 1m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def task_words(task: str | None) -> str | None:
    """The first words of a task, on one line: the card's name until the server gives a title."""
    if not task or not task.strip():
        return None
    first = next(line.strip() for line in task.strip().splitlines() if line.strip())
    first = plain(first)
    if len(first) <= TASK_WORDS_CHARS:
        return first
    cut = first[:TASK_WORDS_CHARS]
    space = cut.rfind(" ")
    return (cut[:space] if space > TASK_WORDS_CHARS // 2 else cut).rstrip(" ,.;:") + "…"


def _step_text(text: str | None) -> str:
    """A step's summary for one feed line: escape sequences gone, other control characters as marks, one line."""
    return one_line(_ESCAPES.sub("", text or ""), FEED_CHARS)


def _steps(count: int) -> str:
    return f"{count} step{'' if count == 1 else 's'}"


def _files_changed(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'} changed"


# ---------------------------------------------------------------------------------------------------- the value
@dataclass(frozen=True)
class Step:
    """One line of the feed: the event's kind (``command``, ``edit``, ``thought``, ``message``, ``error``…), its
    summary on one neutral line, and whether it went wrong (drawn in red)."""

    kind: str
    text: str
    is_error: bool = False


def _feed(recent: Sequence[Event]) -> tuple[Step, ...]:
    return tuple(
        Step(str(e.kind), _step_text(e.summary), bool(e.is_error) or e.kind == "error") for e in recent[-FEED_LINES:]
    )


@dataclass(frozen=True)
class Card:
    """Everything a conversation's card, text line and panel show, read from its handle once.

    Texts are neutralised (control characters as marks; the answer keeps its line breaks and tabs) but not
    escaped: each HTML view escapes where it writes markup. Nothing here moves while only time passes: a running
    card keeps the moment its clock counts from (``clock_from``), a final one the elapsed time it ended at, so two
    Cards of a conversation that did not change are equal, and a view redraws exactly when its Card changes."""

    status: str | None
    status_line: str
    phase: str | None
    title: str | None
    repository: str | None
    #: When it was created (written, in local time with UTC on hover, only when drawn: :func:`time_html`).
    started_at: dt.datetime | None
    url: str | None
    conversation_id: str | None
    task_id: str | None
    is_final: bool
    #: While it runs: when its clock started (creation, or the latest follow-up); None when unknown.
    clock_from: dt.datetime | None
    #: Once final: the elapsed seconds it ended at; None when unknown.
    final_elapsed: float | None
    note: str | None
    #: The agent's answer (None: none yet, or empty).
    answer: str | None
    pull_requests: tuple[PullRequest, ...]
    #: The first ``FILES_SHOWN`` changed files as (letter, path); None when the changes were not read.
    files: tuple[tuple[str, str], ...] | None
    files_count: int
    #: The first thing that could not be read about what the agent did, on one line.
    problem: str | None
    #: What it cost, once final (while it runs the tokens grow on every poll: showing them would cost a message).
    cost: str | None
    #: Whether it is being watched (the panel's "Stop watching" button).
    watching: bool
    #: The agent's steps so far, and the last few of what it did (the feed), from ``handle.activity``.
    steps: int = 0
    feed: tuple[Step, ...] = ()
    #: The live cost and tokens while it runs (``cost`` is the final one).
    live_cost: str | None = None
    #: Where the feed comes from when that is worth a quiet word ("live updates unavailable: polling").
    notice: str | None = None
    #: The action waiting for the user's confirmation, on one line; None when nothing waits.
    pending: str | None = None
    #: Whether the agent itself was stopped (its stream said ``paused``: Stop agent), not its sandbox.
    agent_stopped: bool = False
    #: ``--share``: the public link (``/shared/conversations/ID``) once the server says the conversation is public.
    share_url: str | None = None
    #: What the card is called: the package's label (``fix``), else the server's real title, else the task's first
    #: words; None when none is known (a conversation attached by id before the server named it).
    name: str | None = None
    #: The diff of the changed files (a :class:`~.diffs.Diff`), when it was read with the outcome: the files line
    #: then expands to it.
    diff: Any = None
    #: The latest follow-up sent from this process (one line), and how many were sent (0: the first turn).
    follow_up: str | None = None
    follow_ups: int = 0

    @classmethod
    def of(cls, handle: ConversationHandle) -> Card:
        """The Card of a handle as it is now (its snapshot and outcome are each read once)."""
        conversation, outcome = handle.conversation, handle.outcome
        final = conversation.is_final
        conversation_id, task_id = conversation.conversation_id, conversation.start_task_id
        answer = outcome.answer if outcome is not None else None
        changes = outcome.changes if outcome is not None else None
        started = conversation.started_at
        activity = handle.activity
        title = _text(real_title(conversation.title))
        label = _text(getattr(handle, "label", None))
        follow_up = getattr(handle, "follow_up", None)
        return cls(
            status=_text(conversation.status),
            status_line=_text(conversation.status_line) or "",
            phase=_text(conversation.phase),
            title=title,
            repository=_text(conversation.selected_repository),
            started_at=started,
            url=_text(handle.url) if conversation_id else None,  # (of this snapshot, read on any thread)
            conversation_id=_text(conversation_id),
            task_id=_text(task_id),
            is_final=final,
            clock_from=None if final else (handle.turn_started_at or started),
            final_elapsed=handle.elapsed() if final else None,
            note=_text(handle.note),
            answer=_multiline(answer) if answer and answer.strip() else None,
            pull_requests=tuple(
                dataclasses.replace(pr, url=_text(pr.url)) if pr.url else pr for pr in conversation.pull_requests
            ),
            files=None
            if changes is None
            else tuple((_CHANGE_LETTERS.get(c.status, "?"), _text(c.path) or "") for c in changes[:FILES_SHOWN]),
            files_count=len(changes or ()),
            problem=one_line(outcome.problems[0], PROBLEM_CHARS) if outcome is not None and outcome.problems else None,
            cost=cost_text(conversation.cost) if final else None,
            watching=bool(handle.watching),
            share_url=_text(handle.share_url),
            **_activity_fields(activity, final),
            name=one_line(label or title or task_words(getattr(handle, "task", None)) or "", NAME_CHARS) or None,
            follow_up=one_line(follow_up, FEED_CHARS) if follow_up else None,
            follow_ups=int(getattr(handle, "follow_ups", 0) or 0),
            diff=outcome.diff if outcome is not None else None,
        )

    @property
    def reference(self) -> str:
        """The best id to name it by: the conversation's, else the start task's."""
        return self.conversation_id or f"task {self.task_id}"

    @property
    def can_interrupt(self) -> bool:
        """Whether "Stop agent" applies: the agent may be working (there is a conversation, not final, not paused)."""
        return self.conversation_id is not None and not self.is_final and self.status not in ("PAUSED", "IDLE")

    @property
    def can_reply(self) -> bool:
        """Whether a follow-up applies: its turn is over (finished, it waits for input, or the agent was stopped)."""
        return self.conversation_id is not None and (
            self.status in ("FINISHED", "WAITING FOR INPUT", "IDLE") or (self.status == "PAUSED" and self.agent_stopped)
        )

    @property
    def can_pause(self) -> bool:
        return self.conversation_id is not None and not self.is_final and self.status != "PAUSED"

    @property
    def can_resume(self) -> bool:
        """Whether "Resume" (the sandbox) applies: paused, and not because the agent was stopped (a follow-up goes
        on from there)."""
        return self.status == "PAUSED" and not self.agent_stopped

    def elapsed(self, now: dt.datetime | None = None) -> float | None:
        """Seconds from creation (or the latest follow-up) until ``now``, or until it was seen final."""
        if self.is_final:
            return self.final_elapsed
        if self.clock_from is None:
            return None
        return max(0.0, ((now or _now()) - self.clock_from).total_seconds())

    def looks_like(self, other: Card) -> bool:
        """Whether ``other`` draws the same card (``watching`` only moves the panel's button)."""
        return self == other or _drawn(self) == _drawn(other)

    def same_but_feed(self, other: Card) -> bool:
        """Whether ``other`` differs at most in the feed (steps, their lines, the live cost): a change a panel may
        put off for a moment, where a status, an id, a note or a pending action is drawn at once."""
        return _urgent(self) == _urgent(other)


def _activity_fields(activity: Activity, final: bool) -> dict[str, Any]:
    pending = activity.pending
    return {
        "steps": int(activity.steps or 0),
        "feed": _feed(activity.recent or ()),
        "live_cost": None if final else cost_text(activity.cost),
        "notice": _text(activity.notice),
        "pending": _step_text(pending.summary) if pending is not None and not final else None,
        "agent_stopped": activity.status == "paused",
    }


#: What the card draws: every field of a Card but ``watching``.
_drawn = operator.attrgetter(*(f.name for f in dataclasses.fields(Card) if f.name != "watching"))
#: What is drawn at once: every field but the feed's.
_urgent = operator.attrgetter(
    *(f.name for f in dataclasses.fields(Card) if f.name not in ("steps", "feed", "live_cost"))
)


Shown = Union["ConversationHandle", Card]


def _card(shown: Shown) -> Card:
    return shown if isinstance(shown, Card) else Card.of(shown)


def _elapsed_text(card: Card) -> str | None:
    seconds = card.elapsed()
    return None if seconds is None else format_elapsed(seconds)


def _ids(card: Card) -> str:
    return f"start task {card.task_id}" if card.task_id else ""


# ---------------------------------------------------------------------------------------------------- text
def text_summary(shown: Shown) -> str:
    """One line for terminals and saved outputs, with both ids: ``OpenHands conversation <id> FINISHED "title"
    (1m 05s) <url> · PR <url> · 2 files changed · $0.12 · 3,456 tokens · start task <task id>``; once the agent
    answered, a line ``answer: <its first 200 characters>``; and one for what could not be read, as the card says.

    The start task stays last on the first line: ``saved.py`` reads both ids back from there after a restart."""
    card = _card(shown)
    parts = [f"OpenHands conversation {card.conversation_id or '(not created yet)'}", card.status_line]
    if card.title:
        parts.append(repr(card.title))
    elapsed = _elapsed_text(card)
    if elapsed:
        parts.append(f"({elapsed})")
    if card.url:
        parts.append(card.url)
    if card.share_url:
        parts.append(f"· shared: {card.share_url}")
    parts.extend(f"· PR {plain(str(pr))}" for pr in card.pull_requests)
    if card.files_count:
        counts = f" (+{card.diff.added} −{card.diff.removed})" if card.diff is not None and card.diff.files else ""
        parts.append(f"· {_files_changed(card.files_count)}{counts}")
    if card.cost:
        parts.append(f"· {card.cost}")
    if card.task_id:
        parts.append(f"· {_ids(card)}")
    line = " ".join(parts)
    if card.note:
        line = f"{line} [{card.note}]"
    if card.answer:
        line = f"{line}\nanswer: {one_line(card.answer, ANSWER_TEXT_CHARS)}"
    if card.problem:  # (as the card says it: a missing result, an answer that could not be read)
        line = f"{line}\ndetails unavailable: {card.problem}"
    return line


def status_change_line(shown: Shown) -> str:
    """What ``--wait`` prints on each change, in order: a readable log of the run. Always one line: the magic
    prints the answer itself, once."""
    card = _card(shown)
    elapsed = _elapsed_text(card)
    line = f"{card.reference}: {card.status_line}" + (f" after {elapsed}" if elapsed else "")
    return f"{line} {card.url}" if card.url and card.conversation_id and card.is_final else line


class RedrawGate:
    """When a view should send itself again: when its Card changed, or once a minute while the clock runs (so a
    view re-opened later starts near the right time). Every other call costs one Card and one comparison.

    ``due`` may be called from any thread (updates arrive on the I/O thread, a button's click on the kernel's):
    the last Card and moment are swapped under a lock, so two callers never both redraw the same change."""

    resync_seconds = 60.0

    def __init__(self, shown: Shown) -> None:
        self.card = _card(shown)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def due(self, shown: Shown) -> Card | None:
        """The new Card when a redraw is due, else None."""
        card = _card(shown)
        now = time.monotonic()
        with self._lock:
            if card != self.card or (not card.is_final and now - self._at >= self.resync_seconds):
                self.card, self._at = card, now
                return card
        return None


# ---------------------------------------------------------------------------------------------------- shared HTML
def link(url: str | None, text: str) -> str:
    """``text`` as a link to ``url`` (the URL on hover) in a new tab with no opener; as escaped text when ``url`` is
    no web page (a ``javascript:`` URL never becomes a link). The one place the package writes ``<a>``."""
    e = html.escape
    if not _is_web_url(url):
        return e(text)
    address = e(url or "", quote=True)
    return (
        f'<a href="{address}" title="{address}" target="_blank" rel="noopener noreferrer" style="{LINK_STYLE}">'
        f"{e(text)}</a>"
    )


#: Narrower than this (the output's width, not the window's: a side-by-side layout counts), a table folds its
#: secondary columns into a line under its main cell.
FOLD_WIDTH_PX = 640
_TABLE_STYLE = (
    "<style>.openhands-table-wrap{container-type:inline-size;max-width:100%}"
    ".openhands-table-wrap .oh-fold{display:none}"
    f"@container (max-width:{FOLD_WIDTH_PX}px){{.openhands-table-wrap .oh-secondary{{display:none}}"
    ".openhands-table-wrap .oh-fold{display:block}}</style>"
)


def html_table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    css_class: str,
    caption: str | None = None,
    secondary: Sequence[int] = (),
    fold_into: int | None = None,
) -> str:
    """One table: ``head`` as plain words (escaped), each row's cells as markup already made safe, ``caption``
    as plain text. The one place the package writes ``<table>``: the list and the fan-out grid look alike.

    ``secondary``: the columns that, in an output narrower than ``FOLD_WIDTH_PX``, are dropped, or, with
    ``fold_into``, give way to one muted line under the cell of that column (a style rule on the output's width;
    front ends that drop it show every column)."""
    e = html.escape
    minor = set(secondary)

    def cell(tag: str, index: int, content: str, style: str) -> str:
        kind = ' class="oh-secondary"' if index in minor else ""
        return f'<{tag}{kind} style="{style}">{content}</{tag}>'

    def fold(row: Sequence[str]) -> str:
        parts = [row[i] for i in sorted(minor) if i < len(row) and row[i]]
        return f'<div class="oh-fold" style="{_MUTED};font-size:90%">{" · ".join(parts)}</div>' if parts else ""

    header = "".join(
        cell("th", i, e(name), f"{CELL_STYLE};font-weight:600;white-space:nowrap;overflow-wrap:normal")
        for i, name in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            cell("td", i, content + (fold(row) if i == fold_into else ""), CELL_STYLE) for i, content in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    top = (
        f'<caption style="caption-side:top;text-align:left;color:#718096;padding:2px 8px">{e(caption)}</caption>'
        if caption is not None
        else ""
    )
    table = (
        f'<table class="{e(css_class, quote=True)}" style="border-collapse:collapse;font-size:90%;'
        f'font-family:var(--jp-ui-font-family,sans-serif);overflow-wrap:anywhere">{top}<thead><tr>{header}</tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )
    return f'{_TABLE_STYLE}<div class="openhands-table-wrap">{table}</div>' if minor else table


def status_badge(status: str | None) -> str:
    """The status as a coloured badge (escaped: the status is the server's word when this version does not know it)."""
    status = status or "?"
    color = BADGE_COLORS.get(status, BADGE_COLORS["?"])
    return (
        f'<span class="openhands-status" style="background:{color};color:white;border-radius:4px;padding:1px 7px;'
        f'font-weight:600;font-size:85%;white-space:nowrap">{html.escape(plain(status))}</span>'
    )


def pr_links(prs: Iterable[PullRequest], *, prefix: str = "PR ") -> str:
    """``PR #12`` links (a new tab, no opener), or ``PR #12`` as text when there is no web page to link to."""
    return ", ".join(link(pr.url, f"{prefix}#{int(pr.number)}") for pr in prs)


# ---------------------------------------------------------------------------------------------------- the card
def _clock_now() -> dt.datetime:
    return _now()


def _name(card: Card) -> str:
    """The card's name as the head shows it: the link (to the conversation, the URL on hover) once there is one."""
    e = html.escape
    if card.url:
        return f'<b class="openhands-title">{link(card.url, card.name or "open in OpenHands")}</b>'
    waiting = f'<span style="{_MUTED};font-size:90%">the link appears when the conversation is created</span>'
    return f'<b class="openhands-title">{e(card.name)}</b> {waiting}' if card.name else waiting


def _stale_head(card: Card, *, live: bool) -> str:
    """The last known state, as such: "last seen RUNNING at 16:42 UTC · not followed now (…)". In a live card (the
    alternative its style rule shows once disconnected) the badge is not the card's ``openhands-status``."""
    e = html.escape
    kind = "openhands-last-status" if live else "openhands-status"
    badge = (
        f'<span class="{kind}" style="background:#a0aec0;color:#1a202c;border-radius:4px;padding:1px 7px;'
        f'font-weight:600;font-size:85%;white-space:nowrap">{e(plain(card.status or "?"))}</span>'
    )
    now = _clock_now()
    at = f'<span title="{e(_utc_time(now) or "", quote=True)}">{e(now.astimezone().strftime("%H:%M %Z"))}</span>'
    return (
        f'<span class="openhands-last-seen" style="{_MUTED}">last seen {badge} at {at} · not followed now '
        f"(<code>%openhands --reattach</code>)</span>"
    )


def html_card(shown: Shown, *, live: bool = False, saved_for: str | None = None) -> str:
    """The card. ``live`` (the widget): the elapsed minutes as the kernel knows them, and the last known state that
    replaces the status once the view is disconnected from its kernel. Otherwise (saved outputs, which front ends
    sanitise): a final card as it ended; one not final as what was last seen, since nothing follows it there.
    ``saved_for`` (the live panel's scope): this is the saved copy beside that panel, hidden while the panel is
    live, and hiding, where the panel's model is gone (a reopened notebook), the widget's error in its stead."""
    card = _card(shown)
    color = BADGE_COLORS.get(card.status or "?", BADGE_COLORS["?"])
    e = html.escape
    phase = f' <span style="{_MUTED}">{e(card.phase)}</span>' if card.phase else ""
    status = f"{status_badge(card.status)}{phase}"
    stale = not live and not card.is_final
    seconds = card.elapsed()
    if seconds is None:
        elapsed = None
    elif card.is_final:
        elapsed = e(format_elapsed(seconds))
    else:
        elapsed = e(minutes_text(seconds))
    ident = (
        f"id {id_html(card.conversation_id)}"
        if card.conversation_id
        else (f"start task {id_html(card.task_id)}" if card.task_id else None)
    )
    created = time_html(card.started_at) or None
    rows = [
        ("repository", e(card.repository) if card.repository else None),
        ("created", created),
        ("elapsed", elapsed),
        ("", ident),
    ]
    details = " · ".join(f"{name} {value}".strip() for name, value in rows if value)
    if live:
        last = _stale_head(card, live=True)
        head = f'{_LIVE_STYLE}<span class="oh-live">{status}</span><span class="oh-stale">{last}</span>'
    else:
        head = _stale_head(card, live=False) if stale else status
    sent = ""
    if card.follow_up:
        of = f" of conversation {id_html(card.conversation_id)}" if card.conversation_id else ""
        sent = (
            f'<div class="openhands-sent" style="{_LINE_STYLE}">follow-up {card.follow_ups}{of} · you sent: '
            f"<q>{e(card.follow_up)}</q></div>"
        )
    share = f" · {link(card.share_url, 'share link')}" if card.share_url else ""
    note = f'<div style="color:#c05621">{e(card.note)}</div>' if card.note else ""
    # A final card has a bar in its status colour down its left side: someone who looked away sees at a glance that
    # it is over, and how, before reading a word.
    frame = f";border-left:4px solid {color};padding-left:8px" if card.is_final else ""
    saved = f" openhands-copy oh-s-{_scope(saved_for)}" if saved_for else ""
    return (
        f'<div class="openhands-conversation{saved}" style="font-family:var(--jp-ui-font-family,sans-serif);'
        f'line-height:1.5;min-width:0;overflow-wrap:anywhere{frame}">{_saved_style(saved_for)}'
        f'<div class="openhands-head">{head} {_name(card)}{share}</div>{sent}'
        f'<div style="{_MUTED};font-size:90%">{details}</div>{_activity(card, live=live)}{_results(card)}{note}</div>'
    )


def _scope(scope: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", scope.lower())


def _saved_style(scope: str | None) -> str:
    """The saved copy's rule: where the live panel before it shows no panel (its model is gone: "Error displaying
    widget", or "Loading widget..."), that output is hidden, and this card is what shows (JupyterLab's markup)."""
    if not scope:
        return ""
    s = f"oh-s-{_scope(scope)}"
    # (and where the output before it is a card after all, the final one saved before the copy emptied: the copy
    # hides itself instead)
    return (
        f"<style>.jp-OutputArea-child:has(+ .jp-OutputArea-child .{s}):not(:has(.openhands-panel))"
        ":not(:has(.openhands-conversation)){display:none}"
        f".jp-OutputArea-child:has(.openhands-conversation:not(.openhands-copy)) + .jp-OutputArea-child:has(.{s})"
        "{display:none}</style>"
    )


_STEP_STYLE = {
    "command": "font-family:var(--jp-code-font-family,monospace)",
    "thought": f"font-style:italic;{_MUTED}",
}
_LINE_STYLE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis"


def _feed_lines(card: Card) -> str:
    e = html.escape
    lines = []
    for step in card.feed:
        style = f"color:{_ERROR_COLOR}" if step.is_error else _STEP_STYLE.get(step.kind, "")
        kind = re.sub(r"[^a-z]", "", step.kind.lower())[:20]
        lines.append(f'<div class="openhands-step oh-{kind}" style="{_LINE_STYLE};{style}">{e(step.text)}</div>')
    return "".join(lines)


def _activity(card: Card, *, live: bool) -> str:
    """The feed. Live (the widget, while it runs): the step count and the live cost, the last steps, the action
    waiting for confirmation, and the source's notice. Otherwise: a collapsed "N steps" with the last steps."""
    e = html.escape
    if live and not card.is_final:
        head = " · ".join(x for x in (_steps(card.steps) if card.steps else None, card.live_cost) if x)
        parts = [f'<div style="{_MUTED};font-size:90%">{e(head)}</div>' if head else "", _feed_lines(card)]
        if card.pending:
            parts.append(
                f'<div class="openhands-pending" style="color:#c05621;{_LINE_STYLE}">waiting for your confirmation: '
                f"<code>{e(card.pending)}</code></div>"
            )
        if card.notice:
            parts.append(f'<div class="openhands-notice" style="{_MUTED};font-size:85%">{e(card.notice)}</div>')
        body = "".join(parts)
        return f'<div class="openhands-feed" style="margin-top:2px;font-size:92%">{body}</div>' if body else ""
    if not card.steps and not card.feed:
        return ""
    summary = _steps(card.steps) if card.steps else "steps"
    shown = f' <span style="{_MUTED}">(the last {len(card.feed)}: .events() has all)</span>' if card.feed else ""
    return (
        f'<details class="openhands-trajectory" style="margin-top:2px;font-size:92%"><summary style="cursor:pointer;'
        f'color:var(--jp-content-font-color2,#4a5568)">{e(summary)}{shown}</summary>{_feed_lines(card)}</details>'
    )


#: The answer's Markdown inside a card: tight margins, code and tables that scroll rather than widen the card.
_ANSWER_STYLE = (
    "<style>.openhands-answer p,.openhands-answer ul,.openhands-answer ol,.openhands-answer pre,"
    ".openhands-answer table,.openhands-answer blockquote{margin:2px 0}"
    ".openhands-answer h1,.openhands-answer h2,.openhands-answer h3,.openhands-answer h4"
    "{font-size:1em;margin:4px 0 2px}"
    ".openhands-answer pre{overflow:auto;padding:2px 4px;background:var(--jp-layout-color3,#e5e7eb)}"
    ".openhands-answer table{display:block;overflow:auto;border-collapse:collapse}"
    ".openhands-answer td,.openhands-answer th{border:1px solid var(--jp-border-color2,#ccc);padding:1px 4px}"
    ".openhands-answer details:not([open]) .openhands-less,.openhands-answer details[open] .openhands-more"
    "{display:none}</style>"
)


def _answer_block(text: str) -> str:
    """The answer rendered from its Markdown (:func:`~.markdown.render_markdown`: no raw HTML, safe links): its
    first blocks, and the rest, if any, one click away, cut between two blocks (never inside a list, a table or a
    code block); the switch reads "show more" while closed and "show less" while open."""
    from .markdown import render_markdown, split_blocks

    text = text.strip("\n")
    short, rest = split_blocks(text, ANSWER_PREVIEW_LINES, ANSWER_PREVIEW_CHARS)
    if short.count("\n") >= ANSWER_PREVIEW_LINES or len(short) > ANSWER_PREVIEW_CHARS:
        short, _ = _preview(text)  # the first block alone is too long: cut it at a line (or a space), as text is
        rest = text[len(short) :].lstrip(" \t")  # (the preview was cut at a space, or at the end of a line)
        rest = rest[1:] if rest.startswith("\n") else rest
    box = (
        "overflow-wrap:anywhere;background:var(--jp-layout-color2,#f3f4f6);border-radius:3px;padding:2px 6px;"
        "margin:2px 0"
    )
    if not rest:
        return f'{_ANSWER_STYLE}<div class="openhands-answer" style="{box}">{render_markdown(short)}</div>'
    if len(rest) > ANSWER_FULL_CHARS:
        rest = rest[:ANSWER_FULL_CHARS] + "\n\n… (cut here: the whole answer is in `.answer`)"
    more = rest.count("\n") + 1
    switch = (
        f'<span class="openhands-more">show more ({more} more line{"s" if more != 1 else ""})</span>'
        '<span class="openhands-less">show less</span>'
    )
    return (
        f'{_ANSWER_STYLE}<div class="openhands-answer" style="{box}">{render_markdown(short)}'
        f'<details><summary style="cursor:pointer;color:var(--jp-content-font-color2,#4a5568);font-size:90%">'
        f'{switch}</summary><div style="max-height:24em;overflow:auto">{render_markdown(rest)}</div></details></div>'
    )


def _files_block(card: Card) -> str:
    """The changed files in one flowing line (eight paths at most): a card is a summary; ``.changes()`` has all.
    When the diff was read with them, the line opens it in place, coloured, capped at :data:`CARD_DIFF_LINES`."""
    if not card.files_count:
        return f'<div style="{_MUTED}">no files changed</div>'
    e = html.escape
    paths = [f"<code>{e(letter)}\N{NO-BREAK SPACE}{e(path)}</code>" for letter, path in card.files or ()]
    hidden = card.files_count - len(paths)
    more = f' <span style="{_MUTED}">and {hidden} more</span>' if hidden > 0 else ""
    line = f"{_files_changed(card.files_count)}: {', '.join(paths)}{more}"
    if card.diff is None or not card.diff.files:
        return f"<div>{line}</div>"
    from .diffs import diff_html

    diff = card.diff
    switch = (
        f'<span style="{_MUTED}"> · <span style="color:rgb(46,160,67)">+{diff.added}</span> '
        f'<span style="color:rgb(248,81,73)">−{diff.removed}</span> · '
        '<span class="openhands-more">show the diff</span><span class="openhands-less">hide the diff</span></span>'
    )
    return (
        f'{_FILES_STYLE}<details class="openhands-files"><summary style="cursor:pointer">{line}{switch}</summary>'
        f"{diff_html(diff, CARD_DIFF_LINES, head=False)}</details>"
    )


_FILES_STYLE = (
    "<style>.openhands-files:not([open]) .openhands-less,.openhands-files[open] .openhands-more{display:none}"
    ".openhands-files>summary>span .openhands-more,.openhands-files>summary>span .openhands-less"
    "{text-decoration:underline}</style>"
)


def _results(card: Card) -> str:
    """What the agent did: its answer (the first lines, the rest folded), PR links, the cost, the changed files, and
    in one muted line what could not be read. Empty while there is nothing to show."""
    parts = []
    if card.answer:
        parts.append(_answer_block(card.answer))
    facts = [pr_links(card.pull_requests)] if card.pull_requests else []
    if card.cost:
        facts.append(html.escape(card.cost))
    if facts:
        parts.append(f"<div>{' · '.join(facts)}</div>")
    if card.files is not None:
        parts.append(_files_block(card))
    if card.problem:
        parts.append(f'<div style="{_MUTED};font-size:85%">details unavailable: {html.escape(card.problem)}</div>')
    return f'<div class="openhands-results" style="margin-top:4px">{"".join(parts)}</div>' if parts else ""


# ---------------------------------------------------------------------------------------------------- the grid
def grid_html(batch: Any, *, live: bool = False) -> str:
    """A batch as one table: the aggregate line, then a row per task (status, item, its title as the link to it,
    answer snippet or error), every server text escaped; a narrow output drops the number."""
    e = html.escape
    rows = []
    for row in batch.rows:
        h = row.handle
        answer = h.outcome.answer if h is not None and h.outcome is not None else None
        note = one_line(answer, 80) if answer else (one_line(row.error, 120) if row.error else "")
        name = one_line(real_title(h.title) or task_words(h.task) or "", 50) if h is not None else ""
        title = link(h.url, name or "open") if h is not None and h.url else e(name)
        rows.append(
            [
                str(row.index),
                status_badge(row.status),
                f"<code>{e(one_line(row.label, 40))}</code>",
                title,
                f'<span style="color:var(--jp-content-font-color2,#4a5568)">{e(note)}</span>' if note else "",
            ]
        )
    frame = "" if live else ";border-left:4px solid var(--jp-border-color1,#999);padding-left:8px"
    head = ("#", "status", "item", "title", "answer")
    return (
        f'<div class="openhands-batch" style="font-family:var(--jp-ui-font-family,sans-serif){frame}">'
        f'<div style="font-weight:600;margin:2px 0 4px">{e(plain(batch.summary))}</div>'
        f"{html_table(head, rows, css_class='openhands-grid', secondary=(0,))}</div>"
    )
