"""The live panel: an ipywidgets box whose content follows a :class:`ConversationHandle`.

Imported only when a panel is shown, because ipywidgets is the slowest import in the package. It draws a
:class:`~.views.Card` (the value of what the card shows) and sends the browser a message only when that value
changes, plus one a minute to resync the elapsed clock, which the browser draws itself: hundreds of panels cost no
message per second.

What a change costs: the card's HTML goes in one message, and the panel's own state (status, ids, which buttons
show) in one more, however many of its traits changed (``hold_sync``). A button that does not apply is left out of
the box's children, so the three buttons share one Layout and one ButtonStyle: a panel is nine widgets (the box,
the card, three buttons, two layouts, two styles), where it was fourteen, and each one holds a comm in the kernel
and a model in the browser. Closing the panel closes every one of them, the buttons not shown included.

Its buttons steer the conversation: "Pause" and "Resume" act on its sandbox (a failure becomes the card's note, never
an exception in the front end's message handler); "Stop watching" only stops polling.

Updates may arrive on any thread (the I/O thread that watches, the kernel's when a button is clicked): a redraw
compares and sends under the panel's lock, and a closed panel draws nothing. ipykernel sends comm messages from any
thread.

Besides the widget view, the panel's mime bundle carries the same card as ``text/html`` and a ``text/plain`` line,
so a notebook executed by nbconvert/papermill, or opened where widgets cannot render, still shows the link and the
status. Only escaped server data, the ids and the conversation URL are ever in the widget's state, never a key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets
from traitlets import Unicode

from .handle import ConversationHandle
from .views import Card, RedrawGate, html_card, text_summary

__all__ = ["ConversationPanel", "close_widgets"]

#: The buttons in the order they show, each with its tooltip.
BUTTONS = (
    ("Stop watching", "Stop polling this conversation (it keeps running on OpenHands)"),
    ("Pause", "Pause its sandbox: the agent stops until Resume"),
    ("Resume", "Start its sandbox again"),
)


def _shown_buttons(card: Card) -> tuple[str, ...]:
    applies = {"Stop watching": card.watching, "Pause": card.can_pause, "Resume": card.can_resume}
    return tuple(name for name, _ in BUTTONS if applies[name])


def _tree(roots: Iterable[widgets.Widget]) -> list[widgets.Widget]:
    """The widgets given and every widget they refer to in a synced trait (children, layout, style), once each."""
    found: dict[int, widgets.Widget] = {}
    todo = list(roots)
    while todo:
        widget = todo.pop()
        if id(widget) in found:
            continue
        found[id(widget)] = widget
        for name in widget.keys:
            value = getattr(widget, name, None)
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, widgets.Widget):
                    todo.append(item)
    return list(found.values())


def close_widgets(*roots: widgets.Widget) -> None:
    """Close these widgets and every widget they made (a Button's Layout and ButtonStyle, an HTML's Layout and
    HTMLStyle: each holds a comm), so nothing of them stays in the kernel's comm manager or
    ``ipywidgets.Widget.widgets``."""
    for widget in _tree(roots):
        widgets.Widget.close(widget)  # (the base close: a subclass's close may do more, and may call this)


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
        self._lock = threading.RLock()
        self._closed = False
        self._gate = RedrawGate(handle)
        card = self._gate.card
        self._card = widgets.HTML(html_card(card, live=True), layout=widgets.Layout(flex="1 1 auto"))
        layout = widgets.Layout(width="auto", flex="0 0 auto", margin="0 0 0 8px")
        style = widgets.ButtonStyle()
        #: Every button, by its label, shown or not.
        self.buttons = {
            name: widgets.Button(description=name, tooltip=tooltip, layout=layout, style=style)
            for name, tooltip in BUTTONS
        }
        self.buttons["Pause"].on_click(lambda _button: self._steer(handle.pause))
        self.buttons["Resume"].on_click(lambda _button: self._steer(handle.resume))
        self.buttons["Stop watching"].on_click(lambda _button: handle.stop_watching())
        self._shown = _shown_buttons(card)
        # The initial state goes to the constructor, so the front end's first message (comm_open) is complete.
        super().__init__(
            children=self._children(self._shown),
            conversation_id=card.conversation_id or "",
            task_id=card.task_id or "",
            status=card.status or "",
            **kwargs,
        )
        # What traitlets makes on a first change, made now: a tick that changes 100s of panels at once should not
        # also be the one that builds their change machinery.
        for widget in (self, self._card):
            _ = (widget._property_lock, widget._states_to_send)
        handle.subscribe(self.render)

    def _children(self, shown: tuple[str, ...]) -> tuple[widgets.Widget, ...]:
        return (self._card, *(self.buttons[name] for name in shown))

    @property
    def shown_buttons(self) -> tuple[str, ...]:
        """The labels of the buttons on show, in order."""
        return self._shown

    def render(self, handle: ConversationHandle) -> None:
        """Send what changed, in one message for the card and one for the panel; nothing when only time moved,
        unless the clock is due for a resync."""
        with self._lock:
            if self._closed:
                return
            before = self._gate.card
            card = self._gate.due(handle)
            if card is None:
                return
            if card == before or not card.looks_like(before):  # a resync, or the card itself changed
                self._card.value = html_card(card, live=True)
            with self.hold_sync():  # one message however many traits change
                for name, value in (
                    ("conversation_id", card.conversation_id),
                    ("task_id", card.task_id),
                    ("status", card.status),
                ):
                    if getattr(self, name) != (value or ""):
                        setattr(self, name, value or "")
                shown = _shown_buttons(card)
                if shown != self._shown:
                    self._shown = shown
                    self.children = self._children(shown)

    def _steer(self, verb: Callable[[], object]) -> None:
        """Run a button's verb; what goes wrong (no access, a sandbox already gone, the network) is shown as the
        card's note, because an exception here would only reach the front end's log."""
        try:
            verb()
        except Exception as error:  # noqa: BLE001 - every failure becomes the note
            self._handle.set_note(str(error) or type(error).__name__)

    def close(self) -> None:
        """Closing the panel stops its polling too, and closes every widget it made."""
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            self._handle.unsubscribe(self.render)
            self._handle.stop_watching()
        close_widgets(self, *self.buttons.values())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # closed widget
            return None
        card = Card.of(self._handle)
        bundle["text/plain"] = text_summary(card)
        bundle["text/html"] = html_card(card)
        return bundle
