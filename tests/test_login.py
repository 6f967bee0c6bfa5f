"""The key OpenHands' CLI keeps (``~/.openhands/cloud/api_key.txt``, mode 0600): used without OPENHANDS_API_KEY,
refused when others may read it, written by ``--login --save``; never printed."""

from __future__ import annotations

import getpass
import os
import stat
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics import config
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET, Output, wait_until


def _cli_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENHANDS_PERSISTENCE_DIR", str(tmp_path))
    return tmp_path / "cloud" / "api_key.txt"


def test_without_a_key_in_the_environment_the_clis_key_file_is_used(
    ip: InteractiveShell,
    server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key_file = _cli_dir(tmp_path, monkeypatch)
    key_file.parent.mkdir(parents=True)
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o600)
    monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
    assert ip.run_line_magic("openhands", "--no-panel Fix it") is not None
    assert [r.authorization for r in server.posts()] == [f"Bearer {SECRET}"]
    assert SECRET not in "".join(output.read())


def test_a_cli_key_file_others_may_read_is_refused_in_one_line(
    ip: InteractiveShell,
    server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key_file = _cli_dir(tmp_path, monkeypatch)
    key_file.parent.mkdir(parents=True)
    key_file.write_text(SECRET)
    key_file.chmod(0o644)
    monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
    assert ip.run_line_magic("openhands", "Fix it") is None
    line = output.one_error_line()
    assert "may be read by others (mode 0644)" in line and f"chmod 600 {key_file}" in line
    assert SECRET not in line and server.posts() == []


def test_login_save_writes_the_key_where_the_cli_reads_it_readable_by_its_owner_only(
    ip: InteractiveShell,
    server: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key_file = _cli_dir(tmp_path, monkeypatch)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": SECRET)
    monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
    ip.run_line_magic("openhands", "--login --save")
    assert key_file.read_text() == SECRET
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    out, err = output.read()
    assert f"saved to {key_file} (mode 0600)" in out and SECRET not in out + err


def test_login_on_cloud_shows_the_device_code_returns_at_once_and_takes_the_key_once_confirmed(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = _cli_dir(tmp_path, monkeypatch)
    with LocalOpenHandsServer(SECRET, device_flow=True) as server:
        assert server.device is not None
        server.device.interval = 0.1
        monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
        began = time.monotonic()
        assert ip.run_line_magic("openhands", "--login --save") is None
        assert time.monotonic() - began < 2.0  # the cell returns; the polling goes on in the I/O thread
        (user_code,) = server.device.user_codes
        out, _ = output.read()
        assert user_code in out and f"{server.base_url}/oauth/device/verify?user_code={user_code}" in out
        assert config._session_key is None  # not yet confirmed
        server.device.confirm(user_code)
        wait_until(lambda: config._session_key is not None)
        wait_until(lambda: "Logged in to" in output.read()[0])
        assert ip.run_line_magic("openhands", "--no-panel Fix it") is not None
        assert [r.authorization for r in server.posts() if r.path.startswith("/api/")] == [f"Bearer {SECRET}"]
        assert key_file.read_text() == SECRET and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        tokens = [r for r in server.requests if r.path == "/oauth/device/token"]
        assert tokens and all(r.body == f"device_code={r.body.split('=', 1)[1]}" for r in tokens)


def test_a_denied_device_login_is_one_line_and_keeps_no_key(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalOpenHandsServer(SECRET, device_flow=True) as server:
        assert server.device is not None
        server.device.interval = 0.1
        monkeypatch.setenv("OPENHANDS_BASE_URL", server.base_url)
        ip.run_line_magic("openhands", "--login")
        server.device.deny()
        wait_until(lambda: "Login failed: the request was denied in the browser." in output.read()[0])
        assert config._session_key is None
