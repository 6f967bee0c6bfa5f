"""A fan-out's rows end however their conversation does (finished, error, stuck, deleted elsewhere, a start task that
failed), whether the caller runs an event loop (as a kernel does) or blocks in ``.wait()``: the queue runs in the I/O
thread either way, and both must end the same. A 429 asking for no
pause pauses (almost) none; the final grid is drawn once every answer is in; a failed start's row says why; wrong
arguments to ``map()`` are one ValidationError line before anything is sent; the text table lets no escape through.
Every test talks real HTTP to the local server and is bounded in time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from openhands_magics._protocol.common import retry_after
from openhands_magics.batch import DEFAULT_RATE_PAUSE, MIN_RATE_PAUSE, Batch, rate_pause
from openhands_magics.errors import RateLimitError, ValidationError, WaitTimeout
from openhands_magics.polling import GONE, PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.session import map as module_map
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET

SCHEDULE = PollSchedule(interval=0.05, max_interval=0.1)
DRIVERS = ["event loop", "wait"]
V1 = "/api/v1/app-conversations"


def _session(server: LocalOpenHandsServer) -> tuple[Session, Endpoint]:
    return Session(SCHEDULE), Endpoint.resolve(server.base_url, api_key=SECRET)


def _run(session: Session, make: Callable[[], Batch], driver: str, *, seconds: float = 20) -> Batch:
    """Make the batch and wait until it is done: from an event loop that only looks at ``batch.done`` (as a kernel's
    would), or with the blocking ``.wait()``. Either way the test fails, in ``seconds``, if it never ends."""
    if driver == "wait":
        batch = make()
        batch.wait(timeout=seconds)
        session.close()
        return batch

    async def scenario() -> Batch:
        batch = make()
        deadline = time.monotonic() + seconds
        while not batch.done and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        session.close()
        await asyncio.sleep(0)  # let the async clients close
        return batch

    batch = asyncio.run(scenario())
    assert batch.done, batch.summary
    return batch


@contextmanager
def _on_each_new_conversation(
    server: LocalOpenHandsServer, act: Callable[[int, str], None], count: int
) -> Iterator[None]:
    """While the block runs, call ``act(n, id)`` on each conversation as soon as it exists on the server (the n-th,
    counting from 0), from a thread: within milliseconds, long before its agent ends."""
    stop = threading.Event()

    def watch() -> None:
        seen: list[str] = []
        while not stop.is_set() and len(seen) < count:
            for conversation_id in server.conversation_ids():
                if conversation_id not in seen:
                    act(len(seen), conversation_id)
                    seen.append(conversation_id)
            time.sleep(0.003)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=5)


def _delete(server: LocalOpenHandsServer, conversation_id: str) -> None:
    """Delete it as the OpenHands app (or another kernel) would: a DELETE this session knows nothing of."""
    response = httpx.delete(f"{server.base_url}{V1}/{conversation_id}", headers={"Authorization": f"Bearer {SECRET}"})
    response.raise_for_status()


# ==================================================================================================== every way to end
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_conversation_deleted_elsewhere_ends_its_row_frees_its_place_and_the_batch_ends(driver: str) -> None:
    timeline = Timeline(starting=0.05, running=1.0, answer="done")
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session, endpoint = _session(server)
        deleted: list[str] = []

        def delete_the_first(n: int, conversation_id: str) -> None:
            if n == 0:
                _delete(server, conversation_id)
                deleted.append(conversation_id)

        with _on_each_new_conversation(server, delete_the_first, 1):
            batch = _run(
                session,
                lambda: session.map("look at {item}", ["a", "b", "c"], max_running=1, endpoint=endpoint),
                driver,
            )

        first = batch.rows[0]
        assert first.handle is not None and first.handle.id == deleted[0]
        assert (first.status, first.error, first.handle.is_final) == ("DELETED", GONE, True)
        assert first.handle.conversation.status_line == f"DELETED · {GONE}" and not first.handle.watching
        assert [r.status for r in batch.rows[1:]] == ["FINISHED", "FINISHED"]  # the place it held went to the others
        assert [r["answer"] for r in batch.results()] == [None, "done", "done"]
        assert batch.summary == "2/3 finished · 0 running · 0 queued · 1 failed"
        assert len(server.task_ids()) == 3
        # nothing is read of a conversation the server no longer has (no answer, no changes)
        assert not [r for r in server.requests if deleted[0] in r.path and r.method != "DELETE"]


def test_a_watched_conversation_the_server_no_longer_has_turns_deleted_and_its_watching_ends() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=30)) as server:
        session, endpoint = _session(server)
        handle = session.start("hi", endpoint=endpoint)

        async def scenario() -> None:
            assert session.watch(handle)
            deadline = time.monotonic() + 10
            while handle.id is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(_delete, server, handle.id or "")
            while handle.watching and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            session.close()
            await asyncio.sleep(0)

        asyncio.run(scenario())
        assert (handle.status, handle.conversation.phase, handle.is_final, handle.watching) == (
            "DELETED",
            GONE,
            True,
            False,
        )
        assert handle.outcome is None and handle.note is None


def test_a_blocking_wait_on_a_conversation_deleted_elsewhere_returns_deleted_instead_of_not_found() -> None:
    """The id was right: the conversation ended by being deleted, so the wait ends there and says so."""
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=30)) as server:
        session, endpoint = _session(server)
        handle = session.start("hi", endpoint=endpoint)
        changes: list[str] = []
        with _on_each_new_conversation(server, lambda n, cid: _delete(server, cid), 1):
            final = handle.wait(timeout=10, on_change=lambda h: changes.append(h.conversation.status_line))
        assert (final.status, handle.is_final, handle.outcome) == ("DELETED", True, None)
        assert changes[-1] == f"DELETED · {GONE}"
        assert not [r for r in server.requests if handle.id and handle.id in r.path and r.method != "DELETE"]
        session.close()


@pytest.mark.parametrize("driver", DRIVERS)
def test_rows_end_on_error_and_stuck_as_well_as_finished_with_the_answers_read(driver: str) -> None:
    timeline = Timeline(starting=0.05, running=1.0, answer="done")
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session, endpoint = _session(server)
        endings = {0: "error", 1: "stuck"}

        def end(n: int, conversation_id: str) -> None:
            if n in endings:
                server.set_state(conversation_id, execution_status=endings[n])

        with _on_each_new_conversation(server, end, 3):
            batch = _run(session, lambda: session.map("task {item}", range(3), endpoint=endpoint), driver)

        by_status = {row.status: row for row in batch.rows}
        assert sorted(by_status) == ["ERROR", "FINISHED", "STUCK"]
        assert by_status["FINISHED"].error is None
        assert by_status["ERROR"].error and by_status["STUCK"].error  # never None for a row that did not end well
        assert all(row.over and row.handle is not None and row.handle.outcome is not None for row in batch.rows)
        assert batch.summary == "1/3 finished · 0 running · 0 queued · 2 failed"


def test_an_answer_whose_read_broke_is_read_again_by_the_connection_and_the_batch_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tracker's read of what the agent did breaks (a bug: it ends with no outcome, logged): the batch asks the
    connection again, and its row gets the answer. No thread of the batch's own reads it."""
    from openhands_magics.client import AsyncOpenHandsClient

    real, broken_for = AsyncOpenHandsClient.outcome, set()

    async def broken_once(self: Any, snapshot: Any) -> Any:
        if snapshot.conversation_id not in broken_for:
            broken_for.add(snapshot.conversation_id)
            raise RuntimeError("a bug")
        return await real(self, snapshot)

    monkeypatch.setattr(AsyncOpenHandsClient, "outcome", broken_once)
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2, answer="done")) as server:
        session, endpoint = _session(server)
        batch = _run(session, lambda: session.map("task {item}", range(3), endpoint=endpoint), "wait")
    assert [r["answer"] for r in batch.results()] == ["done"] * 3 and len(broken_for) == 3
    assert not any(h.watching for h in batch.handles)


