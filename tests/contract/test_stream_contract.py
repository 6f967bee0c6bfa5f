"""The live event stream against the real server (``up --llm-steps 3 --llm-delay 1``): the activity shows the three
commands while they run, FINISHED comes within a second of the server's event, the answer and the real title are
read, a follow-up queued while the conversation starts is delivered, and ``interrupt`` stops a run.

Run::

    OPENHANDS_CONTRACT_BASE_URL=http://127.0.0.1:3300 OPENHANDS_CONTRACT_EXPECT_API=v1 \\
    OPENHANDS_CONTRACT_LLM=http://127.0.0.1:18300 .venv/bin/pytest tests/contract/test_stream_contract.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Session

from .conftest import Live

#: The fake LLM as the other engineers expect to find it.
SHARED_LLM = {"delay": 1, "steps": ["echo step 1", "echo step 2", "echo step 3"]}
DEFAULT_TITLE = re.compile(r"Conversation [0-9a-f]{5}")


@pytest.fixture(autouse=True)
def streaming(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The stream on; and afterwards the fake LLM as the others expect it (set up before ``live``, so this runs
    after ``live``'s own reset, which sets no delay)."""
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")
    yield
    llm = os.environ.get("OPENHANDS_CONTRACT_LLM")
    if llm:
        request = urllib.request.Request(f"{llm}/fake/config", data=json.dumps(SHARED_LLM).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - the loopback URL the tester gave


@pytest.fixture
def session() -> Iterator[Session]:
    made = Session(PollSchedule(interval=1.0, max_interval=30.0))
    yield made
    made.close()


def _llm(live: Live, settings: dict[str, Any]) -> None:
    if not live.llm:
        pytest.skip("OPENHANDS_CONTRACT_LLM is not set")
    request = urllib.request.Request(f"{live.llm}/fake/config", data=json.dumps(settings).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - the loopback URL the tester gave


class Log:
    """What a listener saw of a handle, with the local time: statuses and the activity's commands."""

    def __init__(self, handle: ConversationHandle) -> None:
        self.lock = threading.Lock()
        self.commands_while_running: list[str] = []
        self.final_at: float | None = None
        self.final_event_time: dt.datetime | None = None
        handle.subscribe(self)

    def __call__(self, handle: ConversationHandle) -> None:
        with self.lock:
            if handle.status == "RUNNING":
                for event in handle.activity.recent:
                    if event.kind == "command" and event.summary not in self.commands_while_running:
                        self.commands_while_running.append(event.summary)
            if handle.status == "FINISHED" and self.final_at is None:
                self.final_at = time.time()
                self.final_event_time = handle.activity.last_time


def test_the_stream_shows_each_command_as_it_runs_and_the_finish_within_a_second(live: Live, session: Session) -> None:
    if live.expect_api == "v0":
        pytest.skip("the stream is V1's")
    _llm(live, SHARED_LLM)
    handle = session.start("the stream contract: run your steps", endpoint=live.endpoint())
    log = Log(handle)
    handle.wait(timeout=240)
    returned = time.time()

    assert handle.status == "FINISHED" and handle.activity.source == "stream", handle.activity
    assert log.commands_while_running == ["$ echo step 1", "$ echo step 2", "$ echo step 3"]
    assert log.final_at is not None and log.final_event_time is not None
    seen_after = log.final_at - log.final_event_time.timestamp()
    assert seen_after < 1.0, f"FINISHED shown {seen_after:.2f} s after the server's event"
    assert returned - log.final_event_time.timestamp() < 1.5  # .wait() returned with the answer read
    assert handle.answer == "Hello! Done."
    assert handle.activity.steps == 4 and handle.cost is not None and (handle.cost.tokens or 0) > 0

    deadline = time.monotonic() + 60  # the real title is made after the finish: read again, not left behind
    while time.monotonic() < deadline and DEFAULT_TITLE.fullmatch(handle.title or ""):
        time.sleep(1)
    assert handle.title and not DEFAULT_TITLE.fullmatch(handle.title)

    deadline = time.monotonic() + 45  # the app server gets the events in batches (5, or after 30 s)
    while True:
        trajectory = handle.events()
        commands = [e.summary for e in trajectory if e.kind == "command"]
        if len(commands) == 3 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert commands == ["$ echo step 1", "$ echo step 2", "$ echo step 3"]
    frame = trajectory.to_dataframe() if _has_pandas() else None
    if frame is not None:
        assert list(frame.columns)[:3] == ["time", "kind", "summary"]


def test_a_follow_up_sent_while_starting_is_queued_and_delivered(live: Live, session: Session) -> None:
    if live.expect_api == "v0":
        pytest.skip("pending messages are V1's")
    _llm(live, SHARED_LLM)
    handle = session.start("the pending-message contract", endpoint=live.endpoint())
    assert handle.id is None  # still starting
    handle.send("and this one, queued while starting")
    handle.wait(timeout=240)
    said = [e.summary for e in handle.events() if e.kind == "message"]
    deadline = time.monotonic() + 45
    while "you: and this one, queued while starting" not in said and time.monotonic() < deadline:
        time.sleep(3)
        said = [e.summary for e in handle.events() if e.kind == "message"]
    assert "you: and this one, queued while starting" in said


def test_interrupt_stops_the_agent_at_once(live: Live, session: Session) -> None:
    if live.expect_api == "v0":
        pytest.skip("interrupt is the agent server's")
    _llm(live, {"delay": 2, "steps": [f"echo step {n}" for n in range(1, 21)]})
    try:
        handle = session.start("the interrupt contract: take your time", endpoint=live.endpoint())
        handle.watch()
        deadline = time.monotonic() + 180
        while handle.activity.steps < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert handle.activity.steps >= 1 and handle.activity.source == "stream"
        asked = time.monotonic()
        handle.interrupt()
        while handle.status != "PAUSED" and time.monotonic() < asked + 10:
            time.sleep(0.1)
        stopped_after = time.monotonic() - asked
        assert handle.status == "PAUSED", handle.conversation.status_line
        steps = handle.activity.steps
        time.sleep(6)  # three more steps' time
        assert handle.activity.steps == steps and handle.status == "PAUSED"
        assert stopped_after < 3.0
        assert [e.summary for e in handle.activity.recent][-1] == "interrupted"
    finally:
        _llm(live, SHARED_LLM)


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True
