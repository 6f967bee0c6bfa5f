# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 14: no terminal escape from a server or a saved notebook reaches the terminal through a line the magic
prints. Every such line goes through ``commands.say`` (``views.plain``): the ``pause`` / ``resume`` lines, the
``delete`` question, the "Left alone" line of ``--reattach`` (a notebook's saved base URL), the error boundary.
In-process IPython, real HTTP to the local server."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics import commands
from openhands_magics.commands import reattach
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import finished as _finished, Output

ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e\r\n"


def _controls(text: str) -> list[str]:
    """Every character of ``text`` a terminal could act on (the final line breaks of printed lines aside)."""
    return [c for line in text.splitlines() for c in line if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")]


def test_say_shows_control_characters_as_marks_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    commands.say(f"status {ESCAPES} end")
    commands.say(f"told {ESCAPES}", error=False)

    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and out.count("\n") == 1
    assert _controls(out + err) == []
    assert err.startswith("openhands: status \ufffd[2J\ufffd]0;pwned\ufffd") and err.endswith(" end\n")


def test_pause_and_resume_lines_neutralise_the_server_s_status(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    handle = _finished(ip)
    output.read()
    quick.set_state(handle.id, execution_status=f"finished{ESCAPES}")

    ip.run_line_magic("openhands", f"pause {handle.id}")
    ip.run_line_magic("openhands", f"resume {handle.id}")

    out, err = output.read()
    assert err == "" and len(out.splitlines()) == 2
    assert _controls(out) == []
    assert f"resumed {handle.id} (FINISHED\ufffd[2J" in out


def test_the_delete_question_neutralises_the_title_and_status(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = _finished(ip)
    output.read()
    quick.set_state(handle.id, execution_status=f"finished{ESCAPES}", title=f"title{ESCAPES}")
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")

    ip.run_line_magic("openhands", f"delete {handle.id}")

    [question] = asked
    assert question.startswith(f"Delete conversation {handle.id} 'title\ufffd[2J") and "for good? [y/N]" in question
    assert _controls(question) == []
    out, _ = output.read()
    assert _controls(out) == [] and "was not deleted" in out


def test_the_left_alone_line_neutralises_a_base_url_saved_in_the_notebook(
    ip: InteractiveShell,
    quick: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    hostile = f"https://elsewhere.example/{ESCAPES}"
    outputs = [
        {
            "output_type": "display_data",
            "data": {"text/plain": "…"},
            "metadata": {"openhands": {"conversation_id": "f" * 32, "task_id": None, "base_url": hostile}},
        }
    ]
    notebook = tmp_path / "work.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))

    ip.run_line_magic("openhands", "--reattach")

    out, err = output.read()
    [left_alone] = [line for line in err.splitlines() if "Left alone" in line]
    assert "https://elsewhere.example/\ufffd[2J" in left_alone
    assert _controls(out + err) == []
    assert quick.requests == []  # another server's conversation: nothing asked of this one either


def test_the_error_boundary_neutralises_whatever_an_error_says(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError(f"a bug that quotes the server {ESCAPES}")

    monkeypatch.setattr(reattach, "run", broken)

    ip.run_line_magic("openhands", "--reattach")

    line = output.one_error_line()
    assert "Unexpected error (RuntimeError: a bug that quotes the server \ufffd[2J" in line
    assert _controls(line) == []


def test_the_error_boundary_blanks_a_key_that_a_foreign_exception_quotes(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An "Unexpected error" carries the text of an exception no error of ours vetted: the one line still has no key."""
    from .conftest import SECRET

    def broken(*_: object) -> None:
        raise RuntimeError(f"a bug that quotes the header Authorization: Bearer {SECRET}")

    monkeypatch.setattr(reattach, "run", broken)

    ip.run_line_magic("openhands", "--reattach")

    line = output.one_error_line()
    assert "Unexpected error (RuntimeError: a bug that quotes the header Authorization: Bearer ********" in line
    assert SECRET not in line
