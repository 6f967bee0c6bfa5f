"""``%openhands`` / ``%%openhands`` in an in-process IPython shell (the terminal path: text output, no widgets), over
real HTTP to the local server speaking V1 (current) or V0 (up to 1.6).

Each error a user can cause prints exactly one line and no traceback; neither the API key nor the server's
``session_api_key`` ever appears in anything the magic prints or logs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import openhands_magics
from openhands_magics.handle import ConversationHandle
from openhands_magics.session import get_session
from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, Timeline

from .conftest import FAST, MAX_POLL, POLL, SECRET, Output, ipython_shell


#: What ``--wait`` prints on each change: ``<reference>: <status line>[ after <elapsed>][ <url>]``.
CHANGE_LINE = re.compile(
    r"^(?P<ref>task [0-9a-f]{32}|[0-9a-f]{32}): (?P<status>[A-Z][A-Z ]*?)(?: · (?P<phase>.+?))?"
    r"(?: after \S+)?(?: (?P<url>http\S+))?$"
)


def _text_of(request: Any) -> str:
    return request.body["initial_message"]["content"][0]["text"]


def _changes(out: str) -> list[re.Match[str]]:
    """The ``--wait`` change lines printed, parsed."""
    matches = [CHANGE_LINE.match(line) for line in out.splitlines()]
    return [m for m in matches if m]


def _collapsed(statuses: list[str]) -> list[str]:
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------- starting


def test_line_magic_starts_a_v1_conversation_and_records_both_ids(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", 'Check README.md for "wrong" {info} and $cost')

    assert isinstance(handle, ConversationHandle)
    [post] = server_env.posts()
    assert post.path == "/api/v1/app-conversations"
    text = 'Check README.md for "wrong" {info} and $cost'
    assert post.body == {"initial_message": {"content": [{"type": "text", "text": text}]}}
    # The start answered a start task: its id is recorded at once, the conversation's once the task is READY.
    assert handle.task_id == server_env.task_ids()[0] and handle.id is None and handle.url is None
    assert openhands_magics.history() == [handle] and openhands_magics.last() is handle
    out, err = output.read()
    assert err == ""
    expected = f"OpenHands conversation (not created yet) STARTING · preparing (0s) · start task {handle.task_id}"
    assert out.strip() == expected

    _until(lambda: server_env.conversation_ids() != [])
    handle.refresh()
    assert handle.id == server_env.conversation_ids()[0] and handle.task_id == server_env.task_ids()[0]
    assert handle.url == f"{server_env.base_url}/conversations/{handle.id}"
    assert openhands_magics.last() is handle  # the same record, now with both ids


def test_cell_magic_sends_the_body_verbatim_without_variable_expansion(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["x"] = "EXPANDED"
    body = "\n\nProfile data/load.py {x} $x,\n  make it 2× faster, and open a PR.\n\n"
    ip.run_cell(f"%%openhands --repo octo/demo\n{body}")
    first = server_env.posts()[0]
    assert _text_of(first) == "Profile data/load.py {x} $x,\n  make it 2× faster, and open a PR."
    assert first.body["selected_repository"] == "octo/demo"
    ip.run_cell("%openhands fix {x} and $x")
    assert _text_of(server_env.posts()[1]) == "fix {x} and $x"
    assert "EXPANDED" not in repr([r.body for r in server_env.posts()])


def test_assigned_handle_is_not_displayed_twice(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_cell("%openhands once", store_history=True)
    out, _ = output.read()
    assert out.count("OpenHands conversation") == 1
    ip.run_cell("import openhands_magics; openhands_magics.last()", store_history=True)
    out, _ = output.read()
    assert out.count("OpenHands conversation") == 1  # a later cell shows it again
    assert f"start task {server_env.task_ids()[0]}" in out


def test_a_self_hosted_server_with_a_session_key_works_with_no_setting(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalOpenHandsServer(SECRET, auth="session-key", timeline=FAST) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        handle = ip.run_line_magic("openhands", "--wait --timeout 10 self-hosted")
        [post] = server.posts()
        assert post.headers.get("x-session-api-key") == SECRET and "authorization" not in post.headers
        assert handle.status == "FINISHED" and handle.id == server.conversation_ids()[0]
        assert output.read()[1] == ""


# ---------------------------------------------------------------------------------------------------- --wait


def test_wait_prints_the_start_phases_then_running_then_finished_and_returns_when_the_agent_is_done(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", "--wait --timeout 10 wait for me")
    returned = time.monotonic()

    agent_done = server_env.posts()[0].received + FAST.starting + FAST.running
    # Within one poll of the end: the first read after the agent ended saw it, and the wait returned then (after
    # reading what the agent did), instead of reading on. Counted in reads, not measured in seconds: a loaded
    # machine stretches the time a read takes, never the number of reads.
    reads_after = [r.path for r in server_env.requests if r.received >= agent_done and r.method == "GET"]
    assert reads_after.count("/api/v1/app-conversations") == 1, reads_after
    assert agent_done <= returned < agent_done + MAX_POLL + 2.0, "did not return within about one poll of the end"
    out, err = output.read()
    assert err == ""
    changes = _changes(out)
    assert _collapsed([m["status"] for m in changes]) == ["STARTING", "RUNNING", "FINISHED"]
    starting = [m for m in changes if m["status"] == "STARTING"]
    # It shows the phases it read, in the server's order (how many it reads depends on the machine's pace: a poll
    # every 0.05 s meets most of the seven 0.04 s phases on a quiet machine and two on a loaded one).
    order = ["preparing", "waiting for sandbox", "preparing repository", "running setup script"]
    order += ["setting up git hooks", "setting up skills", "starting conversation"]
    shown = _collapsed([m["phase"] for m in starting])
    assert shown[0] == "preparing" and shown == sorted(shown, key=order.index), shown
    assert all(m["ref"] == f"task {handle.task_id}" for m in starting)
    assert all(m["ref"] == handle.id for m in changes if m["status"] != "STARTING")
    assert changes[-1]["url"] == handle.url == f"{server_env.base_url}/conversations/{handle.id}"
    assert handle.status == "FINISHED" and handle.id == server_env.conversation_ids()[0]


def test_wait_on_a_v0_server_auto_detects_v0_and_ends_when_the_agent_does(
    ip: InteractiveShell, v0_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", "--wait --timeout 10 old server")
    returned = time.monotonic()

    [post] = v0_env.posts()
    assert post.path == "/api/conversations" and post.body == {"initial_user_msg": "old server"}
    assert v0_env.requests.index(post) > 0  # asked which API first, with reads only:
    assert all(r.method == "GET" for r in v0_env.requests[: v0_env.requests.index(post)])
    agent_done = post.received + FAST.starting + FAST.running
    assert agent_done <= returned
    # It ends when the agent does: on the first read that could see it finished, the last one.
    reads = [r.received for r in v0_env.requests if r.method == "GET" and r.path == f"/api/conversations/{handle.id}"]
    assert len([t for t in reads if t > agent_done]) <= 1 and reads[-1] < returned  # (0: one sent just before)
    out, err = output.read()
    assert err == ""
    changes = _changes(out)
    statuses = _collapsed([m["status"] for m in changes])  # (a slow machine's polls may miss the short RUNNING)
    assert statuses in (["STARTING", "RUNNING", "FINISHED"], ["STARTING", "FINISHED"])
    assert {m["ref"] for m in changes} == {handle.id}
    assert handle.task_id is None and handle.url == f"{v0_env.base_url}/conversations/{handle.id}"
    assert v0_env.state_of(handle.id)["status"] == "RUNNING"  # V0's own status would have kept it waiting an hour


def test_wait_timeout_says_the_conversation_goes_on(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=30)) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        started = time.monotonic()
        handle = ip.run_line_magic("openhands", "--wait --timeout 0.5 long task")
        assert time.monotonic() - started < 0.5 + 1.0
        line = output.one_error_line()
        # (what it last saw: RUNNING with its link, or, on a loaded machine whose first read came late, still
        # starting, with its start task's id: either way one line naming where it goes on)
        said = re.fullmatch(r"openhands: Still (RUNNING|STARTING · [a-z ]+) after 0\.5 s; it goes on: (.+)", line)
        assert said is not None, line
        assert said.group(2) in (handle.url, f"start task {handle.task_id}")
        assert isinstance(handle, ConversationHandle)
        handle.refresh()  # (read now: the conversation goes on, running)
        assert handle.id is not None and server.state_of(handle.id)["execution_status"] == "running"


def test_interrupting_wait_stops_waiting_not_the_conversation(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch, stop_button: Callable[[], None]
) -> None:
    import threading

    pressed: list[bool] = []
    done = threading.Event()

    def press_stop_once_running() -> None:  # the kernel's stop button: a real SIGINT to the waiting (main) thread
        while not done.wait(0.02):
            current = openhands_magics.last()
            if current is not None and current.status == "RUNNING":
                pressed.append(True)
                stop_button()
                return

    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.2, running=30)) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        presser = threading.Thread(target=press_stop_once_running, daemon=True)
        presser.start()
        try:
            handle = ip.run_line_magic("openhands", "--wait interrupt me")
        finally:
            done.set()
            presser.join(5)
        assert pressed
        assert isinstance(handle, ConversationHandle) and handle.id is not None
        line = output.one_error_line()
        assert line == f"openhands: Stopped waiting; {handle.id} goes on: {handle.url}"
        assert server.state_of(handle.id)["execution_status"] == "running"
        assert server.posts()[-1] is server.posts()[0]  # nothing was started again
        assert not handle.watching  # the wait's own watch ended with it


# ---------------------------------------------------------------------------------------------------- displaying


@pytest.fixture
def broken_display(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_handle: Any) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr("openhands_magics.display.text_summary", broken)


@pytest.mark.usefixtures("broken_display")
def test_display_failure_still_prints_and_records_the_start_task(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", "survive a broken display")
    out, err = output.read()
    [task_id] = server_env.task_ids()
    assert out.strip() == f"OpenHands conversation (not created yet) · start task {task_id}: {server_env.base_url}"
    assert "renderer broke" in err and "openhands_magics.last()" in err and len(err.strip().splitlines()) == 1
    assert openhands_magics.last() is handle and handle.task_id == task_id


@pytest.mark.usefixtures("broken_display")
def test_display_failure_on_v0_prints_the_conversation_and_its_link(
    ip: InteractiveShell, v0_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", "survive a broken display")
    out, _ = output.read()
    [conversation_id] = v0_env.conversation_ids()
    assert out.strip() == f"OpenHands conversation {conversation_id}: {v0_env.base_url}/conversations/{conversation_id}"
    assert openhands_magics.history() == [handle] and handle.id == conversation_id


def test_the_servers_session_key_never_reaches_output_or_the_handle(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("openhands", "--wait --timeout 10 show me everything")
    ip.run_cell(
        "import openhands_magics\nconv = openhands_magics.last()\n"
        "print(repr(conv), conv.conversation, dict(conv.conversation.extra))\nconv",
        store_history=True,
    )
    out, _ = output.read()  # (read() fails on the planted key)
    assert "FINISHED" in out and "conversation_url" in out  # the server's other fields are there
    assert "session_api_key" not in out


# ---------------------------------------------------------------------------------------------------- choosing the API


def test_api_v0_on_a_v1_server_is_one_line_saying_so(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    assert ip.run_line_magic("openhands", "--api v0 hello") is None
    line = output.one_error_line()
    assert f"The server at {server_env.base_url} does not speak the OpenHands V0 API" in line
    assert "conversation id" not in line and "set the API to auto or v1" in line
    assert server_env.task_ids() == [] and openhands_magics.history() == []


def test_config_api_is_used_and_nonsense_is_refused(
    ip: InteractiveShell,
    v0_server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {v0_server.base_url!r}")
    ip.run_line_magic("config", "OpenHandsMagics.api = 'v0'")
    ip.run_line_magic("config", "OpenHandsMagics.api = 'v2'")
    magics = ip.magics_manager.registry["OpenHandsMagics"]
    assert magics.api == "v0"  # refused, unchanged
    assert "OpenHandsMagics.api must be one of auto, v1, v0; got 'v2'" in caplog.text

    handle = ip.run_line_magic("openhands", "configured V0")
    # Set to v0: nothing asks the server which API it speaks, the first request is the V0 start.
    assert [(r.method, r.path) for r in v0_server.requests] == [("POST", "/api/conversations")]
    assert handle.id == v0_server.conversation_ids()[0]


def test_openhands_api_env_is_used_and_the_option_wins(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_API", "v0")
    assert ip.run_line_magic("openhands", "from the environment") is None
    assert "does not speak the OpenHands V0 API" in output.one_error_line()
    handle = ip.run_line_magic("openhands", "--api v1 the option wins")
    assert handle.task_id == server_env.task_ids()[0]
    assert not any(r.path == "/api/conversations" and r.method == "GET" for r in server_env.requests)  # no probing
    output.read()


# ---------------------------------------------------------------------------------------------------- --watch


def test_watch_a_v1_conversation_by_task_id_conversation_id_or_link(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    started = ip.run_line_magic("openhands", "first")
    early = ip.run_line_magic("openhands", f"--watch {started.task_id}")  # before it exists: the task
    assert (early.task_id, early.id, early.status) == (started.task_id, None, "STARTING")
    _until(lambda: server_env.conversation_ids() != [])
    output.read()

    [conversation_id] = server_env.conversation_ids()
    by_task = ip.run_line_magic("openhands", f"--watch {started.task_id}")
    by_id = ip.run_line_magic("openhands", f"--watch {conversation_id}")
    by_link = ip.run_line_magic("openhands", f"--watch {server_env.base_url}/conversations/{conversation_id}")

    assert by_task.id == by_id.id == by_link.id == conversation_id
    assert by_task.task_id == started.task_id  # reached through its task: it knows both ids
    assert len(server_env.posts()) == 1
    assert started is early is by_task is by_id is by_link  # one handle for one conversation, however it is named
    assert openhands_magics.history() == [started]
    out, _ = output.read()
    assert out.count(f"OpenHands conversation {conversation_id} ") == 3
    assert f"start task {started.task_id}" in out.splitlines()[0]

    assert ip.run_line_magic("openhands", "--watch " + "0" * 32) is None
    line = output.one_error_line()
    assert f"No conversation or start task {'0' * 32} on {server_env.base_url}" in line


def test_watch_a_v0_conversation_by_id_or_link(
    ip: InteractiveShell, v0_env: LocalOpenHandsServer, output: Output
) -> None:
    started = ip.run_line_magic("openhands", "first")
    by_id = ip.run_line_magic("openhands", f"--watch {started.id}")
    by_link = ip.run_line_magic("openhands", f"--watch {started.url}")
    assert by_id.id == by_link.id == started.id == v0_env.conversation_ids()[0]
    assert len(v0_env.posts()) == 1
    out, _ = output.read()
    assert out.count(f"OpenHands conversation {started.id} ") == 3
    assert ip.run_line_magic("openhands", "--watch " + "0" * 32) is None
    assert f"Conversation {'0' * 32} was not found" in output.one_error_line()


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "The message is empty"),
        ("--repo", "--repo needs a value"),
        ("--repo not-a-repo fix it", "--repo must look like owner/repo"),
        ("--frobnicate fix it", "Unknown option --frobnicate"),
        ("--timeout 5 fix it", "--timeout only makes sense with --wait"),
        ("--wait --timeout -1 fix it", "--timeout must be a positive number"),
        ("--api v2 fix it", "--api takes auto, v1 or v0, got 'v2'"),
        ("--watch " + "a" * 32 + " and a message", "--watch shows an existing conversation; it takes no message"),
        ("--watch ../../etc/passwd", "is not a conversation"),
        ("--base-url http://example.com fix it", "Refusing to send the API key over plain http"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, line: str, expected: str
) -> None:
    assert ip.run_line_magic("openhands", line) is None
    assert expected in output.one_error_line()
    assert server_env.requests == []
    assert openhands_magics.history() == []


def test_no_key_says_how_to_set_one_and_sends_nothing(
    ip: InteractiveShell, server: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    assert ip.run_line_magic("openhands", "hello") is None
    line = output.one_error_line()
    assert "OPENHANDS_API_KEY" in line and "%openhands --login" in line
    assert server.requests == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 401, "body": {"error": "NoCredentialsError"}}, "The API key was rejected (HTTP 401)"),
        (
            {"status": 429, "body": {"error": "Rate limit exceeded"}, "headers": {"Retry-After": "30"}},
            "10 conversations at once",
        ),
        ({"status": 502, "body": b"Bad Gateway"}, "The OpenHands server failed (HTTP 502)"),
        (
            {"status": 503, "body": {"detail": "overloaded"}},
            "(HTTP 503); try again in a minute (server said: overloaded)",
        ),
        ({"status": 200, "body": b"<html>"}, "not valid JSON"),
        ({"status": 200, "body": {"status": "ok"}}, "has no start task id"),
        ({"delay": 1.0}, "did not answer within 0.3 s"),
    ],
)
def test_server_trouble_on_start_is_one_clear_line(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, fault: dict[str, Any], expected: str
) -> None:
    ip.run_line_magic("config", "OpenHandsMagics.timeout = 0.3")
    if fault.get("delay"):  # (the API named, so the start is the only request that can miss the 0.3 s: a detection
        # read that missed it on a loaded machine is its own line, "try again", never the start's)
        ip.run_line_magic("config", "OpenHandsMagics.api = 'v1'")
    server_env.inject(method="POST", **fault)
    assert ip.run_line_magic("openhands", "hello") is None
    line = output.one_error_line()
    assert expected in line
    if fault.get("status", 500) >= 500 or fault.get("delay"):  # it may have reached the server: say where to look
        assert f"may have been started anyway: check {server_env.base_url} before retrying" in line
    assert len(server_env.posts()) == 1  # never posted twice
    assert openhands_magics.history() == []


def test_a_start_past_the_accounts_limit_is_one_line_naming_the_running_ones_and_offering_queue(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=30), max_running=1) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        first = ip.run_line_magic("openhands", "first")
        assert first is not None
        while first.refresh() is not None and first.id is None:  # ready, and running for 30 s: the account is full
            time.sleep(0.05)
        output.read()
        assert ip.run_line_magic("openhands", "second") is None
        line = output.one_error_line()
        assert "Too many conversations running (HTTP 429): this account runs at most 1 at once" in line
        assert "Add --queue" in line
        running = server.conversation_ids()[0]
        assert f"{server.base_url}/conversations/{running}" in line  # the running one, by its link
        assert len(server.posts()) == 2 and server.running_count() == 1


def test_server_down_is_one_clear_line(
    ip: InteractiveShell, output: Output, dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    assert ip.run_line_magic("openhands", f"--base-url {dead_url} hello") is None
    assert f"Could not connect to {dead_url}" in output.one_error_line()


# ------------------------------------------------------------------------------------------------ help, key, settings


def test_help_and_question_mark_document_every_option(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("openhands", "--help")
    usage, _ = output.read()
    ip.run_cell("%openhands?")
    doc, _ = output.read()
    for option in (
        "--repo",
        "--base-url",
        "--api",
        "--wait",
        "--timeout",
        "--no-panel",
        "--watch",
        "--login",
        "--help",
    ):
        assert option in usage and option in doc, option
    assert "task_id" in usage and "OPENHANDS_API_KEY" in doc
    assert server_env.requests == []


def test_login_keeps_the_key_in_memory_only(
    ip: InteractiveShell, server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": SECRET)
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    assert ip.run_line_magic("openhands", "--login") is None
    # (only the question whether it has Cloud's device login: a self-hosted server answers 404, so it prompts)
    assert [(r.method, r.path, r.authorization) for r in server.requests] == [("POST", "/oauth/device/authorize", None)]
    handle = ip.run_line_magic("openhands", "after login")
    assert isinstance(handle, ConversationHandle)
    assert server.posts()[0].authorization == f"Bearer {SECRET}"
    out, _ = output.read()
    assert "kept in memory" in out
    assert not any(SECRET in repr(value) for value in ip.user_ns.values())
    assert SECRET not in repr(ip.config) and SECRET not in repr(handle.endpoint)


def test_login_and_a_message_in_one_line(
    ip: InteractiveShell, server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": SECRET)
    handle = ip.run_line_magic("openhands", f"--login --base-url {server.base_url} go")
    assert handle.task_id == server.task_ids()[0] and _text_of(server.posts()[0]) == "go"


def test_login_where_the_front_end_cannot_prompt(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_stdin(prompt: str = "") -> str:
        raise RuntimeError("stdin not implemented")

    monkeypatch.setattr("getpass.getpass", no_stdin)
    assert ip.run_line_magic("openhands", "--login hello") is None
    assert "set OPENHANDS_API_KEY" in output.one_error_line()


def test_config_traits_are_validated_and_used(
    ip: InteractiveShell,
    server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    ip.run_line_magic("openhands", "via config")
    assert len(server.posts()) == 1
    magics = ip.magics_manager.registry["OpenHandsMagics"]
    for bad in ("poll_interval = -1", "max_poll_interval = 0", "timeout = -5"):
        ip.run_line_magic("config", f"OpenHandsMagics.{bad}")
    assert (magics.poll_interval, magics.max_poll_interval, magics.timeout) == (POLL, MAX_POLL, 30.0)  # refused
    for name in ("poll_interval", "max_poll_interval", "timeout"):
        assert f"OpenHandsMagics.{name} must be a number of seconds from 0.05 on" in caplog.text
    ip.config.pop("OpenHandsMagics", None)


def test_settings_load_from_an_ipython_config_file(
    v0_server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    (tmp_path / "ipython_config.py").write_text(
        f"c.OpenHandsMagics.base_url = {v0_server.base_url!r}\nc.OpenHandsMagics.max_poll_interval = 12.5\n"
        "c.OpenHandsMagics.api = 'V0'\n"
    )
    shell = ipython_shell()
    shell.config.merge(PyFileConfigLoader("ipython_config.py", path=str(tmp_path)).load_config())
    shell.run_line_magic("load_ext", "openhands_magics")
    try:
        magics = shell.magics_manager.registry["OpenHandsMagics"]
        assert (magics.base_url, magics.max_poll_interval, magics.api) == (v0_server.base_url, 12.5, "v0")
        shell.run_line_magic("openhands", "configured from a file")
        assert [(r.method, r.path) for r in v0_server.requests] == [("POST", "/api/conversations")]
    finally:
        shell.run_line_magic("unload_ext", "openhands_magics")
        shell.config.pop("OpenHandsMagics", None)


def test_clients_are_shared_across_calls_until_the_settings_change(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    first = ip.run_line_magic("openhands", "one")
    second = ip.run_line_magic("openhands", "two")
    assert first.endpoint == second.endpoint and len(get_session().connections) == 1
    probes = [r for r in server_env.requests if r.method == "GET"]
    assert len(probes) == 2  # the API was asked once, for both
    ip.run_line_magic("config", "OpenHandsMagics.timeout = 0.3")
    server_env.inject(method="POST", delay=1.0)
    assert ip.run_line_magic("openhands", "three") is None
    assert "did not answer within 0.3 s" in output.one_error_line()
    assert len(get_session().connections) == 2


def test_unload_removes_the_magic_closes_clients_and_old_handles_still_refresh(
    server_env: LocalOpenHandsServer, output: Output
) -> None:
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "openhands_magics")
    try:
        handle = shell.run_line_magic("openhands", "before unload")
        client = get_session().client(handle.endpoint)
        shell.run_line_magic("unload_ext", "openhands_magics")
        assert shell.find_line_magic("openhands") is None and shell.find_cell_magic("openhands") is None
        assert client._http.is_closed
        assert openhands_magics.history() == [handle]  # the record stays

        reads = len(server_env.requests)
        handle.refresh()
        assert len(server_env.requests) > reads and handle.task_id == server_env.task_ids()[0]

        shell.run_line_magic("load_ext", "openhands_magics")
        again = shell.run_line_magic("openhands", "after reload")
        assert isinstance(again, ConversationHandle) and openhands_magics.history() == [handle, again]
    finally:
        shell.run_line_magic("unload_ext", "openhands_magics")


def test_debug_logs_of_every_layer_never_contain_the_key_or_the_session_key(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")  # httpx, httpcore and this package at their most verbose
    server_env.inject(method="GET", status=503, path_prefix="/api/v1/app-conversations/start-tasks")
    handle = ip.run_line_magic("openhands", "--wait --timeout 10 log everything")
    ip.run_line_magic("openhands", "--repo bad")
    assert handle.status == "FINISHED"
    assert any(r.path.endswith("/start-tasks") and r.method == "GET" for r in server_env.requests)
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    assert any(record.name.startswith("httpx") for record in caplog.records)
    assert f"start task {handle.task_id}" in caplog.text
    assert SECRET not in caplog.text and PLANTED_SESSION_KEY not in caplog.text
    output.read()


def test_reattach_watches_again_what_the_saved_notebook_names_and_nothing_of_another_server(
    ip: InteractiveShell,
    server_env: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    import json

    from openhands_magics.session import get_session

    long_server = LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=60)).start()
    try:
        monkeypatch.setenv("OPENHANDS_BASE_URL", long_server.base_url)
        live = ip.run_line_magic("openhands", "still running")
        text_only = ip.run_line_magic("openhands", "also running")
        time.sleep(0.1)  # both run for a minute
        for handle in (live, text_only):
            handle.refresh()
        outputs = [
            {
                "output_type": "display_data",
                "data": {"text/plain": "…"},
                "metadata": {
                    "openhands": {"conversation_id": live.id, "task_id": live.task_id, "base_url": long_server.base_url}
                },
            },
            {"output_type": "stream", "name": "stdout", "text": [f"OpenHands conversation {text_only.id} RUNNING\n"]},
            {
                "output_type": "display_data",
                "data": {"text/plain": "…"},
                "metadata": {
                    "openhands": {"conversation_id": "f" * 32, "task_id": None, "base_url": "https://elsewhere.example"}
                },
            },
        ]
        notebook = tmp_path / "work.ipynb"
        notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))
        monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
        output.read()
        get_session().close()
        import openhands_magics.session as session_module

        session_module._session = None  # a kernel restart: the record is gone, the notebook is not
        long_server.requests.clear()

        assert ip.run_line_magic("openhands", "--reattach") is None
        out, err = output.read()
        assert "2 watched again, 0 already over." in out
        assert live.id in out and text_only.id in out
        assert "Left alone: conversations on https://elsewhere.example" in err
        assert all("elsewhere" not in str(r.query) for r in long_server.requests)
        assert {h.id for h in openhands_magics.history()} == {live.id, text_only.id}
    finally:
        long_server.stop()


def test_reattach_without_a_notebook_or_a_record_says_so(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert ip.run_line_magic("openhands", "--reattach") is None
    assert "Nothing to re-attach" in output.one_error_line()
    assert server_env.requests == []


def test_saved_conversations_are_read_from_metadata_or_text_and_a_broken_file_gives_none(tmp_path: Any) -> None:
    import json

    from openhands_magics.saved import SavedConversation, saved_conversations

    task, conv, other = "1" * 32, "2" * 32, "3" * 32
    outputs = [
        {
            "output_type": "display_data",
            "data": {},
            "metadata": {"openhands": {"conversation_id": None, "task_id": task, "base_url": "http://127.0.0.1:9"}},
        },
        {
            "output_type": "display_data",
            "data": {},
            "metadata": {"openhands": {"conversation_id": conv, "task_id": task, "base_url": "http://127.0.0.1:9"}},
        },
        {"output_type": "display_data", "data": {"text/plain": [f"OpenHands conversation {other} FINISHED 'x' (2s)"]}},
        {"output_type": "stream", "text": "OpenHands conversation (not created yet) STARTING · start task " + "4" * 32},
    ]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": [{"outputs": outputs}, {"cell_type": "markdown"}]}))
    assert saved_conversations(path) == [
        SavedConversation(conv, task, "http://127.0.0.1:9"),  # the later output, which knows both ids, wins
        SavedConversation(other, None, None),
        SavedConversation(None, "4" * 32, None),
    ]
    path.write_text("{not json")
    assert saved_conversations(path) == []
