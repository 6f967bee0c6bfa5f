"""Fan-out: a queue that keeps at most ``max_running`` conversations running (counted by the server), over real
HTTP to the local server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from openhands_magics.batch import Batch
from openhands_magics.errors import ValidationError
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until


def _peak(server: LocalOpenHandsServer, stop: threading.Event) -> list[int]:
    seen = [0]

    def sample() -> None:
        while not stop.is_set():
            seen[0] = max(seen[0], server.running_count())
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    return seen


def test_fifty_tasks_never_more_than_ten_running_and_all_end_with_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    timeline = Timeline(starting=0.05, running=0.25, answer="done")
    with LocalOpenHandsServer(SECRET, timeline=timeline, max_running=100) as server:
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        stop = threading.Event()
        peak = _peak(server, stop)

        batch = session.map(
            "Fix the lint errors in {item}", [f"file_{i}.py" for i in range(50)], max_running=10, endpoint=endpoint
        )
        # No event loop, no .wait(): the queue runs by itself in the I/O thread, starting the next as places free.
        wait_until(lambda: len(server.task_ids()) > 20, timeout=30)
        batch.wait(timeout=60)
        stop.set()

        assert 1 < peak[0] <= 10, peak
        assert len(server.task_ids()) == 50  # each started once
        assert batch.summary == "50/50 finished · 0 running · 0 queued · 0 failed"
        frame = batch.to_dataframe()
        assert isinstance(frame, pd.DataFrame) and len(frame) == 50
        assert set(frame["status"]) == {"FINISHED"} and set(frame["answer"]) == {"done"}
        assert list(frame["item"]) == [f"file_{i}.py" for i in range(50)]
        sent = sorted(r.body["initial_message"]["content"][0]["text"] for r in server.posts())
        assert sent == sorted(f"Fix the lint errors in file_{i}.py" for i in range(50))
        session.close()


def test_in_an_event_loop_the_queue_runs_by_itself_and_a_429_pauses_it_without_starting_twice() -> None:
    timeline = Timeline(starting=0.05, running=0.2)
    with LocalOpenHandsServer(SECRET, timeline=timeline, max_running=3) as server:  # a 4th running is a 429
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        server.inject(
            status=429,
            body={"error": "slow down"},
            headers={"Retry-After": "0.3"},
            method="POST",
            path_prefix="/api/v1/app-conversations",
            times=1,
        )

        async def scenario() -> None:
            batch = session.map(lambda n: f"task {n}", range(8), max_running=3, endpoint=endpoint)
            deadline = time.monotonic() + 20
            while not batch.done and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert batch.done, batch.summary
            assert batch.summary == "8/8 finished · 0 running · 0 queued · 0 failed"
            session.close()
            await asyncio.sleep(0)

        asyncio.run(scenario())
        assert len(server.task_ids()) == 8  # the refused start was queued again, not lost, not doubled


def test_cancel_leaves_the_started_ones_and_a_bad_template_starts_nothing() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2)) as server:
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        with pytest.raises(ValidationError, match="template failed"):
            session.map("Look at {file}", ["a"], endpoint=endpoint)
        batch = Batch(session, "task {item}", range(5), max_running=2, endpoint=endpoint)  # (not started yet)
        assert batch.cancel() == 5
        batch.wait(timeout=5)
        assert server.posts() == []
        assert batch.summary.endswith("· 5 cancelled")
        session.close()


def test_cancelling_a_running_queue_starts_no_more_and_lets_the_started_ones_finish() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=1.0)) as server:
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        batch = session.map("task {item}", range(5), max_running=2, endpoint=endpoint)
        wait_until(lambda: len(server.posts()) == 2, timeout=10)
        assert batch.cancel() == 3
        batch.wait(timeout=10)
        assert len(server.posts()) == 2
        assert batch.summary == "2/5 finished · 0 running · 0 queued · 0 failed · 3 cancelled"
        session.close()


def test_the_grid_shows_a_row_per_task_escaped_with_the_summary() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.1, answer="<b>ok</b> done")) as server:
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        batch = Batch(session, "look at {item}", ["<i>a</i>", "b", "c"], max_running=2, endpoint=endpoint)
        queued = batch._repr_html_()  # (not started yet: .wait() starts it)
        assert "0/3 finished · 0 running · 3 queued · 0 failed" in queued and queued.count(">QUEUED<") == 3
        assert "&lt;i&gt;a&lt;/i&gt;" in queued and "<i>a</i>" not in queued
        batch.wait(timeout=10)

        final = batch._repr_html_()
        assert "3/3 finished" in final and final.count(">FINISHED<") == 3
        assert final.count("&lt;b&gt;ok&lt;/b&gt; done") == 3 and "<b>ok</b>" not in final
        assert all(f'href="{h.url}"' in final for h in batch.handles)
        assert repr(batch).splitlines()[0] == batch.summary
        session.close()


def test_the_magic_form_maps_a_notebook_list(quick: LocalOpenHandsServer, ip: Any, output: Any) -> None:  # noqa: F811
    ip.user_ns["files"] = ["a.py", "b.py", "c.py"]
    assert (
        ip.run_cell_magic("openhands", "--map files --max-running 2 --wait", "Fix the lint errors in {item}\n") is None
    )
    out, err = output.read()
    assert err == "" and out.strip().splitlines()[-1] == "3/3 finished · 0 running · 0 queued · 0 failed"
    sent = sorted(r.body["initial_message"]["content"][0]["text"] for r in quick.posts())
    assert sent == ["Fix the lint errors in a.py", "Fix the lint errors in b.py", "Fix the lint errors in c.py"]
    ip.run_cell_magic("openhands", "--map nothing_here", "x {item}")
    assert "no variable 'nothing_here'" in output.one_error_line()
