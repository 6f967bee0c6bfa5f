"""``%openhands pause ID``, ``resume ID``, ``delete ID [--yes]``: the handle's own verb, and one line saying what
happened (``delete`` asks first, unless ``--yes``; where nobody can answer it needs ``--yes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ValidationError
from . import say

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..handle import ConversationHandle
    from . import Context


def run(context: Context, invocation: Invocation) -> None:
    handle = context.session.find(invocation.target or "", endpoint=context.server)
    name = handle.id or handle.reference
    if invocation.command == "pause":
        handle.pause()
        say(f"paused {name} ({handle.conversation.status_line}); `%openhands resume {name}` goes on.", error=False)
    elif invocation.command == "resume":
        handle.resume()
        say(
            f"resumed {name} ({handle.conversation.status_line}); send it more with `%%openhands --continue {name}`.",
            error=False,
        )
    elif invocation.command == "delete":
        if not invocation.yes and not _confirmed(context, handle):
            say(f"{name} was not deleted.", error=False)
            return None
        handle.delete()
        say(f"deleted {name}.", error=False)
    return None


def _confirmed(context: Context, handle: ConversationHandle) -> bool:
    from ..views import plain

    where_nobody_answers = ValidationError(
        f"Deleting {handle.id} needs a yes: add --yes (`%openhands delete {handle.id} --yes`); nobody can answer a "
        "question here."
    )
    if context.headless:
        raise where_nobody_answers
    title = f" {plain(handle.title)!r}" if handle.title else ""
    try:  # (the question is a terminal line too: its title and status are the server's)
        answer = input(plain(f"Delete conversation {handle.id}{title} ({handle.status}) for good? [y/N] "))
    except Exception:  # StdinNotImplementedError: a front end that cannot ask
        raise where_nobody_answers from None
    return answer.strip().lower() in ("y", "yes")
