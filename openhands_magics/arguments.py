"""Parsing ``%openhands [options] message``: options first, then the message *verbatim*.

argparse/shlex would eat the quotes and backslashes of a message like ``Fix "naïve" {x} parsing``, so this parser
reads whitespace-separated option tokens from the left and hands back the untouched rest of the line.

Commands (``list``, ``pause ID``, ``resume ID``, ``delete ID``) are recognised only when the *whole* rest of the
line fits them: ``%openhands list --running`` lists, while ``%openhands list the TODOs in src/`` and ``%openhands
pause the nightly job`` are tasks, as they always were. The argument of ``pause``/``resume``/``delete`` must look
like an id (32 hex digits, a UUID, or a conversation link), so no sentence can fit. A bare command word without its
id is refused with a line saying how to send it as a task (``%openhands -- pause``); ``--`` always forces a task.

IPython's ``{expr}`` / ``$name`` expansion is off for this magic (a task's braces and dollars are the user's text),
so the id argument, and only it, may be written that way: ``pause {conv.id}``, ``delete $cid --yes``, ``--continue
{ids[0]}``, ``--watch $cid``. The parser only marks such a token as a reference (``Invocation.references``): the
namespace is the notebook's, so the magic front resolves it (:func:`resolve_references`), with the ``{{ }}``
placeholders' own parser (names, ``.attribute``, ``[index]``; never ``eval``). A line with a reference in the id's
place is that command, never a task: if the variable is missing or is not an id, it is one line and nothing is sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

__all__ = ["USAGE", "Invocation", "parse_invocation", "resolve_references"]

USAGE = """\
%openhands [options] MESSAGE            start a conversation, show a live panel
%%openhands [options]                   the cell body is the message
  --repo OWNER/REPO    repository the agent works on
  --base-url URL       server (default: %config OpenHandsMagics.base_url, $OPENHANDS_BASE_URL, app.all-hands.dev)
  --api auto|v1|v0     API the server speaks (default: %config OpenHandsMagics.api, $OPENHANDS_API, auto)
  --wait               block until the status is final, printing each change (for papermill / nbconvert)
  --timeout SECONDS    give up waiting after this long (with --wait); the conversation goes on
  --no-panel           plain text instead of the widget panel
  --watch ID           a live panel for an existing conversation (its id, link or start task id); nothing is started
  --continue [ID]      a follow-up to a conversation (default: the latest), resuming it if paused; same live panel
  --expand             fill {{name}}, {{df.shape}}, {{items[0]}} from the notebook (or %config OpenHandsMagics.expand)
  --context A,B        append a short description of these variables (DataFrames: shape, dtypes, head)
  --cells N            append the source of the N cells above (and their errors)
  --dry-run            print exactly what would be sent; send nothing
  --map ITEMS          one conversation per item of the list ITEMS, the message a template with {item}
  --max-running N      with --map: at most N running at once (default 10); the rest wait in a queue
  --reattach           after a kernel restart: live panels again for the conversations this notebook started
  --login              ask for the API key (kept in memory only, never in the notebook)
  --help               this text
  --                   end of options: everything after it is the message
%openhands list [--running] [--repo R] [--limit N] [--here]
                       the account's conversations as a table (--here: the ones this notebook started, with live
                       panels again for those not over)
%openhands fix [options]
                       the last error (its traceback and the cell that raised it) becomes the task
%openhands pause ID | resume ID | delete ID [--yes]
                       pause or resume a conversation's sandbox; delete one for good (asks first unless --yes)
                       (commands only when the whole line fits them: `%openhands list the TODOs` is a task)
                       an ID (here, --continue, --watch) may be a variable: {conv.id}, {ids[0]}, $cid
