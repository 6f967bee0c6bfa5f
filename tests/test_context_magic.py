# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 10 through the magic: ``{{var}}`` only when asked, ``--context``, ``--cells``, ``fix`` and ``--dry-run``
(in-process IPython, real HTTP to the local server)."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics.testing import LocalOpenHandsServer

from .conftest import Output, SECRET


def _sent(server: LocalOpenHandsServer) -> list[str]:
    return [r.body["initial_message"]["content"][0]["text"] for r in server.posts()]


def test_placeholders_stay_verbatim_unless_asked(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["path"] = "data/load.py"
    ip.run_line_magic("openhands", "Speed up {{path}} and {path}")
    ip.run_line_magic("openhands", "--expand Speed up {{path}} and {path}")
    ip.run_line_magic("config", "OpenHandsMagics.expand = True")
    ip.run_line_magic("openhands", r"Speed up {{ path }} but keep \{{this}}")

    assert _sent(quick) == [
        "Speed up {{path}} and {path}",
        "Speed up data/load.py and {path}",
        "Speed up data/load.py but keep {{this}}",
    ]
    output.read()


def test_an_unknown_name_is_one_line_and_nothing_is_sent(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    assert ip.run_line_magic("openhands", "--expand Look at {{nope}}") is None
    assert "nope" in output.one_error_line()
    assert ip.run_line_magic("openhands", "--context nope go") is None
    assert "nope" in output.one_error_line()
    assert quick.requests == []


def test_dry_run_shows_the_message_with_its_context_and_sends_nothing(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    pd = pytest.importorskip("pandas")
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://127.0.0.1:9")  # nothing listens: any request would fail
    monkeypatch.delenv("OPENHANDS_API_KEY", raising=False)  # and no key is needed to look
    ip.user_ns["df"] = pd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "temp": [3.5, 18.0, 31.2]})
    ip.run_cell("threshold = 20", store_history=True)
    ip.run_cell("hot = df[df.temp > threshold]", store_history=True)
    output.read()

    ip.run_cell(
        "%openhands --dry-run --repo octo/weather --context df --cells 2 Plot the hot cities", store_history=True
    )

    out, err = output.read()
    assert err == ""
    print(out)
    assert out.startswith("openhands: dry run, nothing was sent. Would send a new conversation on octo/weather\n")
    assert "server: http://127.0.0.1:9 (API auto" in out
    assert "Plot the hot cities\n\n---\n## Variables" in out
    assert "df (pandas DataFrame, 3 rows × 2 columns)" in out and "Oslo" in out
    assert "## Cells above" in out and "threshold = 20" in out and "hot = df[df.temp > threshold]" in out
    assert SECRET not in out


def test_fix_sends_the_last_error_and_its_cell(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("openhands", "fix --dry-run")
    assert "No error to fix yet" in output.one_error_line()

    ip.run_cell("rows = [1, 2]\ntotal = rows[5]", store_history=True)
    output._capsys.readouterr()  # (the user's own traceback, as IPython prints it)
    handle = ip.run_line_magic("openhands", "--repo octo/demo fix")

    [text] = _sent(quick)
    assert text.startswith("Fix the error raised by this notebook cell.")
    assert "total = rows[5]" in text and "IndexError" in text
    assert handle.conversation.selected_repository == "octo/demo"
    output.read()


def test_fix_followed_by_words_is_a_task(ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output) -> None:
    ip.run_line_magic("openhands", "fix the flaky test in tests/test_io.py")
    assert _sent(quick) == ["fix the flaky test in tests/test_io.py"]
    output.read()
