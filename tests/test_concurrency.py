"""Cloud's concurrency limit (a 429 on a start past the account's running conversations): a fan-out learns the
limit and starts every task once, and a single start with ``--queue`` waits for a place."""

from __future__ import annotations

import threading
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell

import openhands_magics
from openhands_magics import Endpoint
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Session
from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline
from openhands_magics.testing.server import PERSONAL_LIMIT

from .conftest import SECRET, Output, wait_until


def test_a_twelve_task_fan_out_on_a_personal_account_never_runs_more_than_three_and_starts_each_task_once() -> None:
    timeline = Timeline(starting=0.05, running=0.4)
    with LocalOpenHandsServer(SECRET, timeline=timeline, max_running=PERSONAL_LIMIT) as server:
        session = Session(PollSchedule(interval=0.05, max_interval=0.1))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        most, done, summaries = [0], threading.Event(), set()

        def sample() -> None:  # the server's own count, all along
            while not done.is_set():
                most[0] = max(most[0], server.running_count())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            batch = session.map("task {item}", range(12), endpoint=endpoint)  # (the default: 10 at once)
            batch._views.append(lambda: summaries.add(batch.summary))
            batch.wait(60)
        finally:
            done.set()
            sampler.join()
        assert batch.summary == "12/12 finished · 0 running · 0 queued · 0 failed"
        assert most[0] <= PERSONAL_LIMIT
        started = [r.body["initial_message"]["content"][0]["text"] for r in server.posts() if r.path.endswith("ions")]
        accepted = server.task_ids()
        assert len(accepted) == 12  # each task started once: every refused start started nothing
        assert sorted(set(started)) == sorted(f"task {n}" for n in range(12))
        assert batch.learned_limit == PERSONAL_LIMIT
        assert any("waiting for a slot (the account runs at most 3 at once)" in line for line in summaries)
        session.close()


def test_a_single_start_past_the_limit_with_queue_starts_when_a_slot_frees(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()  # (the first one runs until the test says it ended)
    timeline = Timeline(starting=0.0, running=10.0)
    with LocalOpenHandsServer(SECRET, timeline=timeline, max_running=1, clock=clock) as server:
        for name, value in server.environ().items():
            monkeypatch.setenv(name, value)
        first = ip.run_line_magic("openhands", "--no-panel first")
        wait_until(lambda: first.refresh() is not None and first.id is not None)
        queued = ip.run_line_magic("openhands", "--no-panel --queue second")
        assert queued.status == "QUEUED" and queued.id is None
        assert queued.conversation.phase == "1st in line: starts as soon as one of the 1 running ends"
        assert len(server.task_ids()) == 1  # refused: nothing started yet
        assert first.watching  # (the tracker follows the running one: its end feeds the queue)
        clock.advance(11)  # the first one ends
        wait_until(lambda: queued.id is not None, timeout=20)
        assert first.is_final and len(server.task_ids()) == 2
        assert openhands_magics.history()[-1] is queued  # one handle, in the record, now with its ids
        clock.advance(11)
        queued.wait(20)
        assert queued.status == "FINISHED"
