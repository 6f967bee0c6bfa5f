# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 15: one option table and one table of commands make the parser, ``--help``, ``USAGE`` and the magic's
docstring (``%openhands?``), so none of them can leave an option out; the magic routes each line to a command
module that takes a small context and never the magics object; the settings reach the session when they change."""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import re
import subprocess
import sys
import types
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import openhands_magics
from openhands_magics import arguments, commands
from openhands_magics.arguments import COMMANDS, OPTIONS, USAGE, Command, Invocation, docstring, parse_invocation
from openhands_magics.magics import OpenHandsMagics
from openhands_magics.session import get_session
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import Output

HEX = "0123456789abcdef0123456789abcdef"
COMMANDS_DIR = pathlib.Path(commands.__file__).parent


def _words(text: str) -> str:
    return " ".join(text.split())  # (the help wraps long lines)


def test_every_option_and_command_is_in_the_help_the_usage_and_the_docstring(
    ip: InteractiveShell, output: Output
) -> None:
    ip.run_line_magic("openhands", "--help")
    printed, _ = output.read()
    ip.run_cell("%openhands?")
    shown, _ = output.read()

    for text in (printed, USAGE, shown, docstring(), OpenHandsMagics.openhands.__doc__):
        for row in OPTIONS:
            for flag in row.flags:
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), (flag, text[:80])
        for command in COMMANDS:
            if command.word:
                assert f"%openhands {command.usage}" in text, command.name
    for text in (shown, docstring()):  # the docstring says what each one does
        for row in OPTIONS:
            assert _words(row.help) in _words(text), row.flags
        for command in COMMANDS:
            assert _words(command.help) in _words(text), command.name


def test_every_row_sets_a_field_of_the_invocation_and_the_parser_reads_it() -> None:
    fields = {f.name for f in dataclasses.fields(Invocation)}
    for row in OPTIONS:
        assert row.attribute in fields and (not row.marks or row.marks in fields), row
        if row.applies or row.kind != "flag":
            continue
        for flag in row.flags:  # every flag of the table, as the table spells it, is read off the line
            invocation = parse_invocation(("--login " if flag == "--save" else "") + flag)  # (--save: with --login)
            assert getattr(invocation, row.attribute) is True and invocation.message == "", flag
    values = {
        "repo": "octo/demo",
        "base_url": "http://127.0.0.1:9",
        "api": "v1",
        "watch": HEX,
        "context": "df",
        "cells": "2",
    }
    for row in OPTIONS:
        if not row.applies and row.kind == "value" and row.attribute in values:
            invocation = parse_invocation(
                f"{row.name} {values[row.attribute]}" + ("" if row.name == "--watch" else " go")
            )
            assert getattr(invocation, row.attribute) not in (None, ""), row.name


def test_a_command_s_own_options_come_from_its_rows() -> None:
    for command in COMMANDS:
        for row in OPTIONS:
            if command.name not in row.applies:
                continue
            assert command.word, (command.name, row.flags)
            if command.takes == "id":
                assert getattr(parse_invocation(f"{command.name} {HEX} {row.name}"), row.attribute) is True
            elif row.kind == "flag":
                assert getattr(parse_invocation(f"{command.name} {row.name}"), row.attribute) is True
            else:
                assert getattr(parse_invocation(f"{command.name} {row.name} 7"), row.attribute) in ("7", 7)


@pytest.mark.parametrize(
    ("line", "cell", "name"),
    [
        ("fix the flaky test", None, "start"),
        ("Write the docs", None, "start"),
        ("fix", None, "fix"),
        ("list --running", None, "list"),
        (f"pause {HEX}", None, "pause"),
        (f"delete {HEX} --yes", None, "delete"),
        ("--reattach", None, "reattach"),
        (f"--watch {HEX}", None, "watch"),
        ("--map files review {item}", None, "fan-out"),
        ("--continue", "and the docs", "follow-up"),
        ("--dry-run --continue and the docs", None, "dry-run"),
        ("--dry-run list", None, "dry-run"),  # (which says it shows tasks only)
    ],
)
def test_the_router_picks_the_first_row_that_fits_the_line(line: str, cell: str | None, name: str) -> None:
    assert commands.route(parse_invocation(line, cell)).name == name


def test_each_command_is_a_module_with_run_that_never_imports_the_magics() -> None:
    for command in COMMANDS:
        module = importlib.import_module(f"openhands_magics.commands.{command.module}")
        assert callable(module.run), command.module
    for path in COMMANDS_DIR.glob("*.py"):
        source = path.read_text()
        assert not re.search(
            r"^\s*(from \.\.magics|from \.\. import magics|import openhands_magics\.magics|"
            r"from openhands_magics\.magics)",
            source,
            re.MULTILINE,
        ), path.name
        assert not re.search(r"\bmagics\.", source), path.name  # no magics object reaches a command
    with pytest.raises(dataclasses.FrozenInstanceError):
        commands.Context(None, get_session(), commands.Settings()).shell = object()  # type: ignore[misc]


def test_loading_the_extension_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "start_ipython().run_line_magic('load_ext', 'openhands_magics')\n"
        "print(sorted(m for m in sys.modules if m.startswith('openhands_magics.commands.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_setting_reaches_the_session_when_it_changes_not_on_the_next_call(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("openhands", "list")  # the first call gives the session the settings
    session = get_session()
    assert (session.schedule.interval, session.remember, session.notify) == (0.05, True, True)

    ip.run_line_magic("config", "OpenHandsMagics.poll_interval = 0.1")
    ip.run_line_magic("config", "OpenHandsMagics.remember_conversations = False")
    ip.run_line_magic("config", "OpenHandsMagics.notify = False")

    assert (session.schedule.interval, session.remember, session.notify) == (0.1, False, False)
    session.notify = True  # (a call does not copy the settings in again)
    ip.run_line_magic("openhands", "list")
    assert session.notify is True
    output.read()


def test_a_setting_a_command_reads_is_seen_by_the_next_call(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a dry run sends nothing
    ip.user_ns["n"] = 3
    ip.run_line_magic("openhands", "--dry-run make it {{n}}x faster")
    assert "make it {{n}}x faster" in output.read()[0]
    ip.run_line_magic("config", "OpenHandsMagics.expand = True")
    ip.run_line_magic("openhands", "--dry-run make it {{n}}x faster")
    assert "make it 3x faster" in output.read()[0]


def test_the_package_still_exports_say_from_commands(capsys: pytest.CaptureFixture[str]) -> None:
    openhands_magics.commands.say("told", error=False)
    assert capsys.readouterr().out == "openhands: told\n"


def test_a_new_command_is_one_row_and_one_module(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://127.0.0.1:9")  # nothing listens: nothing may be sent
    module = types.ModuleType("openhands_magics.commands.greet")

    def run(context: commands.Context, invocation: Invocation) -> Any:
        commands.say(f"hello {invocation.target}, no server: {context.endpoint is None}", error=False)
        return invocation.target

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    row = Command("greet", "greet", "id", usage="greet ID", help="say hello to a conversation", endpoint=False)
    monkeypatch.setattr(arguments, "COMMANDS", (row, *COMMANDS))

    assert ip.run_line_magic("openhands", f"greet {HEX}") == HEX
    assert output.read()[0] == f"openhands: hello {HEX}, no server: True\n"
    ip.run_line_magic("openhands", "--dry-run greet the team")  # the whole-line rule holds for it: a task
    assert "Would send a new conversation" in output.read()[0]
    ip.run_line_magic("openhands", "--help")
    assert re.search(r"^%openhands greet ID +say hello to a conversation$", output.read()[0], re.MULTILINE)
