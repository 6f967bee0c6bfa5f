"""A 100-task fan-out against the local server: its time against the ideal, requests per minute, time until every
task started, loop lag.

    .venv/bin/python benchmarks/bench_fanout.py [--tasks 100] [--max-running 10] [--polling]

The batch is made in an asyncio event loop as in a kernel (the kernel's own loop, here ``asyncio.run``), every
conversation starting in 0.2 s and running 2 s, its agent server's live event stream (the local server's) saying
when the run ends, so a final row frees its place at the stream's event, not at the next poll
(``--polling``: no stream, as before it existed). The ideal is waves of ``max_running``, each as long as one
conversation (2.2 s): 22 s for 100 tasks 10 at a time. While it runs, two probes measure how late a 10 ms sleep wakes
up: in that loop (the lag a user of the kernel would feel) and in the I/O thread's loop (the lag every live panel and
the queue would feel). It also counts the threads the fan-out made.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openhands_magics._io import get_io  # noqa: E402
from openhands_magics.polling import PollSchedule  # noqa: E402
from openhands_magics.session import Endpoint, Session  # noqa: E402
from openhands_magics.testing import LocalOpenHandsServer, Timeline  # noqa: E402

KEY = "oh-bench-fanout"


STARTING, RUNNING = 0.2, 2.0


async def run(tasks: int, max_running: int, polling: bool) -> None:
    os.environ["OPENHANDS_LIVE_EVENTS"] = "0" if polling else "1"
    with LocalOpenHandsServer(KEY, timeline=Timeline(starting=STARTING, running=RUNNING), max_running=tasks) as server:
        session = Session(PollSchedule(interval=2.0, max_interval=30.0))  # the magic's defaults
        session.remember = False
        endpoint = Endpoint.resolve(server.base_url, api_key=KEY)
        lags: list[float] = []
        io_lags: list[float] = []
        stop = False
        threads_before = {t.ident for t in threading.enumerate()}

        async def probe(into: list[float]) -> None:
            while not stop:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                into.append((time.perf_counter() - before - 0.01) * 1000)

        probing = asyncio.get_running_loop().create_task(probe(lags))
        io_probing = asyncio.wrap_future(get_io().submit(probe(io_lags)))
        started = time.monotonic()
        batch = session.map("task {item}", range(tasks), max_running=max_running, endpoint=endpoint)
        all_started = None
        peak = 0
        while not batch.done:
            peak = max(peak, server.running_count())
            if all_started is None and all(r.state != "QUEUED" for r in batch.rows):
                all_started = time.monotonic() - started
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        stop = True
        await probing
        await io_probing
        made = sorted(
            t.name
            for t in threading.enumerate()
            if t.ident not in threads_before and t.name.startswith("openhands") and "server" not in t.name
        )
        gets = [r for r in server.requests if r.method == "GET"]
        posts = [r for r in server.requests if r.method == "POST"]
        lags.sort()
        io_lags.sort()
        ideal = math.ceil(tasks / max_running) * (STARTING + RUNNING)
        print(
            f"{tasks} tasks, max_running={max_running} ({'polling only' if polling else 'live event stream'}): all "
            f"over in {elapsed:.1f} s, {elapsed / ideal:.2f}x the ideal {ideal:.1f} s; every task started after "
            f"{all_started:.1f} s; peak running (server's count) {peak}"
        )
        print(
            f"requests: {len(posts)} POST, {len(gets)} GET = {len(gets) / elapsed * 60:.0f} GET/min "
            f"({len(gets) / tasks:.1f} GET per task, status reads and the outcome's two)"
        )
        print(
            f"loop lag over {len(lags)} probes: median {statistics.median(lags):.2f} ms, "
            f"p99 {lags[int(len(lags) * 0.99)]:.2f} ms, max {lags[-1]:.2f} ms"
        )
        print(
            f"I/O loop lag over {len(io_lags)} probes: median {statistics.median(io_lags):.2f} ms, "
            f"p99 {io_lags[int(len(io_lags) * 0.99)]:.2f} ms, max {io_lags[-1]:.2f} ms"
        )
        print(f"threads made: {len(made)} ({', '.join(sorted(set(made)))})")
        print(batch.summary)
        session.close()
        await asyncio.sleep(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--max-running", type=int, default=10)
    parser.add_argument("--polling", action="store_true", help="no live event stream (as before it existed)")
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.max_running, args.polling))


if __name__ == "__main__":
    main()
