"""End to end in a real ipykernel, driven through jupyter_client as a front end would, against the local server over
real HTTP.

Proves the panel is live: its synced ``status`` trait changes (comm ``update`` messages on iopub) while the kernel
keeps answering other execute requests, i.e. polling never blocks the kernel; many panels cost one batched read a
tick; a panel sends nothing while only its clock moves. Nothing the kernel sends, in any of these scenarios, contains
the API key or the server's ``session_api_key``.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, Timeline

from .conftest import SECRET

#: Starts Jupyter kernels in other processes: CI runs these on one Python only (docs/development.md).
pytestmark = pytest.mark.kernel

#: The kernel's default server (its environment points there).
LIVE = Timeline(starting=0.6, running=1.6)
POLL, MAX_POLL = 0.1, 0.2
PROBE_ID = "00000000000040008000000000000000"
CONVERSATIONS = "/api/v1/app-conversations"
TASKS = "/api/v1/app-conversations/start-tasks"


@dataclass
class KernelSession:
    """A minimal front end: sends execute requests, keeps every iopub message it sees."""

    client: Any
    messages: list[dict[str, Any]] = field(default_factory=list)
    manager: Any = None  #: the KernelManager (to interrupt the kernel as its stop button does)

    def _next_iopub(self, timeout: float) -> dict[str, Any] | None:
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        message["received"] = time.monotonic()
        self.messages.append(message)
        return message

    def execute(
        self, code: str, timeout: float = 20, *, error: str | None = None
    ) -> tuple[list[dict[str, Any]], float]:
        """Run ``code``; return its iopub outputs and the time its reply arrived. ``error``: the exception it must
        end with (else it must succeed)."""
        msg_id = self.client.execute(code)
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:  # a late kernel_info reply from wait_for_ready's retries
            assert reply["msg_type"] == "kernel_info_reply", reply
            reply = self.client.get_shell_msg(timeout=timeout)
        replied = time.monotonic()
        if error is None:
            assert reply["content"]["status"] == "ok", reply["content"]
        else:
            assert (reply["content"]["status"], reply["content"]["ename"]) == ("error", error), reply["content"]
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

    def printed(self, code: str) -> str:
        outputs, _ = self.execute(code)
        assert not [m for m in outputs if m["msg_type"] == "error"], outputs
        return "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")

    def listen(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._next_iopub(timeout=remaining)

    def listen_until(self, condition: Callable[[], bool], timeout: float = 15, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self._next_iopub(timeout=0.1)

    # -------------------------------------------------------------- widgets as the front end sees them
    def opened_state(self, model_id: str) -> dict[str, Any]:
        [opened] = [m for m in self.messages if m["msg_type"] == "comm_open" and m["content"]["comm_id"] == model_id]
        return opened["content"]["data"]["state"]

    def model_tree(self, model_id: str) -> set[str]:
        """The panel's model and every model it refers to (card, button, layouts, styles)."""
        found, todo = set(), [model_id]
        while todo:
            current = todo.pop()
            if current in found:
                continue
            found.add(current)
            for value in json.dumps(self.opened_state(current)).split('"'):
                if value.startswith("IPY_MODEL_"):
                    todo.append(value[len("IPY_MODEL_") :])
        return found

    def comm_msgs(self, model_ids: set[str], after: float = 0.0) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] in model_ids and m["received"] > after
        ]

    def card_id(self, panel_id: str) -> str:
        """The panel's card: the model that holds its HTML and its facts (status, ids)."""
        return str(self.opened_state(panel_id)["children"][0]).removeprefix("IPY_MODEL_")

    def facts(self, panel_id: str) -> dict[str, Any]:
        """The panel's facts as its card's model was opened with."""
        return self.opened_state(self.card_id(panel_id))

    def updates(self, panel_id: str, trait: str) -> list[tuple[float, Any]]:
        """Each update of one of the panel's facts (on its card's model), with when it arrived."""
        return [
            (m["received"], m["content"]["data"]["state"][trait])
            for m in self.comm_msgs({self.card_id(panel_id)})
            if trait in m["content"]["data"].get("state", {})
        ]

    def wait_for_status(self, model_id: str, status: str, timeout: float = 15) -> None:
        self.listen_until(
            lambda: any(s == status for _, s in self.updates(model_id, "status")),
            timeout,
            f"panel {model_id} to reach {status}: {self.updates(model_id, 'status')}",
        )


