"""The poller and the blocking wait, against the local server: live updates, backoff, retrying…, final errors."""

from __future__ import annotations

import asyncio

import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import NO_RETRIES
from openhands_magics.errors import AuthenticationError, RateLimitError, ServerError, WaitTimeout
from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollLoop, PollSchedule, Watcher, wait_until_final
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET

FAST_POLL = PollSchedule(interval=0.05, max_interval=0.1)


def _handle(client: OpenHandsClient, message: str = "watch me") -> ConversationHandle:
    return ConversationHandle(client.start_conversation(message), client, schedule=FAST_POLL, record=False)


def _watch_and_record(server: LocalOpenHandsServer, handle: ConversationHandle, seconds: float) -> tuple[list[str], list[str | None]]:
    """Run a Watcher in a fresh loop for ``seconds`` (or until it ends); return statuses and notes seen."""
    statuses: list[str] = []
    notes: list[str | None] = []

    def record(h: ConversationHandle) -> None:
        if not statuses or statuses[-1] != h.status:
            statuses.append(h.status or "")
        notes.append(h.note)

    handle.subscribe(record)

    async def scenario() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=NO_RETRIES) as poll_client:
            watcher = Watcher(handle, poll_client, FAST_POLL)
            try:
                await asyncio.wait_for(asyncio.shield(watcher.task), seconds)
            except asyncio.TimeoutError:
                watcher.stop()

    asyncio.run(scenario())
    return statuses, notes


def test_watcher_follows_starting_running_stopped_and_ends(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    handle = _handle(client)
    statuses, notes = _watch_and_record(server, handle, seconds=5)
    assert statuses == ["STARTING", "RUNNING", "STOPPED"]  # polls every 0.05 s; STARTING lasts 0.3 s
    assert handle.is_final and handle.title == "watch me"
    assert set(notes) == {None}


def test_watcher_shows_retrying_on_5xx_and_keeps_polling(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    handle = _handle(client)
    server.inject(status=503, method="GET", times=2)
    statuses, notes = _watch_and_record(server, handle, seconds=5)
    assert any(note and note.startswith("retrying in") and "HTTP 503" in note for note in notes)
    assert statuses[-1] == "STOPPED" and handle.note is None  # recovered: the note is cleared


def test_watcher_stops_on_a_final_error_and_says_why(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    handle = _handle(client)
    server.inject(status=401, body={"error": "NoCredentialsError"}, method="GET")
    _watch_and_record(server, handle, seconds=5)
    assert handle.note is not None and handle.note.startswith("Stopped watching: The API key was rejected")
    assert handle.status == "STARTING"
    assert sum(r.method == "GET" for r in server.requests) == 1


def test_watcher_stop_cancels_polling(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.schedule = (("RUNNING", None),)
    handle = _handle(client)

    async def scenario() -> int:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=NO_RETRIES) as poll_client:
            watcher = Watcher(handle, poll_client, FAST_POLL)
            await asyncio.sleep(0.3)
            watcher.stop()
            await asyncio.sleep(0.05)
            assert not watcher.running
            polled = len(server.requests)
            await asyncio.sleep(0.3)
            return len(server.requests) - polled

    assert asyncio.run(scenario()) == 0


def test_poll_loop_backs_off_while_unchanged_and_honours_retry_after(client: OpenHandsClient) -> None:
    handle = _handle(client)
    loop = PollLoop(handle, PollSchedule(interval=1, max_interval=4, growth=2))
    same = handle.conversation
    loop.succeeded(same)
    assert loop.pause == 2
    loop.succeeded(same)
    loop.succeeded(same)
    assert loop.pause == 4  # capped
    assert loop.failed(RateLimitError("slow down", retry_after=20)) is True
    assert loop.pause == 20
    assert loop.failed(ServerError("boom")) is True
    assert loop.failed(AuthenticationError("bad key")) is False


def test_wait_until_final_returns_the_final_snapshot_and_reports_changes(client: OpenHandsClient) -> None:
    handle = _handle(client)
    seen: list[str | None] = []
    final = wait_until_final(handle, client, FAST_POLL, timeout=5, on_change=lambda h: seen.append(h.status))
    assert final.status == "STOPPED"
    assert seen == ["RUNNING", "STOPPED"]


def test_wait_times_out_with_the_url_and_the_conversation_untouched(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.schedule = (("RUNNING", None),)
    handle = _handle(client)
    with pytest.raises(WaitTimeout, match=f"Still .* after 0.3 s; the conversation goes on: {handle.url}"):
        handle.wait(timeout=0.3)
    assert server.status_of(handle.id) == "RUNNING"


def test_schedule_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        PollSchedule(interval=0)
    with pytest.raises(ValueError):
        PollSchedule(interval=5, max_interval=1)


def test_views_redraw_between_polls_so_the_elapsed_time_moves(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.schedule = (("RUNNING", None),)
    handle = _handle(client)
    schedule = PollSchedule(interval=0.8, max_interval=0.8, redraw_every=0.1)
    redraws: list[float] = []
    handle.subscribe(lambda h: redraws.append(asyncio.get_running_loop().time()))

    async def scenario() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=NO_RETRIES) as poll_client:
            watcher = Watcher(handle, poll_client, schedule)
            await asyncio.sleep(0.7)  # before the first poll is due
            watcher.stop()

    asyncio.run(scenario())
    gets = [r for r in server.requests if r.method == "GET"]
    assert gets == []  # nothing was asked of the server...
    assert len(redraws) >= 4  # ...yet the views were redrawn about every 0.1 s


def test_no_redraws_once_the_status_is_final(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.schedule = (("RUNNING", None),)
    handle = _handle(client)
    schedule = PollSchedule(interval=0.8, max_interval=0.8, redraw_every=0.05)
    redraws: list[str | None] = []
    handle.subscribe(lambda h: redraws.append(h.status))

    async def scenario() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=NO_RETRIES) as poll_client:
            watcher = Watcher(handle, poll_client, schedule)
            await asyncio.sleep(0.2)
            server.set_status(handle.id, "STOPPED")
            handle.refresh()  # e.g. a `conv.wait()` elsewhere saw the end while the poller slept
            await asyncio.sleep(0.4)
            watcher.stop()

    asyncio.run(scenario())
    assert "RUNNING" in redraws  # it was redrawing while running
    assert redraws.index("STOPPED") == len(redraws) - 1  # and stopped at the final status
