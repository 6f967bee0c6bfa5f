"""``%openhands stop ID``: stop the agent at once (its agent server's ``interrupt``), and one line saying so. The
conversation stays: ``%%openhands --continue ID`` goes on from there. Not ``pause`` (the sandbox) and not "Stop
watching" (this kernel stops listening): three verbs, three words."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import say

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context


def run(context: Context, invocation: Invocation) -> None:
    handle = context.session.find(invocation.target or "", endpoint=context.server)
    name = handle.id or handle.reference
    handle.interrupt()
    say(f"stopped the agent of {name}; `%%openhands --continue {name}` sends it more.", error=False)
    return None