@pytest.fixture(scope="module")
def kernel_server() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(api_key=SECRET, timeline=LIVE) as server:
        yield server


@pytest.fixture(scope="module")
def kernel(kernel_server: LocalOpenHandsServer) -> Iterator[KernelSession]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
    env.update(kernel_server.environ())
    env["OPENHANDS_LIVE_EVENTS"] = "0"  # (the suite's default: the local server has no agent server to stream from)
    manager = KernelManager(kernel_name="python3")
    manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]  # this venv's Python
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    session = KernelSession(client, manager=manager)
    session.execute(
        f"%load_ext openhands_magics\n%config OpenHandsMagics.poll_interval = {POLL}\n"
        f"%config OpenHandsMagics.max_poll_interval = {MAX_POLL}\nimport json, openhands_magics"
    )
    yield session
    client.stop_channels()
    manager.shutdown_kernel(now=True)
    everything = json.dumps([m["content"] for m in session.messages], default=str)
    assert SECRET not in everything, "the API key appeared in a message the kernel sent"
    assert PLANTED_SESSION_KEY not in everything, "the server's session_api_key appeared in a message the kernel sent"


@pytest.fixture
def serve(kernel: KernelSession) -> Iterator[Callable[..., LocalOpenHandsServer]]:
    """Start extra servers for one test; afterwards the kernel stops polling first, then the servers stop (so no
    "retrying…" from a vanished server leaks into the next test)."""
    servers: list[LocalOpenHandsServer] = []

    def start(timeline: Timeline, **options: Any) -> LocalOpenHandsServer:
        servers.append(LocalOpenHandsServer(SECRET, timeline=timeline, **options).start())
        return servers[-1]

    yield start
    kernel.execute("openhands_magics.get_session().close()")
    for server in servers:
        server.stop()


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _panel_model_id(outputs: list[dict[str, Any]]) -> str:
    [display] = [m for m in outputs if m["msg_type"] == "display_data" and WIDGET_VIEW in m["content"]["data"]]
    return display["content"]["data"][WIDGET_VIEW]["model_id"]


