"""A 100-task fan-out against the local server: requests per minute, time until every task started, loop lag.

    .venv/bin/python benchmarks/bench_fanout.py [--tasks 100] [--max-running 10]

The queue runs in an asyncio event loop as it does in a kernel (the kernel's own loop, here ``asyncio.run``), every
conversation starting in 0.2 s and running 2 s. While it runs, a probe measures how late a 10 ms sleep wakes up (the
loop's lag: what a user of the kernel would feel).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openhands_magics.polling import PollSchedule  # noqa: E402
from openhands_magics.session import Endpoint, Session  # noqa: E402
from openhands_magics.testing import LocalOpenHandsServer, Timeline  # noqa: E402

KEY = "oh-bench-fanout"


async def run(tasks: int, max_running: int) -> None:
    with LocalOpenHandsServer(KEY, timeline=Timeline(starting=0.2, running=2.0), max_running=tasks) as server:
        session = Session(PollSchedule(interval=2.0, max_interval=30.0))  # the magic's defaults
        session.remember = False
        endpoint = Endpoint.resolve(server.base_url, api_key=KEY)
        lags: list[float] = []
        stop = False

        async def probe() -> None:
            while not stop:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append((time.perf_counter() - before - 0.01) * 1000)

        probing = asyncio.get_running_loop().create_task(probe())
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
        gets = [r for r in server.requests if r.method == "GET"]
        posts = [r for r in server.requests if r.method == "POST"]
        lags.sort()
        print(f"{tasks} tasks, max_running={max_running}: all over in {elapsed:.1f} s; every task started after "
              f"{all_started:.1f} s; peak running (server's count) {peak}")
        print(f"requests: {len(posts)} POST, {len(gets)} GET = {len(gets) / elapsed * 60:.0f} GET/min "
              f"({len(gets) / tasks:.1f} GET per task, status reads and the outcome's two)")
        print(f"loop lag over {len(lags)} probes: median {statistics.median(lags):.2f} ms, "
              f"p99 {lags[int(len(lags) * 0.99)]:.2f} ms, max {lags[-1]:.2f} ms")
        print(batch.summary)
        session.close()
        await asyncio.sleep(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--max-running", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.max_running))


if __name__ == "__main__":
    main()
