"""The magic's commands: one module each under this package, run by :func:`run` through the table of commands
(:data:`openhands_magics.arguments.COMMANDS`), as jupysql's ``%sqlcmd`` routes its subcommands.

A command is ``run(context, invocation)`` in its own module: it gets a small frozen :class:`Context` (the shell, the
process's session, the endpoint, the settings), never the magics object, and it never imports :mod:`.magics`.
Adding one is a module here and a row in the table. The modules are imported when their command first runs, so
``%load_ext`` imports this package's ``__init__`` only: it holds nothing heavy.

Every line the magic and its commands print goes through :func:`say`, which shows control characters as marks
(:func:`~openhands_magics.views.plain`): those lines carry server text (a status, a title) and text from a saved
notebook (a base URL), and none of it may reach a terminal as an escape sequence or a forged line.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import arguments
from ..arguments import Command, Invocation

if TYPE_CHECKING:
    from ..context import ErrorLog
    from ..session import Endpoint, Session

__all__ = ["Context", "Settings", "headless", "route", "run", "say"]


def say(line: str, *, error: bool = True) -> None:
    """One line for the user, ``openhands: <line>`` (stderr for errors and warnings, else stdout): the one place
    terminal lines are made safe, so no server or notebook text in them can send an escape sequence, and no key the
    package knows (an "Unexpected error" line carries a foreign exception's text, which no error of ours vetted)."""
    from .._secrets import blank
    from ..views import plain

    print(f"openhands: {plain(blank(line))}", file=sys.stderr if error else sys.stdout)


def headless(shell: Any) -> bool:
    """Run by nbconvert --execute or papermill: their kernel client (nbclient) sends every cell with
    ``allow_stdin=False``, where JupyterLab, Notebook and VS Code allow input."""
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and getattr(kernel, "_allow_stdin", True) is False


@dataclass(frozen=True)
class Settings:
    """The magic's settings a command reads (``%config OpenHandsMagics.<name>``), as one value."""

    base_url: str | None = None
    api: str | None = None
    timeout: float = 30.0
    ca_bundle: str | None = None
    use_env_proxy: bool | None = None
    expand: bool = False
    headless_wait: bool = True
    once: bool | None = None
    org: str | None = None


@dataclass(frozen=True)
class Context:
    """What a command works with: the shell (None outside IPython), the process's session, the settings, the
    endpoint (None for a command that talks to no server) and the shell's record of errors (None before the
    first)."""

    shell: Any
    session: Session
    settings: Settings
    endpoint: Endpoint | None = None
    errors: ErrorLog | None = None

    @property
    def namespace(self) -> dict[str, Any]:
        """The notebook's variables (the shell's own namespace, not a copy)."""
        return self.shell.user_ns if self.shell is not None else {}

    @property
    def headless(self) -> bool:
        """Whether nobody can watch or answer (nbconvert, papermill)."""
        return headless(self.shell)

    @property
    def server(self) -> Endpoint:
        """The endpoint of a command that talks to a server (its table row says so)."""
        assert self.endpoint is not None, "this command's row says it needs no server"
        return self.endpoint


def route(invocation: Invocation) -> Command:
    """The first row of the table that fits the line: its command word, else the mode its options choose."""
    for command in arguments.COMMANDS:
        if command.word:
            if invocation.command == command.name:
                return command
        elif command.option is None or getattr(invocation, command.option) not in (None, False):
            return command
    raise AssertionError("the table ends with the default command")  # pragma: no cover


def run(command: Command, context: Context, invocation: Invocation) -> Any:
    """Run ``command``'s module (imported on its first use)."""
    module = importlib.import_module(f"{__name__}.{command.module}")
    return module.run(context, invocation)
