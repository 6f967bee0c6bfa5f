"""``%openhands --watch ID``: a live panel for an existing conversation; nothing is started."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .start import present

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..handle import ConversationHandle
    from . import Context


def run(context: Context, invocation: Invocation) -> ConversationHandle:
    handle = context.session.attach(invocation.watch or "", endpoint=context.server, remember=True)
    return present(context, invocation, handle)
