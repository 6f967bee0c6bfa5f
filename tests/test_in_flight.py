"""One owner for everything in flight, without a kernel: the I/O thread polls every watched handle while the
caller's thread blocks (a wait on another conversation), blocking waits go through the tracker, the tracker takes
updates from any source, one handle per conversation, and closing leaves no thread or socket."""

from __future__ import annotations

import threading
from collections.abc import Callable
import time

import psutil
import pytest

from openhands_magics._io import IOThread, get_io
from openhands_magics.handle import ConversationHandle
from openhands_magics.models import ConversationStatus
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

FAST_POLL = PollSchedule(interval=0.1, max_interval=0.2)
LONG = Timeline(starting=0.2, running=60)
#: One poll, and what a read and the thread hand-over may add on a loaded 2-core machine.
ONE_POLL = FAST_POLL.max_interval + 0.8


def _finished_at(handle: ConversationHandle) -> list[float]:
    """When the handle was first seen FINISHED (filled by a listener, in whatever thread the change came)."""
    seen: list[float] = []
    handle.subscribe(lambda h: seen.append(time.monotonic()) if h.status == "FINISHED" and not seen else None)
    return seen


def _io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("openhands-io")]


def _sockets_to(server: LocalOpenHandsServer) -> int:
    port = int(server.base_url.rsplit(":", 1)[1])
    return sum(
        1
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED"
    )


def test_a_blocking_wait_leaves_another_watched_conversation_live_and_calls_on_change_in_the_waiting_thread() -> None:
    with LocalOpenHandsServer(SECRET, timeline=LONG) as server:
        session = Session(FAST_POLL)
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        other, waited = session.start("other", endpoint=endpoint), session.start("waited", endpoint=endpoint)
        assert other.watch()  # (as its panel would)
        other_done = _finished_at(other)
        forced: list[float] = []

        def the_world() -> None:  # the agents, as the server sees them: the other one ends first, then the waited one
            wait_until(lambda: other.status == waited.status == "RUNNING", timeout=10)
            forced.append(time.monotonic())
            server.set_state(other.id or "", execution_status="finished")
            wait_until(lambda: bool(other_done), timeout=10)
            server.set_state(waited.id or "", execution_status="finished")

        threading.Thread(target=the_world, daemon=True).start()
        threads: set[str] = set()
        waited.wait(timeout=20, on_change=lambda h: threads.add(threading.current_thread().name))
        returned = time.monotonic()

        assert waited.status == "FINISHED" and other.status == "FINISHED"
        assert other_done[0] - forced[0] < ONE_POLL, "the other conversation stood still while the wait blocked"
        assert other_done[0] < returned
        assert threads == {threading.current_thread().name}  # on_change ran in the waiting thread only
        assert other.outcome is not None and waited.outcome is not None  # what each did was read as it ended
        assert not other.watching and not waited.watching
        session.close()


def test_a_blocking_wait_makes_no_reads_of_its_own_one_batched_read_serves_both() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.2, running=1.0)) as server:
        session = Session(PollSchedule(interval=0.2, max_interval=0.2))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        watched, waited = session.start("watched", endpoint=endpoint), session.start("waited", endpoint=endpoint)
        watched.watch()
        server.requests.clear()
        waited.wait(timeout=20)
        reads = [
            r
            for r in server.requests
            if r.method == "GET"
            and r.path.startswith("/api/v1/app-conversations")
            and not r.path.endswith("/git/changes")
        ]
        assert reads and all(len(r.query.get("ids", [])) == 2 for r in reads[:3]), [r.query for r in reads]
        session.close()


