"""What the live activity feed costs, measured in a real ipykernel driven through jupyter_client.

Why: an agent emits events much faster than a person reads (a burst of commands, outputs, cost ticks: dozens a
second), and each one changes what its panel's feed shows. Redrawn on every event, 100 panels would send thousands
of widget messages a second and starve the kernel's loop; the panel coalesces a feed's redraws to at most two a
second (``panel.FEED_GAP``) and draws a status change at once. This script measures that promise:

- **event → comm message**: from the moment an event reaches a handle (``set_activity``, in the I/O thread) to the
  moment the front end receives the first widget message that shows it (or a later event), p50 and p99 (target p99
  < 250 ms). Kernel and front end run on one machine and read the same monotonic clock;
- **widget messages per panel per second** during the burst (target <= 2);
- **the kernel's loop lag** meanwhile (a 10 ms sleep in the kernel's asyncio loop, how late it wakes up: p99 and
  max, targets 5 ms and 20 ms), beside the same probe in the same kernel before any panel existed (the machine's
  own noise), and the garbage collections meanwhile.

How: a local server (``openhands_magics.testing``) with N conversations RUNNING for the whole run, N real panels
(``%openhands``), then a burst of ``--rate`` events a second *per conversation* for ``--seconds``. The events are
fed into the handles directly, in the I/O thread where the event stream delivers them, as frozen ``Activity``
values (``openhands_magics.events`` when it is importable, else a stand-in with the same fields): this measures
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

FEEDER = """
import dataclasses as _fd, time as _ft, datetime as _fdt, threading as _fth
import openhands_magics
from openhands_magics._io import get_io as _f_io
try:
    from openhands_magics.events import Activity as _FA, Event as _FE
except ImportError:  # (the event stream's values: a stand-in with the same fields)
    @_fd.dataclass(frozen=True)
    class _FE:
        time: object
        kind: str
        summary: str
        tool: object = None
        command: object = None
        path: object = None
        text: object = None
        is_error: bool = False
        id: object = None
    @_fd.dataclass(frozen=True)
    class _FA:
        steps: int = 0
        recent: tuple = ()
        cost: object = None
        source: str = "stream"
        notice: object = None
        pending: object = None
_f_handles = [h for h in openhands_magics.history() if h.watching]
_f_sent = {{id(h): [] for h in _f_handles}}  # the monotonic time each event reached its handle, in order
_f_done = _fth.Event()
def _f_give(h, activity):
    if hasattr(h, "set_activity"):
        h.set_activity(activity)
    else:
        h.activity = activity
        h._notify()
async def _f_burst(rate={rate!r}, seconds={seconds!r}):
    import asyncio
    kinds = ("command", "edit", "thought", "message", "error")
    state = {{id(h): _FA() for h in _f_handles}}
    start = _ft.monotonic()
    number = 0
    while (now := _ft.monotonic()) - start < seconds:
        number += 1
        for h in _f_handles:
            a = state[id(h)]
            kind = kinds[number % len(kinds)]
            event = _FE(_fdt.datetime.now(_fdt.timezone.utc), kind, f"$ step {{number}} of a long burst",
                        is_error=kind == "error")
            a = state[id(h)] = _FA(steps=number, recent=(*a.recent, event)[-5:], source="stream")
            _f_sent[id(h)].append(_ft.monotonic())
            _f_give(h, a)
        await asyncio.sleep(max(0.0, start + number / rate - _ft.monotonic()))
    _f_done.set()
