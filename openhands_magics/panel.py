"""The live panel: an ipywidgets box whose content follows a :class:`ConversationHandle`.

Imported only when a panel is shown, because ipywidgets is the slowest import in the package. It sends the browser
a message only when what the card shows changes (status, title, link, note), plus one a minute to resync the
elapsed clock, which the browser draws itself: hundreds of panels cost no message per second.

Besides the widget view, the panel's mime bundle carries the same card as ``text/html`` and a ``text/plain`` line,
so a notebook executed by nbconvert/papermill, or opened where widgets cannot render, still shows the link and the
status. Only escaped server data, the ids and the conversation URL are ever in the widget's state, never a key.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from .handle import ConversationHandle
from .views import RedrawGate, html_card, text_summary

__all__ = ["ConversationPanel"]

class ConversationPanel(widgets.HBox):
    """Card + "Stop watching" button. ``status``, ``conversation_id`` and ``task_id`` are synced so front ends,
    saved widget state and tests see them."""

    conversation_id = Unicode("", help="the conversation this panel shows ('' while it is being created)").tag(sync=True)
    task_id = Unicode("", help="the start task that creates it (V1)").tag(sync=True)
    status = Unicode("", help="the latest status, e.g. RUNNING").tag(sync=True)

    def __init__(self, handle: ConversationHandle, **kwargs: Any) -> None:
        self._handle = handle
        self._gate = RedrawGate(handle)
        self._card = widgets.HTML(html_card(handle, live=True), layout=widgets.Layout(flex="1 1 auto"))
        self._stop_button = widgets.Button(
            description="Stop watching",
            tooltip="Stop polling this conversation (it keeps running on OpenHands)",
            layout=widgets.Layout(width="auto", flex="0 0 auto", margin="0 0 0 12px",
                                  display="" if handle.watching else "none"),
        )
        self._stop_button.on_click(lambda _button: handle.stop_watching())
        # The initial state goes to the constructor, so the front end's first message (comm_open) is complete.
        super().__init__(
            children=[self._card, self._stop_button],
            conversation_id=handle.id or "",
            task_id=handle.task_id or "",
            status=handle.status or "",
            **kwargs,
        )
        handle.subscribe(self.render)

    def render(self, handle: ConversationHandle) -> None:
        """Send what changed; nothing when only time moved, unless the clock is due for a resync."""
        if self._gate.due(handle):
            self._card.value = html_card(handle, live=True)
        if self.conversation_id != (handle.id or ""):
            self.conversation_id = handle.id or ""
        if self.status != (handle.status or ""):
            self.status = handle.status or ""
        display = "" if handle.watching else "none"
        if self._stop_button.layout.display != display:
            self._stop_button.layout.display = display

    def close(self) -> None:
        """Closing the panel stops its polling too."""
        self._handle.unsubscribe(self.render)
        self._handle.stop_watching()
        for child in (self._card, self._stop_button):
            child.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # closed widget
            return None
        bundle["text/plain"] = text_summary(self._handle)
        bundle["text/html"] = html_card(self._handle)
        return bundle