def test_ctrl_c_in_a_blocking_wait_stops_the_wait_and_its_watch_not_the_conversation(
    long_server: LocalOpenHandsServer, stop_button: Callable[[], None]
) -> None:
    session = Session(FAST_POLL)  # (its agent works for a minute: the press always comes during the wait)
    handle = session.start("interrupt me", endpoint=Endpoint.resolve(long_server.base_url, api_key=SECRET))

    def press() -> None:
        wait_until(lambda: handle.watching, timeout=10)
        stop_button()

    threading.Thread(target=press, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        handle.wait(timeout=30)
    wait_until(lambda: not handle.watching, timeout=10)
    session.close()


def test_a_second_source_of_updates_settles_a_handle_without_polling(server: LocalOpenHandsServer) -> None:
    """What a pushed event stream will do: hand snapshots to the tracker (in the I/O thread); the handle, its
    waiters and its outcome read follow, with no change to handles, views or the batch."""
    import dataclasses

    session = Session(PollSchedule(interval=30, max_interval=30))  # the poller will not read in this test
    handle = session.start("pushed", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    wait_until(lambda: handle.refresh().status == "RUNNING", timeout=10)
    connection = handle._connection
    handle.watch()
    pushed = dataclasses.replace(handle.conversation, status=ConversationStatus.FINISHED, execution_status="finished")
    get_io().call(lambda: connection.tracker.apply(handle, pushed, time.monotonic()))
    handle.wait(timeout=10)
    assert handle.status == "FINISHED" and handle.outcome is not None and not handle.watching
    session.close()


def test_a_listed_handle_a_watched_one_a_found_one_and_the_historys_are_the_same_object(
    server: LocalOpenHandsServer,
) -> None:
    session = Session(FAST_POLL)
    endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
    started = session.start("one", endpoint=endpoint)
    wait_until(lambda: started.refresh().id is not None, timeout=10)
    other = Session(FAST_POLL).start("made elsewhere", endpoint=endpoint)  # (another kernel's)
    wait_until(lambda: bool(server.conversation_ids()) and len(server.conversation_ids()) == 2, timeout=10)
    listed = session.list(endpoint=endpoint)
    by_id = {h.id: h for h in listed}
    assert by_id[started.id] is started  # the session's own, not a copy
    elsewhere = [h for h in listed if h is not started][0]
    assert elsewhere not in session.history()  # listed is not watched
    watched = session.attach(elsewhere.id or "", endpoint=endpoint, remember=True)
    found = session.find(elsewhere.id or "", endpoint=endpoint)
    assert watched is elsewhere is found
    assert session.history() == [started, elsewhere]
    elsewhere.pause()  # a verb on any of them is seen by all, since there is one
    assert watched.status == found.status == ConversationStatus.PAUSED
    assert elsewhere.id == other.refresh().id and elsewhere is not other  # (another session's is its own)
    session.close()


def test_close_stops_the_io_thread_closes_every_socket_and_handles_work_again_after(
    server: LocalOpenHandsServer,
) -> None:
    session = Session(FAST_POLL)
    endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
    handles = [session.start(f"task {i}", endpoint=endpoint) for i in range(3)]
    for handle in handles:
        handle.watch()
    wait_until(lambda: all(h.id for h in handles), timeout=10)
    assert len(_io_threads()) == 1, _io_threads()
    assert _sockets_to(server) >= 1

    session.close()

    assert _io_threads() == [], _io_threads()
    assert not get_io().running
    wait_until(lambda: _sockets_to(server) == 0, timeout=3)
    assert not any(h.watching for h in handles)
    assert handles[0].refresh().id == handles[0].id  # clients open again on demand
    handles[0].watch()
    wait_until(lambda: handles[0].is_final, timeout=10)
    session.close()
    assert _io_threads() == []


def test_a_start_while_a_stopped_io_thread_is_still_ending_waits_for_it_so_two_never_run_at_once() -> None:
    io = IOThread("openhands-io-ending")
    stopped = threading.Event()
    # Stopped from inside itself (a listener stopping everything), the thread ends only once its call returns.
    io.call(lambda: (io.stop(), stopped.set(), time.sleep(0.4)))
    assert stopped.wait(5) and not io.running

    io.loop()  # started again from another thread meanwhile

    assert [t.name for t in threading.enumerate()].count("openhands-io-ending") == 1
    io.stop()
    assert "openhands-io-ending" not in [t.name for t in threading.enumerate()]


def test_a_script_that_exits_while_watching_stops_the_io_thread_at_exit_and_says_nothing(
    server: LocalOpenHandsServer,
) -> None:
    import subprocess
    import sys

    script = (
        "import atexit, threading, time\n"
        # Registered before the package's own handler, so it runs after it (atexit runs the last registered first).
        "atexit.register(lambda: print('left', [t.name for t in threading.enumerate()"
        " if t.name.startswith('openhands')], flush=True))\n"
        "from openhands_magics.session import Endpoint, Session\n"
        f"endpoint = Endpoint.resolve({server.base_url!r})\n"
        "handle = Session().start('exits while watched', endpoint=endpoint)\n"
        "handle.watch()\n"
        "deadline = time.monotonic() + 10\n"
        "while handle.id is None and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print('seen', handle.id is not None, flush=True)\n"
    )
    env = {**__import__("os").environ, **server.environ()}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "seen True\nleft []\n", "")
    assert time.monotonic() - started < 20


def test_a_blocking_batch_wait_is_served_by_the_one_poller_together_with_other_watched_conversations() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.3, running=1.0)) as server:
        session = Session(FAST_POLL)
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        other = session.start("on screen", endpoint=endpoint)
        other.watch()
        batch = session.map("do {item}", ["a", "b"], endpoint=endpoint)  # (no event loop here: .wait() runs it)
        batch.wait(timeout=20)
        reads = [
            r
            for r in server.requests
            if r.method == "GET" and r.path in ("/api/v1/app-conversations", "/api/v1/app-conversations/start-tasks")
        ]
        assert batch.done and other.is_final
        assert max(len(r.query.get("ids", [])) for r in reads) == 3  # the rows and the other one in one read
        session.close()


@pytest.mark.parametrize("rewatch", [False, True], ids=["stopped", "stopped-then-watched-again"])
def test_what_the_callers_thread_last_said_of_watching_stands_whatever_the_loop_takes_after(rewatch: bool) -> None:
    # A panel's "Stop watching" clicked before the loop took the watch (and, again, "watch" before it took the stop):
    # each says its word in the caller's thread and sends its half to the loop. Held, the loop takes them all after.
    with LocalOpenHandsServer(SECRET, timeline=LONG) as server:
        session = Session(FAST_POLL)
        release, held = threading.Event(), threading.Event()
        try:
            handle = session.start("held", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
            connection = session.connection(handle.endpoint)
            seen: list[bool] = []
            handle.subscribe(lambda h: seen.append(h.watching))
            get_io().call(lambda: (held.set(), release.wait(10)))
            assert held.wait(10)
            assert handle.watch()
            handle.stop_watching()
            if rewatch:
                handle.watch()
            release.set()
            done = threading.Event()
            get_io().call(done.set)  # (after every half sent above)
            assert done.wait(10)
            assert handle.watching is rewatch and (handle in connection.tracker) is rewatch
            assert seen == ([True, False, True] if rewatch else [True, False])  # never a word the caller did not say
        finally:
            release.set()
            session.close()