_f_future = _f_io().submit(_f_burst())
"""

FEEDER_READ = """
_f_future.result(timeout=120)
import json as _fj
print("BENCH-FEED " + _fj.dumps({"sent": {h.id: _f_sent[id(h)] for h in _f_handles}}))
"""

_STEPS = re.compile(r"(\d+) steps?")


def measure(panels: int, rate: float, seconds: float, cell_size: int, live_timeout: float) -> dict[str, Any]:
    server = bp.start_server(panels, 3600.0)
    manager = frontend = None
    result: dict[str, Any] = {"panels": panels, "rate_per_panel": rate, "seconds": seconds}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-feed-ipython-") as ipython_dir:
            manager, frontend = bp.start_kernel(bp.kernel_env(server, ipython_dir), ipython_dir)
            result["kernel"] = frontend.printed(frontend.execute(bp.KERNEL_INFO), "BENCH-INFO")
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
            # which conversation each panel shows: its card's synced conversation_id
            card_of = {p: next(iter(sorted(frontend.subtree(p) - {p})), p) for p in panel_ids}
            owner = {model: p for p in panel_ids for model in frontend.subtree(p)}

            frontend.execute(bp.PROBE_START)
            before = len(frontend.comm_msg_models)
            begun = time.monotonic()  # (the feeder's first event comes after this)
            frontend.execute(FEEDER.format(rate=rate, seconds=seconds))
            frontend.listen(seconds + 1.5)  # the burst, and the last coalesced redraws
            lag = frontend.printed(frontend.execute(bp.PROBE_READ), "BENCH-LAG")
            sent = frontend.printed(frontend.execute(FEEDER_READ), "BENCH-FEED")["sent"]
    finally:
        if frontend is not None:
            frontend.client.stop_channels()
        if manager is not None:
            manager.shutdown_kernel(now=True)
        server.stop()

    # What each panel's messages showed: the step count in the card's HTML, with when it arrived.
    shown: dict[str, list[tuple[float, int]]] = {p: [] for p in panel_ids}
    conversation: dict[str, str] = {}
    for arrived, model, state in frontend.raw_comm_msgs:
        panel = owner.get(model)
        if panel is None:
            continue
        if isinstance(state.get("conversation_id"), str) and state["conversation_id"]:
            conversation[panel] = state["conversation_id"]
        steps = _STEPS.search(state.get("value", "") or "")
        if steps and arrived >= begun:
            shown[panel].append((arrived, int(steps.group(1))))
    for panel in panel_ids:
        opened = frontend.opened_states.get(card_of[panel], {})
        conversation.setdefault(panel, opened.get("conversation_id", ""))
    latencies: list[float] = []
    unseen = 0
    for panel in panel_ids:
        times = sent.get(conversation.get(panel, ""), [])
        draws = shown[panel]
        for number, at in enumerate(times, start=1):  # event `number` is shown by the first draw of steps >= number
            arrival = next((t for t, steps in draws if steps >= number), None)
            if arrival is None:
                unseen += 1
            else:
                latencies.append(arrival - at)
    latencies.sort()
    window = [t for t, m in frontend.comm_msg_models[before:] if m in owner and begun <= t <= begun + seconds + 1.5]
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None  # noqa: E731
    result.update(
        {
            "events": sum(len(v) for v in sent.values()),
            "events_unseen": unseen,
            "latency_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": latencies[-1] * 1000 if latencies else None},
            "widget_msgs": len(window),
            "widget_msgs_per_panel_per_s": len(window) / max(1, len(panel_ids)) / seconds,
            "loop_lag_ms": lag,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="events a second per conversation (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the burst lasts (default 10)")
    parser.add_argument("--cell-size", type=int, default=50)
    parser.add_argument("--live-timeout", type=float, default=60.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    import openhands_magics

    print(
        f"openhands_magics from {openhands_magics.__file__}; {os.cpu_count()} CPUs; {args.panels} panels, "
        f"{args.rate:g} events/s each for {args.seconds:g} s (fed into the handles in the I/O thread)",
        flush=True,
    )
    r = measure(args.panels, args.rate, args.seconds, args.cell_size, args.live_timeout)
    lat, lag, bare = r["latency_ms"], r["loop_lag_ms"], r["bare_lag_ms"]
    print(
        f"{r['panels_live']}/{r['panels']} live; {r['events']} events, {r['events_unseen']} never shown\n"
        f"event -> comm message: p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms "
        f"(target p99 < 250 ms)\n"
        f"widget messages: {r['widget_msgs_per_panel_per_s']:.2f} per panel per second (target <= 2)\n"
        f"loop lag during the burst: p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, max {lag['max']:.1f} ms "
        f"(targets 5 and 20); {bp._gc_text(lag)}\n"
        f"loop lag of the same kernel before any panel: p50 {bare['p50']:.2f} ms, p99 {bare['p99']:.2f} ms, "
        f"max {bare['max']:.1f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main()
