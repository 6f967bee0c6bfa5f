"""``%openhands --reattach``: after a kernel restart, live panels again for this notebook's conversations that are
not over (found as :mod:`.here` finds them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import say
from .here import probes, show_live

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context


def run(context: Context, invocation: Invocation) -> None:
    found, where = probes(context, everything=False)
    if not found:
        say(f"Nothing to re-attach from {where} on {context.server.base_url}; give one with `%openhands --watch ID`.")
        return None
    handles = context.session.reattach(found, endpoint=context.server)
    watched = show_live(context, handles)
    say(
        f"{watched} watched again, {len(handles) - watched} already over"
        + (f", {len(found) - len(handles)} no longer on the server." if len(found) > len(handles) else "."),
        error=False,
    )
    return None
