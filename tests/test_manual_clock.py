"""The local server's time is a clock the test may hold (``LocalOpenHandsServer(clock=ManualClock())``): its
timelines move only when the test calls ``clock.advance(seconds)``, so a test of a ten-minute run neither sleeps nor
races the wall clock, and nothing changes while it looks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from openhands_magics.client import OpenHandsClient
from openhands_magics.models import Conversation, ConversationStatus
from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline

from .conftest import SECRET

#: Minutes of starting and working: on the wall clock, no test could wait for it.
SLOW = Timeline(starting=120.0, running=600.0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def held(clock: ManualClock) -> Iterator[tuple[LocalOpenHandsServer, OpenHandsClient]]:
    with LocalOpenHandsServer(SECRET, timeline=SLOW, clock=clock) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url, api="v1", timeout=2.0) as client:
            yield server, client


def test_a_ten_minute_run_is_walked_through_without_waiting_for_it(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> None:
    server, client = held
    task = client.start_conversation("Fix the loader")
    assert client.refresh(task).status == ConversationStatus.STARTING
    clock.advance(119.0)
    assert client.refresh(task).conversation_id is None and server.conversation_ids() == []  # not a moment early
    clock.advance(1.0)
    running = client.refresh(task)
    assert running.conversation_id and running.status == ConversationStatus.RUNNING
    clock.advance(599.0)
    assert client.refresh(running).status == ConversationStatus.RUNNING
    clock.advance(1.0)
    assert client.refresh(running).status == ConversationStatus.FINISHED and server.running_count() == 0


def test_nothing_moves_while_the_test_looks(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> None:
    server, client = held
    clock.advance(SLOW.starting)
    task = client.start_conversation("Fix the loader")
    clock.advance(SLOW.starting)
    first = client.refresh(task)
    again = [client.refresh(first) for _ in range(5)]
    assert {(c.status, c.updated_at) for c in again} == {(first.status, first.updated_at)}


def test_its_time_stamps_move_with_the_clock(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> None:
    _, client = held
    before = dt.datetime.now(dt.timezone.utc)
    task = client.start_conversation("Fix the loader")
    clock.advance(3600.0)
    conversation = client.refresh(client.refresh(task))
    assert conversation.requested_at is not None and conversation.updated_at is not None
    requested = conversation.requested_at.replace(tzinfo=dt.timezone.utc)
    assert abs((requested - before).total_seconds()) < 60  # wall-clock time at the start: what a real server sends
    updated = conversation.updated_at.replace(tzinfo=dt.timezone.utc)  # when it got ready: by the clock, 120 s on
    assert (updated - requested).total_seconds() == pytest.approx(SLOW.starting, abs=0.01)
    assert (dt.datetime.now(dt.timezone.utc) - before).total_seconds() < 60  # while the wall clock barely moved


def test_a_clock_only_moves_forward_and_a_server_needs_one_it_can_read() -> None:
    clock = ManualClock(5.0)
    assert clock.advance(2.5) == 7.5 == clock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(float("nan"))
    with pytest.raises(ValueError, match="clock must be a function"):
        LocalOpenHandsServer(clock=5.0)  # type: ignore[arg-type]


def _running_with_patch(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> tuple[Conversation, Callable[[dict[str, Any]], dict[str, Any]]]:
    """A conversation whose agent just began, and the web app's PATCH of it (its answer's JSON)."""
    import httpx

    server, client = held
    task = client.start_conversation("Fix the loader")
    clock.advance(SLOW.starting)
    running = client.refresh(task)
    url = f"{server.base_url}/api/v1/app-conversations/{running.conversation_id}"

    def patch(fields: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.patch(url, json=fields, headers={"Authorization": f"Bearer {SECRET}"}).json()
        return answer

    return running, patch


def test_a_share_made_while_the_agent_runs_is_forgotten_when_it_finishes_and_one_made_after_holds(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> None:
    """As on 1.11.0: its webhook saves the conversation afresh, without ``public``, at each status change."""
    _, client = held
    running, patch = _running_with_patch(held, clock)

    def public() -> object:
        return client.refresh(running).extra.get("public")

    assert patch({"public": True})["public"] is True
    clock.advance(300.0)
    assert public() is True  # held while the agent works
    clock.advance(300.0)
    assert client.refresh(running).status == ConversationStatus.FINISHED and public() is None  # lost at the finish
    patch({"public": True})
    clock.advance(600.0)
    assert public() is True  # nothing changes after the finish: it holds


def test_a_rename_before_the_server_names_the_conversation_is_replaced_and_one_after_holds(
    held: tuple[LocalOpenHandsServer, OpenHandsClient], clock: ManualClock
) -> None:
    """As on 1.11.0: its title callback names the conversation once, after the first turn, over any title."""
    _, client = held
    running, patch = _running_with_patch(held, clock)

    assert patch({"title": "Mine"})["title"] == "Mine"
    assert client.refresh(running).title == "Mine"  # held while the agent works
    clock.advance(SLOW.running)
    assert client.refresh(running).title == "Fix the loader"  # named by the server after its first turn
    patch({"title": "Mine"})
    clock.advance(600.0)
    assert client.refresh(running).title == "Mine"  # after the naming, a rename holds
