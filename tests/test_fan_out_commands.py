# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 14: ``%%openhands --map`` with the other options. ``--continue``, ``--watch`` and ``--reattach`` do not
go with it (one line, nothing sent); ``--dry-run`` shows what each item would send; a brace in the context
(``--context``, ``--cells``) is the notebook's text, never part of the ``{item}`` template. In-process IPython, real
HTTP to the local server."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics.testing import LocalOpenHandsServer

from .conftest import Output, SECRET

HEX = "0123456789abcdef0123456789abcdef"


def _sent(server: LocalOpenHandsServer) -> list[str]:
    return sorted(
        r.body["initial_message"]["content"][0]["text"] for r in server.posts() if r.path == "/api/v1/app-conversations"
    )


# ---------------------------------------------------------------------------------------------------- combinations
@pytest.mark.parametrize(
    ("line", "cell", "named"),
    [
        ("--map files --continue", "Fix {item}", "--continue"),
        (f"--continue {HEX} --map files", "Fix {item}", "--continue"),
        ("--map files --continue {conv.id}", "Fix {item}", "--continue"),
        (f"--map files --watch {HEX}", None, "--watch"),
        ("--map files --reattach", None, "--reattach"),
    ],
)
def test_map_with_continue_watch_or_reattach_is_one_line_and_sends_nothing(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, line: str, cell: str | None, named: str
) -> None:
    ip.user_ns["files"] = ["a.py", "b.py"]

    if cell is None:
        assert ip.run_line_magic("openhands", line) is None
    else:
        assert ip.run_cell_magic("openhands", line, cell) is None

    error = output.one_error_line()
    assert "--map" in error and named in error and "nothing was sent" in error
    assert quick.requests == []


def test_map_with_fix_is_one_line(ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output) -> None:
    ip.user_ns["files"] = ["a.py"]
    assert ip.run_line_magic("openhands", "fix --map files") is None
    assert "--map" in output.one_error_line()
    assert quick.requests == []


def test_map_before_a_command_word_makes_the_line_a_template(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["files"] = ["a.py", "b.py"]
    ip.run_line_magic("openhands", "--map files --wait delete the dead code in {item}")
    assert _sent(quick) == ["delete the dead code in a.py", "delete the dead code in b.py"]
    output.read()


# ---------------------------------------------------------------------------------------------------- dry run
@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> str:
    """A base URL where nothing listens (any request would fail) and no key: a dry run needs neither."""
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("OPENHANDS_API_KEY", raising=False)
    return "http://127.0.0.1:9"


def test_dry_run_map_shows_every_message_and_how_many_would_start(
    ip: InteractiveShell, output: Output, nowhere: str
) -> None:
    ip.user_ns["files"] = ["a.py", "b.py", "c.py"]
    ip.user_ns["cfg"] = {"strict": True}

    ip.run_cell_magic(
        "openhands",
        "--map files --max-running 2 --repo octo/demo --context cfg --dry-run",
        "Fix the lint errors in {item}\n",
    )

    out, err = output.read()
    assert err == ""
    assert out.startswith(
        "openhands: dry run, nothing was sent. Would start 3 new conversations on octo/demo, "
        "one per item of files, at most 2 running at once\n"
    )
    assert f"server: {nowhere} (API auto" in out
    for number, name in enumerate(["a.py", "b.py", "c.py"], start=1):
        assert f"message {number} of 3 (item '{name}'," in out
        assert f"-----\nFix the lint errors in {name}\n\n---\n## Variables" in out
    assert out.count("{'strict': True}") == 3 and "{item}" not in out
    assert SECRET not in out


def test_dry_run_map_of_many_items_shows_the_first_few_and_a_count(
    ip: InteractiveShell, output: Output, nowhere: str
) -> None:
    ip.user_ns["files"] = [f"f{i}.py" for i in range(40)]

    ip.run_cell_magic("openhands", "--map files --dry-run", "Fix {item}")

    out, _ = output.read()
    assert "Would start 40 new conversations, no repository, one per item of files, at most 10 running" in out
    assert [line for line in out.splitlines() if line.startswith("Fix ")] == ["Fix f0.py", "Fix f1.py", "Fix f2.py"]
    assert out.rstrip().endswith("… and 37 more messages, one per item (not shown)")


def test_dry_run_map_with_a_bad_template_is_the_batch_s_own_line(
    ip: InteractiveShell, output: Output, nowhere: str
) -> None:
    ip.user_ns["files"] = ["a.py"]
    ip.run_cell_magic("openhands", "--map files --dry-run", "Fix {item} in {nope}")
    assert "The task template failed for item 'a.py'" in output.one_error_line()


# ---------------------------------------------------------------------------------------------------- braces
def test_braces_in_the_context_do_not_break_the_template(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["files"] = ["a.py", "b.py"]
    ip.user_ns["cfg"] = {"retries": 3, "fmt": "{name}"}
    ip.run_cell('label = f"{len(files)} files"', store_history=True)
    output.read()

    ip.run_cell(
        "%%openhands --map files --context cfg --cells 1 --wait\nFix {item} with {{{{braces}}}} kept\n",
        store_history=True,
    )

    out, err = output.read()
    assert err == "", err
    sent = _sent(quick)
    assert [text.split("\n")[0] for text in sent] == ["Fix a.py with {{braces}} kept", "Fix b.py with {{braces}} kept"]
    for text in sent:
        assert "{'retries': 3, 'fmt': '{name}'}" in text  # the dict's repr, braces and all
        assert 'label = f"{len(files)} files"' in text  # the f-string of the cell above
        assert "{item}" not in text


def test_expanded_values_keep_their_braces_in_a_map_template(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["files"] = ["a.py"]
    ip.user_ns["cfg"] = {"level": "{strict}"}

    ip.run_cell_magic("openhands", "--map files --expand --wait", "Fix {item} as {{cfg}} says, {{cfg['level']}}")

    assert _sent(quick) == ["Fix a.py as {'level': '{strict}'} says, {strict}"]
    output.read()
