"""``%openhands fix``: the last error (its traceback and the cell that raised it) becomes the task. Its card is named
by the error (``Fix: KeyError in cell 12``), not by the task's first words, which are the same for every fix."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .compose import compose_message
from .start import prepare, present, start

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..context import ErrorLog
    from ..handle import ConversationHandle
    from . import Context


def run(context: Context, invocation: Invocation) -> ConversationHandle:
    from .. import context as notebook

    task = notebook.last_error_task(context.shell, context.errors)
    message = compose_message(context, invocation, task)
    handle = start(context, invocation, prepare(context, invocation, message))
    handle.label = label(context.errors)
    return present(context, invocation, handle)


def label(errors: ErrorLog | None) -> str:
    """``Fix: KeyError in cell 12`` (the cell's number when the error log knows it), else ``Fix: KeyError``."""
    entry = errors.last if errors is not None else None
    if entry is not None:
        where = f" in cell {entry.execution_count}" if entry.execution_count is not None else ""
        return f"Fix: {entry.error_type}{where}"
    value = getattr(sys, "last_value", None)
    return f"Fix: {type(value).__name__}" if value is not None else "Fix: the last error"
