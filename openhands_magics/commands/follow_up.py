"""``%openhands --continue [ID] MESSAGE``: the message goes to that conversation, or to the latest one of this
notebook on this server (after a kernel restart: the latest this notebook recorded); a paused sandbox is resumed.
``--upload`` puts the files in its workspace first, and the message says where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ValidationError
from .compose import compose_message
from .start import present

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..handle import ConversationHandle
    from . import Context


def run(context: Context, invocation: Invocation) -> ConversationHandle:
    from ..validation import validate_message

    from .start import announce, extras

    # Refused before anything else is asked of the server (a file too large, too).
    message = validate_message(compose_message(context, invocation))
    uploads, _ = extras(context, invocation)
    if invocation.continue_id is not None:
        handle = context.session.find(invocation.continue_id, endpoint=context.server)
    else:
        handle = latest(context)
    if uploads:
        announce(uploads)
    handle.send(message, upload=uploads)
    return present(context, invocation, handle)


def latest(context: Context) -> ConversationHandle:
    session, endpoint = context.session, context.server
    mine = [h for h in session.history() if h.endpoint.base_url == endpoint.base_url and h.id]
    if mine:
        return mine[-1]
    # After a kernel restart: the latest this notebook started.
    stored = [e for e in session.recorded(endpoint, session.notebook or None) if e.conversation_id]
    if stored:
        return session.attach(stored[-1].conversation_id or "", endpoint=endpoint)
    raise ValidationError(
        "No conversation to continue on this server yet: give its id (`%%openhands --continue ID`), see "
        "`%openhands list`."
    )
