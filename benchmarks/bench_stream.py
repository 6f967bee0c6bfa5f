"""The live event stream against the local server: app-server requests while 100 streamed conversations run, and
the done latency of ``.wait()``.

    .venv/bin/python benchmarks/bench_stream.py [--conversations 100] [--seconds 60] [--runs 40]

The local server (``openhands_magics.testing``) has an agent server beside its app server: a real WebSocket in
the recorded 1.11.0 shapes, whose events follow the timeline (the finish at the moment the run ends).

1. **Requests per minute once they run**: ``--conversations`` conversations that run for 10 minutes are started and
   watched, and once every socket is open the app-server requests are counted for ``--seconds`` (the magic's
   default schedule: a poll interval of 2 s). Target: none per interval.
2. **Done latency of ``.wait()``**: ``--runs`` conversations whose runs last from 5 s to 3 minutes of *server* time:
   each on a local server whose clock is a ``ManualClock``, started and streamed at time 0, then its clock jumps to
   the run's end (so 3 minutes take no time; the client's polls of a streamed conversation are rare checks
   anyway). For each, the time from the jump (the agent server sends the finish at once) to ``.wait()``
   returning with the answer and changes read. Target: p99 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["OPENHANDS_LIVE_EVENTS"] = "1"

from openhands_magics.polling import PollSchedule  # noqa: E402
from openhands_magics.session import Endpoint, Session  # noqa: E402
from openhands_magics.testing import LocalOpenHandsServer, Timeline  # noqa: E402

KEY = "oh-bench-stream"


def requests_while_running(conversations: int, seconds: float) -> None:
    with LocalOpenHandsServer(KEY, timeline=Timeline(starting=0.5, running=600.0), max_running=conversations) as server:
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


def done_latency(runs: int) -> None:
    """Each run on its own server, whose clock is a ManualClock: every conversation is started and its socket
    opened at server time 0, then each clock jumps to its run's end (5 s to 3 minutes), one after the other; the
    latency is from the jump (the agent server then sends the finish at once) to ``.wait()`` returning."""
    from openhands_magics.testing import ManualClock

    durations = [5.0 + (180.0 - 5.0) * n / max(1, runs - 1) for n in range(runs)]  # 5 s to 3 minutes, evenly
    session = Session(PollSchedule(interval=2.0, max_interval=30.0))
    session.remember = False
    servers: list[tuple[LocalOpenHandsServer, ManualClock]] = []
    latencies: list[float] = []
    try:
        handles = []
        for seconds in durations:  # one server per duration: a timeline is the server's
            clock = ManualClock()
            timeline = Timeline(starting=0.5, running=seconds, steps=("pytest -q", "edit:src/app.py"))
            server = LocalOpenHandsServer(KEY, timeline=timeline, clock=clock).start()
            servers.append((server, clock))
            handles.append(session.start("task", endpoint=Endpoint.resolve(server.base_url, api_key=KEY)))
        for (_, clock), handle in zip(servers, handles):
            clock.advance(1.0)  # READY, and the run begins
            handle.watch()
        connections = {session.connection(h.endpoint) for h in handles}
        deadline = time.monotonic() + 60
        while sum(c.stream.live_count for c in connections) < len(handles) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        for (_, clock), handle, seconds in zip(servers, handles, durations):
            moved = time.monotonic()
            clock.advance(seconds)
            handle.wait(timeout=60)
            latencies.append(time.monotonic() - moved)
            assert handle.answer and handle.status == "FINISHED", handle
    finally:
        session.close()
        for server, _ in servers:
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