def test_an_answer_that_can_never_be_read_ends_its_row_with_the_problem_instead_of_holding_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openhands_magics.batch import OUTCOME_ASKS
    from openhands_magics.client import AsyncOpenHandsClient

    reads: list[str] = []

    async def broken(self: Any, snapshot: Any) -> Any:
        reads.append(snapshot.conversation_id)
        raise RuntimeError("a bug")

    monkeypatch.setattr(AsyncOpenHandsClient, "outcome", broken)
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2, answer="done")) as server:
        session, endpoint = _session(server)
        batch = _run(session, lambda: session.map("task {item}", range(2), endpoint=endpoint), "wait")
    assert batch.summary == "2/2 finished · 0 running · 0 queued · 0 failed"
    assert len(reads) == 2 * (1 + OUTCOME_ASKS)  # the tracker's read, then the batch's asks, spaced: not hammered
    for row in batch.rows:
        assert row.handle is not None and row.handle.outcome is not None and row.over
        (problem,) = row.handle.outcome.problems
        assert row.handle.outcome.answer is None and "reading what the agent did failed" in problem


# ==================================================================================================== the final grid
class _Shown:
    """What ``display(..., display_id=True)`` returns: records each ``update`` (what a saved notebook keeps)."""

    def __init__(self) -> None:
        self.updates: list[Any] = []

    def update(self, obj: Any, **_: Any) -> None:
        self.updates.append(obj)


