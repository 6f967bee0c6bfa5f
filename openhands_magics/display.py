"""Showing a handle the best way the front end allows, and starting to watch it.

| where                         | what                                                     |
| a kernel (notebook, VS Code)  | the live panel, replaced by its static card once watching ends; or, ``panel=False``, |
|                               | a text line updated in place                              |
| terminal IPython              | one printed line (nothing runs between cells to poll with) |

A panel whose turn ended in a way a follow-up can go on from (finished, waiting for input) may keep its reply box:
the latest ``REPLY_PANELS`` such panels stay widgets (a reply sent from one makes it live again), and an older one
becomes its static card, every widget closed, as does each of them when the I/O thread stops (``%unload_ext``). So
however many conversations end, at most ``REPLY_PANELS`` panels hold comms. It is 0 (off) by default: a saved or
headless-executed notebook (nbconvert, papermill) must keep the final card, not a widget it cannot draw, and a
finished panel must leave no comm; a live panel shows its reply box while its turn is over and it is still watched.

A live panel is two outputs: the widget, and below it a saved copy of the card (``text/html`` and the text line, with
the ids in its metadata), hidden by the panel's style rule while the panel is there. A notebook saved while the panel
was live and reopened later (or a kernel that died) has no widget model to draw: JupyterLab would show "Error
displaying widget" for that output (it never falls back to another part of a widget output's bundle), so the copy's
own rule hides that output, and the copy shows what was last seen ("last seen RUNNING at 16:42 UTC"). The copy is
redrawn when the status, the name or an id changes, not for the feed; at the end the widget's output becomes the
final card and the copy empties.

What follows a handle here may be called from any thread (updates arrive on the I/O thread that watches, a button's
click on the kernel's): each follower decides under its own lock, so a panel is replaced by its final card once, and
a text line is never overwritten by an older one. ``DisplayHandle.update`` may be called from any thread in
ipykernel. Nothing that may call back into the handle (closing the panel stops its watching) runs under a lock.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .saved import metadata_for
from .views import Card, RedrawGate, html_card, text_summary

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .session import Session

__all__ = ["REPLY_PANELS", "show"]

#: What the saved copy beside a panel becomes at the end: nothing to see.
EMPTY = {"text/plain": ""}
#: How many final panels keep their reply box at once (the latest ones); 0: every panel becomes its card at the end.
REPLY_PANELS = 0
_kept: collections.OrderedDict[int, Callable[[], None]] = collections.OrderedDict()
_kept_lock = threading.Lock()
_closer = [False]  # whether finishing the kept panels is registered with the I/O thread's stop


def _keep(key: int, finish: Callable[[], None]) -> None:
    """Keep a final panel for a reply; the oldest past ``REPLY_PANELS`` is finished (outside the lock)."""
    from ._io import get_io

    with _kept_lock:
        _kept[key] = finish
        _kept.move_to_end(key)
        evicted = [_kept.popitem(last=False)[1] for _ in range(max(0, len(_kept) - REPLY_PANELS))]
        register, _closer[0] = not _closer[0], True
    if register:
        get_io().on_stop(_finish_kept)
    for old in evicted:
        old()


def _forget(key: int) -> None:
    with _kept_lock:
        _kept.pop(key, None)


async def _finish_kept() -> None:
    """When the I/O thread stops: every kept panel becomes its card (its verbs' connection is going away)."""
    with _kept_lock:
        finishers, _closer[0] = list(_kept.values()), False
        _kept.clear()
    for finish in finishers:
        finish()


def _shell() -> Any:
    from IPython.core.getipython import get_ipython  # (not IPython's own name: IPython 9 imports it on each use)

    return get_ipython()


def static_card(handle: ConversationHandle, *, saved_for: str | None = None) -> dict[str, str]:
    """The card as plain HTML and text: what a front end without widgets, or without a kernel, can show.
    ``saved_for``: the copy beside the live panel of that scope (:func:`.views.html_card`)."""
    card = Card.of(handle)
    return {"text/html": html_card(card, saved_for=saved_for), "text/plain": text_summary(card)}


def _saved_key(handle: ConversationHandle) -> tuple[object, ...]:
    """What the saved copy shows but the feed: when it changes, the copy is redrawn."""
    c = handle.conversation
    return (c.status_line, c.title, c.conversation_id, c.start_task_id, handle.note, handle.follow_ups, handle.label)


def done_cue(handle: ConversationHandle) -> dict[str, str]:
    """A one-off script for the browser when a watched conversation ends, for a user who looked away: the tab's
    title says so until the page has focus again, and a desktop notification shows if the page already has the
    permission (it is never asked for). Sent as an update of the panel's own output, immediately replaced by the
    final card, so nothing of it is saved in the notebook; front ends that do not run scripts just skip it."""
    import json

    from .views import plain

    words = f"OpenHands {handle.status or '?'}" + (f" · {plain(handle.title)[:80]}" if handle.title else "")
    text = json.dumps(words).replace("<", "\\u003c")  # (ensure_ascii: U+2028 and friends are escaped too)
    script = (
        "(function(){var m=%s;if(document.hasFocus())return;var t=document.title;document.title='\\u25cf '+m;"
        "window.addEventListener('focus',function f(){document.title=t;window.removeEventListener('focus',f);});"
        "if(window.Notification&&Notification.permission==='granted'){new Notification('OpenHands',{body:m});}})();"
    ) % text
    return {"application/javascript": script}


def show(session: Session, handle: ConversationHandle, *, panel: bool = True) -> None:
    from IPython.display import display

    shell = _shell()
    in_kernel = getattr(shell, "kernel", None) is not None  # only a kernel has a front end that renders widgets
    if not in_kernel:
        print(text_summary(handle))
        return
    if panel:
        from .panel import ConversationPanel

        handle.card_diff = True
        watching = session.watch(handle) and handle.watching  # first, so the panel starts with its button
        if not watching:  # nothing will change it: the static card is all there is to show, and what is saved
            display(static_card(handle), raw=True, metadata=metadata_for(handle))
            return
        widget = ConversationPanel(handle, reply_when_final=REPLY_PANELS > 0)
        shown = display(widget, display_id=True, metadata=metadata_for(handle))
        copy = display(
            static_card(handle, saved_for=widget.scope), raw=True, display_id=True, metadata=metadata_for(handle)
        )
        lock = threading.Lock()
        # phase: live, kept (for a reply), done; saved: what the copy last showed
        state: dict[str, Any] = {"phase": "live", "saved": _saved_key(handle)}
        key = id(widget)

        def save(h: ConversationHandle) -> None:  # (the copy beside the panel, when what it shows changed)
            with lock:
                saved = _saved_key(h)
                if saved == state["saved"] or state["phase"] == "done":
                    return
                state["saved"] = saved
                copy.update(static_card(h, saved_for=widget.scope), raw=True, metadata=metadata_for(h))

        def finish(h: ConversationHandle = handle) -> None:
            # The output becomes the static card, which every front end shows, with or without a kernel, so a saved
            # notebook shows the last card instead of a widget it cannot find; every widget of the panel closes.
            with lock:
                if state["phase"] == "done":
                    return
                state["phase"] = "done"
            h.unsubscribe(follow)
            _forget(key)
            with lock:
                state["card"] = Card.of(h)
            shown.update(static_card(h), raw=True, metadata=metadata_for(h))
            # The final card is the widget's output now: one card, where the panel was. (An update with no data at all
            # is not drawn by JupyterLab, which would keep the copy.)
            copy.update(EMPTY, raw=True)
            widget.close()
            h.subscribe(late)

        def late(h: ConversationHandle) -> None:
            # What arrives after the end (the real title is made after the finish; cost and pull requests may
            # follow) redraws the static card in place, so the saved card is not left with "Conversation 3c356".
            # A follow-up shows a panel of its own: this output keeps the turn it showed.
            if not h.is_final:
                h.unsubscribe(late)
                return
            card = Card.of(h)
            with lock:
                if card == state.get("card"):
                    return
                state["card"] = card
                shown.update(static_card(h), raw=True, metadata=metadata_for(h))

        def follow(h: ConversationHandle) -> None:
            with lock:
                phase = state["phase"]
                over = not h.watching
                ended = phase == "live" and over
                keep = ended and REPLY_PANELS > 0 and h.is_final and Card.of(h).can_reply and widget.comm is not None
                if ended:
                    state["phase"] = "kept" if keep else "ending"
                elif phase == "kept" and not over:  # a follow-up from its reply box: live again
                    state["phase"] = "live"
            if phase == "kept" and not over:
                _forget(key)
            if not ended or keep:  # (the copy names the conversation as soon as it exists, and follows its status)
                save(h)
            if ended:
                # Watching ended (final, stopped, or an error retrying cannot fix).
                cue = session.notify and h.is_final and h.status != "DELETED"  # (deleting was done here: no cue)
                if cue and widget.comm is not None:
                    shown.update(done_cue(h), raw=True)
                if keep:  # the widget stays for a reply; what is saved beside it (its copy) is the final card
                    _keep(key, finish)
                else:
                    finish(h)

        handle.subscribe(follow)
        return
    shown = display({"text/plain": text_summary(handle)}, raw=True, display_id=True, metadata=metadata_for(handle))
    gate, lock, last = RedrawGate(handle), threading.Lock(), [text_summary(handle)]

    def update_text(h: ConversationHandle) -> None:  # on change, and at most once a minute for the elapsed time
        with lock:  # (so two threads cannot write the older line last)
            card = gate.due(h)
            text = text_summary(card) if card is not None else last[0]
            if text != last[0]:  # (a change the line does not show, such as watching, sends nothing)
                last[0] = text
                shown.update({"text/plain": text}, raw=True, metadata=metadata_for(h))

    handle.subscribe(update_text)
    session.watch(handle)
