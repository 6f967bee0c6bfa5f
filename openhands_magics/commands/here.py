"""This notebook's conversations on one server, from this process's record, the notebook's saved outputs and the
record on disk: what ``--reattach`` and ``list --here`` show again after a kernel restart. Conversations on other
servers are left alone (a notebook's text must not send the key elsewhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import say

if TYPE_CHECKING:
    from ..handle import ConversationHandle
    from ..models import Conversation
    from . import Context


def probes(context: Context, *, everything: bool) -> tuple[list[Conversation], str]:
    """The conversations this notebook knows of on this server, and where they were looked for. ``everything``
    False: only those nothing watches that are not over (re-attaching)."""
    from ..models import Conversation
    from ..saved import checked_id, notebook_path, read_notebook

    session, endpoint = context.session, context.server
    ids: list[tuple[str | None, str | None]] = []

    def add(conversation_id: str | None, task_id: str | None) -> None:
        # Whatever the source (a notebook's text, the record on disk), an id that could not be one is dropped
        # here, alone: one bad id in the batched read would cost every other conversation its panel.
        conversation_id, task_id = checked_id(conversation_id), checked_id(task_id)
        for known_id, known_task in ids:
            if (conversation_id and conversation_id == known_id) or (task_id and task_id == known_task):
                return
        if conversation_id or task_id:
            ids.append((conversation_id, task_id))

    for h in session.history():
        if h.endpoint.base_url == endpoint.base_url and (everything or (not h.is_final and not h.watching)):
            add(h.id, h.task_id)
    path = notebook_path(context.namespace)
    elsewhere = set()
    saved_outputs, unreadable = read_notebook(path) if path else ([], None)
    if unreadable:
        say(
            f"Could not read the saved outputs of {path.name if path else 'the notebook'}: {unreadable}; going "
            "on with this process's record and the one on disk."
        )
    for saved in saved_outputs:
        if saved.base_url not in (None, endpoint.base_url):
            elsewhere.add(saved.base_url)
        else:
            add(saved.conversation_id, saved.task_id)
    for entry in session.recorded(endpoint, str(path) if path is not None else None):
        add(entry.conversation_id, entry.task_id)
    if elsewhere:
        say(
            f"Left alone: conversations on {', '.join(sorted(elsewhere))[:200]}; see them with "
            "`%openhands list --here --base-url URL` if you trust that server with your key."
        )
    where = path.name if path else "this process (the kernel does not know its notebook's file)"
    return [Conversation(cid, start_task_id=task) for cid, task in ids], where


def show_live(context: Context, handles: list[ConversationHandle]) -> int:
    """Live panels again for those not over and not watched; how many."""
    shown = 0
    for handle in handles:
        if not handle.is_final and not handle.watching:
            context.session.show(handle)
            shown += 1
    return shown


def here(context: Context) -> Any:
    """``list --here``: this notebook's conversations as a table, with live panels again for those not over."""
    from ..listing import ConversationList

    found, where = probes(context, everything=True)
    handles = context.session.reattach(found, endpoint=context.server)
    watched = show_live(context, handles)
    gone = len(found) - len(handles)
    source = f"{where} on {context.server.base_url} · {watched} watched again" + (f" · {gone} gone" if gone else "")
    return ConversationList(handles, source=source)