@pytest.fixture
def kernel_display(monkeypatch: pytest.MonkeyPatch) -> _Shown:
    """``display`` as in a kernel (with a display id), recorded."""
    shown = _Shown()

    def display(obj: Any, *_: Any, display_id: bool = False, **__: Any) -> _Shown | None:
        return shown if display_id else None

    monkeypatch.setattr("IPython.core.getipython.get_ipython", lambda: SimpleNamespace(kernel=object()))
    monkeypatch.setattr("IPython.display.display", display)
    return shown


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_final_grid_is_drawn_once_every_answer_is_in(driver: str, kernel_display: _Shown) -> None:
    answer = "All four tests pass now."
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.3, answer=answer)) as server:
        session, endpoint = _session(server)

        def make() -> Batch:
            batch = session.map("task {item}", range(4), max_running=2, endpoint=endpoint)
            batch._ipython_display_()
            return batch

        batch = _run(session, make, driver)

    assert [r["answer"] for r in batch.results()] == [answer] * 4
    (final,) = kernel_display.updates  # the grid that stays in the notebook, drawn once, at the end
    assert "4/4 finished" in final["text/html"] and final["text/html"].count(answer) == 4
    assert final["text/html"] == batch._repr_html_()


# ============================================================================================== a failed start's reason
@pytest.mark.parametrize("driver", DRIVERS)
def test_a_failed_start_task_ends_its_row_with_the_servers_reason_everywhere(driver: str) -> None:
    pd = pytest.importorskip("pandas")
    reason = "the branch feature/x does not exist"
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=0.2, start_error=reason)) as server:
        session, endpoint = _session(server)
        batch = _run(session, lambda: session.map("task {item}", ["a", "b"], endpoint=endpoint), driver)

    assert [(r.status, r.error) for r in batch.rows] == [("ERROR", reason)] * 2
    assert [r["error"] for r in batch.results()] == [reason, reason]
    assert list(batch.to_dataframe()["error"]) == [reason, reason] and isinstance(batch.to_dataframe(), pd.DataFrame)
    assert batch._repr_html_().count(reason) == 2 and repr(batch).count(reason) == 2


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_start_task_failing_without_a_reason_still_says_why_in_its_row(driver: str) -> None:
    # A repository the key cannot use: the real server's task ends ERROR with an empty detail.
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=0.2), repositories=["octo/ok"]) as server:
        session, endpoint = _session(server)
        batch = _run(
            session, lambda: session.map("task {item}", ["a"], repository="octo/secret", endpoint=endpoint), driver
        )
    (row,) = batch.rows
    assert row.status == "ERROR" and row.error is not None and "no reason" in row.error and "repository" in row.error


# ==================================================================================================== Retry-After
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("retry_after", ["0", "-5"])
def test_a_429_asking_to_retry_now_pauses_the_queue_for_a_moment_not_thirty_seconds(
    driver: str, retry_after: str
) -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2)) as server:
        session, endpoint = _session(server)
        server.inject(
            status=429,
            body={"error": "slow down"},
            headers={"Retry-After": retry_after},
            method="POST",
            path_prefix=V1,
            times=1,
        )
        began = time.monotonic()
        batch = _run(session, lambda: session.map("task {item}", range(2), endpoint=endpoint), driver, seconds=10)
        took = time.monotonic() - began
        assert batch.summary == "2/2 finished · 0 running · 0 queued · 0 failed"
        assert took < 5, took
        assert len(server.posts()) == 3 and len(server.task_ids()) == 2  # the refused one again, once


