"""The live panel: an ipywidgets box whose content follows a :class:`ConversationHandle`.

Imported only when a panel is shown, because ipywidgets is the slowest import in the package. It draws a
:class:`~.views.Card` (the value of what the card shows, the activity feed included) and sends the browser a message
only when that value changes, plus one when the elapsed minutes change (a timer in the I/O thread's loop, at each
minute of the conversation's clock): hundreds of panels cost no message per second, and the clock, drawn by the
kernel, never goes back (a clock the browser ran restarted whenever the card was shown again).

Narrow screens: the card takes the whole width of its row and may shrink (long names and ids wrap or are cut, never
widen the output), and the controls wrap onto the lines below it.

After a kernel restart the browser keeps the panel's last drawing; ipywidgets marks its views disconnected, and the
card's style rule then shows its last known state as such ("last seen RUNNING at 16:42 UTC · no longer followed")
instead of a live status, and hides the controls, which no kernel would carry out.

What a change costs: **one widget message**. The card is a small ``HTML`` subclass (:class:`CardView`) that also
carries the panel's synced facts (status, conversation id, start task id), so one ``hold_sync`` on one widget sends
the card and the facts together. Which controls show is part of the card too: every control the panel made sits in
the box all along, and the card's HTML carries a style rule, scoped to this panel, that hides those that do not
apply. A status that swaps "Pause" for "Resume" therefore changes the card alone; the box's children change only
when a control is made (the confirm buttons and the reply box are made the first time they apply, so most panels
never have them). Front ends that drop the ``<style>`` (none of JupyterLab, Notebook 7, VS Code) show every control.

The feed moves much faster than a status: an agent can emit dozens of events a second. A change of the feed alone
(its step count, its lines, the live cost) is drawn at most twice a second per panel (``FEED_GAP``), the latest one
winning, through a timer in the I/O thread's loop; anything else (a status, an id, a note, a pending action, the
end) is drawn at once, with the latest feed.

A panel is eleven widgets (the box and the card with their layouts and the card's style, four buttons sharing one
layout and one style), each holding a comm in the kernel and a model in the browser; the confirm buttons add two,
the reply box four. Closing the panel closes every one of them.

Its controls are three distinct verbs: "Stop agent" (``handle.interrupt()``: the agent stops at once, the
conversation stays), "Pause" / "Resume" (its sandbox), "Stop watching" (this kernel stops listening; the agent goes
on). While an action waits for confirmation, "Approve" / "Reject"; once a turn is over, a text box and "Send" for a
follow-up (``handle.send``; an empty text does nothing). A verb that fails becomes the card's note, never an
exception in the front end's message handler. (A panel that :mod:`.display` replaces by its static card at the end
of a turn makes no reply box then: ``reply_when_final=False``.)

Updates may arrive on any thread (the I/O thread that watches, the kernel's when a button is clicked): a redraw
compares and sends under the panel's lock, and a closed panel draws nothing. ipykernel sends comm messages from any
thread.

The panel's mime bundle is the widget view alone (its ``text/plain`` is empty): JupyterLab draws a widget output
with the widget even once its model is gone ("Error displaying widget"), never with a fallback in the same bundle,
so the card a notebook without live widgets shows is a saved copy in an output of its own beside the panel
(:mod:`.display`). Only escaped server data, the ids and the conversation URL are ever in the widget's state, never
a key.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from traitlets import Unicode

from .handle import ConversationHandle
from .views import Card, html_card, minutes_text

if TYPE_CHECKING:
    import asyncio

__all__ = ["CardView", "ConversationPanel", "close_widgets"]

log = logging.getLogger("openhands_magics")

#: The controls every panel has, in the order they show, each with its tooltip.
BUTTONS = (
    ("Stop agent", "Interrupt the agent now; the conversation stays, and a follow-up goes on from there"),
    ("Pause", "Pause its sandbox: the agent stops until Resume"),
    ("Resume", "Start its sandbox again"),
    ("Stop watching", "Stop following it in this notebook (the agent keeps working on OpenHands)"),
)
#: Made the first time they apply.
CONFIRM_BUTTONS = (
    ("Approve", "Let the agent run the action it waits to have confirmed"),
    ("Reject", "Refuse that action; the agent is told and goes on without it"),
)
SEND = ("Send", "Send this follow-up to the agent (it starts working again)")
#: The shortest time between two redraws of a panel whose feed alone moved (at most two a second).
FEED_GAP = 0.5
#: The elapsed clock is drawn in minutes: a running card is redrawn this long after each minute of its clock begins.
TICK_SLACK = 0.05


#: Between two redraws that came due together, the I/O thread's loop waits this long (see :class:`_Turns`).
PACE = 0.0005


class _Turns:
    """Redraws put off (a feed's, a clock's) come due together: a burst of events or a minute starting moves every
    panel at once, and a hundred of them drawn back to back hold the GIL for a hundred milliseconds, which the kernel's
    own loop (its cells' asyncio, ipykernel's) gets back only one switch interval (5 ms) at a time. So they are drawn
    one at a time, oldest first, with a pause of :data:`PACE` between two: a wait in the loop's ``select`` lets go of
    the GIL, and the kernel's thread runs then. Everything here runs in the I/O thread's loop."""

    def __init__(self) -> None:
        self._due: collections.deque[Callable[[], None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    def add(self, loop: asyncio.AbstractEventLoop, function: Callable[[], None]) -> None:
        if loop is not self._loop:  # (a new I/O thread: what was due in the stopped one went with it)
            self._due.clear()
            self._loop, self._scheduled = loop, False
        self._due.append(function)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._next)

    def _next(self) -> None:
        self._scheduled = False
        if not self._due or self._loop is None:
            return
        function = self._due.popleft()
        try:
            function()
        except Exception:  # (one broken redraw must not stop the others')
            log.exception("a panel's redraw failed")
        if self._due:
            self._scheduled = True
            self._loop.call_later(PACE, self._next)


_turns = _Turns()


def _later(delay: float, function: Callable[[], None]) -> None:
    """Run ``function`` in ``delay`` seconds, in the I/O thread's loop (where updates arrive; no thread per timer), in
    its turn among the redraws that came due with it (:class:`_Turns`)."""
    from ._io import get_io

    io = get_io()
    loop = io.loop()
    turn = functools.partial(_turns.add, loop, function)
    if io.in_loop():
        loop.call_later(delay, turn)
    else:
        loop.call_soon_threadsafe(loop.call_later, delay, turn)


@functools.lru_cache(maxsize=64)
def _css_class(label: str) -> str:
    return "oh-c-" + "".join(c for c in label.lower() if c.isalpha())


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


class CardView(widgets.HTML):
    """The card's HTML and the panel's synced facts in one model, so a change is one message. ``status``,
    ``conversation_id`` and ``task_id`` are synced so front ends, saved widget state and tests see them."""

    conversation_id = Unicode("", help="the conversation this panel shows ('' while it is being created)").tag(
        sync=True
    )
    task_id = Unicode("", help="the start task that creates it (V1)").tag(sync=True)
    status = Unicode("", help="the latest status, e.g. RUNNING").tag(sync=True)


class ConversationPanel(widgets.HBox):
    """The card (with the feed), then the controls that apply."""

    def __init__(self, handle: ConversationHandle, *, reply_when_final: bool = True, **kwargs: Any) -> None:
        """``reply_when_final``: whether the reply box is made when the turn is over and the card final (the
        display says no when the panel becomes its static card at the end: its widgets would be made to be closed)."""
        self._handle = handle
        self._reply_when_final = reply_when_final
        self._lock = threading.RLock()
        self._closed = False
        self._scope = "oh-p-" + uuid.uuid4().hex[:12]  # (the card's style rule hides controls in this panel only)
        card = Card.of(handle)
        self._drawn, self._drawn_at, self._flush_due = card, time.monotonic(), False
        self._drawn_clock, self._tick_due = self._clock(card), False
        self._rules: dict[tuple[str, ...], str] = {}  # the style rule for each set of controls shown
        self._key: tuple[object, ...] = ()  # what the last Card was made from, but the feed
        self._button_layout = widgets.Layout(width="auto", flex="0 0 auto", margin="2px 8px 2px 0")
        self._button_style = widgets.ButtonStyle()
        #: Every button, by its label, shown or not (the confirm buttons and "Send" once made).
        self.buttons = {name: self._button(name, tooltip) for name, tooltip in BUTTONS}
        #: The follow-up's text box, once a turn ended.
        self.reply: widgets.Text | None = None
        self.buttons["Stop agent"].on_click(lambda _button: self._steer(handle.interrupt))
        self.buttons["Pause"].on_click(lambda _button: self._steer(handle.pause))
        self.buttons["Resume"].on_click(lambda _button: self._steer(handle.resume))
        self.buttons["Stop watching"].on_click(lambda _button: handle.stop_watching())
        self._make_lazy(card)
        self._view = CardView(
            self._value(card),
            conversation_id=card.conversation_id or "",
            task_id=card.task_id or "",
            status=card.status or "",
            layout=widgets.Layout(flex="1 1 100%", min_width="0", max_width="100%"),
        )
        # The initial state goes to the constructors, so the front end's first message (comm_open) is complete.
        super().__init__(
            children=self._children(),
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", max_width="100%"),
            _dom_classes=("openhands-panel", self._scope),
            **kwargs,
        )
        # What traitlets makes on a first change, made now: a tick that changes 100s of panels at once should not
        # also be the one that builds their change machinery.
        for widget in (self, self._view):
            _ = (widget._property_lock, widget._states_to_send)
        handle.subscribe(self.render)
        self._schedule_tick(card)

    # ------------------------------------------------------------------ the widgets
    def _button(self, name: str, tooltip: str) -> widgets.Button:
        return widgets.Button(
            description=name,
            tooltip=tooltip,
            layout=self._button_layout,
            style=self._button_style,
            _dom_classes=("openhands-control", _css_class(name)),
        )

    def _children(self) -> tuple[widgets.Widget, ...]:
        reply = (self.reply,) if self.reply is not None else ()
        return (self._view, *self.buttons.values(), *reply)

    def _make_lazy(self, card: Card) -> bool:
        """Make the confirm buttons or the reply box the first time they apply; whether any was made."""
        made = False
        if card.pending is not None and "Approve" not in self.buttons:
            self._rules.clear()
            for name, tooltip in CONFIRM_BUTTONS:
                self.buttons[name] = self._button(name, tooltip)
            self.buttons["Approve"].on_click(lambda _b: self._steer(self._handle.confirm))
            self.buttons["Reject"].on_click(
                lambda _b: self._steer(lambda: self._handle.reject("rejected in the notebook"))
            )
            made = True
        if card.can_reply and self.reply is None and (self._reply_when_final or not card.is_final):
            self._rules.clear()
            self.reply = widgets.Text(
                placeholder="Reply to the agent…",
                layout=widgets.Layout(width="28em", margin="2px 8px 2px 0"),
                _dom_classes=("openhands-control", "oh-c-reply"),
            )
            self.buttons["Send"] = self._button(*SEND)
            self.buttons["Send"].on_click(lambda _b: self.send_reply())
            made = True
        return made

    def _shown(self, card: Card) -> tuple[str, ...]:
        applies = {
            "Stop agent": card.can_interrupt,
            "Pause": card.can_pause,
            "Resume": card.can_resume,
            "Stop watching": card.watching,
            "Approve": card.pending is not None,
            "Reject": card.pending is not None,
            "Send": card.can_reply and self.reply is not None,
        }
        return tuple(name for name in self.buttons if applies[name])

    def _value(self, card: Card) -> str:
        """The card's HTML, and the rule that hides the controls that do not apply (in this panel only)."""
        shown = self._shown(card)
        rule = self._rules.get(shown)
        if rule is None:  # (a handful of combinations a panel's life: each rule is made once)
            hidden = [_css_class(name) for name in self.buttons if name not in shown]
            if self.reply is not None and "Send" not in shown:
                hidden.append("oh-c-reply")
            # (and the saved copy beside the panel, while the panel is there to be seen)
            selectors = ",".join(
                [f".{self._scope} .{name}" for name in hidden]
                + [f".oh-s-{self._scope}", f".jp-OutputArea-child:has(.oh-s-{self._scope})"]
            )
            rule = self._rules[shown] = f"<style>{selectors}{{display:none!important}}</style>"
        return html_card(card, live=True) + rule

    @property
    def scope(self) -> str:
        """This panel's CSS class: its style rules apply to it alone (and to its saved copy, :mod:`.display`)."""
        return self._scope

    @property
    def shown_buttons(self) -> tuple[str, ...]:
        """The labels of the buttons on show, in order."""
        return self._shown(self._drawn)

    @property
    def card(self) -> CardView:
        """The card's widget (its ``value`` is the HTML drawn)."""
        return self._view

    @property
    def status(self) -> str:
        return self._view.status

    @property
    def conversation_id(self) -> str:
        return self._view.conversation_id

    @property
    def task_id(self) -> str:
        return self._view.task_id

    # ------------------------------------------------------------------ drawing
    def render(self, handle: ConversationHandle) -> None:
        """Send what changed, in one message; nothing when only time moved, unless the clock is due for a resync.
        A change of the feed alone waits until ``FEED_GAP`` after the last redraw (the latest one is drawn then)."""
        with self._lock:
            if self._closed:
                return
            activity = handle.activity
            key = (handle.conversation, handle.outcome, handle.note, handle.watching, activity.pending, activity.notice)
            now = time.monotonic()
            if len(key) == len(self._key) and all(a is b for a, b in zip(key, self._key)):
                if self._flush_due:
                    return  # only the feed moved, and its redraw is already due: not even a Card to make
                if now - self._drawn_at < FEED_GAP:  # only the feed moved, just after a redraw: the next one is due
                    self._put_off(now)
                    return
            self._key = key
            card = Card.of(handle)  # (in the lock: two threads cannot draw an older card last)
            drawn = self._drawn
            if card == drawn:
                if card.is_final or self._clock(card) == self._drawn_clock:
                    return
            elif card.same_but_feed(drawn) and now - self._drawn_at < FEED_GAP:
                self._put_off(now)
                return
            self._draw(card, now)

    def _put_off(self, now: float) -> None:
        """Redraw ``FEED_GAP`` after the last redraw (once: a redraw already due is the one); in the lock."""
        if not self._flush_due:
            self._flush_due = True
            _later(self._drawn_at + FEED_GAP - now, self._flush)

    def _flush(self) -> None:
        with self._lock:
            self._flush_due = False
        self.render(self._handle)

    @staticmethod
    def _clock(card: Card) -> str | None:
        """The elapsed minutes the card draws now (None when it draws none)."""
        seconds = None if card.is_final else card.elapsed()
        return None if seconds is None else minutes_text(seconds)

    def _schedule_tick(self, card: Card) -> None:
        """A redraw when the next minute of a running card's clock begins (one pending a panel)."""
        seconds = None if card.is_final else card.elapsed()
        if seconds is None or self._tick_due or self._closed:
            return
        self._tick_due = True
        _later(60.0 - seconds % 60.0 + TICK_SLACK, self._tick)

    def _tick(self) -> None:
        with self._lock:
            self._tick_due = False
        self.render(self._handle)
        with self._lock:
            self._schedule_tick(self._drawn)

    def _draw(self, card: Card, now: float) -> None:
        self._drawn, self._drawn_at, self._drawn_clock = card, now, self._clock(card)
        grew = self._make_lazy(card)
        view = self._view
        with view.hold_sync():  # one message however many traits change
            view.value = self._value(card)
            for name, value in (
                ("conversation_id", card.conversation_id),
                ("task_id", card.task_id),
                ("status", card.status),
            ):
                if getattr(view, name) != (value or ""):
                    setattr(view, name, value or "")
        if grew:
            self.children = self._children()
        self._schedule_tick(card)

    # ------------------------------------------------------------------ the verbs
    def _steer(self, verb: Callable[[], object]) -> None:
        """Run a button's verb; what goes wrong (no access, a sandbox already gone, the network) is shown as the
        card's note, because an exception here would only reach the front end's log."""
        try:
            verb()
        except Exception as error:  # noqa: BLE001 - every failure becomes the note
            self._handle.set_note(str(error) or type(error).__name__)

    def _reject(self) -> None:
        self._handle.reject("rejected in the notebook")

    def send_reply(self) -> None:
        """Send the reply box's text as a follow-up (nothing when it is empty), and empty the box once it went."""
        reply = self.reply
        text = reply.value.strip() if reply is not None else ""
        if not text or reply is None:
            return
        sent: list[bool] = []
        self._steer(lambda: sent.append(self._handle.send(text) is not None))
        if sent:
            reply.value = ""

    def close(self) -> None:
        """Closing the panel stops its polling too, and closes every widget it made."""
        with self._lock:
            closed, self._closed = self._closed, True
        if not closed:
            self._handle.unsubscribe(self.render)
            self._handle.stop_watching()
        close_widgets(self, *self.buttons.values(), *((self.reply,) if self.reply is not None else ()))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # closed widget
            return None
        # No fallback of its own: the saved copy displayed beside it is the card a notebook without this widget
        # shows (JupyterLab draws a widget output with the widget even when its model is gone: an error).
        bundle["text/plain"] = ""
        return bundle
