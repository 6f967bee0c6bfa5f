"""Showing a handle the best way the front end allows, and starting to watch it.

| where                         | what                                                     |
| a kernel (notebook, VS Code)  | the live panel; or, ``panel=False``, a text line updated in place |
| terminal IPython              | one printed line (nothing runs between cells to poll with) |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .views import RedrawGate, text_summary

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .session import Session

__all__ = ["show"]


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def show(session: Session, handle: ConversationHandle, *, panel: bool = True) -> None:
    from IPython.display import display

    shell = _shell()
    in_kernel = getattr(shell, "kernel", None) is not None  # only a kernel has a front end that renders widgets
    if not in_kernel:
        print(text_summary(handle))
        return
    if panel:
        from .panel import ConversationPanel

        session.watch(handle)  # first, so the panel's first message already shows the button
        widget = ConversationPanel(handle)
        shown = display(widget, display_id=True)
        milestone = [(handle.id, handle.is_final)]

        def update_fallback(h: ConversationHandle) -> None:
            # What is saved with the notebook (text/plain, text/html beside the widget) is written when the
            # conversation's id appears and when it is final, so a saved notebook names both ids and the outcome.
            if (h.id, h.is_final) != milestone[0] and widget.comm is not None:
                milestone[0] = (h.id, h.is_final)
                shown.update(widget)

        handle.subscribe(update_fallback)
        return
    shown = display({"text/plain": text_summary(handle)}, raw=True, display_id=True)
    gate = RedrawGate(handle)

    def update_text(h: ConversationHandle) -> None:  # on change, and at most once a minute for the elapsed time
        if gate.due(h):
            shown.update({"text/plain": text_summary(h)}, raw=True)

    handle.subscribe(update_text)
    session.watch(handle)
