"""Parsing ``%openhands [options] message``: options first, then the message *verbatim*; and the two tables that
say what the line may hold (:data:`OPTIONS`, :data:`COMMANDS`), from which the parser, ``--help`` (:data:`USAGE`)
and the magic's docstring (:func:`docstring`, what ``%openhands?`` shows) are all made, so none can drift.

argparse/shlex would eat the quotes and backslashes of a message like ``Fix "naïve" {x} parsing``, so this parser
reads whitespace-separated option tokens from the left and hands back the untouched rest of the line.

Commands (``list``, ``pause ID``, ``resume ID``, ``delete ID``, ``fix``) are recognised only when the *whole* rest of
the line fits them: ``%openhands list --running`` lists, while ``%openhands list the TODOs in src/`` and ``%openhands
pause the nightly job`` are tasks, as they always were. The argument of ``pause``/``resume``/``delete`` must look
like an id (32 hex digits, a UUID, or a conversation link), so no sentence can fit. A bare command word without its
id is refused with a line saying how to send it as a task (``%openhands -- pause``); ``--`` always forces a task.

IPython's ``{expr}`` / ``$name`` expansion is off for this magic (a task's braces and dollars are the user's text),
so the id argument, and only it, may be written that way: ``pause {conv.id}``, ``delete $cid --yes``, ``--continue
{ids[0]}``, ``--watch $cid``. The parser only marks such a token as a reference (``Invocation.references``): the
namespace is the notebook's, so the magic front resolves it (:func:`resolve_references`), with the ``{{ }}``
placeholders' own parser (names, ``.attribute``, ``[index]``; never ``eval``). A line with a reference in the id's
place is that command, never a task: if the variable is missing or is not an id, it is one line and nothing is sent.

Adding an option is one :class:`Option` row (and its :class:`Invocation` field); adding a command is one
:class:`Command` row and its module under :mod:`openhands_magics.commands`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ValidationError

__all__ = [
    "COMMANDS",
    "OPTIONS",
    "USAGE",
    "Command",
    "Invocation",
    "Option",
    "docstring",
    "parse_invocation",
    "resolve_references",
    "usage",
]


@dataclass
class Invocation:
    """What one magic line asks for: a field per :class:`Option` row (its ``attribute``), the message, and which
    command the whole line is."""

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
    #: ``list`` / ``pause`` / ``resume`` / ``delete`` / ``fix`` when the whole line is that command; ``target`` its id.
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
    #: ``--max-cost USD``: the budget guard (the agent is interrupted once its live cost passes it).
    max_cost: float | None = None
    #: ``--upload a,b``: notebook variables and files put in the workspace's ``data/`` before the agent runs.
    upload: str | tuple[str, ...] | None = None
    #: ``--returns SCHEMA``: fields (``rows:int,mean:float``) or a schema variable; the result is read into
    #: ``conv.result``.
    returns: str | None = None
    #: ``--once``: a re-run of the same task attaches to the conversation it started; ``--new``: start another.
    once: bool = False
    new: bool = False
    #: The start's settings (:mod:`.start_options`): ``--branch``, ``--model``, ``--plan``, ``--instructions``
    #: (its text, a file's read), ``--title``, ``--share``, ``--secret A,B`` (names only), ``--sandbox``; and
    #: ``--org`` (``X-Org-Id``), ``--queue`` (wait for a place when the account runs its most), ``--save`` (with
    #: ``--login``: keep the key in OpenHands' CLI file).
    branch: str | None = None
    model: str | None = None
    plan: bool = False
    instructions: str | None = None
    title: str | None = None
    share: bool = False
    secret: str | tuple[str, ...] | None = None
    sandbox: str | None = None
    org: str | None = None
    queue: bool = False
    save: bool = False
    #: Id arguments written ``{expr}`` / ``$name``: field name (``target``, ``continue_id``, ``watch``) -> the token
    #: as typed, which the field holds until :func:`resolve_references` puts the id there.
    references: dict[str, str] = field(default_factory=dict)


#: A row's check: the value as typed and the whole line read so far -> the value to keep (or a ValidationError).
Check = Callable[[Any, Invocation], Any]


@dataclass(frozen=True)
class Option:
    """One option of the magic line: how it is written, where it goes, how it is checked and how it is explained."""

    #: How it is written (the first is the name the help and the errors use): ``("--help", "-h")``.
    flags: tuple[str, ...]
    #: The :class:`Invocation` field it sets.
    attribute: str
    #: ``flag`` (True when given), ``value`` (takes the next token or ``=value``), ``optional-id`` (takes the next
    #: token only if it looks like an id: ``--continue [ID]``), ``end`` (``--``: the message follows).
    kind: str
    help: str
    #: The value's name in the help: ``--repo OWNER/REPO``.
    metavar: str = ""
    #: Run once the whole line is read (in the table's order), only for an option that was given.
    check: Check | None = None
    #: The command words it belongs to (``("list",)``: read only after ``list``); empty: the magic line's own
    #: options, read before the message whatever follows.
    applies: tuple[str, ...] = ()
    #: Whether its value is a conversation id that may be written ``{expr}`` / ``$name``.
    reference: bool = False
    #: An :class:`Invocation` field set True whenever it is given, with or without its value (``--continue``'s
    #: ``follow_up``: the id is optional).
    marks: str = ""

    @property
    def name(self) -> str:
        return self.flags[0]

    @property
    def spelled(self) -> str:
        """How the help shows it: ``--repo OWNER/REPO``, ``--continue [ID]``, ``--help, -h``."""
        metavar = f" [{self.metavar}]" if self.kind == "optional-id" else f" {self.metavar}" if self.metavar else ""
        return ", ".join(self.flags) + metavar


@dataclass(frozen=True)
class Command:
    """One thing the magic does, and the module under :mod:`openhands_magics.commands` that does it (its
    ``run(context, invocation)``). A command with a word (``list``) is the line only when the whole line fits it;
    a mode (``watch``) is chosen by the option named ``option``; the first row that fits a line runs it."""

    name: str
    module: str
    #: ``word`` commands: ``id`` (one conversation id, and its own flags), ``options`` (its own options only),
    #: ``start-options`` (the magic's options, no message); ``mode``: no word, chosen by ``option``.
    takes: str = "mode"
    #: For a mode: the :class:`Invocation` field that selects it (None: the default, when nothing else fits).
    option: str | None = None
    #: For --help: how it is written (without ``%openhands``) and what it does.
    usage: str = ""
    help: str = ""
    #: Whether it talks to a server: then the endpoint is resolved first (no key, a bad URL: one line).
    endpoint: bool = True
    #: ``start-options``: what the command is, for the line that refuses ``--map`` with it.
    what: str = ""
    #: ``options``: a check of the options given together (their values, and the magic line's), once each is read.
    check: Callable[[dict[str, Any], Invocation], None] | None = None

    @property
    def word(self) -> bool:
        return self.takes != "mode"


# ---------------------------------------------------------------------------------------------------- checks
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
API_VALUES = ("auto", "v1", "v0")


def _whole_number(value: Any, name: str, low: int, high: int, *, what: str = "a number") -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ValidationError(f"{name} takes {what}, got {value!r}.") from None
    if not low <= number <= high:
        raise ValidationError(f"{name} takes a number from {low} to {high}.")
    return number


def _check_api(value: str, _: Invocation) -> str:
    value = value.lower()
    if value not in API_VALUES:
        raise ValidationError(f"--api takes auto, v1 or v0, got {value!r}.")
    return value


def _check_timeout(value: Any, invocation: Invocation) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValidationError(f"--timeout takes a number of seconds, got {value!r}.") from None
    if not seconds > 0:
        raise ValidationError("--timeout must be a positive number of seconds.")
    if not invocation.wait:
        raise ValidationError("--timeout only makes sense with --wait.")
    return seconds


def _check_context(value: Any, _: Invocation) -> tuple[str, ...]:
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    if not names or [n for n in names if not _NAME.fullmatch(n)]:
        raise ValidationError(
            f"--context takes variable names separated by commas (e.g. --context df,model), got {str(value)[:60]!r}."
        )
    return names


def _check_cells(value: Any, _: Invocation) -> int:
    return _whole_number(value, "--cells", 1, 50, what="a number of cells")


def _check_map(value: str, invocation: Invocation) -> str:
    if invocation.follow_up or invocation.watch is not None or invocation.reattach:
        used = "--continue" if invocation.follow_up else "--watch" if invocation.watch is not None else "--reattach"
        raise ValidationError(
            f"--map starts a new conversation per item; it does not go with {used} (use one of them); nothing was sent."
        )
    if not _NAME.fullmatch(value):
        raise ValidationError(f"--map takes the name of a list in the notebook, got {value[:60]!r}.")
    return value


def _check_max_running(value: Any, invocation: Invocation) -> int:
    if invocation.map_over is None:
        raise ValidationError("--max-running goes with --map.")
    return _whole_number(value, "--max-running", 1, 100)


def _check_max_cost(value: Any, _: Invocation) -> float:
    from .handle import validate_max_cost

    dollars = validate_max_cost(value)
    assert dollars is not None
    return dollars


def _check_once(value: Any, invocation: Invocation) -> bool:
    if value and invocation.new:
        raise ValidationError("--once and --new ask for opposite things; give one of them.")
    return bool(value)


def _start_option(name: str) -> Check:
    """The row's check: the value as :meth:`StartOptions.make` takes it (the Python API's check, so both agree)."""

    def check(value: Any, _: Invocation) -> Any:
        from .start_options import StartOptions

        return getattr(StartOptions.make(**{name: value}), name)

    return check


def _check_instructions(value: Any, invocation: Invocation) -> str:
    from .start_options import read_instructions

    return str(_start_option("instructions")(read_instructions(str(value)), invocation))


def _check_secret(value: Any, _: Invocation) -> tuple[str, ...]:
    from .start_options import check_secret_names

    return check_secret_names(str(value))


def _check_org(value: Any, _: Invocation) -> str:
    from .validation import validate_org

    return validate_org(value)


def _check_queue(value: Any, invocation: Invocation) -> bool:
    if value and (invocation.watch is not None or invocation.follow_up or invocation.reattach):
        raise ValidationError("--queue waits for a place to start a new conversation; it goes with a task only.")
    if value and invocation.map_over is not None:
        raise ValidationError("--queue is for one start: --map queues its items by itself (see --max-running).")
    return bool(value)


def _check_save(value: Any, invocation: Invocation) -> bool:
    if value and not invocation.login:
        raise ValidationError("--save goes with --login (it keeps the key in ~/.openhands/cloud/api_key.txt).")
    return bool(value)


def _check_upload(value: Any, invocation: Invocation) -> tuple[str, ...]:
    if invocation.watch is not None or invocation.reattach:
        raise ValidationError("--upload goes with a task or a follow-up (the files go in before it); nothing was sent.")
    names = tuple(n.strip() for n in str(value).split(",") if n.strip())
    if not names:
        raise ValidationError(
            "--upload takes notebook variables or files separated by commas, e.g. --upload df,raw.csv"
        )
    return names


def _check_limit(value: Any, _: Invocation) -> int:
    return _whole_number(value, "list --limit", 1, 1000, what="a whole number")


def _check_list(options: dict[str, Any], invocation: Invocation) -> None:
    if options.get("here") and ("repo" in options or options.get("running")):
        raise ValidationError("list --here shows this notebook's conversations; it takes no --repo or --running.")
    if invocation.repo and "repo" in options:
        raise ValidationError("--repo was given twice.")


# ---------------------------------------------------------------------------------------------------- the tables
#: Every option, in the order the help shows them and their checks run.
OPTIONS: tuple[Option, ...] = (
    Option(("--repo",), "repo", "value", "repository the agent works on", "OWNER/REPO"),
    Option(("--branch",), "branch", "value", "the branch of --repo to start from", "BRANCH", _start_option("branch")),
    Option(
        ("--model",),
        "model",
        "value",
        "the LLM for this conversation (V1), as the server lists it",
        "MODEL",
        _start_option("model"),
    ),
    Option(("--plan",), "plan", "flag", "the planning agent: it writes a plan first (V1)"),
    Option(
        ("--instructions",),
        "instructions",
        "value",
        "added to the agent's system message: the text, or @FILE for a file's",
        "TEXT|@FILE",
        _check_instructions,
    ),
    Option(("--title",), "title", "value", "the conversation's title (V1)", "TITLE", _start_option("title")),
    Option(("--share",), "share", "flag", "make it public, with a share link on the card (V1)"),
    Option(
        ("--secret",),
        "secret",
        "value",
        "give the agent these secrets, each the value of the environment variable of that name (V1; never shown)",
        "NAME[,NAME]",
        _check_secret,
    ),
    Option(
        ("--sandbox",),
        "sandbox",
        "value",
        "start in this existing sandbox (a warm one) instead of a new one (V1)",
        "ID",
        _start_option("sandbox"),
    ),
    Option(
        ("--org",),
        "org",
        "value",
        "the organisation to act in, for an account in several (X-Org-Id; or %config OpenHandsMagics.org)",
        "ID",
        _check_org,
    ),
    Option(
        ("--base-url",),
        "base_url",
        "value",
        "server (default: %config OpenHandsMagics.base_url, $OPENHANDS_BASE_URL, app.all-hands.dev)",
        "URL",
    ),
    Option(
        ("--api",),
        "api",
        "value",
        "API the server speaks (default: %config OpenHandsMagics.api, $OPENHANDS_API, auto)",
        "auto|v1|v0",
        _check_api,
    ),
    Option(
        ("--wait",), "wait", "flag", "block until the status is final, printing each change (for papermill / nbconvert)"
    ),
    Option(
        ("--timeout",),
        "timeout",
        "value",
        "give up waiting after this long (with --wait); the conversation goes on",
        "SECONDS",
        _check_timeout,
    ),
    Option(("--no-panel",), "no_panel", "flag", "plain text instead of the widget panel"),
    Option(
        ("--watch",),
        "watch",
        "value",
        "a live panel for an existing conversation (its id, link or start task id); nothing is started",
        "ID",
        reference=True,
    ),
    Option(
        ("--continue",),
        "continue_id",
        "optional-id",
        "a follow-up to a conversation (default: the latest), resuming it if paused; same live panel",
        "ID",
        reference=True,
        marks="follow_up",
    ),
    Option(
        ("--expand",),
        "expand",
        "flag",
        "fill {{name}}, {{df.shape}}, {{items[0]}} from the notebook (or %config OpenHandsMagics.expand)",
    ),
    Option(
        ("--context",),
        "context",
        "value",
        "append a short description of these variables (DataFrames: shape, dtypes, head)",
        "A,B",
        _check_context,
    ),
    Option(
        ("--cells",), "cells", "value", "append the source of the N cells above (and their errors)", "N", _check_cells
    ),
    Option(
        ("--upload",),
        "upload",
        "value",
        "put these DataFrames (as Parquet) and files in the workspace's data/ before the agent runs (V1)",
        "A,B",
        _check_upload,
    ),
    Option(
        ("--returns",),
        "returns",
        "value",
        "ask for a typed result (fields rows:int,mean:float or a schema variable): conv.result",
        "SCHEMA",
    ),
    Option(("--dry-run",), "dry_run", "flag", "print exactly what would be sent; send nothing"),
    Option(
        ("--once",),
        "once",
        "flag",
        "run this task once: a re-run (Run All, papermill) attaches to the conversation it started (default under "
        "papermill and nbconvert)",
        check=_check_once,
    ),
    Option(("--new",), "new", "flag", "start a new conversation even if this same task was started before"),
    Option(
        ("--map",),
        "map_over",
        "value",
        "one conversation per item of the list ITEMS, the message a template with {item}",
        "ITEMS",
        _check_map,
    ),
    Option(
        ("--max-running",),
        "max_running",
        "value",
        "with --map: at most N running at once (default 10); the rest wait in a queue",
        "N",
        _check_max_running,
    ),
    Option(
        ("--queue",),
        "queue",
        "flag",
        "when the account already runs its most conversations, wait and start this one as soon as one ends",
        check=_check_queue,
    ),
    Option(
        ("--max-cost",),
        "max_cost",
        "value",
        "interrupt the agent once its live cost passes this many dollars (and say so on the card)",
        "USD",
        _check_max_cost,
    ),
    Option(
        ("--reattach",),
        "reattach",
        "flag",
        "after a kernel restart: live panels again for the conversations this notebook started",
    ),
    Option(
        ("--login",),
        "login",
        "flag",
        "ask for the API key (kept in memory only); without one, OPENHANDS_API_KEY or OpenHands' CLI key is used",
    ),
    Option(
        ("--save",),
        "save",
        "flag",
        "with --login: also keep the key in ~/.openhands/cloud/api_key.txt (mode 0600), as OpenHands' CLI does",
        check=_check_save,
    ),
    Option(("--help", "-h"), "help", "flag", "this text"),
    Option(("--",), "message", "end", "end of options: everything after it is the message"),
    # the options of a command, read only after its word
    Option(("--running",), "running", "flag", "only the conversations not over and not paused", applies=("list",)),
    Option(("--repo",), "repo", "value", "only those on this repository", "R", applies=("list",)),
    Option(("--limit",), "limit", "value", "at most N rows (default 20)", "N", _check_limit, applies=("list",)),
    Option(
        ("--here",),
        "here",
        "flag",
        "the ones this notebook started, with live panels again for those not over",
        applies=("list",),
    ),
    Option(("--yes",), "yes", "flag", "without asking first", applies=("delete",)),
)

#: Everything the magic does: the first row that fits a line runs it (so ``--dry-run`` comes before the words).
COMMANDS: tuple[Command, ...] = (
    Command("dry-run", "dry_run", option="dry_run", endpoint=False),
    Command(
        "list",
        "list",
        "options",
        usage="list",
        check=_check_list,
        help="the account's conversations as a table (--here: the ones this notebook started, with live panels "
        "again for those not over)",
    ),
    Command(
        "fix",
        "fix",
        "start-options",
        usage="fix [options]",
        what="the last error, one task",
        help="the last error (its traceback and the cell that raised it) becomes the task",
    ),
    Command("stop", "stop", "id", usage="stop ID", help="stop the agent at once (the conversation stays)"),
    Command("pause", "control", "id", usage="pause ID", help="pause a conversation's sandbox"),
    Command("resume", "control", "id", usage="resume ID", help="resume a paused conversation's sandbox"),
    Command(
        "delete", "control", "id", usage="delete ID", help="delete a conversation for good (asks first unless --yes)"
    ),
    Command("reattach", "reattach", option="reattach"),
    Command("watch", "watch", option="watch"),
    Command("fan-out", "fan_out", option="map_over"),
    Command("follow-up", "follow_up", option="follow_up"),
    Command("start", "start"),
)

_TOKEN = re.compile(r"\S+")
#: An option's value in quotes, spaces and all (``--title 'Login fix'``): a quote, anything but it, the same quote,
#: then the end of the token.
_QUOTED = re.compile(r"'[^']*'(?=\s|$)|\"[^\"]*\"(?=\s|$)")


def _skip_space(line: str, position: int) -> int:
    while position < len(line) and line[position].isspace():
        position += 1
    return position


_HEX_ID = r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
#: What a command's argument must look like: an id or a conversation's link, never a word of a sentence.
ID_LIKE = re.compile(rf"(?:{_HEX_ID})|https?://\S+/conversations/(?:{_HEX_ID})/?")
#: ``$name`` as IPython reads it: a name and ``.attribute`` steps.
_DOLLAR = re.compile(r"\$([^\W\d]\w*(?:\.[^\W\d]\w*)*)")
#: The magic line's options by how they are written, and each command's own options by its word.
_LINE_OPTIONS = {flag: row for row in OPTIONS if not row.applies for flag in row.flags}
#: The magic line's options whose value is checked once read (as the line gives them, in the table's order).
_CHECKED = tuple((row.attribute, row.check) for row in OPTIONS if row.check is not None and not row.applies)
#: The commands that are a word (``list``, ``stop ID``) by that word (the first in the table for each), and the
#: table they were read from: a table changed since (a plugin's row) is read again.
_words: tuple[tuple[Command, ...], dict[str, Command]] = ((), {})


def _word_command(word: str) -> Command | None:
    global _words
    table, by_word = _words
    if table is not COMMANDS:
        by_word = {command.name: command for command in reversed(COMMANDS) if command.word}
        _words = (COMMANDS, by_word)
    return by_word.get(word)


def _options_of(word: str) -> dict[str, Option]:
    return {flag: row for row in OPTIONS if word in row.applies for flag in row.flags}


# ---------------------------------------------------------------------------------------------------- the help
_WIDTH, _COLUMN = 118, 23


def _entry(left: str, text: str) -> list[str]:
    """``left`` and ``text`` in two columns, ``text`` wrapped under itself."""
    import textwrap

    lines = textwrap.wrap(text, _WIDTH - _COLUMN, break_on_hyphens=False, break_long_words=False) or [""]
    if len(left) > _COLUMN - 2:  # (its text goes on the next line)
        return [left, *(" " * _COLUMN + line for line in lines)]
    return [f"{left:<{_COLUMN - 2}}  {lines[0]}", *(" " * _COLUMN + line for line in lines[1:])]


def _command_usage(command: Command) -> str:
    own = " ".join(f"[{row.spelled}]" for row in OPTIONS if command.name in row.applies)
    return f"%openhands {command.usage}" + (f" {own}" if own else "")


_NOTES = (
    "(commands only when the whole line fits them: `%openhands list the TODOs` is a task)",
    "an ID (here, --continue, --watch) may be a variable: {conv.id}, {ids[0]}, $cid",
)
_HANDLE = (
    "conv = %openhands ...",
    "gives a handle: conv.id .task_id .url .status .answer .pull_requests .cost "
    ".changes() .diff() .send(text) .pause() .resume() .delete() .refresh() .wait()",
)


def usage() -> str:
    """What ``%openhands --help`` prints, made from the tables as they are now."""
    lines = [
        *_entry("%openhands [options] MESSAGE", "start a conversation, show a live panel"),
        *_entry("%%openhands [options]", "the cell body is the message"),
    ]
    for row in OPTIONS:
        if not row.applies:
            lines += _entry(f"  {row.spelled}", row.help)
    for command in COMMANDS:
        if command.word:
            lines += _entry(_command_usage(command), command.help)
    for note in _NOTES:
        lines += _entry("", note)
    lines += _entry(*_HANDLE)
    return "\n".join(line.rstrip() for line in lines)


#: What ``%openhands --help`` prints (as the tables were when this module was imported).
USAGE = usage()


def docstring() -> str:
    """The magic's docstring (what ``%openhands?`` shows): how to use it, every option and every command with what
    it does, made from the same tables as the parser and :data:`USAGE`."""
    options = "\n".join(f"  {line}" for row in OPTIONS if not row.applies for line in _entry(row.spelled, row.help))
    commands = []
    for command in COMMANDS:
        if command.word:
            commands += [f"  {line}" for line in _entry(_command_usage(command), command.help)]
            for row in OPTIONS:
                if command.name in row.applies:
                    commands += [f"  {line}" for line in _entry(f"    {row.spelled}", row.help)]
    notes = "\n".join(f"  {note}" for note in _NOTES)
    handle = "\n".join(f"  {line}" for line in _entry(*_HANDLE))
    return (
        "Start an OpenHands conversation and watch it live.\n\n"
        "Usage::\n\n"
        "  %openhands Check README.md for wrong information and open a PR fixing it\n"
        "  %%openhands --repo owner/repo\n"
        "  Profile data/load.py, make it 2x faster, and open a PR.\n\n"
        "Options (before the message; `--` ends them)::\n\n"
        f"{options}\n\n"
        "Commands (each one only when the whole line is that command)::\n\n"
        + "\n".join(line.rstrip() for line in commands)
        + "\n"
        f"{notes}\n\n"
        "Set the key with the OPENHANDS_API_KEY environment variable or `%openhands --login`; a conversation's\n"
        "handle (`openhands_magics.last()` is the latest one)::\n\n"
        f"{handle}\n"
    )


# ---------------------------------------------------------------------------------------------------- the parser
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
            rest = line[token.start() :] if token else ""
            break
        position = token.end()
        name, has_equals, inline_value = token.group().partition("=")
        row = _LINE_OPTIONS.get(name)
        if row is not None and row.kind == "end":
            dashed = True
            rest = line[position:]
            rest = rest[1:] if rest[:1] == " " else rest
            break
        if row is not None and row.kind == "flag" and not has_equals:
            setattr(invocation, row.attribute, True)
            continue
        if row is not None and row.kind == "optional-id":  # taken only if the next token looks like an id
            setattr(invocation, row.marks, True)
            following = _TOKEN.search(line, position)
            value: str | None = None
            if has_equals:
                value = _unquote(inline_value) or None
            elif following is not None and _is_id_argument(following.group()):
                value, position = following.group(), following.end()
            if has_equals or value is not None:
                setattr(invocation, row.attribute, value)
            value = getattr(invocation, row.attribute)
            if value is not None and row.reference and _expression(value) is not None:
                invocation.references[row.attribute] = value
            continue
        if row is None or row.kind != "value":
            raise ValidationError(
                f"Unknown option {name}; see `%openhands --help` (put `--` before a message that starts with '-')."
            )
        if has_equals:
            value = inline_value
            quoted = _QUOTED.match(line, token.start() + len(name) + 1)  # --title='a b'
            if quoted is not None and inline_value[:1] in "'\"":
                value, position = quoted.group(), quoted.end()
        else:
            value_token = _QUOTED.match(line, _skip_space(line, position)) or _TOKEN.search(line, position)
            value = value_token.group() if value_token else ""
            position = value_token.end() if value_token else position
        value = _unquote(value)
        if not value or value.startswith("--"):  # `--repo --wait msg` or `--repo=`: a forgotten value
            raise ValidationError(f"{name} needs a value; see `%openhands --help`.")
        setattr(invocation, row.attribute, value)
        if row.reference and _expression(value) is not None:
            invocation.references[row.attribute] = value
    for attribute, check in _CHECKED:
        value = getattr(invocation, attribute)
        if value is not None:
            setattr(invocation, attribute, check(value, invocation))
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
    command = _word_command(words[0]) if words else None
    if command is None:
        return False
    arguments, server = _server_options(command, invocation, words[1:])
    if not _fits(command, invocation, arguments):
        return False
    for attribute, value in server.items():  # (only for a line that is the command: a task's words stay words)
        setattr(invocation, attribute, value)
    return True


def _fits(command: Command, invocation: Invocation, arguments: list[str]) -> bool:
    if command.takes == "start-options":
        return _start_options_command(command, invocation, arguments)
    if (
        invocation.follow_up
        or invocation.watch is not None
        or invocation.reattach
        or invocation.wait
        or invocation.map_over is not None
    ):
        return False  # options of a message came first: it is a message
    if command.takes == "options":
        return _options_command(command, invocation, arguments)
    return _id_command(command, invocation, arguments)


#: The options that say which server, taken after a command's word as before it (``list --base-url URL``): left to
#: the command's own parse, they made the line a task, and a task is a billed run.
_SERVER_OPTIONS = ("--base-url", "--api")


def _server_options(command: Command, invocation: Invocation, arguments: list[str]) -> tuple[list[str], dict[str, str]]:
    """``arguments`` without the server options, and their values by :class:`Invocation` field (for a command that
    talks to a server)."""
    values: dict[str, str] = {}
    if not command.endpoint:
        return arguments, values
    rows = {flag: row for row in OPTIONS if row.flags[0] in _SERVER_OPTIONS for flag in row.flags}
    rest: list[str] = []
    i = 0
    while i < len(arguments):
        word, equals, inline = arguments[i].partition("=")
        row = rows.get(word)
        if row is None:
            rest.append(arguments[i])
            i += 1
            continue
        value = inline if equals else (arguments[i + 1] if i + 1 < len(arguments) else "")
        i += 1 if equals else 2
        if not value or value.startswith("--"):
            raise ValidationError(f"{command.name} {word} needs a value; see `%openhands --help`.")
        value = _unquote(value)
        value = row.check(value, invocation) if row.check is not None else value
        if {getattr(invocation, row.attribute), values.get(row.attribute)} - {None, value}:
            raise ValidationError(f"{word} is given twice with two values; give it once.")
        values[row.attribute] = value
    return rest, values


def _start_options_command(command: Command, invocation: Invocation, arguments: list[str]) -> bool:
    """``fix`` alone, or followed by the magic's options only: ``fix the flaky test`` is a task."""
    if arguments and not arguments[0].startswith("-"):
        return False
    if invocation.follow_up or invocation.watch is not None or invocation.reattach or invocation.map_over:
        return False
    rest_options = parse_invocation(" ".join(arguments))
    if rest_options.message.strip() or rest_options.command:
        return False
    if rest_options.map_over is not None:
        raise ValidationError(
            f"--map takes a task template with {{item}}; `{command.name}` is {command.what}: "
            "use one of them; nothing was sent."
        )
    for option, value in vars(rest_options).items():
        if value not in (None, False, "") and option != "message":
            setattr(invocation, option, value)
    invocation.command = command.name
    return True