def _copy(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The saved copy of the card a live panel displays beside itself (what a notebook without the widget shows)."""
    [display] = [m for m in outputs if m["msg_type"] == "display_data" and WIDGET_VIEW not in m["content"]["data"]]
    return display


def _reads(server: LocalOpenHandsServer, after: float = 0.0) -> list[Any]:
    """The GETs that read conversations or start tasks (not the API probes)."""
    return [
        r
        for r in server.requests
        if r.method == "GET"
        and r.path in (CONVERSATIONS, TASKS)
        and r.query.get("ids") != [PROBE_ID]
        and r.received > after
    ]


def _collapsed(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]


def test_panel_status_goes_starting_running_finished_while_the_kernel_answers_other_requests(
    kernel: KernelSession, kernel_server: LocalOpenHandsServer
) -> None:
    outputs, _ = kernel.execute("conv = %openhands --repo octo/demo Clean up the CSV loader")
    model_id = _panel_model_id(outputs)
    post = kernel_server.posts()[-1]
    task_id = kernel_server.task_ids()[-1]
    opened = kernel.facts(model_id)
    assert (opened["status"], opened["task_id"], opened["conversation_id"]) == ("STARTING", task_id, "")
    copy = _copy(outputs)
    assert f"start task {task_id}" in copy["content"]["data"]["text/plain"]  # saved outputs keep the task id
    [panel] = [m for m in outputs if m["msg_type"] == "display_data" and WIDGET_VIEW in m["content"]["data"]]

    # While the poller works in the background, the kernel answers other cells at once.
    answer, replied = kernel.execute("6 * 7")
    assert answer[0]["content"]["data"]["text/plain"] == "42"
    assert "FINISHED" not in [s for _, s in kernel.updates(model_id, "status")], (
        "finished before the test could overlap it"
    )
    for number in range(5):
        started = time.monotonic()
        kernel.execute(f"x = {number}")
        assert time.monotonic() - started < 1.0, "the kernel was blocked"
        time.sleep(0.1)

    kernel.wait_for_status(model_id, "FINISHED")
    statuses = kernel.updates(model_id, "status")
    assert _collapsed([s for _, s in statuses]) == ["RUNNING", "FINISHED"]
    assert any(received > replied for received, _ in statuses), "no update arrived after the other request was answered"

    conversation_id = kernel_server.conversation_ids()[kernel_server.task_ids().index(task_id)]  # (all older are READY)
    ids = kernel.updates(model_id, "conversation_id")
    assert [value for _, value in ids] == [conversation_id]  # filled once, when the task turned READY
    running_at = next(at for at, s in statuses if s == "RUNNING")
    assert post.received + LIVE.starting <= ids[0][0] <= running_at

    final = kernel.printed("print(conv.status, conv.id, conv.task_id, conv.title)")
    assert final == f"FINISHED {conversation_id} {task_id} Clean up the CSV loader\n"

    # What a saved notebook keeps beside the widget (its copy) was rewritten as the id, the status and the name came;
    # at the end the widget's own output became the final card, and the copy emptied.
    def updates(display: dict[str, Any]) -> list[dict[str, Any]]:
        display_id = display["content"]["transient"]["display_id"]
        return [
            m["content"]["data"]
            for m in kernel.messages
            if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
        ]

    def finals() -> list[str]:
        return [data["text/plain"] for data in updates(panel) if "text/plain" in data]

    kernel.listen_until(lambda: finals() and updates(copy)[-1:] == [{"text/plain": ""}], what="the final card")
    assert len(finals()) == 1 and " FINISHED " in finals()[0] and f"start task {task_id}" in finals()[0]
    copies = [data["text/plain"] for data in updates(copy) if data.get("text/plain")]
    assert copies and all(f"start task {task_id}" in text for text in copies)
    assert any(conversation_id in text for text in copies)
    # Just before the final card, one script told the browser it ended (tab title); it is not what stays saved.
    [cue] = [data for data in updates(panel) if "text/plain" not in data]
    assert list(cue) == ["application/javascript"] and "document.title" in cue["application/javascript"]
    assert updates(panel)[-2:] == [cue, {**updates(panel)[-1], "text/plain": finals()[0]}]


def test_ten_panels_started_together_are_polled_with_one_batched_read_a_tick(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.4, running=1.0), max_running=20)
    outputs, _ = kernel.execute(f"for _ in range(10):\n    %openhands --new --base-url {server.base_url} one of ten")
    model_ids = [
        m["content"]["data"][WIDGET_VIEW]["model_id"]
        for m in outputs
        if m["msg_type"] == "display_data" and WIDGET_VIEW in m["content"]["data"]
    ]
    assert len(model_ids) == 10 and len(server.task_ids()) == 10
    for model_id in model_ids:
        kernel.wait_for_status(model_id, "FINISHED")

    reads = _reads(server)
    conversation_reads = [r for r in reads if r.path == CONVERSATIONS]
    assert {i for r in conversation_reads for i in r.query["ids"]} == set(server.conversation_ids())
    assert max(len(r.query["ids"]) for r in conversation_reads) >= 5  # (10 unless the starts were slow)
    assert max(len(r.query["ids"]) for r in reads if r.path == TASKS) >= 5
    assert sum(len(r.query["ids"]) for r in reads) / len(reads) >= 3  # several ids a request, not one each
    ticks = (reads[-1].received - reads[0].received) / POLL + 1
    # One read operation a tick for all ten (two requests while a task turns READY); ten apart would be >= 10 a tick.
    assert len(reads) <= 2 * ticks + 2, (len(reads), ticks)
    assert len(reads) < 10 * ticks / 4


def test_a_running_panel_sends_no_message_while_only_its_clock_moves(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.3, running=30))
    outputs, _ = kernel.execute(f"%openhands --base-url {server.base_url} a long one")
    model_id = _panel_model_id(outputs)
    tree = kernel.model_tree(model_id)
    assert len(tree) >= 3  # the panel, its card, its button (and their layouts)
    kernel.wait_for_status(model_id, "RUNNING")
    kernel.listen(0.3)  # what the change to RUNNING sent (card, status, id) has arrived
    cards = [m["content"]["data"]["state"].get("value", "") for m in kernel.comm_msgs(tree)]
    assert any("elapsed under 1m" in card and ">RUNNING</span>" in card for card in cards)  # minutes: one a minute

    quiet_from = time.monotonic()
    kernel.listen(3.0)

    assert kernel.comm_msgs(tree, after=quiet_from) == []
    assert len(_reads(server, after=quiet_from)) >= 8  # it kept polling all along (every 0.1–0.2 s)
    [conversation_id] = server.conversation_ids()
    assert server.state_of(conversation_id)["execution_status"] == "running"


def test_a_status_change_that_swaps_the_buttons_reaches_the_front_end_as_one_widget_message(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.3, running=60))
    outputs, _ = kernel.execute(f"%openhands --base-url {server.base_url} pause me from outside")
    model_id = _panel_model_id(outputs)
    tree = kernel.model_tree(model_id)
    kernel.wait_for_status(model_id, "RUNNING")
    kernel.listen(0.5)
    [conversation_id] = server.conversation_ids()
    for fields, status in (
        ({"sandbox_status": "PAUSED"}, "PAUSED"),  # Pause out, Resume in
        ({"sandbox_status": "RUNNING", "execution_status": "running"}, "RUNNING"),  # and back
    ):
        changed = time.monotonic()
        server.set_state(conversation_id, **fields)
        kernel.wait_for_status(model_id, status)
        kernel.listen(0.5)  # anything else the change sent has arrived
        sent = kernel.comm_msgs(tree, after=changed)
        assert len(sent) == 1, [m["content"]["data"]["state"].keys() for m in sent]
        [state] = [m["content"]["data"]["state"] for m in sent]
        assert state["status"] == status and f">{status}</span>" in state["value"] and "children" not in state


def test_no_panel_output_updates_in_place_on_status_changes_only(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.3, running=1.5))
    outputs, _ = kernel.execute(f"%openhands --no-panel --base-url {server.base_url} plain text please")
    [shown] = [m for m in outputs if m["msg_type"] == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in shown["content"]["data"]
    display_id = shown["content"]["transient"]["display_id"]
    [task_id] = server.task_ids()
    first = shown["content"]["data"]["text/plain"]
    assert first.startswith("OpenHands conversation (not created yet) STARTING") and f"start task {task_id}" in first

    def texts() -> list[str]:
        return [
            m["content"]["data"]["text/plain"]
            for m in kernel.messages
            if m["msg_type"] == "update_display_data" and m["content"]["transient"]["display_id"] == display_id
        ]

    kernel.listen_until(lambda: any(" FINISHED " in t for t in texts()), what="the text output to show FINISHED")
    kernel.listen(0.5)
    shown_texts = [first, *texts()]
    assert all(before != after for before, after in zip(shown_texts, shown_texts[1:])), "an update repeated itself"
    assert sum(" RUNNING " in t for t in shown_texts) == 1  # 1.5 s of polls while RUNNING: one update
    # FINISHED once, then once more with what the agent answered, read right after the turn ended.
    finished = [t for t in shown_texts if " FINISHED " in t]
    assert len(finished) == 2 and finished[-1] == shown_texts[-1]
    assert "\nanswer: " not in finished[0] and finished[-1].endswith("\nanswer: Done.")
    [conversation_id] = server.conversation_ids()
    assert f"{server.base_url}/conversations/{conversation_id}" in shown_texts[-1]
    assert f"start task {task_id}" in shown_texts[-1]  # both ids in the saved output
    assert len(_reads(server)) > len(shown_texts) + 3  # far more polls than updates


def test_wait_prints_status_changes_in_the_kernel(kernel: KernelSession, kernel_server: LocalOpenHandsServer) -> None:
    outputs, _ = kernel.execute("%%openhands --wait --timeout 20\nwait here")
    printed = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    lines = printed.splitlines()
    assert lines[-1].endswith(": answer: Done.")  # the log ends with what the agent said
    statuses = [line.split(": ", 1)[1].split()[0] for line in lines[:-1]]
    assert _collapsed(statuses) == ["STARTING", "RUNNING", "FINISHED"], printed
    assert not [m for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]


def test_errors_in_the_kernel_are_one_line_on_stderr(
    kernel: KernelSession, kernel_server: LocalOpenHandsServer
) -> None:
    kernel_server.inject(
        method="POST", status=429, body={"error": "Rate limit exceeded"}, headers={"Retry-After": "30"}
    )
    outputs, _ = kernel.execute("%openhands too many")
    assert [m["msg_type"] for m in outputs] == ["stream"]
    assert outputs[0]["content"]["name"] == "stderr"
    text = outputs[0]["content"]["text"]
    assert text.count("\n") == 1 and text.startswith("openhands: ") and "10 conversations at once" in text

    outputs, _ = kernel.execute("%openhands --api v0 wrong api")
    assert [(m["msg_type"], m["content"]["name"]) for m in outputs] == [("stream", "stderr")]
    assert "does not speak the OpenHands V0 API" in outputs[0]["content"]["text"]


def test_reload_and_unload_stop_polling_and_old_handles_still_refresh(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.2, running=30))
    kernel.execute(f"old = %openhands --base-url {server.base_url} runs on")
    kernel.listen(0.6)
    assert _reads(server), "the poller never polled"

    kernel.execute("%reload_ext openhands_magics")  # unloads (stops polling), reloads the module, loads again
    kernel.listen(0.3)
    settled = len(server.requests)
    kernel.listen(1.0)
    assert len(server.requests) == settled, "still polling after the reload"

    refreshed = kernel.printed("print(old.refresh().status, old.id is not None)")
    assert refreshed == "RUNNING True\n"
    assert len(server.requests) > settled

    outputs, _ = kernel.execute(f"new = %openhands --base-url {server.base_url} after the reload")
    new_panel = _panel_model_id(outputs)
    kernel.wait_for_status(new_panel, "RUNNING")  # the reloaded extension polls again

    kernel.execute("%unload_ext openhands_magics")
    kernel.listen(0.3)
    settled = len(server.requests)
    kernel.listen(1.0)
    assert len(server.requests) == settled, "still polling after %unload_ext"
    kernel.execute("%openhands gone", error="UsageError")  # the magic is gone
    assert len(server.posts()) == 2

    kernel.execute("%load_ext openhands_magics")
    assert kernel.printed("print(new.refresh().status, len(openhands_magics.history()) > 2)") == "RUNNING True\n"


#: Prints the poller tasks alive in the I/O thread's loop (and in the kernel's), the sockets open to the server on
#: ``port``, the running polling sources, the I/O threads alive and the record's writer threads alive (one lingers
#: for a moment after a start; none is left after ``%unload_ext``).
_COUNT = (
    "import asyncio, psutil, threading\n"
    "from openhands_magics._io import get_io\n"
    "async def _count():\n"
    "    return [t for t in asyncio.all_tasks() if t.get_name().startswith('openhands') and not t.done()]\n"
    "tasks = get_io().submit(_count()).result(5) if get_io().running else []\n"
    "tasks += [t for t in asyncio.all_tasks() if t.get_name().startswith('openhands') and not t.done()]\n"
    "sockets = [c for c in psutil.Process().net_connections('tcp') if c.raddr and c.raddr.port == {port}"
    " and c.status == 'ESTABLISHED']\n"
    "threads = [t for t in threading.enumerate() if t.name.startswith('openhands') and t.name != 'openhands-store']\n"
    "writers = [t for t in threading.enumerate() if t.name == 'openhands-store']\n"
    "print(len(tasks), len(sockets), sum(p.running for p in openhands_magics.get_session().pollers), len(threads),"
    " len(writers))"
)


def test_reload_with_a_hundred_live_panels_leaves_no_poller_task_or_socket_behind(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.2, running=60), max_running=200)
    port = server.base_url.rsplit(":", 1)[1]
    kernel.execute(
        f"for i in range(100): get_ipython().run_line_magic('openhands', '--base-url {server.base_url} task %d' % i)",
        timeout=60,
    )
    kernel.listen(1.0)
    tasks, sockets, pollers, threads, _writers = map(int, kernel.printed(_COUNT.format(port=port)).split())
    # One poller task for the hundred, in the one I/O thread, on kept-alive connections.
    assert (tasks, pollers, threads) == (1, 1, 1) and sockets >= 1

    kernel.execute("%reload_ext openhands_magics")
    kernel.listen(0.5)
    settled = len(server.requests)
    assert kernel.printed(_COUNT.format(port=port)) == "0 0 0 0 0\n"
    kernel.listen(1.0)
    assert len(server.requests) == settled, "still polling after the reload"


def test_one_panel_per_call_and_the_handle_shows_a_live_panel_with_both_ids_later(
    kernel: KernelSession, kernel_server: LocalOpenHandsServer
) -> None:
    outputs, _ = kernel.execute("%openhands shown once")  # the magic's value is the cell's last expression
    assert [m["msg_type"] for m in outputs] == ["display_data", "display_data"]  # the panel and its saved copy
    model_id = _panel_model_id(outputs)
    later, _ = kernel.execute("openhands_magics.last()")
    second_view = _panel_model_id(later)
    assert second_view != model_id
    kernel.wait_for_status(second_view, "FINISHED")
    kernel.wait_for_status(model_id, "FINISHED")

    saved, _ = kernel.execute("openhands_magics.last()")
    display = _copy(saved)  # (the static card, or, if it is still watched while its outcome is read, the panel's copy)
    text = display["content"]["data"]["text/plain"]
    conversation_id, task_id = kernel.printed("c = openhands_magics.last(); print(c.id, c.task_id)").split()
    assert f"OpenHands conversation {conversation_id} FINISHED" in text and f"start task {task_id}" in text
    assert f"{kernel_server.base_url}/conversations/{conversation_id}" in display["content"]["data"]["text/html"]


def test_nothing_the_kernel_sends_holds_the_key_or_the_servers_session_key(
    kernel: KernelSession, kernel_server: LocalOpenHandsServer
) -> None:
    outputs, _ = kernel.execute("conv = %openhands show everything")
    model_id = _panel_model_id(outputs)
    kernel.wait_for_status(model_id, "RUNNING")
    states = (
        "import ipywidgets\n"
        "print(json.dumps([w.get_state() for w in list(ipywidgets.widgets.widget._instances.values())], default=str))"
    )
    live = kernel.printed(states)  # while the panel is live (once final it gives way to the static card)
    kernel.wait_for_status(model_id, "FINISHED")
    printed = kernel.printed("print(repr(conv), conv.conversation, dict(conv.conversation.extra), conv.endpoint)")
    assert "conversation_url" in printed and "IPY_MODEL_" in live  # server data and widget state were printed
    everything = json.dumps([m["content"] for m in kernel.messages], default=str)
    assert SECRET not in everything and PLANTED_SESSION_KEY not in everything
    assert kernel_server.conversation_ids()[-1] in everything


# ---------------------------------------------------------------------------------------------------- busy kernels
#: One poll (MAX_POLL), plus what a read, the thread hand-over and iopub may add on a loaded 2-core machine.
ONE_POLL = MAX_POLL + 0.8


def _start_cell(kernel: KernelSession, code: str, first_line: str) -> str:
    """Send ``code`` without waiting for it; return once it printed ``first_line`` (so it is running now)."""
    msg_id = kernel.client.execute(code)
    kernel.listen_until(
        lambda: any(
            m["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == msg_id
            and first_line in m["content"].get("text", "")
            for m in kernel.messages
        ),
        what=f"the cell to print {first_line!r}",
    )
    return msg_id


def _finish_cell(kernel: KernelSession, msg_id: str, timeout: float = 30) -> float:
    """Wait for the reply of a cell sent with :func:`_start_cell` and its idle; when its reply arrived."""
    reply = kernel.client.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=timeout)
    replied = time.monotonic()
    assert reply["content"]["status"] == "ok", reply["content"]
    kernel.listen_until(
        lambda: any(
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == msg_id
            for m in kernel.messages
        ),
        what="the cell's idle",
    )
    return replied


def _first(kernel: KernelSession, model_id: str, status: str) -> float:
    return next(at for at, s in kernel.updates(model_id, "status") if s == status)


def test_a_live_panel_reaches_finished_within_one_poll_while_another_cell_sleeps(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.3, running=600))
    outputs, _ = kernel.execute(f"conv = %openhands --base-url {server.base_url} finishes while the kernel computes")
    model_id = _panel_model_id(outputs)
    kernel.wait_for_status(model_id, "RUNNING")
    [conversation_id] = server.conversation_ids()

    sleeping = _start_cell(kernel, "import time\nprint('computing', flush=True)\ntime.sleep(8)", "computing")
    finished_at = time.monotonic()
    server.set_state(conversation_id, execution_status="finished")  # the agent ends while the cell computes
    kernel.wait_for_status(model_id, "FINISHED", timeout=8)
    replied = _finish_cell(kernel, sleeping)

    shown = _first(kernel, model_id, "FINISHED")
    assert shown - finished_at < ONE_POLL, f"FINISHED reached the panel {shown - finished_at:.2f} s after it ended"
    assert shown < replied - 4, "the panel waited for the computing cell"
    assert kernel.printed("print(conv.status, conv.outcome is not None)") == "FINISHED True\n"


def test_a_live_panel_reaches_finished_within_one_poll_while_another_conversations_wait_blocks_the_kernel(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.3, running=600))
    outputs, _ = kernel.execute(f"shown = %openhands --base-url {server.base_url} the one on screen")
    model_id = _panel_model_id(outputs)
    kernel.execute(f"waited = %openhands --no-panel --base-url {server.base_url} the one waited for")
    kernel.wait_for_status(model_id, "RUNNING")
    kernel.listen_until(lambda: len(server.conversation_ids()) == 2, what="both conversations")
    shown_id, waited_id = server.conversation_ids()

    waiting = _start_cell(kernel, "print('waiting', flush=True)\nwaited.wait(timeout=30)", "waiting")
    finished_at = time.monotonic()
    server.set_state(shown_id, execution_status="finished")  # the one on screen ends while the kernel waits
    kernel.wait_for_status(model_id, "FINISHED", timeout=8)
    shown = _first(kernel, model_id, "FINISHED")
    server.set_state(waited_id, execution_status="finished")  # then the waited one: the wait returns
    replied = _finish_cell(kernel, waiting)

    assert shown - finished_at < ONE_POLL, f"FINISHED reached the panel {shown - finished_at:.2f} s after it ended"
    assert shown < replied
    assert kernel.printed("print(shown.status, waited.status)") == "FINISHED FINISHED\n"


def test_a_listed_handle_a_watched_one_and_the_historys_are_the_same_object(
    kernel: KernelSession, kernel_server: LocalOpenHandsServer
) -> None:
    from openhands_magics.session import Endpoint, Session

    # Started by "another kernel" (straight over HTTP): the kernel first meets it in the list.
    known = len(kernel_server.conversation_ids())
    Session().start("started elsewhere", endpoint=Endpoint.resolve(kernel_server.base_url, api_key=SECRET))
    kernel.listen_until(lambda: len(kernel_server.conversation_ids()) > known, what="the conversation")
    conversation_id = kernel_server.conversation_ids()[-1]
    kernel_server.set_state(conversation_id, execution_status="running")  # (it works on while the test looks)
    code = (
        "listed = %openhands list\n"
        f"[from_list] = [h for h in listed if h.id == {conversation_id!r}]\n"
        f"watched = %openhands --watch {conversation_id}\n"
        f"%openhands pause {conversation_id}\n"
        "print(from_list is watched, [h for h in openhands_magics.history() if h.id == watched.id] == [watched],"
        " from_list.status)"
    )
    printed = kernel.printed(code)
    assert printed.splitlines()[-1] == "True True PAUSED", printed


def test_unload_ext_leaves_no_thread_and_no_socket(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.2, running=600))
    port = server.base_url.rsplit(":", 1)[1]
    kernel.execute("openhands_magics.get_session().close()")  # (nothing left watching from earlier tests)
    outputs, _ = kernel.execute(f"live = %openhands --base-url {server.base_url} watched when unloaded")
    kernel.wait_for_status(_panel_model_id(outputs), "RUNNING")
    kernel.execute(f"live.refresh()\nwaited = %openhands --no-panel --base-url {server.base_url} another")
    tasks, sockets, pollers, threads, _writers = map(int, kernel.printed(_COUNT.format(port=port)).split())
    assert (tasks, pollers, threads) == (1, 1, 1) and sockets >= 1

    kernel.execute("%unload_ext openhands_magics")
    assert kernel.printed(_COUNT.format(port=port)) == "0 0 0 0 0\n"
    settled = len(server.requests)
    kernel.listen(0.5)
    assert len(server.requests) == settled, "still polling after %unload_ext"
    kernel.execute("%load_ext openhands_magics")
    assert kernel.printed("print(live.refresh().status)") == "RUNNING\n"  # old handles work again


def test_the_stop_button_ends_a_blocking_wait_not_the_conversation_and_other_panels_go_on(
    kernel: KernelSession, serve: Callable[..., LocalOpenHandsServer]
) -> None:
    server = serve(Timeline(starting=0.2, running=600))
    outputs, _ = kernel.execute(f"on_screen = %openhands --base-url {server.base_url} stays live")
    model_id = _panel_model_id(outputs)
    kernel.wait_for_status(model_id, "RUNNING")
    msg_id = kernel.client.execute(f"%%openhands --wait --no-panel --base-url {server.base_url}\nwaited for")
    kernel.listen_until(
        lambda: any(
            m["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == msg_id
            and " RUNNING " in m["content"].get("text", "")
            for m in kernel.messages
        ),
        what="the wait to print RUNNING",
    )
    kernel.manager.interrupt_kernel()  # the stop button: SIGINT to the kernel, which is in the blocking wait
    reply = kernel.client.get_shell_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kernel.client.get_shell_msg(timeout=10)
    assert reply["content"]["status"] == "ok"  # one line, not a KeyboardInterrupt traceback
    kernel.listen_until(
        lambda: any(
            m["msg_type"] == "stream"
            and m["parent_header"].get("msg_id") == msg_id
            and "Stopped waiting" in m["content"].get("text", "")
            for m in kernel.messages
        ),
        what="the Stopped waiting line",
    )
    shown_id = server.conversation_ids()[0]
    server.set_state(shown_id, execution_status="finished")  # the panel on screen still follows its conversation
    kernel.wait_for_status(model_id, "FINISHED", timeout=8)
    waited_id = server.conversation_ids()[1]
    assert server.state_of(waited_id)["execution_status"] == "running"  # the waited conversation goes on
