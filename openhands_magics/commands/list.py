"""``%openhands list [--running] [--repo R] [--limit N]``: the account's conversations as a table of the session's
own handles (the cell shows it); ``list --here``: this notebook's, with live panels again for those not over."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context


def run(context: Context, invocation: Invocation) -> Any:
    if invocation.here:
        from .here import here

        return here(context)
    return context.session.list(
        endpoint=context.server, running=invocation.running, repository=invocation.repo, limit=invocation.limit or 20
    )
