"""``ConversationHandle``: what ``conv = %openhands ...`` returns, and the session's record of started conversations.

The handle is the single source of truth for one conversation in this kernel: the poller writes fresh snapshots
into it, and views (the widget panel, a text line) subscribe to it. Every handle is recorded in :func:`history` the
moment the server gives an id, so the id survives a display failure, an interrupt or a lost output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .models import Conversation

if TYPE_CHECKING:
    from .client import OpenHandsClient
    from .polling import PollSchedule

__all__ = ["ConversationHandle", "history", "last"]

log = logging.getLogger("openhands_magics")
Listener = Callable[["ConversationHandle"], None]

_history: list[ConversationHandle] = []


class ConversationHandle:
    """A live reference to one conversation: ``.id``, ``.url``, ``.status``, ``.title``, ``.refresh()``, ``.wait()``."""

    def __init__(
        self,
        conversation: Conversation,
        client: OpenHandsClient,
        *,
        schedule: PollSchedule | None = None,
        record: bool = True,
    ) -> None:
        self._conversation = conversation
        self._client = client
        self._schedule = schedule
        self._listeners: list[Listener] = []
        #: A short remark shown beside the status ("retrying…", why watching stopped); None when all is well.
        self.note: str | None = None
        self._skip_display_in: int | None = None
        self.url = client.conversation_url(conversation.conversation_id)
        if record:
            _history.append(self)
            log.info("conversation %s: %s", conversation.conversation_id, self.url)

    # ------------------------------------------------------------------ what users read
    @property
    def id(self) -> str:
        return self._conversation.conversation_id

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

    def refresh(self) -> Conversation:
        """Fetch the conversation now (blocking) and update every view of it."""
        self.update(self._client.get_conversation(self.id))
        return self._conversation

    def wait(self, timeout: float | None = None, *, on_change: Listener | None = None) -> Conversation:
        """Block until the status is final (STOPPED, ARCHIVED, ERROR); raises WaitTimeout after ``timeout`` s.

        Interrupting (Ctrl-C / the kernel's stop button) stops the waiting, not the conversation.
        """
        from .polling import PollSchedule, wait_until_final

        return wait_until_final(self, self._client, self._schedule or PollSchedule(), timeout=timeout, on_change=on_change)

    # ------------------------------------------------------------------ what pollers and views use
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def update(self, conversation: Conversation, note: str | None = None) -> bool:
        """Store a fresh snapshot; returns whether the status changed (the poller slows down while it doesn't)."""
        if conversation.conversation_id != self.id:
            raise ValueError(f"snapshot of {conversation.conversation_id} given to the handle of {self.id}")
        changed = conversation.status != self._conversation.status
        self._conversation, self.note = conversation, note
        self.redraw()
        return changed

    def set_note(self, note: str | None) -> None:
        self.note = note
        self.redraw()

    def redraw(self) -> None:
        """Ask every view to draw the handle again (also without news: the elapsed time moves on)."""
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a broken view must not stop the poller or the other views
                log.exception("a view of conversation %s failed to update", self.id)

    def skip_display_in(self, execution_count: int) -> None:
        """The magic already displayed this handle; don't show it again as the same cell's ``Out[]``."""
        self._skip_display_in = execution_count

    def _ipython_display_(self) -> None:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is not None and self._skip_display_in == shell.execution_count:
            self._skip_display_in = None
            return
        if getattr(shell, "kernel", None) is not None:  # a notebook: another live view of the same handle
            from .panel import ConversationPanel

            display(ConversationPanel(self))
            return
        from .views import text_summary

        display({"text/plain": text_summary(self)}, raw=True)

    def __repr__(self) -> str:
        return f"<ConversationHandle {self.id} {self.status or '?'} {self.url}>"


def last() -> ConversationHandle | None:
    """The most recent conversation started or watched in this process (None before the first)."""
    return _history[-1] if _history else None


def history() -> list[ConversationHandle]:
    """Every conversation started or watched in this process, oldest first (a copy)."""
    return list(_history)

