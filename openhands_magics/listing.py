"""``ConversationList``: what ``%openhands list`` and ``Session.list()`` return.

A plain ``list`` of :class:`ConversationHandle` (index it, loop over it, ``lst[0].send(...)``) that shows itself as a
table: HTML in a notebook, fixed-width text in a terminal, and a pandas DataFrame on request. Like every view, it
reads only what the snapshots already hold, so showing a list asks the server nothing; and it escapes (HTML) or
neutralises (text) every string the server sent. Its links and its table are the card's and the grid's
(:func:`.views.link`, :func:`.views.html_table`).

Every list is newest first, by creation (``newest_first``: the server's list and this notebook's alike), and says
when each was created in the kernel's local time with its zone, the UTC time on hover. A conversation is named as
its card names it (the server's real title, else the first words of the task this process sent); the title is the
link. In a narrow output the repository, PR and cost fold into a line under the title.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .models import real_title
from .views import cost_text, html_table, id_html, link, plain, pr_links, status_badge, task_words, time_html

if TYPE_CHECKING:
    from .handle import ConversationHandle

__all__ = ["ConversationList"]

_EMPTY = "No conversations."
_TITLE_CHARS = 40
#: Text columns wider than this are cut (the id, last, is never cut: it is what one copies).
_TEXT_COLUMN_CHARS = 30


def _created(handle: ConversationHandle) -> dt.datetime | None:
    return handle.conversation.started_at


def _when(handle: ConversationHandle) -> str:
    """When it was created, in local time with the zone."""
    moment = _created(handle)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z") if moment else ""


def _name(handle: ConversationHandle) -> str | None:
    return real_title(handle.conversation.title) or task_words(handle.task)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConversationList(list["ConversationHandle"]):
    """A list of conversations, newest first, that shows itself as a table. ``source`` says where it came from and
    how much of it this is ("app.all-hands.dev · 12 shown of 40 read")."""

    def __init__(self, handles: Iterable[ConversationHandle] = (), *, source: str = "") -> None:
        super().__init__(handles)
        self.source = source

    @classmethod
    def newest_first(cls, handles: Iterable[ConversationHandle], *, source: str = "") -> ConversationList:
        """The handles sorted newest first by creation (those of unknown creation last, in the order given)."""
        far = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return cls(sorted(handles, key=lambda h: _created(h) or far, reverse=True), source=source)

    # ------------------------------------------------------------------ HTML
    def _repr_html_(self) -> str:
        if not self:
            return f"<div>{_EMPTY}</div>"
        e = html.escape
        rows = []
        for handle in self:
            conversation = handle.conversation
            name = _name(handle)
            if handle.url:
                title = link(handle.url, plain(name) if name else "open in OpenHands")
            else:
                title = e(plain(name)) if name else '<i style="color:#718096">not created yet</i>'
            rows.append(
                [
                    status_badge(handle.status),
                    title,
                    e(plain(conversation.selected_repository or "")),
                    pr_links(handle.pull_requests, prefix=""),
                    e(cost_text(handle.cost) or ""),
                    time_html(_created(handle)),
                    id_html(plain(handle.id or handle.task_id or "")),
                ]
            )
        count = f"{len(self)} conversation{'' if len(self) == 1 else 's'}"
        caption = f"{count} · {self.source}" if self.source else count
        head = ("status", "title", "repository", "PR", "cost", "created", "id")
        return html_table(
            head, rows, css_class="openhands-conversations", caption=caption, secondary=(2, 3, 4), fold_into=1
        )

    # ------------------------------------------------------------------ text
    def _text_rows(self) -> list[list[str]]:
        rows = []
        for handle in self:
            conversation = handle.conversation
            rows.append(
                [
                    plain(handle.status or "?"),
                    _cut(plain(_name(handle) or "untitled"), _TITLE_CHARS),
                    _cut(plain(conversation.selected_repository or ""), _TEXT_COLUMN_CHARS),
                    " ".join(f"#{pr.number}" for pr in handle.pull_requests),
                    cost_text(handle.cost) or "",
                    _when(handle),
                    plain(handle.id or (f"task {handle.task_id}" if handle.task_id else "")),
                ]
            )
        return rows

    def __repr__(self) -> str:
        if not self:
            return _EMPTY
        header = ["status", "title", "repository", "PR", "cost", "created", "id"]
        rows = [header, *self._text_rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        count = f"{len(self)} conversation{'' if len(self) == 1 else 's'}"
        caption = plain(f"{count} · {self.source}" if self.source else count)
        return "\n".join([caption, *lines])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("ConversationList(...)" if cycle else repr(self))

    # ------------------------------------------------------------------ data
    def to_dataframe(self) -> Any:
        """The list as a pandas DataFrame, one row a conversation (the server's text as it sent it)."""
        try:
            import pandas as pd
        except ImportError:
            raise ConfigurationError("to_dataframe() needs pandas: pip install pandas") from None
        columns = [
            "id",
            "task_id",
            "status",
            "title",
            "repository",
            "pull_requests",
            "cost_usd",
            "tokens",
            "created_at",
            "updated_at",
            "url",
        ]
        records = []
        for handle in self:
            conversation, cost = handle.conversation, handle.cost
            records.append(
                {
                    "id": handle.id,
                    "task_id": handle.task_id,
                    "status": handle.status,
                    "title": conversation.title,
                    "repository": conversation.selected_repository,
                    "pull_requests": [str(pr) for pr in handle.pull_requests],
                    "cost_usd": cost.usd if cost else None,
                    "tokens": cost.tokens if cost else None,
                    "created_at": conversation.created_at,
                    "updated_at": conversation.updated_at,
                    "url": handle.url,
                }
            )
        return pd.DataFrame.from_records(records, columns=columns)
