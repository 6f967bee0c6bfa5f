"""The live event stream over real sockets: the local app server for the conversation, and a small agent server
(``websockets``, on 127.0.0.1) that sends the frames recorded on the real 1.11.0, so a status change settles a handle
at once, events become the activity, one socket serves every handle, and a socket that cannot be had falls back to
polling and events search, saying so once. The session key leaks nowhere."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from openhands_magics import _secrets
from openhands_magics._protocol import agent
from openhands_magics.events import Activity
from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline
from openhands_magics.testing.server import PLANTED_SESSION_KEY

from .conftest import SECRET, wait_until

websockets = pytest.importorskip("websockets")

FAST = PollSchedule(interval=0.2, max_interval=0.4)
RECORDED = [
    json.loads(line)
    for line in resources.files("openhands_magics.testing")
    .joinpath("recorded/events-1.11.0.jsonl")
    .read_text()
    .splitlines()
    if line.strip()
]


def _stamp(offset: float = 0.0) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)).replace(tzinfo=None).isoformat()


def _full_state(status: str) -> dict[str, Any]:
    return {
        "id": "fs",
        "timestamp": _stamp(),
        "source": "environment",
        "key": "full_state",
        "value": {"execution_status": status},
        "kind": "ConversationStateUpdateEvent",
    }


def _status(status: str) -> dict[str, Any]:
    return {
        "id": f"st-{status}-{time.monotonic()}",
        "timestamp": _stamp(),
        "source": "environment",
        "key": "execution_status",
        "value": status,
        "kind": "ConversationStateUpdateEvent",
    }


def _action(command: str) -> dict[str, Any]:
    return {
        "id": f"act-{command}-{time.monotonic()}",
        "timestamp": _stamp(),
        "source": "agent",
        "thought": [],
        "action": {"command": command, "kind": "TerminalAction"},
        "tool_name": "terminal",
        "kind": "ActionEvent",
    }


class FakeAgentServer:
    """An agent server's WebSocket on 127.0.0.1: ``/sockets/events/{id}`` checks the key header, sends a
    ``full_state`` (``status``), then the ``history`` frames, then whatever :meth:`push` sends; ``close_with`` makes
    it close at once with that code; ``refuse`` answers the upgrade with that HTTP status."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.status = "running"
        self.close_with: int | None = None
        self.refuse: int | None = None
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._sockets: set[Any] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        from websockets.asyncio.server import serve

        async def start() -> None:
            self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._check)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def _check(self, connection: Any, request: Any) -> Any:
        self.paths.append(request.path)
        self.headers.append({"key": request.headers.get("X-Session-API-Key", "")})
        if self.refuse is not None:
            return connection.respond(self.refuse, "refused\n")
        if request.headers.get("X-Session-API-Key") != PLANTED_SESSION_KEY:
            return connection.respond(403, "")
        return None

    async def _handler(self, socket: Any) -> None:
        if self.close_with is not None:
            await socket.close(self.close_with, "closing")
            return
        self._sockets.add(socket)
        try:
            await socket.send(json.dumps(_full_state(self.status)))
            for frame in self.history:
                await socket.send(json.dumps(frame))
            await socket.wait_closed()
        finally:
            self._sockets.discard(socket)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    def push(self, *frames: dict[str, Any]) -> None:
        """Send live frames to every open socket (and keep them for later connections); a status frame is the
        state a later connection's ``full_state`` says, as on the real agent server."""

        async def send() -> None:
            for frame in frames:
                self.history.append(frame)
                if frame.get("key") == "execution_status":
                    self.status = frame["value"]
                for socket in list(self._sockets):
                    await socket.send(json.dumps(frame))

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(5)

    def drop_all(self, code: int = 1011) -> None:
        async def close() -> None:
            for socket in list(self._sockets):
                await socket.close(code, "going away")

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def agent_server() -> Iterator[FakeAgentServer]:
    fake = FakeAgentServer()
    yield fake
    fake.stop()


@pytest.fixture
def session(agent_server: FakeAgentServer) -> Iterator[Session]:
    """The test's session, closed before the fake agent server stops: a stream reconnecting while the server closes
    trips Python 3.13.0's asyncio (a connection accepted as ``Server.close()`` runs fails ``Server._attach``'s
    assertion, and its half-made transport is later collected as an unclosed socket, in whichever test runs then)."""
    opened = Session(FAST)
    yield opened
    opened.close()


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")


