"""Shared fixtures: a local OpenHands-compatible server on a free port, and clients pointed at it.

Every test talks real HTTP to 127.0.0.1; nothing reaches an outside address.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

from openhands_magics import config, session, store
from openhands_magics._protocol import RetryPolicy
from openhands_magics.client import OpenHandsClient, forget_detected_apis
from openhands_magics.handle import ConversationHandle
from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, Timeline

#: A key that must never show up in any output, state or traceback; tests grep for it.
SECRET = "sk-oh-test-SECRET-4f1c9a77"
#: Fast enough for tests, slow enough that a poller sees every status.
FAST = Timeline(starting=0.3, running=0.6)
QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
#: Ready at once, then the agent works for longer than any test: a conversation to act on while it runs.
LONG = Timeline(starting=0.05, running=60.0)
#: Quick, and leaving everything a final card shows: an answer, a changed file, a pull request, a cost.
QUICK = Timeline(
    starting=0.1,
    running=0.3,
    answer="Cleaned up.\nSee data/load.py",
    changes=(("UPDATED", "demo/data/load.py"),),
    pr_numbers=(42,),
    cost=0.12,
    prompt_tokens=1000,
    completion_tokens=234,
)
#: How fast the magic's ``ip`` shell polls (``%config OpenHandsMagics.poll_interval`` and ``max_poll_interval``).
POLL, MAX_POLL = 0.05, 0.2


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """The predicate's first true value, checked every 10 ms; AssertionError past ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
    return result


@pytest.fixture
def stop_button() -> Iterator[Callable[[], None]]:
    """Press the kernel's stop button: SIGINT to the main thread, which raises KeyboardInterrupt there as in a kernel
    (ipykernel installs Python's handler; a test run started in the background, as CI's 3.10 run is, starts with
    SIGINT ignored, and the press would do nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield lambda: signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
    signal.signal(signal.SIGINT, previous)


def papermill_twice(notebook: Path, env: dict[str, str], timeout: float) -> tuple[Path, Path]:
    """Execute ``notebook`` with papermill twice, as a scheduled re-run would, in fresh kernels with ``env``; the two
    executed copies (``out0.ipynb`` and ``out1.ipynb`` beside it)."""
    outputs = (notebook.parent / "out0.ipynb", notebook.parent / "out1.ipynb")
    for output in outputs:
        command = [sys.executable, "-m", "papermill", "--kernel", "python3", str(notebook), str(output)]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=timeout, cwd=notebook.parent)
    return outputs


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests start with no key and no base URL, whatever the developer's shell has."""
    monkeypatch.delenv(config.API_KEY_ENV, raising=False)
    monkeypatch.delenv(config.BASE_URL_ENV, raising=False)
    monkeypatch.delenv(config.API_ENV, raising=False)
    monkeypatch.setenv("OPENHANDS_PERSISTENCE_DIR", "/nonexistent/openhands-cli")  # (no CLI key file either)
    config.clear_session_api_key()
    forget_detected_apis()
    yield
    config.clear_session_api_key()
    forget_detected_apis()


@pytest.fixture(autouse=True)
def polling_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No live event stream unless a test asks for one (``monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")``): the
    local server has no agent server yet, and the tests written before the stream count polling's requests."""
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "0")


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Conversations recorded on disk go to a fresh directory per test (kernels started by a test inherit it), never
    to the developer's Jupyter data directory."""
    directory = tmp_path_factory.mktemp("openhands-data")
    monkeypatch.setenv(store.DATA_DIR_ENV, str(directory))
    store.reset_store()
    yield directory
    store.reset_store()


@pytest.fixture(autouse=True)
def fresh_session() -> Iterator[None]:
    """Each test gets its own process-wide session (record, clients, pollers), closed afterwards."""
    session._session = None
    yield
    if session._session is not None:
        session._session.close()
    session._session = None


