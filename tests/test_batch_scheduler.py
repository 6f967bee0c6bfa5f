"""The batch as a client of the tracker: its queue is a scheduler in the I/O thread's loop, so it goes on while the
caller's thread is busy (a blocking wait on another conversation, no event loop at all), its rows change in that loop
only, no thread of its own sends a start, and a start on its way when the session closes is never sent again. Real
HTTP to the local server, bounded in time."""

from __future__ import annotations

import threading

from openhands_magics.batch import INTERRUPTED
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

SCHEDULE = PollSchedule(interval=0.05, max_interval=0.1)
V1 = "/api/v1/app-conversations"


def test_the_queue_goes_on_while_the_callers_thread_blocks_on_another_conversations_wait() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2, answer="done")) as server:
        session, endpoint = Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)
        other = session.start("a long one", endpoint=endpoint)
        wait_until(lambda: server.conversation_ids(), timeout=10)
        other_id = server.conversation_ids()[0]
        server.set_state(other_id, execution_status="running")
        batch = session.map("task {item}", range(4), max_running=1, endpoint=endpoint)
        over = threading.Event()
        batch._views.append(lambda: batch.done and over.set())

        def finish_the_other_once_the_batch_is_over() -> None:  # the only way other.wait() below returns in time
            if over.wait(20):
                server.set_state(other_id, execution_status="finished")

        threading.Thread(target=finish_the_other_once_the_batch_is_over, daemon=True).start()
        other.wait(timeout=30)  # the caller's thread is held here while the whole batch runs, one at a time

        assert batch.done and batch.summary == "4/4 finished · 0 running · 0 queued · 0 failed"
        assert [r["answer"] for r in batch.results()] == ["done"] * 4 and len(server.task_ids()) == 5
        session.close()


def test_rows_change_and_views_are_told_in_the_io_thread_and_no_thread_of_the_batch_sends_a_start() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.1)) as server:
        session, endpoint = Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)
        told: list[str] = []
        threads: set[str] = set()

        def view() -> None:
            told.append(threading.current_thread().name)
            threads.update(t.name for t in threading.enumerate())

        batch = session.map("task {item}", range(6), max_running=3, endpoint=endpoint)
        batch._views.append(view)
        batch.wait(timeout=20)

        assert told and set(told) == {"openhands-io"}
        assert not [name for name in threads if name.startswith("openhands-start")]  # (the pool that sent them before)
        assert batch.summary == "6/6 finished · 0 running · 0 queued · 0 failed"
        session.close()


def test_a_start_on_its_way_when_the_session_closes_fails_its_row_and_is_never_sent_again() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.1)) as server:
        session, endpoint = Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)
        server.inject(status=500, delay=2.0, method="POST", path_prefix=V1, times=1)  # (the answer never matters)
        batch = session.map("task {item}", ["a", "b"], max_running=1, endpoint=endpoint)
        wait_until(lambda: len(server.posts()) == 1, timeout=10)
        session.close()  # (%unload_ext): the POST on its way is cancelled; the server may have started it

        first = batch.rows[0]
        assert (first.state, first.error) == ("FAILED", INTERRUPTED)
        batch.wait(timeout=10)  # the queue resumes for the rest, and only for the rest
        assert len(server.posts()) == 2 and [r.status for r in batch.rows] == ["FAILED", "FINISHED"]
        session.close()


def test_starts_sent_together_ask_the_server_which_api_it_speaks_once_not_once_each() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.1)) as server:
        session, endpoint = Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)
        batch = session.map("task {item}", range(8), max_running=8, endpoint=endpoint).wait(timeout=20)
        assert batch.summary == "8/8 finished · 0 running · 0 queued · 0 failed"
        probes = [r for r in server.requests if r.method == "GET" and r.path.split("?")[0] == "/api/conversations"]
        assert len(probes) == 1  # (the V0 probe, the first of the detection's reads)
        session.close()


def test_each_start_is_in_the_history_with_its_task_id_the_moment_its_row_has_a_handle() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=5.0, running=30)) as server:
        session, endpoint = Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)
        seen: list[bool] = []

        def view() -> None:  # told in the I/O loop right after each round: a row with a handle is recorded already
            seen.extend(
                r.handle in session.history() and r.handle.task_id is not None
                for r in batch.rows
                if r.handle is not None
            )

        batch = session.map("task {item}", ["a", "b"], endpoint=endpoint)
        batch._views.append(view)
        wait_until(lambda: all(r.handle is not None for r in batch.rows), timeout=10)
        assert sorted(h.task_id for h in session.history()) == sorted(server.task_ids()) and all(seen)
        assert not server.conversation_ids()  # (long before any conversation exists)
        batch.cancel()
        session.close()
