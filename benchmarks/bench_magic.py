"""Speed of what a user feels: loading the extension, and how long ``%openhands`` takes to return.

Run: ``python benchmarks/bench_magic.py`` (after ``pip install -e .``). Everything is local: the magic talks to the
package's own server on 127.0.0.1. The machine is shared and noisy, so compare the ratios printed within one run,
not absolute times across runs.

1. ``%load_ext openhands_magics`` in a fresh process (median of N subprocesses), against the same extension with
   httpx and ipywidgets imported eagerly (what a naive package would do), each measured as time on top of an
   IPython shell that is already up.
2. ``%openhands msg`` from call to return (POST + record + text output), against a bare httpx POST to the same
   server, one after the other: the package's overhead per call. Measured twice: with the server in this process
   (as the tests run it: its handler threads share this process's GIL, so any Python work on either side is paid
   by both), and with the server in a process of its own, as a real server is (``--server-process``, the default
   prints both); or against a running server (``--base-url URL``, with ``OPENHANDS_API_KEY``), such as the real
   OpenHands from ``../shared/real-openhands/up``: there each start is a real agent run, so keep ``--call-runs``
   small (a process sandbox per conversation).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import NamedTuple

LOAD_SNIPPET = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
started = time.perf_counter()
{eager}
shell.run_line_magic("load_ext", "openhands_magics")
print(time.perf_counter() - started)
"""


def _load_time(eager: bool) -> float:
    code = LOAD_SNIPPET.format(eager="import httpx, ipywidgets" if eager else "")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def bench_load(runs: int) -> tuple[float, float]:
    lazy, eager = [], []
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        lazy.append(_load_time(eager=False))
        eager.append(_load_time(eager=True))
    return statistics.median(lazy), statistics.median(eager)


#: A server in a process of its own: prints its base URL and key, then serves until its stdin closes.
SERVER_SNIPPET = """
import sys
from openhands_magics.testing import LocalOpenHandsServer
with LocalOpenHandsServer(max_running={max_running}) as server:
    print(server.base_url, server.api_key, flush=True)
    sys.stdin.read()
"""


@contextmanager
def _server(runs: int, own_process: bool) -> Iterator[tuple[str, str]]:
    """(base URL, key) of a local server with room for every start (each counts against its limit)."""
    from openhands_magics.testing import LocalOpenHandsServer

    if not own_process:
        with LocalOpenHandsServer(max_running=2 * runs + 10) as server:
            yield server.base_url, server.api_key
        return
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER_SNIPPET.format(max_running=2 * runs + 10)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        base_url, key = child.stdout.readline().split()
        yield base_url, key
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


@contextmanager
def _given(base_url: str) -> Iterator[tuple[str, str]]:
    import os

    yield base_url, os.environ.get("OPENHANDS_API_KEY", "no-key-needed")


class Call(NamedTuple):
    """Medians, in seconds: the magic's call and a bare POST, by the wall clock and by the caller's CPU time."""

    magic: float
    bare: float
    magic_cpu: float
    bare_cpu: float

    @property
    def ratio(self) -> float:
        return self.magic / self.bare


def bench_call(runs: int, own_process: bool = False, base_url: str | None = None) -> Call:
    import os

    import httpx
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    server = _given(base_url) if base_url else _server(runs, own_process)
    with server as (base_url, key), tempfile.TemporaryDirectory() as data:
        os.environ.update({"OPENHANDS_BASE_URL": base_url, "OPENHANDS_API_KEY": key})
        os.environ.setdefault("OPENHANDS_MAGICS_DATA_DIR", data)  # the record goes to a scratch directory
        start_ipython()
        shell = get_ipython()
        shell.run_line_magic("load_ext", "openhands_magics")
        with redirect_stdout(io.StringIO()):  # the first call asks the server which API it speaks: not timed
            shell.run_line_magic("openhands", "warm up")
        # Wall-clock time, and the calling thread's CPU time: the server's share of the wall clock is the same for
        # both, and the CPU time is the client's own work, which machine noise (waiting) barely moves.
        magic, raw, magic_cpu, raw_cpu = [], [], [], []
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as bare:
            for number in range(runs):
                started, cpu = time.perf_counter(), time.thread_time()
                with redirect_stdout(io.StringIO()):
                    shell.run_line_magic("openhands", f"benchmark task {number}")
                magic.append(time.perf_counter() - started)
                magic_cpu.append(time.thread_time() - cpu)
                started, cpu = time.perf_counter(), time.thread_time()
                bare.post(
                    "/api/v1/app-conversations",
                    json={"initial_message": {"content": [{"type": "text", "text": f"bare {number}"}]}},
                ).raise_for_status()
                raw.append(time.perf_counter() - started)
                raw_cpu.append(time.thread_time() - cpu)
        shell.run_line_magic("unload_ext", "openhands_magics")
    median = statistics.median
    return Call(median(magic), median(raw), median(magic_cpu), median(raw_cpu))


def _report(call: Call, where: str, runs: int) -> None:
    print(f"%openhands (POST + record + output) median {call.magic * 1000:6.2f} ms  (n={runs}, {where})")
    print(f"  bare httpx POST to the same server median {call.bare * 1000:6.2f} ms  -> magic/bare = {call.ratio:.2f}x")
    print(
        f"  CPU of the calling thread: {call.magic_cpu * 1000:.2f} ms against {call.bare_cpu * 1000:.2f} ms "
        f"(the package's own work: {(call.magic_cpu - call.bare_cpu) * 1000:.2f} ms a call)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-runs", type=int, default=9)
    parser.add_argument("--call-runs", type=int, default=200)
    parser.add_argument(
        "--server-process",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure only with the server in its own process (or, --no-server-process, in this one)",
    )
    parser.add_argument("--base-url", help="measure the call against this running server only (no local one)")
    args = parser.parse_args()
    if args.base_url:
        _report(bench_call(args.call_runs, base_url=args.base_url), args.base_url, args.call_runs)
        return

    lazy, eager = bench_load(args.load_runs)
    print(f"%load_ext openhands_magics   median {lazy * 1000:7.1f} ms  (n={args.load_runs})")
    print(f"  with eager httpx+ipywidgets median {eager * 1000:7.1f} ms  -> lazy loading is {eager / lazy:.1f}x faster")
    for own_process in (False, True) if args.server_process is None else (args.server_process,):
        where = "a server in its own process" if own_process else "the server in this process"
        _report(bench_call(args.call_runs, own_process), where, args.call_runs)


if __name__ == "__main__":
    main()
