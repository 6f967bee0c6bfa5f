"""How a conversation looks: one plain-text line, and an HTML card. No widget imports here, so terminals, nbconvert
and papermill get the same words as the live panel without paying for ipywidgets.

Everything the server sends (title, status, phase, repository, the agent's answer, file paths) is HTML-escaped before
it goes into markup, and has its control characters neutralised before it goes into text: a conversation title is
user-controlled text, and an answer is whatever the agent (and anything it read) wrote.

Views read only what the handle already holds (``handle.outcome``, the snapshot's pull requests and cost), never
``.answer`` or ``.changes()``: those may ask the server, and a view runs on the poller's loop.

The live card's elapsed time is drawn by the browser (CSS animations of registered integer properties, started at
the elapsed time the kernel knew), so a ticking clock costs no message from the kernel.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .validation import printable

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .models import Change, Cost, PullRequest

__all__ = [
    "BADGE_COLORS",
    "RedrawGate",
    "card_state",
    "cost_text",
    "format_elapsed",
    "html_card",
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
ANSWER_PREVIEW_CHARS = 280
ANSWER_PREVIEW_LINES = 4
#: Past this even the unfolded answer is cut: the card travels to the browser whole, on every redraw.
ANSWER_FULL_CHARS = 20_000
#: The answer's excerpt on the second line of the text summary.
ANSWER_TEXT_CHARS = 200
#: Changed files listed by path in the card; the others are counted.
FILES_SHOWN = 8
PROBLEM_CHARS = 160

_CHANGE_LETTERS = {"ADDED": "A", "UPDATED": "M", "DELETED": "D", "MOVED": "R"}
_MUTED = "color:#718096"
_LINK_STYLE = "color:var(--jp-content-link-color,#1a73e8);text-decoration:underline"

_CLOCK_STYLE = (
    "<style>"
    "@property --oh-h{syntax:'<integer>';inherits:false;initial-value:0}"
    "@property --oh-m{syntax:'<integer>';inherits:false;initial-value:0}"
    "@property --oh-s{syntax:'<integer>';inherits:false;initial-value:0}"
    "@keyframes oh-h{to{--oh-h:10000}}@keyframes oh-m{to{--oh-m:60}}@keyframes oh-s{to{--oh-s:60}}"
    "@keyframes oh-mm{to{--oh-m:10000}}"
    ".oh-ms{animation:oh-mm 600000s steps(10000) forwards,oh-s 60s steps(60) infinite;"
    "counter-reset:m var(--oh-m) s var(--oh-s)}"
    '.oh-ms::after{content:counter(m) "m " counter(s,decimal-leading-zero) "s"}'
    ".oh-hm{animation:oh-h 36000000s steps(10000) forwards,oh-m 3600s steps(60) infinite;"
    "counter-reset:h var(--oh-h) m var(--oh-m)}"
    '.oh-hm::after{content:counter(h) "h " counter(m,decimal-leading-zero) "m"}'
    "</style>"
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


def cost_text(cost: Cost | None) -> str | None:
    """``$0.12 · 12,345 tokens``, or None when it says nothing (unknown, or all zero)."""
    if cost is None or not (cost.usd or cost.tokens):
        return None
    return str(cost)


def _shown_cost(handle: ConversationHandle) -> str | None:
    """The cost, once the conversation is final: while it runs the tokens grow on every poll, and showing them
    would cost the browser a message per poll."""
    return cost_text(handle.cost) if handle.is_final else None


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _elapsed(handle: ConversationHandle) -> str | None:
    seconds = handle.elapsed()
    return None if seconds is None else format_elapsed(seconds)


def _clock(seconds: float) -> str:
    """A span that counts on from ``seconds`` in the browser (minutes and seconds; past an hour, hours and minutes)."""
    whole = int(seconds)
    kind = "oh-hm" if whole >= 3540 else "oh-ms"  # within a minute of an hour: the next resync switches anyway
    delays = ",".join([f"-{whole}s"] * 2)
    return f'{_CLOCK_STYLE}<span class="{kind}" style="animation-delay:{delays}" title="elapsed"></span>'


def _local_time(value: dt.datetime | None) -> str | None:
    return value.astimezone().strftime("%Y-%m-%d %H:%M %Z") if value else None


def _ids(handle: ConversationHandle) -> str:
    return f"start task {handle.task_id}" if handle.task_id else ""


def _files_changed(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'} changed"


def text_summary(handle: ConversationHandle) -> str:
    """One line for terminals and saved outputs, with both ids: ``OpenHands conversation <id> FINISHED "title"
    (1m 05s) <url> · PR <url> · 2 files changed · $0.12 · 3,456 tokens · start task <task id>``; and, once the agent
    answered, a second line ``answer: <its first 200 characters>``.

    The start task stays last on the first line: ``saved.py`` reads both ids back from there after a restart."""
    conversation = handle.conversation
    parts = [f"OpenHands conversation {handle.id or '(not created yet)'}", plain(conversation.status_line)]
    if conversation.title:
        parts.append(repr(plain(conversation.title)))
    elapsed = _elapsed(handle)
    if elapsed:
        parts.append(f"({elapsed})")
    if handle.url:
        parts.append(handle.url)
    parts.extend(f"· PR {plain(str(pr))}" for pr in handle.pull_requests)
    outcome = handle.outcome
    if outcome is not None and outcome.changes:
        parts.append(f"· {_files_changed(len(outcome.changes))}")
    cost = _shown_cost(handle)
    if cost:
        parts.append(f"· {cost}")
    if handle.task_id:
        parts.append(f"· {_ids(handle)}")
    line = " ".join(parts)
    if handle.note:
        line = f"{line} [{plain(handle.note)}]"
    if outcome is not None and outcome.answer and outcome.answer.strip():
        line = f"{line}\nanswer: {one_line(outcome.answer, ANSWER_TEXT_CHARS)}"
    return line


def status_change_line(handle: ConversationHandle) -> str:
    """What ``--wait`` prints on each change, in order: a readable log of the run. Always one line: the magic
    prints the answer itself, once."""
    elapsed = _elapsed(handle)
    line = f"{handle.reference}: {plain(handle.conversation.status_line)}" + (f" after {elapsed}" if elapsed else "")
    return f"{line} {handle.url}" if handle.url and handle.conversation.conversation_id and handle.is_final else line


def card_state(handle: ConversationHandle) -> tuple[Any, ...]:
    """Everything the card shows except a running clock: a view redraws when this changes (or to resync the clock),
    so the results (outcome, pull requests, cost) appear as soon as they arrive."""
    c = handle.conversation
    return (c.status_line, c.title, c.selected_repository, c.started_at, handle.url, handle.task_id, handle.note,
            handle.is_final and _elapsed(handle), handle.outcome, handle.pull_requests, _shown_cost(handle))


class RedrawGate:
    """When a view should send itself again: when what it shows changed, or once a minute while the clock runs
    (so a view re-opened later starts near the right time). Every other call costs nothing."""

    resync_seconds = 60.0

    def __init__(self, handle: ConversationHandle) -> None:
        self._state = card_state(handle)
        self._at = time.monotonic()

    def due(self, handle: ConversationHandle) -> bool:
        state, now = card_state(handle), time.monotonic()
        if state != self._state or (not handle.is_final and now - self._at >= self.resync_seconds):
            self._state, self._at = state, now
            return True
        return False


def status_badge(status: str | None) -> str:
    """The status as a coloured badge (escaped: the status is the server's word when this version does not know it)."""
    status = status or "?"
    color = BADGE_COLORS.get(status, BADGE_COLORS["?"])
    return (
        f'<span class="openhands-status" style="background:{color};color:white;border-radius:4px;padding:1px 7px;'
        f'font-weight:600;font-size:85%;white-space:nowrap">{html.escape(status)}</span>'
    )


def pr_links(prs: Iterable[PullRequest], *, prefix: str = "PR ") -> str:
    """``PR #12`` links (a new tab, no opener), or ``PR #12`` as text when there is no web page to link to."""
    e = html.escape
    shown = []
    for pr in prs:
        label = f"{e(prefix)}#{int(pr.number)}"
        if _is_web_url(pr.url):
            shown.append(f'<a href="{e(pr.url or "", quote=True)}" target="_blank" rel="noopener noreferrer" '
                         f'style="{_LINK_STYLE}">{label}</a>')
        else:
            shown.append(label)
    return ", ".join(shown)


def html_card(handle: ConversationHandle, *, live: bool = False) -> str:
    """The card. ``live`` draws the elapsed time as a browser-side clock (for the widget); otherwise as text (for
    saved outputs, which front ends sanitise)."""
    conversation = handle.conversation
    color = BADGE_COLORS.get(conversation.status or "?", BADGE_COLORS["?"])
    e = html.escape
    title = e(conversation.title) if conversation.title else "<i>untitled yet</i>"
    phase = f' <span style="{_MUTED}">{e(conversation.phase)}</span>' if conversation.phase else ""
    seconds = handle.elapsed()
    if seconds is None:
        elapsed = None
    elif live and not handle.is_final:
        elapsed = _clock(seconds)
    else:
        elapsed = e(format_elapsed(seconds))
    rows = [
        ("repository", e(conversation.selected_repository) if conversation.selected_repository else None),
        ("created", e(_local_time(conversation.started_at) or "") or None),
        ("elapsed", elapsed),
        ("", e(_ids(handle)) or None),
    ]
    details = " · ".join(f"{name} {value}".strip() for name, value in rows if value)
    link = (
        f'<a href="{e(handle.url, quote=True)}" target="_blank" rel="noopener noreferrer" style="{_LINK_STYLE}">'
        f"{e(handle.url)}</a>"
        if handle.url
        else f'<span style="{_MUTED}">the link appears when the conversation is created</span>'
    )
    note = f'<div style="color:#c05621">{e(handle.note)}</div>' if handle.note else ""
    # A final card has a bar in its status colour down its left side: someone who looked away sees at a glance that
    # it is over, and how, before reading a word.
    frame = f";border-left:4px solid {color};padding-left:8px" if handle.is_final else ""
    return (
        '<div class="openhands-conversation" style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.5'
        f'{frame}">{status_badge(conversation.status)}{phase} <b>{title}</b><br>{link}'
        f'<div style="{_MUTED};font-size:90%">{details}</div>{_results(handle)}{note}</div>'
    )


def _answer_block(answer: str) -> str:
    """The answer's first lines; the rest, if any, one click away ("show more") right after them, so the opened
    card reads as one text and nothing is shown twice."""
    e = html.escape
    text = _multiline(answer).strip("\n")
    short, cut = _preview(text)
    box = ("white-space:pre-wrap;overflow-wrap:anywhere;background:var(--jp-layout-color2,#f3f4f6);"
           "border-radius:3px;padding:2px 6px;margin:2px 0")
    if not cut:
        return f'<div class="openhands-answer" style="{box}">{e(short)}</div>'
    rest = text[len(short):]
    rest = rest.lstrip(" \t")  # (the preview was cut at a space, or at the end of a line)
    rest = rest[1:] if rest.startswith("\n") else rest
    if len(rest) > ANSWER_FULL_CHARS:
        rest = rest[:ANSWER_FULL_CHARS] + "\n… (cut here: the whole answer is in .answer)"
    more = rest.count("\n") + 1
    return (
        f'<div class="openhands-answer" style="{box}">{e(short)}'
        f'<details><summary style="cursor:pointer;color:var(--jp-content-font-color2,#4a5568);font-size:90%">'
        f'show more ({more} more '
        f'line{"s" if more != 1 else ""})</summary><div style="max-height:24em;overflow:auto">{e(rest)}</div>'
        "</details></div>"
    )


def _files_block(changes: tuple[Change, ...]) -> str:
    """The changed files in one flowing line (eight paths at most): a card is a summary; ``.changes()`` has all."""
    if not changes:
        return f'<div style="{_MUTED}">no files changed</div>'
    e = html.escape
    paths = [
        f"<code>{e(_CHANGE_LETTERS.get(c.status, '?'))}\N{NO-BREAK SPACE}{e(plain(c.path))}</code>"
        for c in changes[:FILES_SHOWN]
    ]
    more = f' <span style="{_MUTED}">and {len(changes) - FILES_SHOWN} more</span>' if len(changes) > FILES_SHOWN else ""
    return f"<div>{_files_changed(len(changes))}: {', '.join(paths)}{more}</div>"


def _results(handle: ConversationHandle) -> str:
    """What the agent did: its answer (the first lines, the rest folded), PR links, the cost, the changed files, and
    in one muted line what could not be read. Empty while there is nothing to show."""
    outcome = handle.outcome
    prs = handle.pull_requests
    cost = _shown_cost(handle)
    if outcome is None and not prs and cost is None:
        return ""
    parts = []
    if outcome is not None and outcome.answer and outcome.answer.strip():
        parts.append(_answer_block(outcome.answer))
    facts = [pr_links(prs)] if prs else []
    if cost:
        facts.append(html.escape(cost))
    if facts:
        parts.append(f"<div>{' · '.join(facts)}</div>")
    if outcome is not None and outcome.changes is not None:
        parts.append(_files_block(outcome.changes))
    if outcome is not None and outcome.problems:
        problem = html.escape(one_line(outcome.problems[0], PROBLEM_CHARS))
        parts.append(f'<div style="{_MUTED};font-size:85%">details unavailable: {problem}</div>')
    return f'<div class="openhands-results" style="margin-top:4px">{"".join(parts)}</div>' if parts else ""


def grid_html(batch: Any, *, live: bool = False) -> str:
    """A batch as one table: the aggregate line, then a row per task (status, item, title, link, answer snippet or
    error), every server text escaped."""
    e = html.escape
    cell = "padding:2px 8px;border-bottom:1px solid var(--jp-border-color2,#ddd);text-align:left;vertical-align:top"
    rows = []
    for row in batch.rows:
        h = row.handle
        link = (f'<a href="{e(h.url, quote=True)}" target="_blank" rel="noopener noreferrer" '
                'style="color:var(--jp-content-link-color,#1a73e8)">open</a>') if h is not None and h.url else ""
        answer = h.outcome.answer if h is not None and h.outcome is not None else None
        note = one_line(answer, 80) if answer else (one_line(row.error, 120) if row.error else "")
        title = one_line(h.title, 50) if h is not None and h.title else ""
        rows.append(
            f'<tr><td style="{cell}">{row.index}</td><td style="{cell}">{status_badge(row.status)}</td>'
            f'<td style="{cell}"><code>{e(one_line(row.label, 40))}</code></td><td style="{cell}">{e(title)}</td>'
            f'<td style="{cell}">{link}</td><td style="{cell};color:var(--jp-content-font-color2,#4a5568)">'
            f"{e(note)}</td></tr>"
        )
    head = "".join(f'<th style="{cell}">{name}</th>' for name in ("#", "status", "item", "title", "", "answer"))
    frame = "" if live else ";border-left:4px solid var(--jp-border-color1,#999);padding-left:8px"
    return (
        f'<div class="openhands-batch" style="font-family:var(--jp-ui-font-family,sans-serif){frame}">'
        f'<div style="font-weight:600;margin:2px 0 4px">{e(batch.summary)}</div>'
        f'<table style="border-collapse:collapse;font-size:90%"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
    )
