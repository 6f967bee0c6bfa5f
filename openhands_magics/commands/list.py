"""``%openhands list [--running] [--repo R] [--limit N]``: the account's conversations as a table of the session's
own handles (the cell shows it); ``list --here``: this notebook's, with live panels again for those not over. Both
newest first (the notebook's record is oldest first, the server's list newest first)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context


def run(context: Context, invocation: Invocation) -> Any:
    from ..listing import ConversationList

    if invocation.here:
        from .here import here

        found = here(context)
    else:
        found = context.session.list(
            endpoint=context.server,
            running=invocation.running,
            repository=invocation.repo,
            limit=invocation.limit or 20,
        )
    return ConversationList.newest_first(found, source=found.source)  # (both newest first, whatever order came)
