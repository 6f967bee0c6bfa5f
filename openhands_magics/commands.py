"""What the magic's commands do: ``list``, ``pause``/``resume``/``delete`` ID, ``--continue``, ``--reattach``.

The magics class parses and catches; each command here is a few calls on the process's
:class:`~openhands_magics.session.Session` and one line or one table for the user. Imported by ``%load_ext``, so
it imports nothing heavy at the top.

Every line the magic and its commands print goes through :func:`say`, which shows control characters as marks
(:func:`~openhands_magics.views.plain`): those lines carry server text (a status, a title) and text from a saved
notebook (a base URL), and none of it may reach a terminal as an escape sequence or a forged line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ValidationError

if TYPE_CHECKING:
    from .arguments import Invocation
    from .handle import ConversationHandle
    from .magics import OpenHandsMagics
    from .models import Conversation
    from .session import Endpoint

__all__ = ["compose_message", "dry_run", "fan_out", "follow_up", "here", "reattach", "run", "say"]

#: ``--dry-run --map``: every message up to this many items; past it, the first few and a count.
DRY_RUN_MESSAGES = 5
DRY_RUN_MESSAGES_PAST = 3


def say(line: str, *, error: bool = True) -> None:
    """One line for the user, ``openhands: <line>`` (stderr for errors and warnings, else stdout): the one place
    terminal lines are made safe, so no server or notebook text in them can send an escape sequence, and no key the
    package knows (an "Unexpected error" line carries a foreign exception's text, which no error of ours vetted)."""
    from ._secrets import blank
    from .views import plain

    print(f"openhands: {plain(blank(line))}", file=sys.stderr if error else sys.stdout)


_say = say


def _session() -> Any:
    from .session import get_session

    return get_session()


def run(magics: OpenHandsMagics, invocation: Invocation, endpoint: Endpoint) -> Any:
    """``list`` returns its table (the cell shows it); the actions print one line and return None."""
    if invocation.command == "fix":  # a task like any other, written from the last error
        return magics.start(invocation, endpoint, compose_message(magics, invocation))
    if invocation.command == "list":
        if invocation.here:
            return here(magics, endpoint)
        return _session().list(endpoint=endpoint, running=invocation.running, repository=invocation.repo,
                               limit=invocation.limit or 20)
    handle = _session().find(invocation.target or "", endpoint=endpoint)
    name = handle.id or handle.reference
    if invocation.command == "pause":
        handle.pause()
        say(f"paused {name} ({handle.conversation.status_line}); `%openhands resume {name}` goes on.", error=False)
    elif invocation.command == "resume":
        handle.resume()
        say(f"resumed {name} ({handle.conversation.status_line}); send it more with "
            f"`%%openhands --continue {name}`.", error=False)
    elif invocation.command == "delete":
        if not invocation.yes and not _confirmed(magics, handle):
            say(f"{name} was not deleted.", error=False)
            return None
        handle.delete()
        say(f"deleted {name}.", error=False)
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
    try:  # (the question is a terminal line too: its title and status are the server's)
        answer = input(plain(f"Delete conversation {handle.id}{title} ({handle.status}) for good? [y/N] "))
    except Exception:  # StdinNotImplementedError: a front end that cannot ask
        raise where_nobody_answers from None
    return answer.strip().lower() in ("y", "yes")


def compose_message(magics: OpenHandsMagics, invocation: Invocation) -> str:
    """The text to send: the message (or, for ``fix``, the last error and its cell), ``{{name}}`` filled in when
    asked, then the described variables and the cells above, within a total size; a bad name is one line and
    nothing is sent."""
    from . import context

    message, sections = _message_and_context(magics, invocation)
    return context.compose(message, sections) if sections else message


def _message_and_context(
    magics: OpenHandsMagics, invocation: Invocation, *, template: bool = False
) -> tuple[str, list[tuple[str, str]]]:
    """The message (``{{name}}`` filled when asked) and the context sections to append to it. ``template``: the
    message is a ``--map`` template, so the filled values have their braces doubled (a dict's repr is a value, not a
    placeholder of the template)."""
    from . import context
    from ._secrets import blank

    shell = magics.shell
    namespace: Mapping[str, Any] = shell.user_ns if shell is not None else {}
    if invocation.command == "fix":
        message = context.last_error_task(shell, magics.errors)
    else:
        message = invocation.message
        if invocation.expand or magics.expand:
            message = context.expand(message, _BracesDoubled.namespace(namespace) if template else namespace)
    sections = []
    if invocation.context:
        sections.append(("Variables", context.describe(invocation.context, namespace)))
    if invocation.cells:
        sections.append(("Cells above", context.cells_above(shell, int(invocation.cells), errors=magics.errors)))
    if sections:  # (the context begins with its own blank line: a cell body's last line break would widen it)
        message = message.rstrip("\r\n")
    return blank(message, namespace), sections  # a key typed into the message (the sections are blanked already)


class _BracesDoubled:
    """A notebook value seen through a ``{{name}}`` placeholder of a ``--map`` template: its ``str`` has its braces
    doubled, so ``str.format`` gives them back as they were instead of reading them as fields."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __getattr__(self, name: str) -> _BracesDoubled:
        return _BracesDoubled(getattr(self._value, name))

    def __getitem__(self, key: Any) -> _BracesDoubled:
        return _BracesDoubled(self._value[key])

    def __str__(self) -> str:
        return str(self._value).replace("{", "{{").replace("}", "}}")

    @staticmethod
    def namespace(namespace: Mapping[str, Any]) -> Mapping[str, Any]:
        class Doubled(Mapping[str, Any]):
            def __getitem__(self, name: str) -> Any:
                return _BracesDoubled(namespace[name])

            def __iter__(self) -> Iterator[str]:
                return iter(namespace)

            def __len__(self) -> int:
                return len(namespace)

        return Doubled()


def _fan_out_task(magics: OpenHandsMagics, invocation: Invocation) -> tuple[list[Any], Callable[[Any], str]]:
    """``--map ITEMS``: the items, and the task as a function of the item. ``{item}`` is filled in the message
    first, then the context is appended: the context is the notebook's text (a dict's repr, an f-string in a
    cell), never part of the template, so its braces are left alone."""
    from . import context
    from .batch import _messages

    namespace = magics.shell.user_ns if magics.shell is not None else {}
    if invocation.map_over not in namespace:
        raise ValidationError(f"--map {invocation.map_over}: no variable {invocation.map_over!r} in the notebook; "
                              "nothing was sent.")
    items = namespace[invocation.map_over]
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise ValidationError(f"--map {invocation.map_over} needs a list (or any iterable) of items, not a "
                              f"{type(items).__name__}.")
    items = list(items)
    template, sections = _message_and_context(magics, invocation, template=True)
    _messages(template, items)  # a bad template is the batch's own line for a template, and nothing is sent

    def task(item: Any) -> str:
        message = template.format(item=item)
        return context.compose(message, sections) if sections else message

    return items, task


def fan_out(magics: OpenHandsMagics, invocation: Invocation, endpoint: Endpoint) -> Any:
    """``--map ITEMS``: one conversation per item. Where nobody watches (nbconvert, papermill) it waits for the
    whole batch, as a single ``%openhands`` waits, so the saved notebook holds the final grid."""
    from IPython.display import display

    from .magics import _headless

    items, task = _fan_out_task(magics, invocation)
    batch = _session().map(task, items, repository=invocation.repo,
                           max_running=int(invocation.max_running or 10), endpoint=endpoint)
    display(batch)
    if invocation.wait or (magics.headless_wait and _headless(magics.shell)):
        batch.wait(invocation.timeout)
        print(batch.summary, flush=True)
    return None


def dry_run(magics: OpenHandsMagics, invocation: Invocation) -> None:
    """``--dry-run``: exactly what would be sent and where. Nothing is sent, not even the question of which API the
    server speaks, and no key is needed."""
    from .client import _detected
    from .config import resolve_api, resolve_base_url
    from .validation import validate_message, validate_repository

    if invocation.watch is not None or invocation.reattach or invocation.command not in (None, "fix"):
        raise ValidationError("--dry-run shows a task before it is sent: use it with a message, --continue or fix.")
    base_url = resolve_base_url(invocation.base_url or magics.base_url)
    api = resolve_api(invocation.api or magics.api)
    api = api if api != "auto" else _detected.get(base_url, "auto: asked of the server on the first real call")
    where = f" on {validate_repository(invocation.repo)}" if invocation.repo else ", no repository"
    server = f"  server: {base_url} (API {api})\n"
    if invocation.map_over is not None:
        _dry_run_map(magics, invocation, where, server)
        return
    message = validate_message(compose_message(magics, invocation))
    if invocation.follow_up:
        target = f"a follow-up to {invocation.continue_id or 'the latest conversation'}"
    else:
        target = f"a new conversation{where}"
    print(f"openhands: dry run, nothing was sent. Would send {target}\n{server}"
          f"  message ({len(message):,} characters):\n"
          "-----\n" + message + "\n-----")


def _dry_run_map(magics: OpenHandsMagics, invocation: Invocation, where: str, server: str) -> None:
    """``--dry-run --map``: how many conversations would start, and what each item would send (all of them, or the
    first few and a count), made exactly as the batch makes them."""
    from ._secrets import blank
    from .batch import _messages
    from .validation import validate_message
    from .views import one_line

    items, task = _fan_out_task(magics, invocation)
    if not items:
        raise ValidationError(f"--map {invocation.map_over} is empty: nothing would start.")
    messages = [validate_message(message) for message in _messages(task, items)]
    shown = len(messages) if len(messages) <= DRY_RUN_MESSAGES else DRY_RUN_MESSAGES_PAST
    count = f"{len(messages)} new conversation{'' if len(messages) == 1 else 's'}"
    running = min(int(invocation.max_running or 10), len(messages))
    parts = [f"openhands: dry run, nothing was sent. Would start {count}{where}, one per item of "
             f"{invocation.map_over}, at most {running} running at once\n{server}"]
    for number, (item, message) in enumerate(zip(items[:shown], messages), start=1):
        parts.append(f"  message {number} of {len(messages)} (item {one_line(repr(item), 60)}, "
                     f"{len(message):,} characters):\n-----\n{message}\n-----\n")
    if shown < len(messages):
        parts.append(f"  … and {len(messages) - shown} more messages, one per item (not shown)\n")
    print(blank("".join(parts)), end="")  # an item (or its repr) may hold a key


def follow_up(
    magics: OpenHandsMagics, invocation: Invocation, endpoint: Endpoint, message: str | None = None
) -> ConversationHandle:
    """``--continue [ID]``: the message goes to that conversation, or to the latest one of this notebook."""
    from .validation import validate_message

    # Refused before anything else is asked of the server.
    message = validate_message(invocation.message if message is None else message)
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
    from .saved import checked_id, notebook_path, read_notebook

    session = _session()
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
    path = notebook_path(magics.shell.user_ns if magics.shell is not None else {})
    elsewhere = set()
    saved_outputs, unreadable = read_notebook(path) if path else ([], None)
    if unreadable:
        _say(f"Could not read the saved outputs of {path.name if path else 'the notebook'}: {unreadable}; going "
             "on with this process's record and the one on disk.")
    for saved in saved_outputs:
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
    say(f"{watched} watched again, {len(handles) - watched} already over"
        + (f", {len(probes) - len(handles)} no longer on the server." if len(probes) > len(handles) else "."),
        error=False)


def here(magics: OpenHandsMagics, endpoint: Endpoint) -> Any:
    """``list --here``: this notebook's conversations as a table, with live panels again for those not over."""
    from .listing import ConversationList

    probes, where = _probes(magics, endpoint, everything=True)
    handles = _session().reattach(probes, endpoint=endpoint)
    watched = _show_live(handles)
    gone = len(probes) - len(handles)
    source = f"{where} on {endpoint.base_url} · {watched} watched again" + (f" · {gone} gone" if gone else "")
    return ConversationList(handles, source=source)
