"""What the live activity feed costs, measured in a real ipykernel driven through jupyter_client.

Why: an agent emits events much faster than a person reads (a burst of commands, outputs, cost ticks: dozens a
second), and each one changes what its panel's feed shows. Redrawn on every event, 100 panels would send thousands
of widget messages a second and starve the kernel's loop; the panel coalesces a feed's redraws to at most two a
second (``panel.FEED_GAP``) and draws a status change at once. This script measures that promise:

- **event → comm message**: from the moment an event reaches a handle (``set_activity``, in the I/O thread) to the
  moment the front end receives the first widget message that shows it (or a later event), p50 and p99 (target p99
  < 250 ms), at a run's pace (``--steady``, one event a second per conversation, the conversations staggered: the
  first change after a quiet half second is drawn at once) and in the burst (where it is bounded by the coalescing
  gap, 500 ms: that is the price of two redraws a second). Kernel and front end run on one machine and read the
  same monotonic clock;
- **widget messages per panel per second** during the burst (target <= 2);
- **the kernel's loop lag** meanwhile (a 10 ms sleep in the kernel's asyncio loop, how late it wakes up: p99 and
  max, targets 5 ms and 20 ms), beside the same probe in the same kernel before any panel existed (the machine's
  own noise), and the garbage collections meanwhile.

Each phase starts from a settled heap (one ``gc.collect()`` in the kernel first). Why: making 100 panels adds tens of
thousands of long-lived objects, and CPython pays for such growth with one full collection of the whole heap later
(when the objects that survived since the last one pass a quarter of the heap), whatever allocates next; left
unsettled, that deferred cost of *making* the panels lands in whichever phase comes first and reads as the burst's.
A full collection of a bare kernel's heap takes tens of milliseconds by itself, so its cost is printed on its own line
(in the bare kernel, and with the panels), never hidden: the lag figures say how many collections of each generation
ran inside them.

How: a local server (``openhands_magics.testing``) with N conversations RUNNING for the whole run, N real panels
(``%openhands``), then ``--steady`` events a second per conversation for ``--seconds``, then a burst of ``--rate``
events a second *per conversation* (5,000 a second for 100 panels) for ``--seconds``. The events are
fed into the handles directly (every 5 ms at most, what came due meanwhile together, as frames read from a socket
would), in the I/O thread where the event stream delivers them, as frozen ``Activity``
values (``openhands_magics.events``): this measures
the view side (coalescing, drawing, sending), not the WebSocket.

Run (after ``pip install -e '.[test]'``)::

    python benchmarks/bench_feed.py                         # N=100, 50 events/s each, 10 s
    python benchmarks/bench_feed.py --panels 10 --seconds 5 --json /tmp/feed.json

Read the figures as ratios within one run (the bare-kernel lag beside the burst's): the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_panels as bp  # noqa: E402  (the same server, kernel and front end)

FEEDER_SETUP = """
import time as _ft, datetime as _fdt
import openhands_magics
from openhands_magics._io import get_io as _f_io
from openhands_magics.events import Activity as _FA, Event as _FE
_f_handles = [h for h in openhands_magics.history() if h.watching]
_f_state = {id(h): _FA(source="stream") for h in _f_handles}
_f_kinds = ("command", "edit", "thought", "message", "error")
async def _f_feed(rate, seconds, sent):
    # Each conversation gets `rate` events a second, the conversations staggered evenly within each period.
    import asyncio
    start, count = _ft.monotonic(), len(_f_handles)
    due = [start + i / count / rate for i in range(count)]
    while _ft.monotonic() - start < seconds:
        now = _ft.monotonic()
        for i, h in enumerate(_f_handles):
            while due[i] <= now:
                due[i] += 1 / rate
                a = _f_state[id(h)]
                number = a.steps + 1
                kind = _f_kinds[number % len(_f_kinds)]
                event = _FE(_fdt.datetime.now(_fdt.timezone.utc), kind, f"$ step {number} of a long run",
                            is_error=kind == "error")
                a = _f_state[id(h)] = _FA(steps=number, recent=(*a.recent, event)[-5:], source="stream")
                times = sent.get(h.id)
                if times is None:
                    times = sent[h.id] = [float(number)]  # the first step number, then one time per step
                times.append(_ft.monotonic())  # (floats: no tracked object a step, so no garbage collection)
                h.set_activity(a)
        # (every 5 ms at most: what was due meanwhile goes together, as frames read from a socket would)
        await asyncio.sleep(max(0.005, min(min(due) - _ft.monotonic(), 0.02)))