@pytest.fixture
def server() -> Iterator[LocalOpenHandsServer]:
    """A V1 server (what OpenHands 1.7+ and Cloud speak) with Cloud's Bearer auth."""
    with LocalOpenHandsServer(api_key=SECRET, timeline=FAST) as running:
        yield running


@pytest.fixture
def long_server() -> Iterator[LocalOpenHandsServer]:
    """A V1 server whose conversations are ready at once and then run for a minute (:data:`LONG`)."""
    with LocalOpenHandsServer(api_key=SECRET, timeline=LONG) as running:
        yield running


@pytest.fixture
def v0_server() -> Iterator[LocalOpenHandsServer]:
    """A server like OpenHands 1.6: V0 (and an early V1 that knows none of its conversations)."""
    with LocalOpenHandsServer(api_key=SECRET, api="v0", timeline=FAST) as running:
        yield running


@pytest.fixture
def v0_env(v0_server: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch) -> LocalOpenHandsServer:
    """A V0 server (OpenHands 1.6) that OPENHANDS_BASE_URL / OPENHANDS_API_KEY point at."""
    for name, value in v0_server.environ().items():
        monkeypatch.setenv(name, value)
    return v0_server


@pytest.fixture
def server_env(server: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch) -> LocalOpenHandsServer:
    """The server, with OPENHANDS_BASE_URL / OPENHANDS_API_KEY pointing at it (how users configure the magics)."""
    for name, value in server.environ().items():
        monkeypatch.setenv(name, value)
    return server


@pytest.fixture
def client(server: LocalOpenHandsServer) -> Iterator[OpenHandsClient]:
    with OpenHandsClient(SECRET, base_url=server.base_url, timeout=2.0, retry=QUICK_RETRY) as opened:
        yield opened


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------------- the magic


def ipython_shell() -> InteractiveShell:
    """The process's one in-process IPython shell (started on first use)."""
    start_ipython()  # once per process; later calls are no-ops
    shell = get_ipython()
    assert shell is not None
    return shell


class Output:
    """What the magic printed; every read checks that no secret and no traceback is in it."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def read(self) -> tuple[str, str]:
        out, err = self._capsys.readouterr()
        assert SECRET not in out + err, "the API key was printed"
        assert PLANTED_SESSION_KEY not in out + err, "the server's session_api_key was printed"
        assert "Traceback" not in out + err
        return out, err

    def one_error_line(self) -> str:
        _, err = self.read()
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("openhands: ")
        return lines[0]


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    """The in-process shell with the extension loaded and polling fast; unloaded afterwards."""
    shell = ipython_shell()
    shell.run_line_magic("load_ext", "openhands_magics")
    shell.run_line_magic("config", f"OpenHandsMagics.poll_interval = {POLL}")
    shell.run_line_magic("config", f"OpenHandsMagics.max_poll_interval = {MAX_POLL}")
    yield shell
    shell.run_line_magic("unload_ext", "openhands_magics")
    shell.config.pop("OpenHandsMagics", None)


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[Output]:
    """What the magic prints, read by the test; whatever it did not read is checked too."""
    captured = Output(capsys)
    yield captured
    captured.read()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalOpenHandsServer]:
    """A V1 server of :data:`QUICK` conversations that OPENHANDS_BASE_URL / OPENHANDS_API_KEY point at."""
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        yield server


def finished(ip: InteractiveShell, message: str = "Clean up the CSV loader", repo: str = "") -> ConversationHandle:
    """A conversation started through the magic with ``--wait``, once it FINISHED."""
    handle = ip.run_line_magic("openhands", f"--wait {'--repo ' + repo if repo else ''} {message}")
    assert handle.status == "FINISHED", handle
    return handle


def sent_messages(server: LocalOpenHandsServer) -> list[str]:
    """The follow-up texts the server received, in order."""
    return [r.body["content"][0]["text"] for r in server.posts() if r.path.endswith("/send-message")]