conv = %openhands ...  gives a handle: conv.id .task_id .url .status .answer .pull_requests .cost .changes() .diff()
                       .send(text) .pause() .resume() .delete() .refresh() .wait()"""

_VALUE_OPTIONS = {"--repo": "repo", "--base-url": "base_url", "--api": "api", "--timeout": "timeout", "--watch": "watch",
                  "--context": "context", "--cells": "cells", "--map": "map_over", "--max-running": "max_running"}
_FLAG_OPTIONS = {"--reattach": "reattach", "--wait": "wait", "--no-panel": "no_panel", "--login": "login",
                 "--expand": "expand", "--dry-run": "dry_run",
                 "--help": "help", "-h": "help"}
_TOKEN = re.compile(r"\S+")
_HEX_ID = r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
#: What a command's argument must look like: an id or a conversation's link, never a word of a sentence.
ID_LIKE = re.compile(rf"(?:{_HEX_ID})|https?://\S+/conversations/(?:{_HEX_ID})/?")
COMMANDS = ("list", "pause", "resume", "delete", "fix")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LIST_FLAGS = {"--running": "running", "--here": "here"}
_LIST_VALUES = {"--repo": "repo", "--limit": "limit"}
#: ``$name`` as IPython reads it: a name and ``.attribute`` steps.
_DOLLAR = re.compile(r"\$([^\W\d]\w*(?:\.[^\W\d]\w*)*)")


@dataclass
class Invocation:
    message: str = ""
    repo: str | None = None
    base_url: str | None = None
    api: str | None = None
    timeout: float | None = None
    watch: str | None = None
    wait: bool = False
    reattach: bool = False
    no_panel: bool = False
    login: bool = False
    help: bool = False
    #: ``--continue [ID]``: a follow-up; ``continue_id`` None means the latest conversation.
    follow_up: bool = False
    continue_id: str | None = None
    #: ``list`` / ``pause`` / ``resume`` / ``delete`` when the whole line is that command; ``target`` its id.
    command: str | None = None
    target: str | None = None
    yes: bool = False
    running: bool = False
    here: bool = False
    limit: int | None = None
    #: ``--expand``: ``{{name}}`` placeholders filled from the notebook (None: as ``%config`` says).
    expand: bool = False
    #: ``--context a,b``: variables described after the message; ``--cells N``: the N cells above.
    context: str | tuple[str, ...] | None = None
    cells: str | int | None = None
    #: ``--dry-run``: print what would be sent, send nothing.
    dry_run: bool = False
    #: ``--map ITEMS``: one conversation per item of the notebook variable ITEMS (the message a ``{item}`` template).
    map_over: str | None = None
    max_running: str | int | None = None
    #: Id arguments written ``{expr}`` / ``$name``: field name (``target``, ``continue_id``, ``watch``) -> the token
    #: as typed, which the field holds until :func:`resolve_references` puts the id there.
    references: dict[str, str] = field(default_factory=dict)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_invocation(line: str, cell: str | None = None) -> Invocation:
    """Read options off the front of ``line``; the rest (or the cell body) is the message, unchanged."""
    invocation = Invocation()
    position = 0
    dashed = False
    while True:
        token = _TOKEN.search(line, position)
        if token is None or not token.group().startswith("-"):
            rest = line[token.start():] if token else ""
            break
        position = token.end()
        name, has_equals, inline_value = token.group().partition("=")
        if name == "--":
            dashed = True
            rest = line[position:]
            rest = rest[1:] if rest[:1] == " " else rest
            break
        if name in _FLAG_OPTIONS and not has_equals:
            setattr(invocation, _FLAG_OPTIONS[name], True)
            continue
        if name == "--continue":  # an optional id: taken only if the next token looks like one
            invocation.follow_up = True
            following = _TOKEN.search(line, position)
            if has_equals:
                invocation.continue_id = _unquote(inline_value) or None
            elif following is not None and _is_id_argument(following.group()):
                invocation.continue_id, position = following.group(), following.end()
            if invocation.continue_id is not None and _expression(invocation.continue_id) is not None:
                invocation.references["continue_id"] = invocation.continue_id
            continue
        if name not in _VALUE_OPTIONS:
            raise ValidationError(
                f"Unknown option {name}; see `%openhands --help` (put `--` before a message that starts with '-')."
            )
        if has_equals:
            value = inline_value
        else:
            value_token = _TOKEN.search(line, position)
            value = value_token.group() if value_token else ""
            position = value_token.end() if value_token else position
        value = _unquote(value)
        if not value or value.startswith("--"):  # `--repo --wait msg` or `--repo=`: a forgotten value
            raise ValidationError(f"{name} needs a value; see `%openhands --help`.")
        setattr(invocation, _VALUE_OPTIONS[name], value)
        if name == "--watch" and _expression(value) is not None:
            invocation.references["watch"] = value
    if invocation.map_over is not None and (invocation.follow_up or invocation.watch is not None
                                            or invocation.reattach):
        used = "--continue" if invocation.follow_up else "--watch" if invocation.watch is not None else "--reattach"
        raise ValidationError(f"--map starts a new conversation per item; it does not go with {used} (use one of "
                              "them); nothing was sent.")
    if invocation.context is not None:
        names = tuple(n.strip() for n in str(invocation.context).split(",") if n.strip())
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if not names or bad:
            raise ValidationError(f"--context takes variable names separated by commas (e.g. --context df,model), "
                                  f"got {str(invocation.context)[:60]!r}.")
        invocation.context = names
    if invocation.cells is not None:
        try:
            invocation.cells = int(str(invocation.cells))
        except ValueError:
            raise ValidationError(f"--cells takes a number of cells, got {invocation.cells!r}.") from None
        if not 1 <= invocation.cells <= 50:
            raise ValidationError("--cells takes a number from 1 to 50.")
    if invocation.map_over is not None and not _NAME.fullmatch(invocation.map_over):
        raise ValidationError(f"--map takes the name of a list in the notebook, got {invocation.map_over[:60]!r}.")
    if invocation.max_running is not None:
        if invocation.map_over is None:
            raise ValidationError("--max-running goes with --map.")
        try:
            invocation.max_running = int(str(invocation.max_running))
        except ValueError:
            raise ValidationError(f"--max-running takes a number, got {invocation.max_running!r}.") from None
        if not 1 <= invocation.max_running <= 100:
            raise ValidationError("--max-running takes a number from 1 to 100.")
    if invocation.timeout is not None:
        try:
            invocation.timeout = float(invocation.timeout)
        except ValueError:
            raise ValidationError(f"--timeout takes a number of seconds, got {invocation.timeout!r}.") from None
        if not invocation.timeout > 0:
            raise ValidationError("--timeout must be a positive number of seconds.")
        if not invocation.wait:
            raise ValidationError("--timeout only makes sense with --wait.")
    if invocation.api is not None:
        invocation.api = invocation.api.lower()
        if invocation.api not in ("auto", "v1", "v0"):
            raise ValidationError(f"--api takes auto, v1 or v0, got {invocation.api!r}.")
    if cell is None and not dashed and _command(invocation, rest):
        return invocation
    if cell is not None:
        if rest.strip():
            raise ValidationError(
                f"Unexpected text after the options on the %%openhands line: {rest.strip()[:40]!r}; "
                "the message goes in the cell body."
            )
        invocation.message = cell
    else:
        invocation.message = rest
    if invocation.watch is not None and invocation.message.strip():
        raise ValidationError("--watch shows an existing conversation; it takes no message.")
    if invocation.reattach and (invocation.message.strip() or invocation.watch is not None):
        raise ValidationError("--reattach finds the conversations by itself; it takes no message and no --watch.")
    if invocation.follow_up and invocation.watch is not None:
        raise ValidationError("--continue sends a message to a conversation; --watch only shows one: use one of them.")
    return invocation


def _command(invocation: Invocation, rest: str) -> bool:
    """Whether ``rest`` is a whole command (then ``invocation`` holds it); False leaves it a message."""
    words = rest.split()
    if not words or words[0] not in COMMANDS:
        return False
    name, arguments = words[0], words[1:]
    if name == "fix":  # "fix" alone, or followed by options only: "fix the flaky test" is a task
        if arguments and not arguments[0].startswith("-"):
            return False
        if invocation.follow_up or invocation.watch is not None or invocation.reattach or invocation.map_over:
            return False
        rest_options = parse_invocation(" ".join(arguments))
        if rest_options.message.strip() or rest_options.command:
            return False
        if rest_options.map_over is not None:
            raise ValidationError("--map takes a task template with {item}; `fix` is the last error, one task: "
                                  "use one of them; nothing was sent.")
        for option, value in vars(rest_options).items():
            if value not in (None, False, "") and option != "message":
                setattr(invocation, option, value)
        invocation.command = "fix"
        return True
    if (invocation.follow_up or invocation.watch is not None or invocation.reattach or invocation.wait
            or invocation.map_over is not None):
        return False  # options of a message came first: it is a message
    if name == "list":
        options: dict[str, object] = {}
        i = 0
        while i < len(arguments):
            word, _, inline = arguments[i].partition("=")
            if word in _LIST_FLAGS and not inline:
                options[_LIST_FLAGS[word]] = True
            elif word in _LIST_VALUES:
                value = inline or (arguments[i + 1] if i + 1 < len(arguments) and not inline else "")
                i += 0 if inline else 1
                if not value or value.startswith("--"):
                    raise ValidationError(f"list {word} needs a value; see `%openhands --help`.")
                options[_LIST_VALUES[word]] = _unquote(value)
            else:
                return False  # "list the TODOs in src/": a task
            i += 1
        if "limit" in options:
            try:
                options["limit"] = int(str(options["limit"]))
            except ValueError:
                raise ValidationError(f"list --limit takes a whole number, got {options['limit']!r}.") from None
            if not 1 <= int(options["limit"]) <= 1000:  # type: ignore[call-overload]
                raise ValidationError("list --limit takes a number from 1 to 1000.")
        if options.get("here") and ("repo" in options or options.get("running")):
            raise ValidationError("list --here shows this notebook's conversations; it takes no --repo or --running.")
        if invocation.repo and "repo" in options:
            raise ValidationError("--repo was given twice.")
        invocation.command = name
        for key, value in options.items():
            setattr(invocation, key, value)
        return True
    yes = "--yes" in arguments and name == "delete"
    ids = [a for a in arguments if a != "--yes"] if yes else arguments
    if len(ids) == 1 and _is_id_argument(ids[0]) and len(ids) + yes == len(arguments):
        invocation.command, invocation.target, invocation.yes = name, ids[0], yes
        if _expression(ids[0]) is not None:
            invocation.references["target"] = ids[0]
        return True
    if len(ids) > 1 and all(_is_id_argument(word) for word in ids):  # no task reads "pause <id> <id>"
        raise ValidationError(f"`%openhands {name}` takes one conversation id, got {len(ids)}: one line per "
                              "conversation; nothing was sent.")
    if not arguments:  # a bare "pause": never a task of one word, never an action on a guessed conversation
        raise ValidationError(
            f"`%openhands {name}` needs a conversation id (see `%openhands list`); to send the word as a task, "
            f"write `%openhands -- {name}`."
        )
    return False


# ---------------------------------------------------------------------------------------------------- references
def _expression(token: str) -> str | None:
    """The expression of an id argument written ``{expr}`` or ``$name``, or None when the token is neither (then it
    is a word: ``$5`` and ``{a}{b}`` are not references). ``{expr}`` is what a ``{{expr}}`` placeholder takes."""
    if token.startswith("$"):
        dollar = _DOLLAR.fullmatch(token)
        return dollar.group(1) if dollar else None
    if not (token.startswith("{") and token.endswith("}")) or token.startswith("{{"):
        return None
    from .context import _parse_placeholder

    try:
        _, _, end = _parse_placeholder("{" + token + "}", 0)
    except ValidationError:
        return None
    return token[1:-1] if end == len(token) + 2 else None


def _is_id_argument(token: str) -> bool:
    return bool(ID_LIKE.fullmatch(token)) or _expression(token) is not None


def resolve_references(invocation: Invocation, namespace: Mapping[str, Any]) -> Invocation:
    """Put the ids in place of the ``{expr}`` / ``$name`` id arguments, from the notebook's ``namespace``: a
    string that looks like an id (or a link), or a conversation handle or snapshot (its id, else its start task's).
    Anything else is one :class:`ValidationError` line, before anything is sent."""
    for name, token in invocation.references.items():
        setattr(invocation, name, _resolve(token, namespace, _as_task_hint(invocation, token)))
    invocation.references = {}
    return invocation


def _as_task_hint(invocation: Invocation, token: str) -> str:
    if invocation.command:
        return f" (to send the line as a task, write `%openhands -- {invocation.command} {token}`)"
    if invocation.follow_up:
        return " (for a follow-up text that starts with it, write `--continue --` before the text)"
    return ""


def _resolve(token: str, namespace: Mapping[str, Any], hint: str) -> str:
    from .context import _parse_placeholder

    expression = _expression(token)
    assert expression is not None  # (only references are recorded)
    name, steps, _ = _parse_placeholder("{{" + expression + "}}", 0)
    if name not in namespace:
        raise ValidationError(f"{token}: no variable {name!r} in the notebook{hint}; nothing was sent.")
    value = namespace[name]
    try:
        for kind, key in steps:
            value = getattr(value, key) if kind == "attr" else value[key]  # type: ignore[call-overload]
    except Exception as error:  # whatever the object raises, one line naming it
        detail = " ".join(str(error).split())[:120]
        raise ValidationError(f"{token}: {type(error).__name__}{': ' + detail if detail else ''}; nothing was "
                              "sent.") from None
    found = _id_of(value)
    if found is None:
        what = (f"text of {len(value)} characters" if isinstance(value, str) else "None" if value is None
                else f"a {type(value).__name__}")
        raise ValidationError(f"{token} is not a conversation id ({what}): give a variable holding an id, a "
                              f"conversation link or a handle{hint}; nothing was sent.")
    return found


def _id_of(value: Any) -> str | None:
    """An id argument's value: an id or a link as text, or what a handle or a snapshot knows it by."""
    if isinstance(value, str):
        value = value.strip()
        return value if ID_LIKE.fullmatch(value) else None
    from .handle import ConversationHandle
    from .models import Conversation

    if isinstance(value, ConversationHandle):
        return value.id or value.task_id
    if isinstance(value, Conversation):
        return value.conversation_id or value.start_task_id
    return None
