"""Speed of what a user feels: loading the extension, and how long ``%openhands`` takes to return.

Run: ``python benchmarks/bench_magic.py`` (after ``pip install -e .``). Everything is local: the magic talks to the
package's own server on 127.0.0.1. The machine is shared and noisy, so compare the ratios printed within one run,
not absolute times across runs.

1. ``%load_ext openhands_magics`` in a fresh process (median of N subprocesses), against the same extension with
   httpx and ipywidgets imported eagerly (what a naive package would do), each measured as time on top of an
   IPython shell that is already up.
2. ``%openhands msg`` from call to return (POST + record + text output), against a bare httpx POST to the same
   server: the package's overhead per call.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import time
from contextlib import redirect_stdout

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


def bench_call(runs: int) -> tuple[float, float]:
    import os

    import httpx
    from IPython.testing.globalipapp import start_ipython

    from openhands_magics.testing import LocalOpenHandsServer

    # max_running above the run count: every started conversation counts against the server's limit
    with LocalOpenHandsServer(max_running=2 * runs + 10) as server:
        os.environ.update(server.environ())
        start_ipython()
        from IPython import get_ipython

        shell = get_ipython()
        shell.run_line_magic("load_ext", "openhands_magics")
        with redirect_stdout(io.StringIO()):  # the first call asks the server which API it speaks: not timed
            shell.run_line_magic("openhands", "warm up")
        magic, raw = [], []
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}) as bare:
            for number in range(runs):
                started = time.perf_counter()
                with redirect_stdout(io.StringIO()):
                    shell.run_line_magic("openhands", f"benchmark task {number}")
                magic.append(time.perf_counter() - started)
                started = time.perf_counter()
                bare.post(
                    "/api/v1/app-conversations",
                    json={"initial_message": {"content": [{"type": "text", "text": f"bare {number}"}]}},
                ).raise_for_status()
                raw.append(time.perf_counter() - started)
        shell.run_line_magic("unload_ext", "openhands_magics")
    return statistics.median(magic), statistics.median(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-runs", type=int, default=9)
    parser.add_argument("--call-runs", type=int, default=200)
    args = parser.parse_args()

    lazy, eager = bench_load(args.load_runs)
    print(f"%load_ext openhands_magics   median {lazy * 1000:7.1f} ms  (n={args.load_runs})")
    print(f"  with eager httpx+ipywidgets median {eager * 1000:7.1f} ms  -> lazy loading is {eager / lazy:.1f}x faster")
    magic, raw = bench_call(args.call_runs)
    print(f"%openhands (POST + record + output) median {magic * 1000:6.2f} ms  (n={args.call_runs})")
    print(f"  bare httpx POST to the same server median {raw * 1000:6.2f} ms  -> magic/bare = {magic / raw:.2f}x")


if __name__ == "__main__":
    main()
