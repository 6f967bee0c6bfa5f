"""The verbs the stream brought: ``conv.events()`` (the whole trajectory, paged, from a finished conversation too),
a follow-up queued while the conversation starts, ``%openhands stop ID``, ``--max-cost``, and the one line each
says where it cannot be done."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics._protocol import agent, v1
from openhands_magics.arguments import parse_invocation
from openhands_magics.errors import ValidationError
from openhands_magics.models import Conversation
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, Output

HEX = "0123456789abcdef0123456789abcdef"
FAST = PollSchedule(interval=0.05, max_interval=0.1)


def test_events_reads_every_page_of_a_finished_conversations_trajectory(
    server: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Session(FAST)
    handle = session.start("tidy the notebook", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    handle.wait(timeout=10)
    monkeypatch.setattr(v1, "EVENTS_LIMIT", 2)  # so its four events take two pages
    server.requests.clear()
    trajectory = handle.events()
    searches = [r for r in server.requests if r.path.endswith("/events/search")]
    assert len(searches) >= 2 and all(r.query["limit"] == ["2"] for r in searches)
    assert [e.kind for e in trajectory][:2] == ["message", "status"]
    assert trajectory[0].summary == "you: tidy the notebook"
    assert any(e.kind == "finish" and e.text == "Done." for e in trajectory)
    assert len({e.id for e in trajectory}) == len(trajectory)


def test_events_of_a_conversation_still_starting_is_one_line(long_server: LocalOpenHandsServer) -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=30.0)) as slow:
        session = Session(FAST)
        handle = session.start("hi", endpoint=Endpoint.resolve(slow.base_url, api_key=SECRET))
        with pytest.raises(ValidationError, match="has not created its conversation yet"):
            handle.events()
        with pytest.raises(ValidationError, match="still starting: there is no agent to interrupt"):
            handle.interrupt()


def test_a_follow_up_sent_while_starting_is_queued_for_the_start_task() -> None:
    snapshot = Conversation(None, status="STARTING", start_task_id=HEX)
    operation = v1.V1(base_url="http://x").queue_message(snapshot, "and then the tests")
    call = next(operation)
    assert (call.method, call.path) == ("POST", f"/api/v1/conversations/task-{HEX}/pending-messages")
    assert call.json == {"role": "user", "content": [{"type": "text", "text": "and then the tests"}]}
    assert call.once  # never sent twice blindly
    with pytest.raises(StopIteration):
        operation.send(httpx.Response(201, json={"id": "m", "queued": True, "position": 1}))


def test_a_queued_follow_up_that_the_server_refuses_says_why() -> None:
    snapshot = Conversation(None, status="STARTING", start_task_id=HEX)
    operation = v1.V1(base_url="http://x").queue_message(snapshot, "more")
    next(operation)
    with pytest.raises(Exception, match="10 messages"):
        operation.send(httpx.Response(429, json={"detail": "Too many pending messages."}))


def test_stop_is_a_command_and_a_message_that_starts_with_stop_is_still_a_message() -> None:
    assert (parse_invocation(f"stop {HEX}").command, parse_invocation(f"stop {HEX}").target) == ("stop", HEX)
    assert parse_invocation("stop the flaky test from failing").command is None
    with pytest.raises(ValidationError, match="needs a conversation id"):
        parse_invocation("stop")


@pytest.mark.parametrize(("given", "dollars"), [("2.5", 2.5), ("$3", 3.0), ("10", 10.0)])
def test_max_cost_takes_dollars(given: str, dollars: float) -> None:
    assert parse_invocation(f"--max-cost {given} fix it").max_cost == dollars


@pytest.mark.parametrize("given", ["abc", "0", "-1", "inf"])
def test_a_bad_max_cost_is_one_line(given: str) -> None:
    with pytest.raises(ValidationError, match="max-cost"):
        parse_invocation(f"--max-cost {given} fix it")


def test_max_cost_becomes_the_handles_budget(ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output) -> None:
    handle = ip.run_line_magic("openhands", "--no-panel --max-cost 1.25 clean the data")
    assert handle.max_cost == 1.25 and not handle.budget_spent


def test_max_cost_reaches_every_row_of_a_fan_out(server: LocalOpenHandsServer) -> None:
    session = Session(FAST)
    batch = session.map("task {item}", [1, 2], endpoint=Endpoint.resolve(server.base_url, api_key=SECRET), max_cost=0.5)
    batch.wait(timeout=20)
    assert [row.handle.max_cost for row in batch.rows] == [0.5, 0.5]
    with pytest.raises(ValidationError):
        session.map("task {item}", [1], endpoint=Endpoint.resolve(server.base_url, api_key=SECRET), max_cost="x")


def test_stop_on_a_v0_server_is_one_line(
    ip: InteractiveShell, v0_server: LocalOpenHandsServer, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in v0_server.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENHANDS_API_KEY", SECRET)
    handle = ip.run_line_magic("openhands", "--no-panel --wait hello")
    output.read()
    ip.run_line_magic("openhands", f"stop {handle.id}")
    assert (
        output.one_error_line()
        == "openhands: This server speaks the V0 API: it cannot interrupt; do it in the OpenHands app."
    )


def test_a_conversation_whose_key_was_read_can_be_reached_but_shows_no_key(server: LocalOpenHandsServer) -> None:
    session = Session(FAST)
    handle = session.start("hi", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    handle.wait(timeout=10)
    access = agent.access_for(server.base_url, handle.id)
    assert access is not None and access.socket_url().endswith(f"/sockets/events/{handle.id}?resend_mode=all")
    assert "since" in access.socket_url("2026-12-01T13:51:29.479275") and "%3A" in access.socket_url("12:00")
    assert "(key hidden)" in repr(access)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://localhost:8001/api/conversations/ID", "http://localhost:8001"),
        ("https://abc.runtime.example/api/conversations/ID", "https://abc.runtime.example"),
        ("/runtime/abc/api/conversations/ID", "http://app.example/runtime/abc"),
        ("ftp://x/api/conversations/ID", None),
        ("http://user:pw@x/api/conversations/ID", None),
        (None, None),
    ],
)
def test_the_agent_servers_address_comes_from_conversation_url(url: Any, base: str | None) -> None:
    assert agent.agent_base(url, "http://app.example", "ID") == base
