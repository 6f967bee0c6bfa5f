"""The one poller per server and the blocking wait, against the local server: batched reads, spreading, backoff,
retrying…, final errors, and a wait that ends when the agent does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from openhands_magics.errors import RateLimitError, ServerError, WaitTimeout
from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollSchedule, Watch
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

FAST_POLL = PollSchedule(interval=0.1, max_interval=0.2)


def _session(server: LocalOpenHandsServer, schedule: PollSchedule = FAST_POLL) -> tuple[Session, Endpoint]:
    return Session(schedule), Endpoint.resolve(server.base_url, api_key=SECRET)


def _run_watching(
    session: Session, handles: list[ConversationHandle], seconds: float, until: Callable[[], bool] | None = None
) -> None:
    """Watch ``handles`` in a fresh event loop until ``until()`` (default: all final) or ``seconds`` pass."""
    until = until or (lambda: all(h.is_final for h in handles))

    async def scenario() -> None:
        for handle in handles:
            assert session.watch(handle)
        deadline = time.monotonic() + seconds
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        session.close()
        await asyncio.sleep(0)  # let the async clients close

    asyncio.run(scenario())


def _statuses(handle: ConversationHandle) -> list[str]:
    seen: list[str] = []
    handle.subscribe(
        lambda h: (
            seen.append(h.conversation.status_line) if not seen or seen[-1] != h.conversation.status_line else None
        )
    )
    return seen


def test_one_poller_follows_many_conversations_to_finished_with_one_read_a_tick(server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(server)
    handles = [session.start(f"task {i}", endpoint=endpoint) for i in range(5)]
    seen = [_statuses(h) for h in handles]
    server.requests.clear()

    _run_watching(session, handles, seconds=10, until=lambda: not any(h.watching for h in handles))

    assert all(h.status == "FINISHED" and h.id and h.task_id for h in handles)
    assert all(s[-1] == "FINISHED" and "RUNNING" in s for s in seen)
    statuses = {"/api/v1/app-conversations/start-tasks", "/api/v1/app-conversations"}
    reads = [r for r in server.requests if r.method == "GET" and r.path in statuses]
    assert {r.path for r in reads} == statuses
    assert max(len(r.query["ids"]) for r in reads) == 5  # all five in one request
    # Once each is over, what the agent did is read once: its answer (events) and its changed files.
    others = sorted(r.path for r in server.requests if r.method == "GET" and r.path not in statuses)
    assert others == sorted(
        [f"/api/v1/conversation/{h.id}/events/search" for h in handles]
        + [f"/api/v1/app-conversations/{h.id}/git/changes" for h in handles]
    )
    assert all(h.outcome is not None for h in handles)
    assert len(session.pollers) == 0 or not any(p.running for p in session.pollers)
    assert not any(h.watching for h in handles)


def test_a_hundred_and_twenty_conversations_cost_one_request_a_tick_never_more_than_99_ids() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=60), max_running=500) as server:
        session, endpoint = _session(server, PollSchedule(interval=0.2, max_interval=0.2))
        handles = [session.start(f"task {i}", endpoint=endpoint) for i in range(120)]
        time.sleep(0.2)
        session.client(endpoint).read([h.conversation for h in handles])  # (tasks turn READY: not what we count)
        for handle, fresh in zip(handles, session.client(endpoint).read([h.conversation for h in handles])):
            handle.update(fresh)
        server.requests.clear()
        started = time.monotonic()

        _run_watching(session, handles, seconds=2.1, until=lambda: False)

        elapsed = time.monotonic() - started
        reads = [r for r in server.requests if r.path == "/api/v1/app-conversations"]
        assert all(len(r.query["ids"]) <= 99 for r in reads)
        assert len(server.requests) == len(reads) <= elapsed / 0.2 + 1  # one request a tick, for all 120
        assert len({i for r in reads for i in r.query["ids"]}) == 120  # and every one of them is read


def test_v0_reads_are_spread_over_the_interval() -> None:
    with LocalOpenHandsServer(
        SECRET, api="v0", timeline=Timeline(starting=0.1, running=60)
    ) as v0_server:  # (none ends)
        v0_server.inject(status=200, body=b"{}", path_prefix="/never")  # (keep the fault list in use: no effect)
        session, endpoint = _session(v0_server, PollSchedule(interval=0.4, max_interval=0.4))
        handles = [session.start(f"task {i}", endpoint=endpoint) for i in range(4)]
        v0_server.requests.clear()

        def reads() -> list:
            return [r for r in list(v0_server.requests) if r.method == "GET" and not r.path.endswith("/events")]

        # Until six reads were made (a busy machine makes them late, never closer: the gap counts from a read's end).
        _run_watching(session, handles, seconds=15, until=lambda: len(reads()) >= 6)

        times = [r.received for r in reads()]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) >= 6
        assert min(gaps) >= 0.4 / 4 * 0.8  # evenly apart, not a burst of four


def test_v0_finishes_when_the_agent_does(v0_server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(v0_server)
    handle = session.start("hi", endpoint=endpoint)
    seen = _statuses(handle)
    _run_watching(session, [handle], seconds=10)
    assert seen[-1] == "FINISHED" and handle.conversation.server_status == "RUNNING"


def test_failed_polls_show_retrying_and_go_on(server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(server)
    handle = session.start("hi", endpoint=endpoint)
    notes: list[str | None] = []
    handle.subscribe(lambda h: notes.append(h.note))
    server.inject(status=503, method="GET", times=2)

    _run_watching(session, [handle], seconds=10)

    assert handle.status == "FINISHED" and handle.note is None
    assert any(n and n.startswith("retrying in") and "HTTP 503" in n for n in notes)


def test_an_error_retrying_cannot_fix_stops_watching_and_says_why(server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(server)
    session.client(endpoint).dialect()  # learnt: Bearer works here
    handle = session.start("hi", endpoint=endpoint)
    server.inject(status=401, method="GET", body={"error": "NoCredentialsError"}, times=5)

    _run_watching(session, [handle], seconds=3, until=lambda: not handle.watching)

    assert handle.note is not None and handle.note.startswith("Stopped watching: The API key was rejected")
    assert not handle.watching and not handle.is_final


def test_stop_watching_stops_requests_for_that_conversation_only(server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(server)
    kept, stopped = session.start("kept", endpoint=endpoint), session.start("stopped", endpoint=endpoint)

    async def scenario() -> None:
        session.watch(kept)
        session.watch(stopped)
        stopped.stop_watching()
        while not kept.is_final:
            await asyncio.sleep(0.02)
        session.close()

    asyncio.run(scenario())
    asked = {i for r in server.requests if r.method == "GET" for i in r.query.get("ids", [])}
    assert stopped.task_id not in asked and kept.task_id in asked
    assert stopped.status == "STARTING" and not stopped.watching


def test_watch_backs_off_while_unchanged_and_honours_retry_after(server: LocalOpenHandsServer) -> None:
    session, endpoint = _session(server)
    watch = Watch(session.start("hi", endpoint=endpoint), PollSchedule(interval=1, max_interval=30, growth=2), now=0)
    snapshot = watch.handle.conversation
    watch.succeeded(snapshot, now=0)
    watch.succeeded(snapshot, now=0)
    assert watch.pause == 4 and watch.next_due == 4
    assert watch.failed(RateLimitError("slow down", retry_after=20), now=10) and watch.next_due == 30
    assert watch.failed(ServerError("boom"), now=30) and watch.pause == 30  # doubled, capped at max_interval
    assert watch.handle.note == "retrying in 30 s… (boom)"


def test_wait_returns_within_one_poll_of_the_agent_finishing_with_a_true_elapsed_time() -> None:
    timeline = Timeline(starting=0.3, running=0.8)
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session, endpoint = _session(server)
        posted = time.monotonic()
        handle = session.start("hi", endpoint=endpoint)
        changes: list[str] = []
        final = handle.wait(timeout=10, on_change=lambda h: changes.append(h.conversation.status_line))
        returned = time.monotonic()

        (conversation,), _ = server._snapshot()
        finished_at = conversation.ready_at + timeline.running - server._epoch  # (its clock, not the epoch)
        reads = [r.received for r in server.requests if r.method == "GET" and r.path == "/api/v1/app-conversations"]

    assert final.status == "FINISHED" and changes[-1] == "FINISHED"
    # Within one poll: the first read that could see the finish is the one the wait returns on, and the last one.
    assert len([t for t in reads if t > finished_at]) <= 1 and reads[-1] < returned  # (0: one sent just before)
    elapsed = handle.elapsed()
    assert elapsed is not None and timeline.starting + timeline.running - 0.2 < elapsed < returned - posted + 0.5
    time.sleep(0.3)
    assert handle.elapsed() == elapsed  # it stopped at the end, it does not grow


def test_an_answer_the_app_server_holds_back_at_the_finish_is_read_later_by_polling_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app server's events come in batches (here: the finish message is not searchable yet when the finish is
    seen); polling alone, with no stream to say it, still reads the answer at a late read, not left at None."""
    from openhands_magics import connection

    monkeypatch.setattr(connection, "LATE_READS", (0.5, 1.5, 4.0))
    timeline = Timeline(starting=0.2, running=0.5, steps=("echo 1",), answer="Done.", search_batch=50, search_flush=3.0)
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session, endpoint = _session(server)
        try:
            handle = session.start("hi", endpoint=endpoint)
            handle.wait(timeout=10)
            assert handle.status == "FINISHED" and handle.answer is None  # (not searchable yet)
            wait_until(lambda: handle.answer == "Done.", timeout=8)
        finally:
            session.close()


def test_wait_times_out_with_the_link_and_the_conversation_untouched() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=60)) as server:
        session, endpoint = _session(server)
        handle = session.start("hi", endpoint=endpoint)
        with pytest.raises(WaitTimeout, match=r"Still .* after 0.5 s; it goes on"):
            handle.wait(timeout=0.5)
        assert server.running_count() == 1


def test_schedule_rejects_nonsense() -> None:
    for bad in ({"interval": 0}, {"interval": 5, "max_interval": 1}, {"growth": 0.5}):
        with pytest.raises(ValueError):
            PollSchedule(**bad)  # type: ignore[arg-type]