@pytest.fixture
def slow_server() -> Iterator[LocalOpenHandsServer]:
    """Ready at once, and the app server says "running" for a minute: only the stream can say it finished."""
    with LocalOpenHandsServer(
        api_key=SECRET, timeline=Timeline(starting=0.0, running=60.0, answer="from the app server")
    ) as server:
        yield server


def _start(server: LocalOpenHandsServer, fake: FakeAgentServer, session: Session) -> ConversationHandle:
    endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
    handle = session.start("hello", endpoint=endpoint)
    with server._lock:
        for conversation in server._conversations:
            conversation.agent_server_url = fake.url
    return handle


def _streamed(handle: ConversationHandle, fake: FakeAgentServer) -> None:
    """Watched, and its socket open at both ends: the client says "stream" once its handshake is done, which can be
    before the server's handler holds the socket (a frame pushed then reaches only the next connection's replay)."""
    handle.watch()
    wait_until(lambda: handle.activity.source == "stream" and fake.open_sockets >= 1, timeout=10)


pytestmark = pytest.mark.usefixtures("streaming")


def test_a_finish_on_the_stream_settles_the_handle_within_a_second(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    agent_server.push(RECORDED[6], RECORDED[7])  # step 1 and its output
    wait_until(lambda: handle.activity.steps == 1)
    finish = [f for f in RECORDED if f.get("action", {}).get("kind") == "FinishAction"][0]
    sent = time.monotonic()
    agent_server.push(dict(finish, id="finish-now"), _status("finished"))
    handle.wait(timeout=5)
    took = time.monotonic() - sent
    assert handle.status == "FINISHED" and took < 1.0
    assert handle.answer == "Hello! Done."  # the finish message the stream saw, not the app server's events
    assert [e.summary for e in handle.activity.recent][-2:] == ["$ echo step 1", "finished: Hello! Done."]


def test_the_activity_shows_the_recorded_commands_without_escape_sequences(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    agent_server.history = RECORDED[1:-3]  # the whole run but its end
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    wait_until(lambda: handle.activity.steps == 4)
    activity = handle.activity
    assert isinstance(activity, Activity) and activity.source == "stream" and activity.notice is None
    assert [e.summary for e in activity.recent if e.kind == "command"] == [
        "$ echo step 1",
        "$ echo step 2",
        "$ echo step 3",
    ]
    assert activity.cost is not None and activity.cost.tokens == 60  # (the replay's latest stats; never lower)
    assert handle.status == "RUNNING"  # the replayed finish is history: the connect's full_state says running
    assert all("\x1b" not in (e.text or "") for e in activity.recent)


def test_one_socket_serves_every_panel_of_a_conversation(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    again = session.find(handle.id or "", endpoint=handle.endpoint)
    again.watch()
    handle.watch()
    time.sleep(0.5)
    assert again is handle and agent_server.open_sockets == 1 and len(agent_server.paths) == 1
    assert agent_server.paths[0].endswith(f"/sockets/events/{handle.id}?resend_mode=all")


def test_stop_watching_closes_the_socket(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    handle.stop_watching()
    wait_until(lambda: agent_server.open_sockets == 0)


def test_a_final_unwatched_conversation_closes_its_socket(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    agent_server.push(_status("finished"))
    handle.wait(timeout=5)
    wait_until(lambda: agent_server.open_sockets == 0)


def test_session_close_closes_every_socket(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    session.close()
    wait_until(lambda: agent_server.open_sockets == 0)


def test_a_streamed_conversation_is_not_polled_every_interval(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    time.sleep(0.3)
    slow_server.requests.clear()
    time.sleep(2.0)  # ten intervals
    assert [r.path for r in slow_server.requests] == []
    assert handle.watching and handle.status == "RUNNING"


def test_a_dropped_socket_reconnects_asking_for_what_came_since_the_last_event(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    agent_server.push(_action("echo one"))
    wait_until(lambda: handle.activity.steps == 1)
    agent_server.drop_all()
    wait_until(lambda: len(agent_server.paths) == 2 and agent_server.open_sockets == 1, timeout=10)
    assert "resend_mode=since" in agent_server.paths[1] and "after_timestamp=" in agent_server.paths[1]
    agent_server.push(_action("echo two"))
    wait_until(lambda: handle.activity.steps == 2)  # the replayed "echo one" was not counted twice
    assert handle.activity.steps == 2


@pytest.mark.parametrize("code", [4001, 4004, 1013])
def test_a_refusing_close_code_falls_back_to_polling_and_says_so_once(
    code: int, slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    agent_server.close_with = code
    handle = _start(slow_server, agent_server, session)
    handle.watch()
    wait_until(lambda: handle.activity.notice is not None, timeout=10)
    assert handle.activity.source == "polling"
    assert f"close code {code}" in (handle.activity.notice or "")
    time.sleep(0.6)
    assert len(agent_server.paths) == 1  # not tried again
    searches = [r for r in slow_server.requests if r.path.endswith("/events/search")]
    assert searches  # the activity comes from the app server's events now
    assert handle.activity.steps == 0 and handle.activity.recent[0].summary == "you: hello"


def test_a_proxy_refusing_the_websocket_falls_back_and_the_finish_still_comes_from_polling(
    agent_server: FakeAgentServer, session: Session
) -> None:
    agent_server.refuse = 400
    clock = ManualClock()
    with LocalOpenHandsServer(api_key=SECRET, timeline=Timeline(starting=0.0, running=1.0), clock=clock) as server:
        handle = _start(server, agent_server, session)
        handle.watch()
        # (the agent finishes only when the test says: the socket is tried first, however slow the machine)
        notice = wait_until(lambda: handle.activity.notice, timeout=15)
        assert notice == "live events unavailable (the server answered 400 to the WebSocket upgrade): polling"
        clock.advance(1.0)
        handle.wait(timeout=10)
        assert handle.status == "FINISHED" and handle.answer == "Done."


def test_the_session_key_leaks_nowhere(
    slow_server: LocalOpenHandsServer,
    agent_server: FakeAgentServer,
    caplog: pytest.LogCaptureFixture,
    private_data_dir: Any,
    session: Session,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("openhands_magics.websocket").setLevel(logging.DEBUG)
    try:
        agent_server.history = [
            *RECORDED[1:8],
            dict(RECORDED[7], id="echo", observation={"content": f"KEY={PLANTED_SESSION_KEY}", "is_error": True}),
        ]
        handle = _start(slow_server, agent_server, session)
        _streamed(handle, agent_server)
        wait_until(lambda: handle.activity.steps == 1 and len(handle.activity.recent) >= 2)
        assert agent_server.headers[0]["key"] == PLANTED_SESSION_KEY  # (it was sent, as a header)
        from openhands_magics.panel import ConversationPanel, _tree, close_widgets

        panel = ConversationPanel(handle)  # (the live panel, with the feed that holds the echoed key's line)

        def blanked() -> list[str] | None:
            states = [json.dumps(w.get_state(), default=str) for w in _tree([panel])]
            return states if any(_secrets.BLANK in state for state in states) else None

        # (the feed shows the echo, blanked, once its coalesced redraw came: waited for, not slept for)
        try:
            widget_state = wait_until(blanked, timeout=15)
        except AssertionError:  # (what the panel and the I/O thread were doing, to find the race CI's 3.10 run shows)
            from openhands_magics._io import get_io

            io = get_io()
            raise AssertionError(
                f"flush due {panel._flush_due}, tick due {panel._tick_due}, closed {panel._closed}, "
                f"drawn feed {[s.summary for s in panel._drawn.feed]!r}, "
                f"recent {[e.summary for e in handle.activity.recent]!r}, io running {io.running}, "
                f"io thread {io._thread!r}, ending {io._ending!r}, "
                f"threads {[t.name for t in threading.enumerate()]!r}"
            ) from None
        close_widgets(panel)
        errors = []
        for verb in (handle.interrupt, handle.confirm, lambda: handle.reject("no")):
            try:
                verb()  # (this agent server has only the socket: each is refused)
            except Exception as error:  # noqa: BLE001
                errors.append(f"{type(error).__name__}: {error} {error!r}")
        assert len(errors) == 3
        agent_server.push(_status("finished"))
        handle.wait(timeout=5)
        trajectory = handle.events()
        connection = session.connection(handle.endpoint)
        access = agent.access_for(handle.endpoint.base_url, handle.id)
        assert access is not None
        texts = [
            repr(handle),
            repr(handle.conversation),
            repr(handle.activity),
            repr(trajectory),
            repr(list(trajectory)),
            repr(connection),
            repr(access),
            str(access),
            repr(dict(handle.conversation.extra)),
            *(r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")),  # (ours only)
            *(str(e.text) + e.summary for e in trajectory),
            *widget_state,
            *errors,
        ]
        for path in private_data_dir.rglob("*"):
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
        for text in texts:
            assert PLANTED_SESSION_KEY not in text
        with pytest.raises(TypeError):
            pickle.dumps(access)
        assert copy.deepcopy(access) is access  # (no second copy is made)
        pickle.dumps(handle.conversation)  # the snapshot holds no secret, so it pickles
        assert _secrets.BLANK in " ".join(e.text or "" for e in handle.activity.recent + tuple(trajectory))
    finally:
        logging.getLogger("openhands_magics.websocket").setLevel(logging.ERROR)


def test_a_wrong_key_is_refused_and_the_error_names_no_key(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    agent.remember(
        handle.endpoint.base_url,
        handle.conversation.conversation_id or "",
        {"conversation_url": f"{agent_server.url}/api/conversations/x", "session_api_key": "wrong-key-123456789"},
    )
    handle.watch()
    wait_until(lambda: handle.activity.notice is not None, timeout=10)
    assert (
        handle.activity.notice == "live events unavailable (the server answered 403 to the WebSocket upgrade): polling"
    )


def test_the_budget_guard_interrupts_once_and_says_why(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, monkeypatch: pytest.MonkeyPatch, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    handle.max_cost = 0.5
    connection = session.connection(handle.endpoint)
    sent: list[str] = []

    async def agent_call(request: agent.AgentRequest, access: agent.Access) -> Any:
        sent.append(request.url)
        return {"success": True}

    monkeypatch.setattr(connection.stream, "agent_call", agent_call)
    _streamed(handle, agent_server)
    stats = next(f for f in RECORDED if f.get("key") == "stats")

    def costing(usd: float) -> dict[str, Any]:
        frame = copy.deepcopy(stats)
        frame["id"], frame["timestamp"] = f"stats-{usd}", _stamp()
        frame["value"]["usage_to_metrics"]["agent"]["accumulated_cost"] = usd
        return frame

    agent_server.push(costing(0.25))
    wait_until(lambda: handle.activity.cost is not None and handle.activity.cost.usd == 0.25)
    assert sent == []
    agent_server.push(costing(0.75), costing(0.9))
    wait_until(lambda: len(sent) == 1)
    time.sleep(0.3)
    assert sent == [f"{agent_server.url}/api/conversations/{handle.id}/interrupt"]
    assert handle.note == "Stopped the agent: its cost $0.75 passed --max-cost $0.50."
    agent_server.push(_status("paused"))
    wait_until(lambda: handle.status == "PAUSED")
    assert handle.note is not None and "max-cost" in handle.note  # a fresh snapshot keeps the reason


def test_closing_the_connection_closes_its_sockets_and_polling_takes_over(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    session.connection(handle.endpoint).close()
    wait_until(lambda: agent_server.open_sockets == 0, timeout=15)  # (a socket's close waits for the peer's answer)
    slow_server.requests.clear()
    wait_until(lambda: any(r.path == "/api/v1/app-conversations" for r in slow_server.requests), timeout=3)


def test_a_follow_up_is_not_ended_by_the_previous_turns_finish_on_connect(
    slow_server: LocalOpenHandsServer, agent_server: FakeAgentServer, session: Session
) -> None:
    handle = _start(slow_server, agent_server, session)
    _streamed(handle, agent_server)
    agent_server.push(_status("finished"))
    handle.wait(timeout=5)
    wait_until(lambda: agent_server.open_sockets == 0)
    agent_server.status = "finished"  # the next connect's snapshot: read before the agent took the message
    handle.send("and the tests too")
    wait_until(lambda: len([p for p in agent_server.paths if p.startswith("/sockets/")]) == 2, timeout=5)
    wait_until(lambda: agent_server.open_sockets == 1)
    time.sleep(0.5)
    assert handle.status == "RUNNING" and handle.watching  # the app server said so, asked at once
    agent_server.push(_status("finished"))
    handle.wait(timeout=5)
    assert handle.status == "FINISHED"


def test_a_close_cancelled_midway_cuts_the_connection_instead_of_leaving_it_open() -> None:
    from types import SimpleNamespace

    from openhands_magics import stream

    cut: list[bool] = []

    class Unanswered:
        """A socket whose server never answers the closing handshake."""

        transport = SimpleNamespace(abort=lambda: cut.append(True))

        async def close(self) -> None:
            await asyncio.Event().wait()

    async def main() -> None:
        closing = asyncio.create_task(stream._close(Unanswered()))
        await asyncio.sleep(0.01)
        closing.cancel()  # (dropped again meanwhile, or the I/O thread stopping)
        with pytest.raises(asyncio.CancelledError):
            await closing

    asyncio.run(main())
    assert cut == [True]
