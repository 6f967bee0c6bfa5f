"""How a conversation looks: one plain-text line, and an HTML card. No widget imports here, so terminals, nbconvert
and papermill get the same words as the live panel without paying for ipywidgets.

Everything the server sends (title, status, phase, repository) is HTML-escaped before it goes into markup, and has
its control characters neutralised before it goes into text: a conversation title is user-controlled text.

The live card's elapsed time is drawn by the browser (CSS animations of registered integer properties, started at
the elapsed time the kernel knew), so a ticking clock costs no message from the kernel.
"""

from __future__ import annotations

import datetime as dt
import html
import time
from typing import TYPE_CHECKING, Any

from .validation import printable

if TYPE_CHECKING:
    from .handle import ConversationHandle

__all__ = ["BADGE_COLORS", "RedrawGate", "card_state", "format_elapsed", "html_card", "plain", "status_change_line", "text_summary"]

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
    "?": "#6b46c1",
}

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


def text_summary(handle: ConversationHandle) -> str:
    """One line for terminals and saved outputs, with both ids:
    ``OpenHands conversation <id> RUNNING "title" (1m 05s) <url> · start task <task id>``."""
    conversation = handle.conversation
    parts = [f"OpenHands conversation {handle.id or '(not created yet)'}", plain(conversation.status_line)]
    if conversation.title:
        parts.append(repr(plain(conversation.title)))
    elapsed = _elapsed(handle)
    if elapsed:
        parts.append(f"({elapsed})")
    if handle.url:
        parts.append(handle.url)
    if handle.task_id:
        parts.append(f"· {_ids(handle)}")
    line = " ".join(parts)
    return f"{line} [{plain(handle.note)}]" if handle.note else line


def status_change_line(handle: ConversationHandle) -> str:
    """What ``--wait`` prints on each change, in order: a readable log of the run."""
    elapsed = _elapsed(handle)
    line = f"{handle.reference}: {plain(handle.conversation.status_line)}" + (f" after {elapsed}" if elapsed else "")
    return f"{line} {handle.url}" if handle.url and handle.conversation.conversation_id and handle.is_final else line


def card_state(handle: ConversationHandle) -> tuple[Any, ...]:
    """Everything the card shows except a running clock: a view redraws when this changes (or to resync the clock)."""
    c = handle.conversation
    return (c.status_line, c.title, c.selected_repository, c.started_at, handle.url, handle.task_id, handle.note,
            handle.is_final and _elapsed(handle))


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


def html_card(handle: ConversationHandle, *, live: bool = False) -> str:
    """The card. ``live`` draws the elapsed time as a browser-side clock (for the widget); otherwise as text (for
    saved outputs, which front ends sanitise)."""
    conversation = handle.conversation
    status = conversation.status or "?"
    color = BADGE_COLORS.get(status, BADGE_COLORS["?"])
    e = html.escape
    title = e(conversation.title) if conversation.title else "<i>untitled yet</i>"
    phase = f' <span style="color:#718096">{e(conversation.phase)}</span>' if conversation.phase else ""
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
        f'<a href="{e(handle.url, quote=True)}" target="_blank" rel="noopener noreferrer" '
        'style="color:var(--jp-content-link-color,#1a73e8);text-decoration:underline">'
        f"{e(handle.url)}</a>"
        if handle.url
        else '<span style="color:#718096">the link appears when the conversation is created</span>'
    )
    note = f'<div style="color:#c05621">{e(handle.note)}</div>' if handle.note else ""
    return (
        '<div class="openhands-conversation" style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.5">'
        f'<span class="openhands-status" style="background:{color};color:white;border-radius:4px;padding:1px 7px;'
        f'font-weight:600;font-size:85%">{e(status)}</span>{phase} '
        f"<b>{title}</b><br>{link}"
        f'<div style="color:#718096;font-size:90%">{details}</div>{note}</div>'
    )
