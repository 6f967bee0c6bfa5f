"""A self-hosted server's sandbox limit (Docker's ``max_num_sandboxes``, 5 by default): the real 1.11.0 does not
refuse a start past it, it pauses its oldest running sandboxes first (``pause_old_sandboxes``, on a start and on a
resume), mid-run or not. The local server does the same (``max_sandboxes``), and a conversation paused so says why on
its card, where a pause from this notebook does not."""

from __future__ import annotations

import httpx
import pytest

from openhands_magics.handle import PAUSED_ELSEWHERE
from openhands_magics.models import ConversationStatus
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline

from .conftest import SECRET, wait_until

V1 = "/api/v1/app-conversations"
#: Ready after a second; the agent then works for a minute.
LONG = Timeline(starting=1.0, running=60.0)


def _start(http: httpx.Client, clock: ManualClock, text: str) -> str:
    task = http.post(V1, json={"initial_message": {"content": [{"type": "text", "text": text}]}}).json()
    clock.advance(LONG.starting)
    [read] = http.get(f"{V1}/start-tasks", params={"ids": task["id"]}).json()
    return str(read["app_conversation_id"])


def _sandboxes(http: httpx.Client, *ids: str) -> list[tuple[str, str]]:
    return [(c["sandbox_status"], c["execution_status"]) for c in http.get(V1, params={"ids": list(ids)}).json()]


def test_a_start_past_the_limit_pauses_the_oldest_running_sandbox_and_a_resume_makes_room_the_same_way() -> None:
    clock = ManualClock()
    with LocalOpenHandsServer(SECRET, timeline=LONG, clock=clock, max_sandboxes=2) as server:
        http = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {SECRET}"}, trust_env=False)
        first, second = _start(http, clock, "one"), _start(http, clock, "two")
        assert _sandboxes(http, first, second) == [("RUNNING", "running")] * 2

        third = _start(http, clock, "three")  # (answered 200 as usual: no 429)

        # (a paused sandbox's agent cannot be asked: no execution status, as on the real server)
        assert _sandboxes(http, first, second, third) == [
            ("PAUSED", None),
            ("RUNNING", "running"),
            ("RUNNING", "running"),
        ]
        [sandbox] = {c["sandbox_id"] for c in http.get(V1, params={"ids": first}).json()}
        assert http.post(f"/api/v1/sandboxes/{sandbox}/resume").status_code == 200
        assert [s for s, _ in _sandboxes(http, first, second, third)] == ["RUNNING", "PAUSED", "RUNNING"]
        http.close()


def test_the_limit_is_a_v1_servers_and_a_number_above_0() -> None:
    for api, limit in (("v0", 5), ("v1", 0), ("v1", "5")):
        with pytest.raises(ValueError, match="max_sandboxes"):
            LocalOpenHandsServer(SECRET, api=api, max_sandboxes=limit)  # type: ignore[arg-type]


def test_a_watched_conversation_the_server_paused_says_why_and_resuming_it_clears_that() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=60.0), max_sandboxes=1) as server:
        session = Session(PollSchedule(interval=0.1, max_interval=0.2))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        first = session.start("one", endpoint=endpoint)
        session.watch(first)
        wait_until(lambda: first.conversation.sandbox_status == "RUNNING")

        second = session.start("two", endpoint=endpoint)
        wait_until(lambda: second.refresh().sandbox_status == "RUNNING")

        wait_until(lambda: first.status == ConversationStatus.PAUSED)  # (the watch reads it: nobody asked here)
        assert first.note == PAUSED_ELSEWHERE and first.watching
        first.refresh()
        assert first.note == PAUSED_ELSEWHERE  # (kept through fresh reads, until it runs again)
        first.resume()
        assert first.status == ConversationStatus.RUNNING and first.note is None
        assert second.refresh().status == ConversationStatus.PAUSED and second.note == PAUSED_ELSEWHERE
        session.close()


def test_a_pause_from_this_notebook_is_not_noted_as_the_servers() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=60.0)) as server:
        session = Session()
        handle = session.start("one", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
        wait_until(lambda: handle.refresh().sandbox_status == "RUNNING")

        handle.pause()

        assert handle.status == ConversationStatus.PAUSED and handle.note is None
        handle.refresh()
        assert handle.note is None
        handle.resume()
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {SECRET}"}) as elsewhere:
            elsewhere.post(f"/api/v1/sandboxes/{handle.conversation.sandbox_id}/pause").raise_for_status()
        assert handle.refresh().status == ConversationStatus.PAUSED and handle.note == PAUSED_ELSEWHERE
        session.close()


def test_a_fan_out_whose_running_row_the_server_paused_learns_the_limit_and_resumes_that_row_in_turn() -> None:
    # Two rows run; a start from elsewhere (another notebook) makes the server pause the oldest: a running row, which
    # would wait paused for ever. The batch runs no more than the one left running, and resumes the paused row when
    # that one ends (the server then pauses the finished row's sandbox, the oldest).
    timeline = Timeline(starting=0.05, running=3.0)
    with LocalOpenHandsServer(SECRET, timeline=timeline, max_sandboxes=2) as server:
        session = Session(PollSchedule(interval=0.1, max_interval=0.2))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        batch = session.map("task {item}", range(2), max_running=2, endpoint=endpoint)
        wait_until(lambda: all(r.handle and r.handle.conversation.sandbox_status == "RUNNING" for r in batch.rows))
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {SECRET}"}) as elsewhere:
            body = {"initial_message": {"content": [{"type": "text", "text": "elsewhere"}]}}
            elsewhere.post(V1, json=body).raise_for_status()

        batch.wait(timeout=15)

        assert [row.status for row in batch.rows] == ["FINISHED", "FINISHED"]
        assert batch.learned_sandboxes == 1
        # The row paused is the one whose conversation the server made first: the rows start side by side, so that
        # is not always the first row (a loaded run made the second one first).
        oldest = next(
            r.handle for r in batch.rows if r.handle is not None and r.handle.id == server.conversation_ids()[0]
        )
        resumed = [r.path for r in server.posts() if r.path.endswith("/resume")]
        assert resumed == [f"/api/v1/sandboxes/{oldest.conversation.sandbox_id}/resume"]
        assert len([r for r in server.posts() if r.path == V1]) == 3  # (two rows and the other start: none twice)
        session.close()
