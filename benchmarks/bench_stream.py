"""The live event stream against the local server: app-server requests while 100 streamed conversations run, and
the done latency of ``.wait()``.

    .venv/bin/python benchmarks/bench_stream.py [--conversations 100] [--seconds 60] [--runs 40]

The local app server (``openhands_magics.testing``) gives each conversation an agent server; here that is
:class:`TimelineAgentServer`, a ``websockets`` server on 127.0.0.1 that speaks the real 1.11.0's frames
(``full_state`` first, then live events) and sends the finish (``FinishAction``, then ``execution_status:
finished``) at the moment the app server's timeline ends the run. (The local server grows its own agent server in
``testing/``; this one only follows the timeline.)

1. **Requests per minute once they run**: ``--conversations`` conversations that run for 10 minutes are started and
   watched, and once every socket is open the app-server requests are counted for ``--seconds`` (the magic's
   default schedule: a poll interval of 2 s). Target: none per interval.
2. **Done latency of ``.wait()``**: ``--runs`` conversations whose runs last from 5 s to 3 minutes of *server* time:
   each on a local server whose clock is a ``ManualClock``, started and streamed at time 0, then its clock jumps to
   the run's end (so 3 minutes take no time, and the client has been watching for as long as it takes to get
   there: its polls have slowed to the rare check a streamed conversation gets). For each, the time from the
   agent server's finish frame to ``.wait()`` returning with the answer read. Target: p99 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["OPENHANDS_LIVE_EVENTS"] = "1"

from openhands_magics.polling import PollSchedule  # noqa: E402
from openhands_magics.session import Endpoint, Session  # noqa: E402
from openhands_magics.testing import LocalOpenHandsServer, Timeline  # noqa: E402
from openhands_magics.testing import v1 as local_v1  # noqa: E402
from openhands_magics.testing.server import PLANTED_SESSION_KEY  # noqa: E402

KEY = "oh-bench-stream"


def _stamp(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).replace(tzinfo=None).isoformat()


class TimelineAgentServer:
    """One ``websockets`` server standing in for every agent server of a :class:`LocalOpenHandsServer`: it points
    each new conversation's ``conversation_url`` at itself, and on ``/sockets/events/{id}`` sends a ``full_state``
    with the timeline's status now, then the finish when the timeline ends the run."""

    def __init__(self, server: LocalOpenHandsServer) -> None:
        self.server = server
        self.finished_at: dict[str, float] = {}  # conversation id -> when (time.time()) the finish frame was sent
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True, name="bench-agent-server")
        self._thread.start()
        ready.wait(10)
        opened = server._open

        def open_here(**fields: Any) -> Any:  # every conversation's agent server is this one
            return opened(**{**fields, "agent_server_url": self.url})

        server._open = open_here  # type: ignore[method-assign]

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        from websockets.asyncio.server import serve

        async def begin() -> None:
            self._tick = asyncio.Event()
            self._server = await serve(self._socket, "127.0.0.1", 0, max_queue=None)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        self._loop.run_until_complete(begin())
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _conversation(self, conversation_id: str) -> Any:
        with self.server._lock:
            return next((c for c in self.server._conversations if c.conversation_id == conversation_id), None)

    async def _socket(self, socket: Any) -> None:
        if socket.request.headers.get("X-Session-API-Key") != PLANTED_SESSION_KEY:
            await socket.close(4001, "Authentication failed")
            return
        conversation_id = socket.request.path.split("?")[0].rsplit("/", 1)[-1]
        conversation = self._conversation(conversation_id)
        if conversation is None:
            await socket.close(4004, "Conversation not found")
            return
        now = self.server.now()
        status = local_v1.agent_status(conversation, now)
        await socket.send(json.dumps(_state("full_state", {"execution_status": status}, now)))
        ends = [end for _, end in local_v1.run_ends(conversation) if end > now]
        closed = asyncio.ensure_future(socket.wait_closed())
        while ends:
            if self.server.now() >= ends[0]:
                await self._finish(socket, conversation, conversation_id)
                break
            self._tick.clear()
            ticked = asyncio.ensure_future(self._tick.wait())
            await asyncio.wait(
                {closed, ticked}, timeout=max(0.0, ends[0] - self.server.now()), return_when="FIRST_COMPLETED"
            )
            ticked.cancel()
            if closed.done():  # (the client left first)
                return
        await closed

    async def _finish(self, socket: Any, conversation: Any, conversation_id: str) -> None:
        end = self.server.now()
        finish = {
            "id": str(uuid.uuid4()),
            "timestamp": _stamp(end),
            "source": "agent",
            "thought": [],
            "action": {"message": conversation.timeline.answer, "kind": "FinishAction"},
            "tool_name": "finish",
            "kind": "ActionEvent",
        }
        self.finished_at.setdefault(conversation_id, time.time())
        await socket.send(json.dumps(finish))
        await socket.send(json.dumps(_state("execution_status", "finished", end)))

    def tick(self) -> None:
        """The server's clock moved (a ManualClock): look at every run's end again."""
        self._loop.call_soon_threadsafe(self._tick.set)

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def _state(key: str, value: Any, epoch: float) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": _stamp(epoch),
        "source": "environment",
        "key": key,
        "value": value,
        "kind": "ConversationStateUpdateEvent",
    }


