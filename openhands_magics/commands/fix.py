"""``%openhands fix``: the last error (its traceback and the cell that raised it) becomes the task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compose import compose_message
from .start import present, start

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..handle import ConversationHandle
    from . import Context


def run(context: Context, invocation: Invocation) -> ConversationHandle:
    from .. import context as notebook

    task = notebook.last_error_task(context.shell, context.errors)
    message = compose_message(context, invocation, task)
    return present(context, invocation, start(context, invocation, message))