def _options_command(command: Command, invocation: Invocation, arguments: list[str]) -> bool:
    """``list [--running] [--repo R] …``: its own options and nothing else (``list the TODOs`` is a task)."""
    rows = _options_of(command.name)
    options: dict[str, Any] = {}
    i = 0
    while i < len(arguments):
        word, _, inline = arguments[i].partition("=")
        row = rows.get(word)
        if row is not None and row.kind == "flag" and not inline:
            options[row.attribute] = True
        elif row is not None and row.kind == "value":
            value = inline or (arguments[i + 1] if i + 1 < len(arguments) and not inline else "")
            i += 0 if inline else 1
            if not value or value.startswith("--"):
                raise ValidationError(f"{command.name} {word} needs a value; see `%openhands --help`.")
            options[row.attribute] = _unquote(value)
        else:
            return False  # "list the TODOs in src/": a task
        i += 1
    for row in rows.values():
        if row.check is not None and row.attribute in options:
            options[row.attribute] = row.check(options[row.attribute], invocation)
    if command.check is not None:
        command.check(options, invocation)
    invocation.command = command.name
    for key, value in options.items():
        setattr(invocation, key, value)
    return True


def _id_command(command: Command, invocation: Invocation, arguments: list[str]) -> bool:
    """``pause ID``, ``delete ID [--yes]``: exactly one id (or a reference to one) and the command's flags once."""
    name, flags = command.name, _options_of(command.name)
    given = [word for word in arguments if word in flags]
    ids = [word for word in arguments if word not in flags]
    if len(ids) == 1 and _is_id_argument(ids[0]) and len(set(given)) == len(given):
        invocation.command, invocation.target = name, ids[0]
        for word in given:
            setattr(invocation, flags[word].attribute, True)
        if _expression(ids[0]) is not None:
            invocation.references["target"] = ids[0]
        return True
    if len(ids) > 1 and all(_is_id_argument(word) for word in ids):  # no task reads "pause <id> <id>"
        raise ValidationError(
            f"`%openhands {name}` takes one conversation id, got {len(ids)}: one line per "
            "conversation; nothing was sent."
        )
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
            value = getattr(value, str(key)) if kind == "attr" else value[key]
    except Exception as error:  # whatever the object raises, one line naming it
        detail = " ".join(str(error).split())[:120]
        raise ValidationError(
            f"{token}: {type(error).__name__}{': ' + detail if detail else ''}; nothing was sent."
        ) from None
    found = _id_of(value)
    if found is None:
        what = (
            f"text of {len(value)} characters"
            if isinstance(value, str)
            else "None"
            if value is None
            else f"a {type(value).__name__}"
        )
        raise ValidationError(
            f"{token} is not a conversation id ({what}): give a variable holding an id, a "
            f"conversation link or a handle{hint}; nothing was sent."
        )
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
