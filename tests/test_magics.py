"""``%openhands`` / ``%%openhands`` in an in-process IPython shell (the terminal path: text output, no widgets).

Each error a user can cause must print exactly one line and no traceback, and the API key must not appear in
anything the magic prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

import openhands_magics
from openhands_magics import polling
from openhands_magics.handle import ConversationHandle
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET


def _test_shell() -> InteractiveShell:
    start_ipython()  # once per process; later calls are no-ops
    shell = get_ipython()
    assert shell is not None
    return shell


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = _test_shell()
    shell.run_line_magic("load_ext", "openhands_magics")
    shell.run_line_magic("config", "OpenHandsMagics.poll_interval = 0.05")
    yield shell
    shell.run_line_magic("unload_ext", "openhands_magics")
    shell.config.pop("OpenHandsMagics", None)


class Output:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def read(self) -> tuple[str, str]:
        out, err = self._capsys.readouterr()
        assert SECRET not in out + err, "the API key was printed"
        assert "Traceback" not in out + err
        return out, err

    def one_error_line(self) -> str:
        out, err = self.read()
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("openhands: ")
        return lines[0]


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Output:
    return Output(capsys)


def test_line_magic_starts_a_conversation_and_returns_a_handle(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    handle = ip.run_line_magic("openhands", 'Check README.md for "wrong" {info} and $cost')

    assert isinstance(handle, ConversationHandle)
    assert server_env.posts()[0].body == {"initial_user_msg": 'Check README.md for "wrong" {info} and $cost'}
    assert handle.url == f"{server_env.base_url}/conversations/{handle.id}"
    assert openhands_magics.last() is handle and handle in openhands_magics.history()
    out, _ = output.read()
    assert f"OpenHands conversation {handle.id} STARTING {handle.url}" in out


def test_cell_magic_sends_the_body_verbatim_without_variable_expansion(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    ip.user_ns["x"] = "EXPANDED"
    body = "\n\nProfile data/load.py {x} $x,\n  make it 2× faster, and open a PR.\n\n"
    ip.run_cell(f"%%openhands --repo octo/demo\n{body}")
    assert server_env.posts()[0].body == {
        "initial_user_msg": "Profile data/load.py {x} $x,\n  make it 2× faster, and open a PR.",
        "repository": "octo/demo",
    }
    ip.run_cell("%openhands fix {x} and $x")
    assert server_env.posts()[1].body["initial_user_msg"] == "fix {x} and $x"
    output.read()


def test_assigned_handle_is_not_displayed_twice(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    ip.run_cell("%openhands once", store_history=True)
    out, _ = output.read()
    assert out.count("OpenHands conversation") == 1
    ip.run_cell("import openhands_magics; openhands_magics.last()", store_history=True)
    out, _ = output.read()
    assert out.count("OpenHands conversation") == 1  # a later cell shows it again


def test_wait_prints_each_status_change(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    handle = ip.run_line_magic("openhands", "--wait --timeout 10 wait for me")
    out, err = output.read()
    assert err == ""
    changes = [line for line in out.splitlines() if line.startswith(f"{handle.id}: ")]
    assert [line.split()[1] for line in changes] == ["STARTING", "RUNNING", "STOPPED"]
    assert handle.status == "STOPPED"


def test_wait_timeout_says_the_conversation_goes_on(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    server_env.schedule = (("RUNNING", None),)
    handle = ip.run_line_magic("openhands", "--wait --timeout 0.3 long task")
    line = output.one_error_line()
    assert "after 0.3 s; the conversation goes on" in line and handle.url in line


def test_interrupting_wait_stops_waiting_not_the_conversation(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(polling.time, "sleep", interrupted)
    handle = ip.run_line_magic("openhands", "--wait interrupt me")
    assert isinstance(handle, ConversationHandle)
    line = output.one_error_line()
    assert line == f"openhands: Stopped waiting; conversation {handle.id} goes on: {handle.url}"
    assert server_env.status_of(handle.id) in ("STARTING", "RUNNING")


def test_display_failure_still_shows_and_records_the_id(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_handle: Any) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr("openhands_magics.views.text_summary", broken)
    handle = ip.run_line_magic("openhands", "survive a broken display")
    out, err = output.read()
    assert f"OpenHands conversation {handle.id}: {handle.url}" in out
    assert "renderer broke" in err and "openhands_magics.last()" in err
    assert openhands_magics.last() is handle


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "The message is empty"),
        ("--repo", "--repo needs a value"),
        ("--repo not-a-repo fix it", "--repo must look like owner/repo"),
        ("--frobnicate fix it", "Unknown option --frobnicate"),
        ("--timeout 5 fix it", "--timeout only makes sense with --wait"),
        ("--watch ../../etc/passwd", "is not a conversation id"),
        ("--base-url http://example.com fix it", "Refusing to send the API key over plain http"),
    ],
)
def test_bad_input_is_one_line_and_sends_nothing(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, line: str, expected: str
) -> None:
    assert ip.run_line_magic("openhands", line) is None
    assert expected in output.one_error_line()
    assert server_env.requests == []


def test_no_key_says_how_to_set_one_and_sends_nothing(ip: InteractiveShell, server: LocalOpenHandsServer, output: Output) -> None:
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    assert ip.run_line_magic("openhands", "hello") is None
    line = output.one_error_line()
    assert "OPENHANDS_API_KEY" in line and "%openhands --login" in line
    assert server.requests == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"status": 401, "body": {"error": "NoCredentialsError"}}, "The API key was rejected (HTTP 401)"),
        ({"status": 429, "body": {"error": "Rate limit exceeded"}, "headers": {"Retry-After": "30"}}, "10 conversations at once"),
        ({"status": 502, "body": b"Bad Gateway"}, "The OpenHands server failed (HTTP 502)"),
        ({"status": 200, "body": b"<html>"}, "not valid JSON"),
        ({"status": 200, "body": {"status": "ok"}}, "has no conversation_id"),
        ({"delay": 1.0}, "did not answer within 0.3 s"),
    ],
)
def test_server_trouble_is_one_clear_line(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, fault: dict[str, Any], expected: str
) -> None:
    ip.run_line_magic("config", "OpenHandsMagics.timeout = 0.3")
    server_env.inject(method="POST", **fault)
    assert ip.run_line_magic("openhands", "hello") is None
    assert expected in output.one_error_line()
    assert len(server_env.posts()) == 1


def test_server_down_is_one_clear_line(ip: InteractiveShell, output: Output, dead_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    assert ip.run_line_magic("openhands", f"--base-url {dead_url} hello") is None
    assert f"Could not connect to {dead_url}" in output.one_error_line()


def test_watch_shows_an_existing_conversation_without_starting_one(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    started = ip.run_line_magic("openhands", "first")
    output.read()
    watched = ip.run_line_magic("openhands", f"--watch {started.url}")
    assert watched.id == started.id
    assert len(server_env.posts()) == 1
    assert f"OpenHands conversation {started.id}" in output.read()[0]
    assert ip.run_line_magic("openhands", "--watch " + "0" * 32) is None
    assert "Not found (HTTP 404)" in output.one_error_line()


def test_help_and_question_mark_document_every_option(ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output) -> None:
    ip.run_line_magic("openhands", "--help")
    out, _ = output.read()
    doc = ip.find_line_magic("openhands").__doc__
    for option in ("--repo", "--base-url", "--wait", "--timeout", "--no-panel", "--watch", "--login", "--help"):
        assert option in out and option in doc
    assert server_env.requests == []


def test_login_keeps_the_key_in_memory_only(ip: InteractiveShell, server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": SECRET)
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    ip.run_line_magic("openhands", "--login")
    handle = ip.run_line_magic("openhands", "after login")
    assert server.posts()[0].authorization == f"Bearer {SECRET}"
    assert isinstance(handle, ConversationHandle)
    out, _ = output.read()
    assert "kept in memory" in out
    assert not any(SECRET in repr(value) for value in ip.user_ns.values())
    config_values = repr(ip.config)
    assert SECRET not in config_values


def test_login_where_the_front_end_cannot_prompt(ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_stdin(prompt: str = "") -> str:
        raise RuntimeError("stdin not implemented")

    monkeypatch.setattr("getpass.getpass", no_stdin)
    assert ip.run_line_magic("openhands", "--login") is None
    assert "set OPENHANDS_API_KEY" in output.one_error_line()


def test_config_traits_are_validated_and_used(ip: InteractiveShell, server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    ip.run_line_magic("config", f"OpenHandsMagics.base_url = {server.base_url!r}")
    ip.run_line_magic("openhands", "via config")
    assert len(server.posts()) == 1
    ip.run_line_magic("config", "OpenHandsMagics.poll_interval = -1")
    magics = ip.magics_manager.registry["OpenHandsMagics"]
    assert magics.poll_interval == 0.05  # refused, unchanged
    output.read()


def test_settings_load_from_an_ipython_config_file(
    server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    (tmp_path / "ipython_config.py").write_text(
        f"c.OpenHandsMagics.base_url = {server.base_url!r}\nc.OpenHandsMagics.max_poll_interval = 12.5\n"
    )
    shell = _test_shell()
    shell.config.merge(PyFileConfigLoader("ipython_config.py", path=str(tmp_path)).load_config())
    shell.run_line_magic("load_ext", "openhands_magics")
    try:
        magics = shell.magics_manager.registry["OpenHandsMagics"]
        assert (magics.base_url, magics.max_poll_interval) == (server.base_url, 12.5)
        shell.run_line_magic("openhands", "configured from a file")
        assert len(server.posts()) == 1
    finally:
        shell.run_line_magic("unload_ext", "openhands_magics")
        shell.config.pop("OpenHandsMagics", None)
    output.read()


def test_clients_are_shared_across_calls_until_the_settings_change(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output
) -> None:
    first = ip.run_line_magic("openhands", "one")
    second = ip.run_line_magic("openhands", "two")
    assert first._client is second._client
    ip.run_line_magic("config", "OpenHandsMagics.timeout = 0.3")
    server_env.inject(method="POST", delay=1.0)
    assert ip.run_line_magic("openhands", "three") is None
    assert "did not answer within 0.3 s" in output.one_error_line()


def test_unload_removes_the_magic_and_closes_clients(server_env: LocalOpenHandsServer, output: Output) -> None:
    shell = _test_shell()
    shell.run_line_magic("load_ext", "openhands_magics")
    handle = shell.run_line_magic("openhands", "before unload")
    shell.run_line_magic("unload_ext", "openhands_magics")
    assert shell.find_line_magic("openhands") is None
    assert handle._client._http.is_closed
    output.read()


def test_debug_logs_of_every_layer_never_contain_the_key(
    ip: InteractiveShell, server_env: LocalOpenHandsServer, output: Output, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")  # httpx, httpcore and this package at their most verbose
    server_env.inject(method="GET", status=503)
    handle = ip.run_line_magic("openhands", "--wait --timeout 5 log everything")
    ip.run_line_magic("openhands", "--repo bad")
    assert handle.status == "STOPPED"
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    assert f"conversation {handle.id}" in caplog.text
    assert SECRET not in caplog.text
    output.read()