def test_a_429_without_a_usable_retry_after_pauses_the_queue_for_the_default() -> None:
    assert rate_pause(RateLimitError("x")) == DEFAULT_RATE_PAUSE
    assert rate_pause(RateLimitError("x", retry_after=0.0)) == MIN_RATE_PAUSE > 0
    assert rate_pause(RateLimitError("x", retry_after=-3.0)) == MIN_RATE_PAUSE
    assert rate_pause(RateLimitError("x", retry_after=2.5)) == 2.5
    for unusable in ("nan", "inf", "-inf", "soon", ""):  # parse as no Retry-After at all, not as "now" or an hour
        assert retry_after(httpx.Response(429, headers={"Retry-After": unusable})) is None, unusable
    assert retry_after(httpx.Response(429, headers={"Retry-After": "-5"})) == 0.0
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2)) as server:
        session, endpoint = _session(server)
        server.inject(
            status=429,
            body={"error": "slow down"},
            headers={"Retry-After": "soon"},
            method="POST",
            path_prefix=V1,
            times=1,
        )
        batch = session.map("task {item}", range(2), endpoint=endpoint)
        with pytest.raises(WaitTimeout):
            batch.wait(timeout=1.5)
        assert batch.summary.endswith("· 1 queued · 0 failed") and len(server.posts()) == 2  # still pausing
        batch.cancel()
        session.close()


# ==================================================================================================== map()'s edge
@pytest.mark.parametrize(
    ("task", "items", "expected"),
    [
        ("Look at {item[0]}", [5], r"template failed for item 5: TypeError"),
        ("Look at {item.name}", ["a"], r"template failed for item 'a': AttributeError"),
        ("Look at {item:%Y}", [3], r"template failed for item 3: ValueError"),
        (lambda item: 1 / item, [0], r"task function failed for item 0: ZeroDivisionError"),
        (lambda item: item.missing, ["a"], r"task function failed for item 'a': AttributeError"),
    ],
)
def test_a_template_or_function_that_raises_is_one_line_naming_the_item_and_starts_nothing(
    task: Any, items: list[Any], expected: str
) -> None:
    with LocalOpenHandsServer(SECRET) as server:
        session, endpoint = _session(server)
        with pytest.raises(ValidationError, match=expected) as caught:
            session.map(task, items, endpoint=endpoint)
        assert "\n" not in str(caught.value) and "Nothing was started" in str(caught.value)
        assert server.requests == []
        session.close()


def test_an_item_whose_repr_raises_is_still_named_in_the_line() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

        __str__ = __repr__

    with LocalOpenHandsServer(SECRET) as server:
        session, endpoint = _session(server)
        with pytest.raises(ValidationError, match=r"item <Hostile>: TypeError"):
            session.map("{item[0]}", [Hostile()], endpoint=endpoint)
        assert server.requests == []
        session.close()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda m, e: m("t {item}", None, endpoint=e), r"list \(or any iterable\) of items, got NoneType"),
        (lambda m, e: m("t {item}", 42, endpoint=e), r"list \(or any iterable\) of items, got int"),
        (lambda m, e: m("t {item}", "abc.py", endpoint=e), r"not one str .*for one item write \['abc.py'\]"),
        (lambda m, e: m("t {item}", b"abc", endpoint=e), r"not one bytes"),
        (lambda m, e: m("t {item}", [], endpoint=e), r"at least one item"),
        (lambda m, e: m("t {item}", (i for i in [1, 0] if 1 / i), endpoint=e), r"Reading the items failed"),
        (lambda m, e: m("t {item}", ["a"], endpoint="http://127.0.0.1:1"), r"endpoint must be an Endpoint"),
        (lambda m, e: m("t {item}", ["a"], endpoint=e, max_running="5"), r"max_running must be a whole number"),
        (lambda m, e: m("t {item}", ["a"], endpoint=e, max_running=0), r"max_running must be a whole number"),
        (lambda m, e: m("t {item}", ["a"], endpoint=e, repository=123), r"repository must be text"),
        (lambda m, e: m("t {item}", ["a"], endpoint=e, repository="not a repo"), r"owner/repo"),
        (lambda m, e: m(42, ["a"], endpoint=e), r"task must be a template"),
    ],
)
def test_wrong_arguments_to_map_are_one_validation_error_line_before_anything_is_sent(
    call: Callable[[Any, Any], Any], expected: str
) -> None:
    with LocalOpenHandsServer(SECRET) as server:
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        for map_ in (Session(SCHEDULE).map, module_map):
            with pytest.raises(ValidationError, match=expected) as caught:
                call(map_, endpoint)
            assert "\n" not in str(caught.value)
        assert server.requests == []


