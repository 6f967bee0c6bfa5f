"""How a conversation looks: one plain-text line, and an HTML card. No widget imports here, so terminals, nbconvert
and papermill get the same words as the live panel without paying for ipywidgets.

Everything the server sends (title, status, repository, times) is HTML-escaped before it is put in markup: a
conversation title is user-controlled text.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .handle import ConversationHandle

__all__ = ["BADGE_COLORS", "format_elapsed", "html_card", "status_change_line", "text_summary"]

#: background colors of the status badge; an unknown status gets the last one.
BADGE_COLORS: dict[str, str] = {
    "STARTING": "#b7791f",
    "RUNNING": "#2b6cb0",
    "STOPPED": "#4a5568",
    "ARCHIVED": "#718096",
    "ERROR": "#c53030",
    "?": "#6b46c1",
}


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _elapsed(handle: ConversationHandle, now: dt.datetime | None = None) -> str | None:
    conversation = handle.conversation
    if conversation.created_at is None:
        return None
    end = conversation.last_updated_at if conversation.is_final and conversation.last_updated_at else None
    end = end or now or dt.datetime.now(dt.timezone.utc)
    return format_elapsed((end - conversation.created_at).total_seconds())


def _local_time(value: dt.datetime | None) -> str | None:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else None


def text_summary(handle: ConversationHandle) -> str:
    """One line for terminals and logs: ``OpenHands conversation <id> RUNNING "title" (1m 05s) <url>``."""
    conversation = handle.conversation
    parts = [f"OpenHands conversation {handle.id}", conversation.status or "?"]
    if conversation.title:
        parts.append(repr(conversation.title))
    elapsed = _elapsed(handle)
    if elapsed:
        parts.append(f"({elapsed})")
    parts.append(handle.url)
    line = " ".join(parts)
    return f"{line} [{handle.note}]" if handle.note else line


def status_change_line(handle: ConversationHandle) -> str:
    """What ``--wait`` prints on each change, in order: a readable log of the run."""
    elapsed = _elapsed(handle)
    return f"{handle.id}: {handle.status or '?'}" + (f" after {elapsed}" if elapsed else "")


def html_card(handle: ConversationHandle) -> str:
    conversation = handle.conversation
    status = conversation.status or "?"
    color = BADGE_COLORS.get(status, BADGE_COLORS["?"])
    e = html.escape
    title = e(conversation.title) if conversation.title else "<i>untitled yet</i>"
    rows = [
        ("repository", conversation.selected_repository),
        ("created", _local_time(conversation.created_at)),
        ("updated", _local_time(conversation.last_updated_at)),
        ("elapsed", _elapsed(handle)),
    ]
    details = " · ".join(f"{name} {e(value)}" for name, value in rows if value)
    note = f'<div style="color:#c05621">{e(handle.note)}</div>' if handle.note else ""
    return (
        '<div class="openhands-conversation" style="font-family:var(--jp-ui-font-family,sans-serif);line-height:1.5">'
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 7px;font-weight:600;'
        f'font-size:85%">{e(status)}</span> '
        f"<b>{title}</b><br>"
        f'<a href="{e(handle.url, quote=True)}" target="_blank" rel="noopener noreferrer">{e(handle.url)}</a>'
        f'<div style="color:#718096;font-size:90%">{details}</div>{note}</div>'
    )
