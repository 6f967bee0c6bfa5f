"""The live panel: an ipywidgets box whose content follows a :class:`ConversationHandle`.

Imported only when a panel is shown, because ipywidgets is the slowest import in the package. It sends the browser
a message only when what the card shows changes (status, title, link, note, what the agent did), plus one a minute
to resync the elapsed clock, which the browser draws itself: hundreds of panels cost no message per second.

Its buttons steer the conversation: "Pause" and "Resume" act on its sandbox (a failure becomes the card's note, never
an exception in the front end's message handler); "Stop watching" only stops polling. A button that does not apply is
hidden, not removed, so showing it again is one small message.

Besides the widget view, the panel's mime bundle carries the same card as ``text/html`` and a ``text/plain`` line,
so a notebook executed by nbconvert/papermill, or opened where widgets cannot render, still shows the link and the
status. Only escaped server data, the ids and the conversation URL are ever in the widget's state, never a key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from .handle import ConversationHandle
from .models import ConversationStatus
from .views import RedrawGate, html_card, text_summary

__all__ = ["ConversationPanel"]


def _button(description: str, tooltip: str, shown: bool, *, gap: str = "8px") -> widgets.Button:
    return widgets.Button(
        description=description,
        tooltip=tooltip,
        layout=widgets.Layout(width="auto", flex="0 0 auto", margin=f"0 0 0 {gap}", display="" if shown else "none"),
    )


def _can_pause(handle: ConversationHandle) -> bool:
    return handle.id is not None and not handle.is_final and handle.status != ConversationStatus.PAUSED


def _can_resume(handle: ConversationHandle) -> bool:
    return handle.status == ConversationStatus.PAUSED


class ConversationPanel(widgets.HBox):
    """Card, then the "Stop watching", "Pause" and "Resume" buttons (those that apply). ``status``,
    ``conversation_id`` and ``task_id`` are synced so front ends, saved widget state and tests see them."""

    conversation_id = Unicode("", help="the conversation this panel shows ('' while it is being created)").tag(
        sync=True
    )
    task_id = Unicode("", help="the start task that creates it (V1)").tag(sync=True)
    status = Unicode("", help="the latest status, e.g. RUNNING").tag(sync=True)

    def __init__(self, handle: ConversationHandle, **kwargs: Any) -> None:
        self._handle = handle
        self._gate = RedrawGate(handle)
        self._card = widgets.HTML(html_card(handle, live=True), layout=widgets.Layout(flex="1 1 auto"))
        self._pause_button = _button("Pause", "Pause its sandbox: the agent stops until Resume", _can_pause(handle))
        self._resume_button = _button("Resume", "Start its sandbox again", _can_resume(handle))
        self._stop_button = _button(
            "Stop watching", "Stop polling this conversation (it keeps running on OpenHands)", handle.watching,
            gap="12px",
        )
        self._pause_button.on_click(lambda _button: self._steer(handle.pause))
        self._resume_button.on_click(lambda _button: self._steer(handle.resume))
        self._stop_button.on_click(lambda _button: handle.stop_watching())
        # The initial state goes to the constructor, so the front end's first message (comm_open) is complete.
        super().__init__(
            # "Stop watching" stays next to the card, where it always was; the steering verbs follow it.
            children=[self._card, self._stop_button, self._pause_button, self._resume_button],
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
        for button, shown in (
            (self._stop_button, handle.watching),
            (self._pause_button, _can_pause(handle)),
            (self._resume_button, _can_resume(handle)),
        ):
            display = "" if shown else "none"
            if button.layout.display != display:
                button.layout.display = display

    def _steer(self, verb: Callable[[], object]) -> None:
        """Run a button's verb; what goes wrong (no access, a sandbox already gone, the network) is shown as the
        card's note, because an exception here would only reach the front end's log."""
        try:
            verb()
        except Exception as error:  # noqa: BLE001 - every failure becomes the note
            self._handle.set_note(str(error) or type(error).__name__)

    def close(self) -> None:
        """Closing the panel stops its polling too."""
        self._handle.unsubscribe(self.render)
        self._handle.stop_watching()
        for child in (self._card, self._stop_button, self._pause_button, self._resume_button):
            child.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # closed widget
            return None
        bundle["text/plain"] = text_summary(self._handle)
        bundle["text/html"] = html_card(self._handle)
        return bundle