def test_wrong_items_are_refused_before_the_endpoint_is_even_looked_for() -> None:
    # No key, no base URL in the environment: the wrong argument is what the user hears about first.
    with pytest.raises(ValidationError, match="got NoneType"):
        module_map("t {item}", None)


def test_the_batchs_wait_refuses_a_timeout_that_is_not_a_number() -> None:
    with LocalOpenHandsServer(SECRET) as server:
        session, endpoint = _session(server)
        batch = session.map("t {item}", ["a"], endpoint=endpoint)
        with pytest.raises(ValidationError, match="timeout must be a number of seconds"):
            batch.wait(timeout="soon")  # type: ignore[arg-type]
        assert server.requests == []
        session.close()


# ==================================================================================================== the text table
def test_the_text_table_lets_no_escape_from_the_server_through() -> None:
    evil = "\x1b[2J\x1b]0;owned\x07"
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=30)) as server:
        session, endpoint = _session(server)
        forced: list[str] = []

        def force(n: int, conversation_id: str) -> None:
            server.set_state(conversation_id, execution_status=evil)
            forced.append(conversation_id)

        with _on_each_new_conversation(server, force, 1):
            batch = session.map("t {item}", ["a"], endpoint=endpoint)
            with pytest.raises(WaitTimeout):
                batch.wait(timeout=1.5)
        assert forced and "\x1b" in batch.rows[0].status  # the server's word, as it sent it
        table = repr(batch)
        assert "\x1b" not in table and "\x07" not in table and len(table.splitlines()) == 2
        session.close()

    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, start_error=f"bad{evil}\nline")) as server:
        session, endpoint = _session(server)
        batch = session.map("t {item}", ["a"], endpoint=endpoint).wait(timeout=10)
        assert "\x1b" in (batch.rows[0].error or "")
        table = repr(batch)
        assert "\x1b" not in table and "\x07" not in table and len(table.splitlines()) == 2
        session.close()


def test_an_item_holding_the_key_is_blanked_in_the_table_and_the_grid() -> None:
    with LocalOpenHandsServer(SECRET) as server:
        session, endpoint = _session(server)
        batch = session.map("t {item}", [f"token={SECRET}"], endpoint=endpoint)
        assert SECRET not in repr(batch) and SECRET not in batch._repr_html_() and "token=" in repr(batch)
        assert server.requests == []
        session.close()


def test_a_running_row_whose_watching_was_stopped_is_watched_again_so_the_queue_goes_on() -> None:
    """ "Stop watching" on a row's panel (or a poller that gave up) must not keep the row's place for ever: the queue
    hands it back to the poller, and the next item starts once it ends."""
    timeline = Timeline(starting=0.05, running=0.5, answer="done")
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session, endpoint = _session(server)

        async def scenario() -> Batch:
            batch = session.map("look at {item}", ["a", "b"], max_running=1, endpoint=endpoint)
            deadline = time.monotonic() + 20
            while (batch.rows[0].handle is None or not batch.rows[0].handle.watching) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            first = batch.rows[0].handle
            assert first is not None
            said: list[bool] = []
            first.subscribe(lambda h: said.append(h.watching))
            first.stop_watching()
            assert False in said  # (the batch may take it back at once, in the I/O thread: not read here)
            while not batch.done and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            session.close()
            await asyncio.sleep(0)
            return batch

        batch = asyncio.run(scenario())
        assert batch.done, batch.summary
        assert [r.status for r in batch.rows] == ["FINISHED", "FINISHED"]
        assert [r["answer"] for r in batch.results()] == ["done", "done"]
