# ruff: noqa: F811 - the fixtures imported from test_commands are used as arguments
"""Issue 14: a saved notebook is untrusted text. Hostile or corrupt parts are skipped (or the file is one line
saying it could not be read), never "Unexpected error"; ids read from it are checked before they reach a URL, and
one bad id does not cost the others their panels. ``--reattach`` and ``list --here`` in-process, real HTTP to the
local server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import openhands_magics
import openhands_magics.session as session_module
from openhands_magics.listing import ConversationList
from openhands_magics.saved import SavedConversation, read_notebook, saved_conversations
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import Output, SECRET

GOOD = "a" * 32
GOOD_OUTPUT = {"output_type": "stream", "name": "stdout", "text": [f"OpenHands conversation {GOOD} RUNNING\n"]}
FOUND = [SavedConversation(GOOD, None, None)]


def _meta(**ids: Any) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/plain": "…"}, "metadata": {"openhands": ids}}


#: Notebook files whose odd parts must be skipped, each with the good output the reader must still find (or not).
BROKEN_PARTS: dict[str, tuple[Any, list[SavedConversation]]] = {
    "cells is a number": ({"cells": 5}, []),
    "cells is a dict": ({"cells": {"outputs": [GOOD_OUTPUT]}}, []),
    "the notebook is a list": ([{"outputs": [GOOD_OUTPUT]}], []),
    "outputs is a number": ({"cells": [{"outputs": 5}, {"outputs": [GOOD_OUTPUT]}]}, FOUND),
    "outputs is text": ({"cells": [{"outputs": "OpenHands conversation " + "b" * 32}]}, []),
    "metadata is a list": (
        {"cells": [{"outputs": [{"metadata": [1], "text": "x"}, GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "openhands metadata is text": (
        {"cells": [{"outputs": [{"metadata": {"openhands": "x"}}, GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "data is text": (
        {"cells": [{"outputs": [{"data": "OpenHands conversation " + "b" * 32}, GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "text/plain is a number": (
        {"cells": [{"outputs": [{"data": {"text/plain": 7}}, GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "text is a list of numbers": (
        {"cells": [{"outputs": [{"text": [1, None, {"a": 1}]}, GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "a cell is a number": ({"cells": [5, None, "x", {"outputs": [GOOD_OUTPUT]}]}, FOUND),
    "ids of the wrong type": (
        {"cells": [{"outputs": [_meta(conversation_id=5, task_id=["x"]), GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "a base URL that is not text": (
        {"cells": [{"outputs": [_meta(conversation_id="c" * 32, base_url=5), GOOD_OUTPUT]}]},
        [SavedConversation(GOOD, None, None)],
    ),
    "ids that would walk the URL": (
        {
            "cells": [
                {
                    "outputs": [
                        _meta(conversation_id="../../../api/settings", task_id="..", base_url=None),
                        _meta(conversation_id="x/../../y", task_id=GOOD, base_url=None),
                    ]
                }
            ]
        },
        [SavedConversation(None, GOOD, None)],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_PARTS))
def test_the_reader_skips_every_part_a_notebook_does_not_hold(tmp_path: Path, case: str) -> None:
    document, expected = BROKEN_PARTS[case]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(document))

    assert saved_conversations(path) == expected


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "its JSON is nested too deep"),
        (b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "its JSON is nested too deep"),
        (b"{not json", "it is not valid JSON"),
        (b'{"cells": []}\xff\xfe', "it is not UTF-8 text"),
        (b'{"cells": 5}', "it has no list of cells"),
        (b'{"cells": [], "n": 1' + b"0" * 5000 + b"}", "it is not valid JSON"),  # past int's digit limit
    ],
)
def test_a_file_that_cannot_be_read_says_why(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "n.ipynb"
    path.write_bytes(content)

    assert read_notebook(path) == ([], why)


@pytest.fixture
def long_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=60)) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


def _notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | Any) -> Path:
    path = tmp_path / "work.ipynb"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    return path


def _restart() -> None:
    """A new kernel: nothing in memory (the notebook and the record on disk stay)."""
    session_module.get_session().close()
    session_module._session = None


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b"{not json", *(json.dumps(d).encode() for d, _ in BROKEN_PARTS.values())],
    ids=["nested 100k deep", "not JSON", *BROKEN_PARTS],
)
@pytest.mark.parametrize("line", ["--reattach", "list --here"])
def test_a_hostile_notebook_is_never_an_unexpected_error(
    ip: InteractiveShell,
    long_server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: bytes,
    line: str,
) -> None:
    _notebook(tmp_path, monkeypatch, content)

    result = ip.run_line_magic("openhands", line)

    out, err = output.read()
    assert "Unexpected error" not in out + err
    assert all(row.startswith("openhands: ") for row in err.splitlines())
    assert all(".." not in r.path and "settings" not in r.path + str(r.query) for r in long_server.requests)
    if line == "list --here":
        assert isinstance(result, ConversationList)


def test_an_unreadable_notebook_is_one_line_and_the_record_on_disk_still_counts(
    ip: InteractiveShell,
    long_server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    path = _notebook(tmp_path, monkeypatch, {"cells": []})
    running = ip.run_line_magic("openhands", "a long task")  # recorded on disk with this notebook's path
    _restart()
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)  # then the file is broken
    output.read()

    assert ip.run_line_magic("openhands", "--reattach") is None

    out, err = output.read()
    assert err.splitlines() == [
        "openhands: Could not read the saved outputs of work.ipynb: its JSON is nested too "
        "deep; going on with this process's record and the one on disk."
    ]
    assert "1 watched again, 0 already over." in out
    assert [h.task_id for h in openhands_magics.history()] == [running.task_id]


def test_one_malformed_id_among_the_saved_outputs_leaves_the_others_reattached(
    ip: InteractiveShell,
    long_server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ip.run_line_magic("config", "OpenHandsMagics.remember_conversations = False")  # only the notebook knows them
    first = ip.run_line_magic("openhands", "first")
    second = ip.run_line_magic("openhands", "second")
    deadline = time.monotonic() + 10
    while not (first.refresh().id and second.refresh().id):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    url = long_server.base_url
    _notebook(
        tmp_path,
        monkeypatch,
        {
            "cells": [
                {
                    "outputs": [
                        _meta(conversation_id=first.id, task_id=first.task_id, base_url=url),
                        _meta(conversation_id="../../../api/settings", task_id=None, base_url=url),
                        _meta(conversation_id="A" * 200, task_id="%2e%2e", base_url=url),
                        {
                            "output_type": "stream",
                            "text": f"OpenHands conversation {second.id} RUNNING · start task {second.task_id}",
                        },
                    ]
                }
            ]
        },
    )
    _restart()
    long_server.requests.clear()
    output.read()

    ip.run_line_magic("openhands", "--reattach")

    out, err = output.read()
    assert err == "" and "2 watched again, 0 already over." in out
    assert {h.id for h in openhands_magics.history()} == {first.id, second.id}
    assert long_server.requests and all(
        ".." not in r.path + str(r.query) and "settings" not in r.path + str(r.query) and "%2e" not in str(r.query)
        for r in long_server.requests
    )
