"""Issue 9 through the magic (in-process IPython, real HTTP to the local server): ``list``, ``pause`` / ``resume`` /
``delete`` ID, ``--continue``, ``list --here`` after a restart, and the grammar that keeps sentences tasks."""

from __future__ import annotations

import time
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import openhands_magics
import openhands_magics.session as session_module
from openhands_magics.handle import ConversationHandle
from openhands_magics.listing import ConversationList
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import QUICK, SECRET, Output
from .conftest import finished as _finished
from .conftest import sent_messages as _sent_messages
from .conftest import wait_until as _until


# ---------------------------------------------------------------------------------------------------- grammar
@pytest.mark.parametrize("line", ["list the TODOs in src/", "pause the nightly job", "delete the dead code"])
def test_a_sentence_starting_with_a_command_word_is_a_task(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, line: str
) -> None:
    handle = ip.run_line_magic("openhands", line)

    assert isinstance(handle, ConversationHandle)
    [post] = quick.posts()
    assert post.body["initial_message"]["content"][0]["text"] == line
    output.read()


def test_a_bare_action_word_sends_nothing_and_says_how_to_send_it(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    assert ip.run_line_magic("openhands", "pause") is None
    assert "`%openhands -- pause`" in output.one_error_line()
    assert quick.requests == []


# ---------------------------------------------------------------------------------------------------- results
def test_wait_prints_the_answer_and_the_handle_has_the_results(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    handle = _finished(ip, repo="octo/demo")

    out, err = output.read()
    assert err == ""
    assert out.strip().splitlines()[-1] == f"{handle.id}: answer: Cleaned up.\nSee data/load.py".replace("\n", "\ufffd")
    assert handle.answer == "Cleaned up.\nSee data/load.py"
    assert [pr.url for pr in handle.pull_requests] == ["https://github.com/octo/demo/pull/42"]
    assert (handle.cost.usd, handle.cost.tokens) == (0.12, 1234)
    assert [(c.status, c.path) for c in handle.changes()] == [("UPDATED", "demo/data/load.py")]
    diff = handle.diff()
    assert "--- a/demo/data/load.py" in diff and "+new line" in diff and "-old line" in diff
    assert handle.diff("demo/data/load.py") == diff
    assert diff.files[0].path == "demo/data/load.py" and "<details open" in diff._repr_html_()  # a section per file


# ---------------------------------------------------------------------------------------------------- follow-ups
def test_continue_sends_to_the_latest_and_it_runs_and_finishes_again(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    older = _finished(ip, "first")
    latest = _finished(ip, "second")
    output.read()

    again = ip.run_cell_magic("openhands", "--continue --wait", "now add tests\n")

    assert again is latest
    assert _sent_messages(quick) == ["now add tests"]
    out, _ = output.read()
    changes = [line for line in out.splitlines() if line.startswith(f"{latest.id}: ") and ": answer:" not in line]
    statuses = [line.split(": ", 1)[1].split(" after")[0] for line in changes]
    assert statuses[0] == "RUNNING" and statuses[-1] == "FINISHED"
    assert latest.status == "FINISHED" and older.status == "FINISHED"

    ip.run_line_magic("openhands", f"--continue {older.id} --wait and docs")
    assert _sent_messages(quick) == ["now add tests", "and docs"]
    output.read()


def test_continue_resumes_a_paused_conversation_first(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    handle = _finished(ip)
    ip.run_line_magic("openhands", f"pause {handle.id}")
    assert quick.state_of(handle.id)["sandbox_status"] == "PAUSED"

    ip.run_line_magic("openhands", f"--continue {handle.id} --wait go on")

    paths = [r.path.rsplit("/", 1)[-1] for r in quick.posts()]
    assert paths[-3:] == ["pause", "resume", "send-message"]
    assert handle.status == "FINISHED"
    output.read()


def test_continue_with_nothing_to_continue_is_one_line(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    assert ip.run_line_magic("openhands", "--continue go on") is None
    assert "No conversation to continue" in output.one_error_line()
    assert quick.posts() == []


# ---------------------------------------------------------------------------------------------------- control
def test_pause_resume_delete_by_id(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = _finished(ip)
    output.read()

    ip.run_line_magic("openhands", f"pause {handle.id}")
    assert quick.state_of(handle.id)["sandbox_status"] == "PAUSED"
    assert f"paused {handle.id} (PAUSED" in output.read()[0]
    ip.run_line_magic("openhands", f"resume {handle.id}")
    assert quick.state_of(handle.id)["sandbox_status"] == "RUNNING"
    assert f"resumed {handle.id} (FINISHED)" in output.read()[0]

    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    ip.run_line_magic("openhands", f"delete {handle.id}")
    assert handle.id in quick.conversation_ids()
    assert "was not deleted" in output.read()[0]

    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "y")
    ip.run_line_magic("openhands", f"delete {handle.id}")
    assert handle.id not in quick.conversation_ids()
    assert asked and handle.id in asked[0] and "for good" in asked[0]
    assert handle.status == "DELETED"
    assert f"deleted {handle.id}" in output.read()[0]

    ip.run_line_magic("openhands", f"pause {handle.id}")
    assert f"Conversation {handle.id} was not found" in output.one_error_line()


def test_delete_where_nobody_can_answer_needs_yes(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = _finished(ip)
    output.read()
    monkeypatch.setattr("openhands_magics.commands.headless", lambda shell: True)

    ip.run_line_magic("openhands", f"delete {handle.id}")
    assert "add --yes" in output.one_error_line()
    assert handle.id in quick.conversation_ids()
    ip.run_line_magic("openhands", f"delete {handle.id} --yes")
    assert handle.id not in quick.conversation_ids()
    output.read()


# ---------------------------------------------------------------------------------------------------- list
def test_list_filters_and_pages(ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output) -> None:
    done = [_finished(ip, f"task {i}", repo="octo/demo" if i % 2 else "octo/other") for i in range(5)]
    output.read()

    listed = ip.run_line_magic("openhands", "list")
    assert isinstance(listed, ConversationList)
    assert [h.id for h in listed] == [h.id for h in reversed(done)]
    assert listed[0] is done[-1]
    assert [h.id for h in ip.run_line_magic("openhands", "list --limit 2")] == [done[4].id, done[3].id]
    demo = ip.run_line_magic("openhands", "list --repo octo/demo")
    assert [h.id for h in demo] == [done[3].id, done[1].id]
    assert ip.run_line_magic("openhands", "list --running") == []
    text = repr(listed)
    assert all(h.id[:8] in text for h in done)
    output.read()


def test_list_here_after_a_kernel_restart_brings_the_live_panels_back(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    notebook = tmp_path / "analysis.ipynb"
    notebook.write_text('{"cells": []}')  # saved before any output: only the record on disk knows
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=60)) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        running = ip.run_line_magic("openhands", "a long task")
        _until(lambda: running.refresh().status == "RUNNING")
        session_module.get_session().close()
        session_module._session = None  # a new kernel: nothing in memory

        listed = ip.run_line_magic("openhands", "list --here")

        assert [h.id for h in listed] == [running.id]
        assert listed[0] is not running and listed[0].status == "RUNNING"
        assert listed[0].task_id == running.task_id
        assert openhands_magics.history() == [listed[0]]
        time.sleep(0.1)
        out, err = output.read()
        assert err == "" and running.id in out


def test_a_follow_up_to_a_sandbox_paused_behind_its_back_resumes_it_and_is_sent_once(
    quick: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from openhands_magics.session import get_session

    handle = get_session().start("first")
    handle.wait(timeout=10)
    sandbox = handle.conversation.sandbox_id
    httpx.post(
        f"{quick.base_url}/api/v1/sandboxes/{sandbox}/pause",  # as Cloud does past 10 running
        headers={"Authorization": f"Bearer {SECRET}"},
    ).raise_for_status()

    handle.send("go on")

    paths = [r.path.rsplit("/", 1)[-1] for r in quick.posts()]
    assert paths[-3:] == ["send-message", "resume", "send-message"]  # the 409 said why, then it went through once
    events = httpx.get(
        f"{quick.base_url}/api/v1/conversation/{handle.id}/events/search",
        params={"kind__eq": "MessageEvent"},
        headers={"Authorization": f"Bearer {SECRET}"},
    ).json()
    said = [e["llm_message"]["content"][0]["text"] for e in events["items"] if e["source"] == "user"]
    assert said == ["first", "go on"]
    assert handle.status == "RUNNING"
    assert handle.wait(timeout=10).status == "FINISHED" and handle.answer == QUICK.answer


def test_on_a_v0_server_list_works_and_the_rest_is_one_line(
    ip: InteractiveShell, v0_server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in v0_server.environ().items():
        monkeypatch.setenv(name, value)
    started = ip.run_line_magic("openhands", "--wait an old server")
    output.read()

    listed = ip.run_line_magic("openhands", "list")
    assert [h.id for h in listed] == [started.id]
    assert started.outcome is not None and started.outcome.problems == ()  # nothing to read, nothing to complain of
    for command in (f"pause {started.id}", f"resume {started.id}", f"delete {started.id} --yes"):
        ip.run_line_magic("openhands", command)
        assert "needs OpenHands 1.7 or later" in output.one_error_line()
    ip.run_line_magic("openhands", "--continue go on")
    assert "cannot send a follow-up message" in output.one_error_line()
    assert [p.path for p in v0_server.posts()] == ["/api/conversations"]  # only the start