def requests_while_running(conversations: int, seconds: float) -> None:
    with LocalOpenHandsServer(KEY, timeline=Timeline(starting=0.5, running=600.0), max_running=conversations) as server:
        agents = TimelineAgentServer(server)
        session = Session(PollSchedule(interval=2.0, max_interval=30.0))  # the magic's defaults
        session.remember = False
        endpoint = Endpoint.resolve(server.base_url, api_key=KEY)
        handles = [session.start(f"task {n}", endpoint=endpoint) for n in range(conversations)]
        for handle in handles:
            handle.watch()
        connection = session.connection(endpoint)
        began = time.monotonic()
        while connection.stream.live_count < conversations and time.monotonic() - began < 120:
            time.sleep(0.1)
        opened = time.monotonic() - began
        live = connection.stream.live_count
        server.requests.clear()
        time.sleep(seconds)
        counted = list(server.requests)
        per_minute = len(counted) / seconds * 60
        intervals = seconds / 2.0
        print(
            f"{conversations} conversations streamed ({live} sockets open {opened:.1f} s after the starts); "
            f"app-server requests in the next {seconds:.0f} s: {len(counted)} = {per_minute:.1f}/min = "
            f"{len(counted) / intervals:.2f} per 2-s interval"
        )
        if counted:
            paths = sorted({r.path for r in counted})
            print(f"  ({', '.join(paths[:5])})")
        session.close()
        agents.stop()


def done_latency(runs: int) -> None:
    """Each run on its own server, whose clock is a ManualClock: every conversation is started and its socket
    opened at server time 0, then each clock jumps to its run's end (5 s to 3 minutes), one after the other."""
    from openhands_magics.testing import ManualClock

    durations = [5.0 + (180.0 - 5.0) * n / max(1, runs - 1) for n in range(runs)]  # 5 s to 3 minutes, evenly
    session = Session(PollSchedule(interval=2.0, max_interval=30.0))
    session.remember = False
    servers: list[tuple[LocalOpenHandsServer, TimelineAgentServer, ManualClock]] = []
    latencies: list[float] = []
    try:
        handles = []
        for seconds in durations:  # one server per duration: a timeline is the server's
            clock = ManualClock()
            server = LocalOpenHandsServer(KEY, timeline=Timeline(starting=0.5, running=seconds), clock=clock).start()
            agents = TimelineAgentServer(server)
            servers.append((server, agents, clock))
            handles.append(session.start("task", endpoint=Endpoint.resolve(server.base_url, api_key=KEY)))
        for (_, _, clock), handle in zip(servers, handles):
            clock.advance(1.0)  # READY
            handle.watch()
        connections = {session.connection(h.endpoint) for h in handles}
        deadline = time.monotonic() + 60
        while sum(c.stream.live_count for c in connections) < len(handles) and time.monotonic() < deadline:
            time.sleep(0.05)
        for (_, agents, clock), handle, seconds in zip(servers, handles, durations):
            clock.advance(seconds)
            agents.tick()
            handle.wait(timeout=60)
            returned = time.time()
            assert handle.answer and handle.id, handle
            latencies.append(returned - agents.finished_at[handle.id])
    finally:
        session.close()
        for server, agents, _ in servers:
            agents.stop()
            server.stop()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))]  # noqa: E731
    print(
        f"done latency of .wait() over {len(latencies)} runs of {durations[0]:.0f}-{durations[-1]:.0f} s "
        f"(server clocks moved by hand): p50 {statistics.median(latencies) * 1000:.0f} ms, p90 {p(0.9) * 1000:.0f} "
        f"ms, p99 {p(0.99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--only", choices=("requests", "latency"), default=None)
    args = parser.parse_args()
    if args.only != "latency":
        requests_while_running(args.conversations, args.seconds)
    if args.only != "requests":
        done_latency(args.runs)


if __name__ == "__main__":
    main()
