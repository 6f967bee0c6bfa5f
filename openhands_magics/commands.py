"""What the magic's commands do: ``list``, ``pause``/``resume``/``delete`` ID, ``--continue``, ``--reattach``.

The magics class parses and catches; each command here is a few calls on the process's
:class:`~openhands_magics.session.Session` and one line or one table for the user. Imported by ``%load_ext``, so
it imports nothing heavy at the top.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import ValidationError

if TYPE_CHECKING:
    from .arguments import Invocation
    from .handle import ConversationHandle
    from .magics import OpenHandsMagics
    from .models import Conversation
    from .session import Endpoint

__all__ = ["follow_up", "here", "reattach", "run"]


def _say(line: str) -> None:
    print(f"openhands: {line}", file=sys.stderr)


def _session() -> Any:
    from .session import get_session

    return get_session()


def run(magics: OpenHandsMagics, invocation: Invocation, endpoint: Endpoint) -> Any:
    """``list`` returns its table (the cell shows it); the actions print one line and return None."""
    if invocation.command == "list":
        if invocation.here:
            return here(magics, endpoint)
        return _session().list(endpoint=endpoint, running=invocation.running, repository=invocation.repo,
                               limit=invocation.limit or 20)
    handle = _session().find(invocation.target or "", endpoint=endpoint)
    name = handle.id or handle.reference
    if invocation.command == "pause":
        handle.pause()
        print(f"openhands: paused {name} ({handle.conversation.status_line}); `%openhands resume {name}` goes on.")
    elif invocation.command == "resume":
        handle.resume()
        print(f"openhands: resumed {name} ({handle.conversation.status_line}); send it more with "
              f"`%%openhands --continue {name}`.")
    elif invocation.command == "delete":
        if not invocation.yes and not _confirmed(magics, handle):
            print(f"openhands: {name} was not deleted.")
            return None
        handle.delete()
        print(f"openhands: deleted {name}.")
    return None


def _confirmed(magics: OpenHandsMagics, handle: ConversationHandle) -> bool:
    from .magics import _headless
    from .views import plain

    where_nobody_answers = ValidationError(
        f"Deleting {handle.id} needs a yes: add --yes (`%openhands delete {handle.id} --yes`); nobody can answer a "
        "question here."
    )
    if _headless(magics.shell):
        raise where_nobody_answers
    title = f" {plain(handle.title)!r}" if handle.title else ""
    try:
        answer = input(f"Delete conversation {handle.id}{title} ({handle.status}) for good? [y/N] ")
    except Exception:  # StdinNotImplementedError: a front end that cannot ask
        raise where_nobody_answers from None
    return answer.strip().lower() in ("y", "yes")


def follow_up(magics: OpenHandsMagics, invocation: Invocation, endpoint: Endpoint) -> ConversationHandle:
    """``--continue [ID]``: the message goes to that conversation, or to the latest one of this notebook."""
    from .validation import validate_message

    message = validate_message(invocation.message)  # refused before anything else is asked of the server
    session = _session()
    if invocation.continue_id is not None:
        handle = session.find(invocation.continue_id, endpoint=endpoint)
    else:
        handle = _latest(magics, endpoint)
    handle.send(message)
    return handle


def _latest(magics: OpenHandsMagics, endpoint: Endpoint) -> ConversationHandle:
    session = _session()
    mine = [h for h in session.history() if h.endpoint.base_url == endpoint.base_url and h.id]
    if mine:
        return mine[-1]
    if session.notebook and session.remember:  # after a kernel restart: the latest this notebook started
        stored = [e for e in session._store().entries(base_url=endpoint.base_url, notebook=session.notebook)
                  if e.conversation_id]
        if stored:
            return session.attach(stored[-1].conversation_id, endpoint=endpoint)
    raise ValidationError(
        "No conversation to continue on this server yet: give its id (`%%openhands --continue ID`), see "
        "`%openhands list`."
    )


# ---------------------------------------------------------------------------------------------------- this notebook
def _probes(magics: OpenHandsMagics, endpoint: Endpoint, *, everything: bool) -> tuple[list[Conversation], str]:
    """The conversations this notebook knows of on this server: in this process's record, in its saved outputs
    and in the on-disk record. ``everything`` False: only those nothing watches that are not over (re-attaching).
    Conversations on other servers are left alone (a notebook's text must not send the key elsewhere)."""
    from .models import Conversation
    from .saved import notebook_path, saved_conversations

    session = _session()
    ids: list[tuple[str | None, str | None]] = []

    def add(conversation_id: str | None, task_id: str | None) -> None:
        for known_id, known_task in ids:
            if (conversation_id and conversation_id == known_id) or (task_id and task_id == known_task):
                return
        if conversation_id or task_id:
            ids.append((conversation_id, task_id))

    for h in session.history():
        if h.endpoint.base_url == endpoint.base_url and (everything or (not h.is_final and not h.watching)):
            add(h.id, h.task_id)
    path = notebook_path(magics.shell.user_ns if magics.shell is not None else {})
    elsewhere = set()
    for saved in saved_conversations(path) if path else []:
        if saved.base_url not in (None, endpoint.base_url):
            elsewhere.add(saved.base_url)
        else:
            add(saved.conversation_id, saved.task_id)
    if path is not None and session.remember:
        for entry in session._store().entries(base_url=endpoint.base_url, notebook=str(path)):
            add(entry.conversation_id, entry.task_id)
    if elsewhere:
        _say(f"Left alone: conversations on {', '.join(sorted(elsewhere))[:200]}; see them with "
             "`%openhands list --here --base-url URL` if you trust that server with your key.")
    where = path.name if path else "this process (the kernel does not know its notebook's file)"
    return [Conversation(cid, start_task_id=task) for cid, task in ids], where


def _show_live(handles: list[ConversationHandle]) -> int:
    session, shown = _session(), 0
    for handle in handles:
        if not handle.is_final and not handle.watching:
            session.show(handle)
            shown += 1
    return shown


def reattach(magics: OpenHandsMagics, endpoint: Endpoint) -> None:
    """``--reattach``: live panels again for this notebook's conversations that are not over."""
    probes, where = _probes(magics, endpoint, everything=False)
    if not probes:
        _say(f"Nothing to re-attach from {where} on {endpoint.base_url}; give one with `%openhands --watch ID`.")
        return
    handles = _session().reattach(probes, endpoint=endpoint)
    watched = _show_live(handles)
    print(f"openhands: {watched} watched again, {len(handles) - watched} already over"
          + (f", {len(probes) - len(handles)} no longer on the server." if len(probes) > len(handles) else "."))


def here(magics: OpenHandsMagics, endpoint: Endpoint) -> Any:
    """``list --here``: this notebook's conversations as a table, with live panels again for those not over."""
    from .listing import ConversationList

    probes, where = _probes(magics, endpoint, everything=True)
    handles = _session().reattach(probes, endpoint=endpoint)
    watched = _show_live(handles)
    gone = len(probes) - len(handles)
    source = f"{where} on {endpoint.base_url} · {watched} watched again" + (f" · {gone} gone" if gone else "")
    return ConversationList(handles, source=source)
