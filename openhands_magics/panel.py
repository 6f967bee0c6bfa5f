"""The live panel: an ipywidgets box whose content follows a :class:`ConversationHandle`.

Imported only when a panel is shown, because ipywidgets is the slowest import in the package. Besides the widget
view, the panel's mime bundle carries the same card as ``text/html`` and a ``text/plain`` line, so a notebook
executed by nbconvert/papermill, or opened where widgets cannot render, still shows the link and the status.
Only escaped server data and the conversation URL are ever in the widget's state, never the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from .handle import ConversationHandle
from .views import html_card, text_summary

__all__ = ["ConversationPanel"]


class ConversationPanel(widgets.VBox):
    """Card + "Stop watching" button. ``status`` and ``conversation_id`` are synced so front ends and tests see them."""

    conversation_id = Unicode("", help="the conversation this panel shows").tag(sync=True)
    status = Unicode("", help="the latest status, e.g. RUNNING").tag(sync=True)

    def __init__(self, handle: ConversationHandle, *, on_stop: Callable[[], None] | None = None, **kwargs: Any) -> None:
        self._handle = handle
        self._on_stop = on_stop
        self._card = widgets.HTML(html_card(handle))
        self._stop_button = widgets.Button(
            description="Stop watching",
            tooltip="Stop polling this conversation (it keeps running on OpenHands)",
            layout=widgets.Layout(width="auto", display="none" if on_stop is None or handle.is_final else ""),
        )
        self._stop_button.on_click(lambda _button: self.stop_watching())
        # The initial state goes to the constructor, so the front end's first message (comm_open) is complete.
        super().__init__(
            children=[self._card, self._stop_button], conversation_id=handle.id, status=handle.status or "", **kwargs
        )
        handle.subscribe(self.render)

    def render(self, handle: ConversationHandle) -> None:
        self.status = handle.status or ""
        self._card.value = html_card(handle)
        if handle.is_final:
            self._hide_button()

    def watching_ended(self) -> None:
        """Called when the poller ends for any reason: the button has nothing left to stop."""
        self._hide_button()

    def stop_watching(self) -> None:
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            on_stop()
        self._hide_button()

    def _hide_button(self) -> None:
        if self._stop_button.layout.display != "none":
            self._stop_button.layout.display = "none"

    def close(self) -> None:
        """Closing the panel stops its polling too."""
        self.stop_watching()
        self._handle.unsubscribe(self.render)
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
