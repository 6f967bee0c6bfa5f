"""End to end in a real ipykernel, driven through jupyter_client as a front end would.

Proves the panel is live: its ``status`` trait changes (comm ``update`` messages on iopub) while the kernel keeps
answering other execute requests, i.e. polling never blocks the kernel. Also checks that nothing the kernel sends,
in any of these scenarios, contains the API key.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET

LIVE_SCHEDULE = (("STARTING", 0.6), ("RUNNING", 1.6), ("STOPPED", None))


@dataclass
class KernelSession:
    """A minimal front end: sends execute requests, keeps every iopub message it sees."""

    client: Any
    messages: list[dict[str, Any]] = field(default_factory=list)

    def _next_iopub(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        message["received"] = time.monotonic()
        self.messages.append(message)
        return message

    def execute(self, code: str, timeout: float = 20) -> tuple[list[dict[str, Any]], float]:
        """Run ``code``; return its iopub outputs and the time its reply arrived."""
        msg_id = self.client.execute(code)
        reply = self.client.get_shell_msg(timeout=timeout)
        replied = time.monotonic()
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "ok", reply["content"]
        outputs: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._next_iopub(timeout=deadline - time.monotonic())
            if message is None:
                break
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return outputs, replied
            if message["msg_type"] in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                outputs.append(message)
        raise AssertionError(f"no idle after {code!r}")

    def listen(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._next_iopub(timeout=remaining)

    def status_updates(self, model_id: str) -> list[tuple[float, str]]:
        return [
            (m["received"], m["content"]["data"]["state"]["status"])
            for m in self.messages
            if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == model_id
            and "status" in m["content"]["data"].get("state", {})
        ]

    def wait_for_status(self, model_id: str, status: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(s == status for _, s in self.status_updates(model_id)):
            assert time.monotonic() < deadline, f"panel never reached {status}: {self.status_updates(model_id)}"
            self._next_iopub(timeout=0.2)


@pytest.fixture(scope="module")
def kernel_server() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(api_key=SECRET, schedule=LIVE_SCHEDULE) as server:
        yield server


@pytest.fixture(scope="module")
def kernel(kernel_server: LocalOpenHandsServer) -> Iterator[KernelSession]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
    env.update(kernel_server.environ())
    manager = KernelManager(kernel_name="python3")
    manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]  # this venv's Python
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    session = KernelSession(client)
    session.execute("%load_ext openhands_magics\n%config OpenHandsMagics.poll_interval = 0.1\n%config OpenHandsMagics.max_poll_interval = 0.2")
    yield session
    client.stop_channels()
    manager.shutdown_kernel(now=True)
    everything = json.dumps([m["content"] for m in session.messages], default=str)
    assert SECRET not in everything, "the API key appeared in a message the kernel sent"


def _panel_model_id(outputs: list[dict[str, Any]]) -> str:
    [display] = [m for m in outputs if m["msg_type"] == "display_data"]
    return display["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]


def test_panel_status_updates_live_while_the_kernel_answers_other_requests(kernel: KernelSession) -> None:
    outputs, _ = kernel.execute("conv = %openhands --repo octo/demo Clean up the CSV loader")
    model_id = _panel_model_id(outputs)
    opened = [m for m in kernel.messages if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == model_id]
    assert opened[0]["content"]["data"]["state"]["status"] == "STARTING"

    # While the poller works in the background, the kernel answers other cells at once.
    answer, replied = kernel.execute("6 * 7")
    assert answer[0]["content"]["data"]["text/plain"] == "42"
    assert "STOPPED" not in [s for _, s in kernel.status_updates(model_id)], "polling finished before the test could overlap it"
    for number in range(5):
        started = time.monotonic()
        kernel.execute(f"x = {number}")
        assert time.monotonic() - started < 2.0, "the kernel was blocked"
        time.sleep(0.2)

    kernel.wait_for_status(model_id, "STOPPED")
    updates = kernel.status_updates(model_id)
    statuses = [s for _, s in updates]
    assert statuses.index("RUNNING") < statuses.index("STOPPED")
    assert any(received > replied for received, _ in updates), "no update arrived after the other request was answered"
    final, _ = kernel.execute("print(conv.status, conv.title)")
    assert final[0]["content"]["text"] == "STOPPED Clean up the CSV loader\n"


def test_no_panel_output_updates_in_place(kernel: KernelSession) -> None:
    outputs, _ = kernel.execute("%openhands --no-panel plain text please")
    [shown] = [m for m in outputs if m["msg_type"] == "display_data"]
    display_id = shown["content"]["transient"]["display_id"]
    assert "STARTING" in shown["content"]["data"]["text/plain"]
    deadline = time.monotonic() + 15
    while not any(
        m["msg_type"] == "update_display_data"
        and m["content"]["transient"]["display_id"] == display_id
        and " STOPPED " in m["content"]["data"]["text/plain"]
        for m in kernel.messages
    ):
        assert time.monotonic() < deadline, "the text output never showed STOPPED"
        kernel.listen(0.2)
    texts = [
        m["content"]["data"]["text/plain"]
        for m in kernel.messages
        if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
    ]
    assert all(before != after for before, after in zip(texts, texts[1:])), "an update repeated the text already shown"


def test_wait_prints_status_changes_in_the_kernel(kernel: KernelSession) -> None:
    outputs, _ = kernel.execute("%%openhands --wait --timeout 20\nwait here")
    printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert [line.split()[1] for line in printed.splitlines()] == ["STARTING", "RUNNING", "STOPPED"]


def test_errors_in_the_kernel_are_one_line_on_stderr(kernel: KernelSession, kernel_server: LocalOpenHandsServer) -> None:
    kernel_server.inject(method="POST", status=429, body={"error": "Rate limit exceeded"}, headers={"Retry-After": "30"})
    outputs, _ = kernel.execute("%openhands too many")
    assert [m["msg_type"] for m in outputs] == ["stream"]
    assert outputs[0]["content"]["name"] == "stderr"
    assert outputs[0]["content"]["text"].count("\n") == 1 and "10 conversations at once" in outputs[0]["content"]["text"]


def test_unload_ext_stops_polling(kernel: KernelSession, kernel_server: LocalOpenHandsServer) -> None:
    kernel_server.schedule = (("RUNNING", None),)
    try:
        kernel.execute("%openhands runs forever")
        kernel.listen(0.5)
        gets_before = sum(r.method == "GET" for r in kernel_server.requests)
        assert gets_before > 0, "the poller never polled"
        kernel.execute("%unload_ext openhands_magics")
        kernel.listen(0.2)
        settled = sum(r.method == "GET" for r in kernel_server.requests)
        kernel.listen(1.0)
        assert sum(r.method == "GET" for r in kernel_server.requests) == settled
    finally:
        kernel_server.schedule = LIVE_SCHEDULE
        kernel.execute("%load_ext openhands_magics")


def test_one_panel_per_call_and_the_handle_shows_a_live_panel_later(kernel: KernelSession) -> None:
    outputs, _ = kernel.execute("%openhands shown once")  # the magic's value is the cell's last expression
    assert [m["msg_type"] for m in outputs] == ["display_data"]
    model_id = _panel_model_id(outputs)
    later, _ = kernel.execute("import openhands_magics\nopenhands_magics.last()")
    second_view = _panel_model_id(later)
    assert second_view != model_id
    kernel.wait_for_status(second_view, "STOPPED")
