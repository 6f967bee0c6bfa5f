"""Parsing ``%openhands [options] message``: options first, then the message *verbatim*.

argparse/shlex would eat the quotes and backslashes of a message like ``Fix "naïve" {x} parsing``, so this parser
reads whitespace-separated option tokens from the left and hands back the untouched rest of the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ValidationError

__all__ = ["USAGE", "Invocation", "parse_invocation"]

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
  --reattach           after a kernel restart: live panels again for the conversations this notebook started
  --login              ask for the API key (kept in memory only, never in the notebook)
  --help               this text
  --                   end of options: everything after it is the message
conv = %openhands ...  gives a handle: conv.id, conv.task_id, conv.url, conv.status, conv.refresh(), conv.wait()"""

_VALUE_OPTIONS = {"--repo": "repo", "--base-url": "base_url", "--api": "api", "--timeout": "timeout", "--watch": "watch"}
_FLAG_OPTIONS = {"--reattach": "reattach", "--wait": "wait", "--no-panel": "no_panel", "--login": "login", "--help": "help", "-h": "help"}
_TOKEN = re.compile(r"\S+")


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


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_invocation(line: str, cell: str | None = None) -> Invocation:
    """Read options off the front of ``line``; the rest (or the cell body) is the message, unchanged."""
    invocation = Invocation()
    position = 0
    while True:
        token = _TOKEN.search(line, position)
        if token is None or not token.group().startswith("-"):
            rest = line[token.start():] if token else ""
            break
        position = token.end()
        name, has_equals, inline_value = token.group().partition("=")
        if name == "--":
            rest = line[position:]
            rest = rest[1:] if rest[:1] == " " else rest
            break
        if name in _FLAG_OPTIONS and not has_equals:
            setattr(invocation, _FLAG_OPTIONS[name], True)
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
    return invocation
