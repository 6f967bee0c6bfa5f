"""The live event stream against the local server's own agent server (``openhands_magics.testing``: a real
WebSocket and REST in the recorded shapes, driven by the timeline): what CI checks of what the real 1.11.0 does.
The activity while the agent works, the finish at once with its answer, interrupt, confirmations, a follow-up
queued while starting, the late title, the budget guard, a proxy that passes no WebSockets, and a network cut."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

FAST = PollSchedule(interval=0.2, max_interval=0.4)
pytestmark = pytest.mark.usefixtures("streaming")


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")


def _serve(**timeline: object) -> LocalOpenHandsServer:
    return LocalOpenHandsServer(SECRET, timeline=Timeline(**{"starting": 0.2, **timeline})).start()  # type: ignore[arg-type]


@pytest.fixture
def session() -> Iterator[Session]:
    made = Session(FAST)
    made.remember = False
    yield made
    made.close()


def _start(server: LocalOpenHandsServer, session: Session, message: str = "fix the loader") -> ConversationHandle:
    handle = session.start(message, endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    handle.watch()
    return handle


def test_the_activity_follows_the_agents_steps_and_the_finish_settles_at_once(session: Session) -> None:
    server = _serve(running=3.0, steps=("pytest -q", "edit:data/load.py", "error:the tool broke"), answer="Fixed.")
    try:
        handle = _start(server, session)
        seen: list[tuple[str | None, tuple[str, ...]]] = []
        handle.subscribe(lambda h: seen.append((h.status, tuple(e.summary for e in h.activity.recent))))
        handle.wait(timeout=20)
        assert handle.status == "FINISHED" and handle.answer == "Fixed."
        activity = handle.activity
        assert activity.source == "stream" and activity.notice is None
        summaries = [e.summary for e in activity.recent]
        assert summaries[:4] == ["you: fix the loader", "$ pytest -q", "edited data/load.py", "error: the tool broke"]
        assert summaries[-1] == "finished: Fixed."
        assert activity.recent[3].is_error and activity.steps == 3  # (two actions and the finish)
        running = [lines for status, lines in seen if status == "RUNNING"]
        assert any("edited data/load.py" in lines for lines in running)  # shown while it ran, not after
        assert handle.cost is not None and (handle.cost.tokens or 0) > 0
    finally:
        server.stop()


def test_finished_is_seen_within_a_second_of_the_agent_servers_event(session: Session) -> None:
    server = _serve(running=2.0, steps=("echo one",))
    try:
        handle = _start(server, session)
        handle.wait(timeout=20)
        returned = time.time()
        event_time = handle.activity.last_time
        assert event_time is not None and returned - event_time.timestamp() < 1.0
    finally:
        server.stop()


def test_a_streamed_conversation_makes_no_app_server_request_while_it_runs(session: Session) -> None:
    server = _serve(running=60.0, steps=("sleep 50",))
    try:
        handle = _start(server, session)
        wait_until(lambda: handle.activity.source == "stream", timeout=10)
        time.sleep(0.3)
        server.requests.clear()
        time.sleep(2.0)  # ten poll intervals
        assert [r.path for r in server.requests] == []
    finally:
        server.stop()


def test_interrupt_stops_the_agent_at_once_and_the_conversation_stays(session: Session) -> None:
    server = _serve(running=20.0, steps=tuple(f"echo {n}" for n in range(10)))
    try:
        handle = _start(server, session)
        wait_until(lambda: handle.activity.steps >= 1, timeout=15)
        handle.interrupt()
        wait_until(lambda: handle.status == "PAUSED", timeout=2)
        # (the agent's paused state comes first, its "interrupted" event after: both within the same moment, so a
        # loaded machine may show the status before the event)
        wait_until(lambda: handle.activity.recent[-1].summary == "interrupted", timeout=2)
        steps = handle.activity.steps
        time.sleep(2.5)  # more than one step's time
        assert handle.activity.steps == steps and handle.status == "PAUSED"
    finally:
        server.stop()


def test_an_action_waiting_for_confirmation_is_pending_until_approved_or_rejected(session: Session) -> None:
    server = _serve(running=2.0, steps=("rm -rf build", "make"), confirm=True)
    try:
        handle = _start(server, session)
        wait_until(lambda: handle.activity.pending is not None, timeout=15)
        assert handle.status == "WAITING FOR CONFIRMATION"
        assert handle.activity.pending is not None and handle.activity.pending.command == "rm -rf build"
        handle.confirm()
        wait_until(
            lambda: handle.activity.pending is not None and handle.activity.pending.command == "make", timeout=10
        )
        handle.reject("not now")
        wait_until(lambda: handle.activity.pending is None and handle.status == "IDLE", timeout=10)
        # (the real server, and so the local one, sends the idle status first, then the rejection's observation)
        wait_until(lambda: handle.activity.recent[-1].summary == "rejected: not now", timeout=10)
    finally:
        server.stop()


def test_a_follow_up_sent_while_starting_is_queued_and_delivered(session: Session) -> None:
    server = _serve(starting=2.0, running=2.0)
    try:
        handle = session.start("first", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
        assert handle.id is None
        handle.send("and second")
        assert "queued" in (handle.note or "")
        pending = [r for r in server.requests if r.path.endswith("/pending-messages")]
        assert [r.path for r in pending] == [f"/api/v1/conversations/task-{handle.task_id}/pending-messages"]
        handle.wait(timeout=20)
        said = [e.summary for e in handle.events() if e.kind == "message"]
        assert said[:2] == ["you: first", "you: and second"]
    finally:
        server.stop()


def test_the_title_that_comes_after_the_finish_is_read(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from openhands_magics import connection

    monkeypatch.setattr(connection, "LATE_READS", (0.5, 1.5, 3.0))
    server = _serve(running=1.0, title_delay=1.0)
    try:
        handle = _start(server, session)
        handle.wait(timeout=20)
        early = handle.title
        wait_until(lambda: handle.title != early, timeout=15)
        assert not (handle.title or "").startswith("Conversation ")
    finally:
        server.stop()


def test_the_budget_guard_interrupts_the_agent_and_says_why_on_the_card(session: Session) -> None:
    server = _serve(running=20.0, steps=tuple(f"echo {n}" for n in range(10)), cost=5.0)
    try:
        handle = _start(server, session)
        handle.max_cost = 0.5
        wait_until(lambda: handle.status == "PAUSED", timeout=20)
        assert handle.budget_spent
        assert handle.note is not None and "passed --max-cost $0.50" in handle.note
        # (the PAUSED may come from a poll before the stream's "interrupted" event: waited for, not assumed)
        wait_until(lambda: handle.activity.recent[-1].summary == "interrupted", timeout=10)
    finally:
        server.stop()


def test_a_proxy_that_passes_no_websockets_falls_back_to_polling_and_events_search(session: Session) -> None:
    server = _serve(running=2.0, steps=("echo one", "echo two"), search_batch=1, search_flush=0.1)
    server.block_websockets()
    try:
        handle = _start(server, session)
        handle.wait(timeout=20)
        assert handle.status == "FINISHED" and handle.answer == "Done."
        activity = handle.activity
        assert activity.source == "polling"
        assert activity.notice == "live events unavailable (the server answered 404 to the WebSocket upgrade): polling"
        wait_until(lambda: any(r.path.endswith("/events/search") for r in server.requests))
    finally:
        server.stop()


def test_a_network_cut_reconnects_and_no_step_is_counted_twice(session: Session) -> None:
    server = _serve(running=4.0, steps=("echo 1", "echo 2", "echo 3"))
    try:
        handle = _start(server, session)
        wait_until(lambda: handle.activity.steps >= 1, timeout=15)
        assert server.drop_sockets() == 1
        handle.wait(timeout=20)
        assert handle.status == "FINISHED" and handle.activity.steps == 4  # three steps and the finish, once each
        assert [e.summary for e in handle.activity.recent if e.kind == "command"] == [
            "$ echo 1",
            "$ echo 2",
            "$ echo 3",
        ]
    finally:
        server.stop()


def test_a_v0_server_has_no_stream_and_says_so_once(session: Session) -> None:
    server = LocalOpenHandsServer(SECRET, api="v0", timeline=Timeline(starting=0.2, running=1.0)).start()
    try:
        handle = _start(server, session)
        notices: list[str | None] = []
        handle.subscribe(lambda h: notices.append(h.activity.notice))
        handle.wait(timeout=20)
        assert handle.activity.notice == "live events unavailable (V0 server): polling"
        assert handle.activity.source == "polling"
        assert len({n for n in notices if n}) <= 1
    finally:
        server.stop()


def test_a_finished_conversation_watched_later_gets_its_answer_from_the_agent_server(session: Session) -> None:
    """The app server's events arrive in batches (here: not before 30 s): the answer is the agent server's."""
    server = _serve(running=0.5, steps=("echo 1", "echo 2"), answer="All done.", search_batch=50, search_flush=30.0)
    try:
        first = _start(server, session)
        first.wait(timeout=20)
        later = Session(FAST)
        try:
            handle = later.attach(first.id or "", endpoint=first.endpoint)
            assert handle.is_final and handle.answer == "All done."
        finally:
            later.close()
    finally:
        server.stop()


def test_a_streamed_finish_has_the_title_pull_requests_and_cost_of_the_app_server_at_once(session: Session) -> None:
    server = _serve(running=1.0, pr_numbers=(42,), cost=0.12, prompt_tokens=1000, completion_tokens=234)
    try:
        handle = session.start(
            "fix the loader", repository="octo/demo", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET)
        )
        handle.watch()
        handle.wait(timeout=20)
        assert handle.activity.source == "stream"
        # When wait() returns (the stream said finished), what the app server knows is on the handle already:
        # the final card shows it at once, not after a late read.
        assert [pr.number for pr in handle.pull_requests] == [42]
        assert handle.title == "fix the loader" and handle.cost is not None and handle.cost.usd == 0.12
    finally:
        server.stop()