"""

FULL_GC = """
import gc as _f_gc, json as _f_json, time as _f_time
_f_t = _f_time.perf_counter(); _f_gc.collect()
print("BENCH-GC " + _f_json.dumps({"ms": (_f_time.perf_counter() - _f_t) * 1000, "objects": len(_f_gc.get_objects())}))
"""

FEEDER_RUN = """
_f_sent = {{}}  # conversation id -> [first step number, the monotonic time each step reached its handle...]
_f_future = _f_io().submit(_f_feed({rate!r}, {seconds!r}, _f_sent))
"""

FEEDER_READ = """
_f_future.result(timeout=120)
import json as _fj
print("BENCH-FEED " + _fj.dumps({"sent": _f_sent}))
"""

_STEPS = re.compile(r"(\d+) steps?")


def _phase(
    frontend: Any, panel_ids: list[str], conversation: dict[str, str], rate: float, seconds: float, pid: int
) -> dict[str, Any]:
    """Feed ``rate`` events a second into every handle for ``seconds``; what reached the front end, how late."""
    owner = {model: p for p in panel_ids for model in frontend.subtree(p)}
    frontend.execute("import gc as _f_gc; _f_gc.collect()")  # a settled heap (see the module's docstring)
    frontend.execute(bp.PROBE_START)
    before = len(frontend.raw_comm_msgs)
    begun = time.monotonic()  # (the feeder's first event comes after this)
    cpu_before, _ = bp.cpu_seconds(pid)
    frontend.execute(FEEDER_RUN.format(rate=rate, seconds=seconds))
    frontend.listen(seconds + 1.5)  # the burst, and the last coalesced redraws
    cpu = (bp.cpu_seconds(pid)[0] - cpu_before) / (time.monotonic() - begun)
    lag = frontend.printed(frontend.execute(bp.PROBE_READ), "BENCH-LAG")
    sent = frontend.printed(frontend.execute(FEEDER_READ), "BENCH-FEED")["sent"]
    shown: dict[str, list[tuple[float, int]]] = {p: [] for p in panel_ids}  # (arrival, steps the card showed)
    during = 0
    sent = {cid: [(int(times[0]) + i, at) for i, at in enumerate(times[1:])] for cid, times in sent.items()}
    first_event = min((at for events in sent.values() for _, at in events), default=begun)
    for arrived, model, state in frontend.raw_comm_msgs[before:]:
        panel = owner.get(model)
        if panel is None:
            continue
        if first_event <= arrived <= first_event + seconds:
            during += 1
        steps = _STEPS.search(state.get("value", "") or "")
        if steps:
            shown[panel].append((arrived, int(steps.group(1))))
    latencies: list[float] = []
    unseen = 0
    for panel in panel_ids:
        draws = shown[panel]
        for number, at in sent.get(conversation.get(panel, ""), []):  # shown by the first draw of steps >= it
            arrival = next((t for t, steps in draws if steps >= number), None)
            if arrival is None:
                unseen += 1
            else:
                latencies.append(arrival - at)
    latencies.sort()

    def pick(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

    return {
        "rate_per_panel": rate,
        "seconds": seconds,
        "events": sum(len(v) for v in sent.values()),
        "events_unseen": unseen,
        "latency_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)},
        "widget_msgs": during,
        "widget_msgs_per_panel_per_s": during / max(1, len(panel_ids)) / seconds,
        "loop_lag_ms": lag,
        "kernel_cpu_percent": 100 * cpu,
    }


def measure(
    panels: int, steady: float, rate: float, seconds: float, cell_size: int, live_timeout: float
) -> dict[str, Any]:
    server = bp.start_server(panels, 3600.0)
    manager = frontend = None
    result: dict[str, Any] = {"panels": panels}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-feed-ipython-") as ipython_dir:
            manager, frontend = bp.start_kernel(bp.kernel_env(server, ipython_dir), ipython_dir)
            result["kernel"] = frontend.printed(frontend.execute(bp.KERNEL_INFO), "BENCH-INFO")
            result["bare_full_gc"] = frontend.printed(frontend.execute(FULL_GC), "BENCH-GC")
            frontend.execute("%load_ext openhands_magics")
            frontend.execute(bp.PROBE_START)
            frontend.listen(min(seconds, 10.0))
            result["bare_lag_ms"] = frontend.printed(frontend.execute(bp.PROBE_READ), "BENCH-LAG")

            panel_ids: list[str] = []
            for first in range(0, panels, cell_size):
                cell = "\n".join(f"%openhands feed task {i}" for i in range(first, min(panels, first + cell_size)))
                for message in frontend.execute(cell, timeout=600):
                    view = message["content"].get("data", {}).get("application/vnd.jupyter.widget-view+json")
                    if message["msg_type"] == "display_data" and view:
                        panel_ids.append(view["model_id"])
            deadline = time.monotonic() + live_timeout
            while frontend.panels_showing_running(panel_ids) < panels and time.monotonic() < deadline:
                frontend.listen(0.2)
            result["panels_live"] = frontend.panels_showing_running(panel_ids)
            frontend.listen(3.0)
            conversation: dict[str, str] = {}  # panel -> the conversation it shows (its card's synced id)
            owner = {model: p for p in panel_ids for model in frontend.subtree(p)}
            for _, model, state in frontend.raw_comm_msgs:
                if state.get("conversation_id") and model in owner:
                    conversation[owner[model]] = state["conversation_id"]
            frontend.execute(FEEDER_SETUP)
            result["full_gc"] = frontend.printed(frontend.execute(FULL_GC), "BENCH-GC")
            pid = result["kernel"]["pid"]
            result["steady"] = _phase(frontend, panel_ids, conversation, steady, seconds, pid)
            result["burst"] = _phase(frontend, panel_ids, conversation, rate, seconds, pid)
    finally:
        if frontend is not None:
            frontend.client.stop_channels()
        if manager is not None:
            manager.shutdown_kernel(now=True)
        server.stop()
    return result


def _line(name: str, r: dict[str, Any]) -> str:
    lat, lag = r["latency_ms"], r["loop_lag_ms"]
    return (
        f"{name}: {r['rate_per_panel']:g} events/s per panel for {r['seconds']:g} s, {r['events']} events "
        f"({r['events_unseen']} never shown)\n"
        f"  event -> comm message p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms\n"
        f"  widget messages {r['widget_msgs_per_panel_per_s']:.2f} per panel per second; kernel CPU "
        f"{r['kernel_cpu_percent']:.0f} % of a core (feeder included)\n"
        f"  loop lag p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, max {lag['max']:.1f} ms; {bp._gc_text(lag)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--steady", type=float, default=1.0, help="events/s per conversation, at a run's pace (1)")
    parser.add_argument("--rate", type=float, default=50.0, help="events/s per conversation in the burst (50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each phase lasts (default 10)")
    parser.add_argument("--cell-size", type=int, default=50)
    parser.add_argument("--live-timeout", type=float, default=60.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    import openhands_magics

    print(
        f"openhands_magics from {openhands_magics.__file__}; {os.cpu_count()} CPUs; {args.panels} panels; events "
        "fed into the handles in the I/O thread (not through a WebSocket)",
        flush=True,
    )
    r = measure(args.panels, args.steady, args.rate, args.seconds, args.cell_size, args.live_timeout)
    bare = r["bare_lag_ms"]
    print(
        f"{r['panels_live']}/{r['panels']} live\n{_line('steady', r['steady'])}\n{_line('burst', r['burst'])}\n"
        f"the same kernel before any panel: loop lag p50 {bare['p50']:.2f} ms, p99 {bare['p99']:.2f} ms, "
        f"max {bare['max']:.1f} ms\n"
        f"one full garbage collection: {r['bare_full_gc']['ms']:.0f} ms in the bare kernel "
        f"({r['bare_full_gc']['objects']:,} objects), {r['full_gc']['ms']:.0f} ms with the panels "
        f"({r['full_gc']['objects']:,} objects)\n"
        "targets: latency p99 < 250 ms (steady); <= 2 messages per panel per second, loop lag p99 5 ms "
        "and max 20 ms (burst)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
