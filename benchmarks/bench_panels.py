"""What N live ``%openhands`` panels cost, measured in a real ipykernel driven through jupyter_client.

Why: every live panel polls the server and redraws its widget from the kernel's asyncio loop. With a handful of
panels that is free; with a notebook full of them (or a loop that starts many conversations) it can eat the user's
rate limit on OpenHands Cloud (about 100 requests a minute), flood the front end with widget messages, make the
kernel's event loop late (which delays everything else the kernel does between cells) and burn CPU. This script
puts numbers on those four costs as N grows, so a change to polling or redrawing can be judged by them.

For each N in ``--panels`` (default 1,10,100,200), with a fresh kernel and a fresh local server each time:

1. start a local OpenHands-compatible server (``openhands_magics.testing.LocalOpenHandsServer``) on 127.0.0.1 in
   *this* process, with a short STARTING phase and a RUNNING phase much longer than the measurement, and a
   ``max_running`` above the largest N (it answers 429 past it);
2. start an ipykernel with *this* interpreter (``sys.executable``), its environment pointing at that server
   (``OPENHANDS_BASE_URL`` / ``OPENHANDS_API_KEY``; proxies off; an empty ``IPYTHONDIR`` so no user config applies;
   the live event stream off, ``OPENHANDS_LIVE_EVENTS=0``, unless this script's environment sets it: the local
   server has no agent server, so the panels are polled);
3. ``%load_ext openhands_magics`` and start N conversations with ``%openhands benchmark task i`` lines, a few cells
   of up to ``--cell-size`` lines each: real panels, default settings (no ``--wait``, no ``--no-panel``);
4. wait until every panel has shown RUNNING (its widgets received that status), then ``--warmup`` more seconds;
5. start, inside the kernel, an asyncio task that sleeps 10 ms in a loop and records how late each wake-up is;
6. measure for ``--seconds`` (default 60), with all conversations RUNNING on the server:

   - GET/min: requests the server received, by method, during the window (from ``server.requests``);
   - widget msg/s: iopub ``comm_msg`` messages the kernel sent, counted by this front end as they arrive;
   - loop lag p50/p99/max (ms): how late the 10 ms sleeps woke up, read back from the kernel after the window;
   - kernel CPU %: CPU seconds (user + system, all threads) of the kernel process during the window, as a % of one
     core (psutil if installed, else /proc/PID/stat);

7. with ``--changes K`` (default 4): change every conversation's status at once on the server, K times (its
   sandbox PAUSED, then RUNNING again, ...), each time waiting until every panel showed the new status, with the
   lag probe running; report the widget messages each panel got per change (``comm_msg`` to any model of the
   panel: its box, its card, its buttons and their layouts) and the loop lag while 100s of panels redraw at once;
8. with ``--finish`` (default on): end every conversation at once, wait until the kernel watches none of them,
   and read back how many comms the kernel's comm manager still holds and how many widgets
   ``ipywidgets.Widget.widgets`` still lists, before and after (a finished panel should leave none);
9. shut the kernel down and stop the server.

Run (after ``pip install -e '.[test]'``; psutil is optional)::

    python benchmarks/bench_panels.py                                   # N = 1,10,100,200, 60 s each (about 5 min)
    python benchmarks/bench_panels.py --panels 1,10 --seconds 10        # a quick run
    python benchmarks/bench_panels.py --json /tmp/bench-panels.json     # also write every figure as JSON
    python benchmarks/bench_panels.py --panels 100,500 --seconds 10     # the issue-15 figures: msgs/change, lag, comms

Side by side with older code: the kernel imports whatever ``PYTHONPATH`` points at first, e.g.
``git worktree add /tmp/old HEAD~3`` then ``PYTHONPATH=/tmp/old python benchmarks/bench_panels.py ...``.

The kernel imports the package of the interpreter that runs this script; the header line shows which file.

Read the numbers as ratios within one run (N=200 against N=1, before against after a change run back to back), not
as absolute figures: the machine these run on is shared and noisy (2 cores), and the server, this front end and the
kernel all compete for them. The window starts ``--warmup`` seconds after the panels went live, so it includes
whatever part of the pollers' backoff ramp (fast polls after a status change, slower ones while nothing changes)
has not finished by then; keep ``--warmup`` and ``--seconds`` the same across the runs you compare.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import queue
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

API_KEY = "oh-bench-panels-local-only"
STARTING_SECONDS = 1.0
LAG_PROBE_SLEEP = 0.010

PROBE_START = f"""
import asyncio as _bench_asyncio, time as _bench_time
_bench_lags = []
async def _bench_lag_probe(samples=_bench_lags, pause={LAG_PROBE_SLEEP!r}):
    clock = _bench_time.perf_counter
    while True:
        before = clock()
        await _bench_asyncio.sleep(pause)
        samples.append((before, clock() - before - pause))  # (perf_counter: the same clock as time.monotonic)
_bench_probe_task = _bench_asyncio.get_running_loop().create_task(_bench_lag_probe())
import gc as _bench_gc
_bench_gcs = []  # (start, seconds, generation) of every garbage collection while the probe runs
def _bench_gc_timer(phase, info, starts={{}}, clock=_bench_time.perf_counter):
    if phase == "start":
        starts["t"] = clock()
    elif "t" in starts:
        _bench_gcs.append((starts["t"], clock() - starts.pop("t"), info.get("generation")))
if _bench_gc_timer not in _bench_gc.callbacks:
    _bench_gc.callbacks.append(_bench_gc_timer)
_bench_draws = []  # (start, seconds) of every panel redraw (its Card, HTML, one widget message), in any thread
try:
    from openhands_magics.panel import ConversationPanel as _bench_panel
except ImportError:
    _bench_panel = None
if _bench_panel is not None and not hasattr(_bench_panel, "_bench_real_render"):
    _bench_panel._bench_real_render = _bench_panel.render
    def _bench_render(self, handle, real=_bench_panel._bench_real_render, clock=_bench_time.perf_counter):
        before = clock()
        real(self, handle)
        _bench_draws.append((before, clock() - before))
    _bench_panel.render = _bench_render
"""

PROBE_READ = """
_bench_probe_task.cancel()
_bench_gc.callbacks.remove(_bench_gc_timer)
_bench_samples, _bench_lags[:] = list(_bench_lags), []
_bench_gc_seen, _bench_gcs[:] = list(_bench_gcs), []
_bench_draws_seen, _bench_draws[:] = list(_bench_draws), []
def _bench_lag_summary(samples, gcs, draws):
    import json
    ordered = sorted(max(0.0, s) * 1000 for _, s in samples)
    if not ordered:
        return json.dumps({"samples": 0})
    spikes = [(t, s * 1000) for t, s in samples if s > 0.005]  # (when each wake-up 5 ms late or more began)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    # A spike "is" a collection when one ran inside its sleep (any thread's: a collection holds the GIL).
    in_gc = [max([d for g0, d, _ in gcs if t <= g0 <= t + 0.010 + s / 1000], default=0.0) * 1000 for t, s in spikes]
    by_gen = {}
    for _, d, g in gcs:
        by_gen.setdefault(str(g), []).append(d * 1000)
    return json.dumps({"samples": len(ordered), "p50": pick(0.50), "p99": pick(0.99), "max": ordered[-1],
                       "mean": sum(ordered) / len(ordered), "spikes": spikes,
                       "gc": {g: {"count": len(v), "max_ms": max(v), "total_ms": sum(v)} for g, v in by_gen.items()},
                       "spikes_with_gc": sum(1 for x in in_gc if x > 0), "spike_gc_ms": in_gc,
                       "renders": len(draws), "render_ms_total": 1000 * sum(d for _, d in draws),
                       "render_ms_max": 1000 * max([d for _, d in draws], default=0.0)})
print("BENCH-LAG " + _bench_lag_summary(_bench_samples, _bench_gc_seen, _bench_draws_seen))
"""

KERNEL_INFO = """
import json as _j, os as _o, sys as _s, openhands_magics as _m
print("BENCH-INFO " + _j.dumps({"pid": _o.getpid(), "executable": _s.executable, "package": _m.__file__,
                                 "version": getattr(_m, "__version__", None)}))
"""

COMMS_READ = """
import json as _j, openhands_magics
from ipywidgets.widgets.widget import _instances as _bench_widgets
_bench_kernel = get_ipython().kernel
_bench_manager = getattr(_bench_kernel, "comm_manager", None)
if _bench_manager is None:
    import comm as _bench_comm
    _bench_manager = _bench_comm.get_comm_manager()
_bench_handles = list(openhands_magics.history())
print("BENCH-COMMS " + _j.dumps({"comms": len(_bench_manager.comms), "widgets": len(_bench_widgets),
      "handles": len(_bench_handles), "watched": sum(bool(h.watching) for h in _bench_handles),
      "final": sum(bool(h.is_final) for h in _bench_handles)}))
"""

_RUNNING_IN_UPDATE = re.compile(r"\brunning\b", re.IGNORECASE)
_MODEL_REF = re.compile(r"IPY_MODEL_([0-9a-f]+)")


# ---------------------------------------------------------------------------------------------------- the server
def start_server(max_panels: int, running_seconds: float) -> Any:
    """A fresh local server on 127.0.0.1 for either constructor (``Timeline`` if importable, else ``schedule``)."""
    from openhands_magics.testing import LocalOpenHandsServer

    try:
        from openhands_magics.testing import Timeline  # the newer constructor
    except ImportError:
        Timeline = None
    max_running = max(1000, 2 * max_panels)
    if Timeline is not None:
        timeline = Timeline(starting=STARTING_SECONDS, running=running_seconds)
        options: dict[str, Any] = {"api": "v1", "timeline": timeline}
    else:
        options = {"schedule": (("STARTING", STARTING_SECONDS), ("RUNNING", running_seconds), ("STOPPED", None))}
    try:
        server = LocalOpenHandsServer(API_KEY, max_running=max_running, host="127.0.0.1", **options)
    except TypeError:  # a constructor without max_running/host: set what can be set afterwards
        server = LocalOpenHandsServer(API_KEY, **options)
    if getattr(server, "max_running", max_running) < max_running:
        server.max_running = max_running
    server.start()
    if not server.base_url.startswith("http://127.0.0.1:"):
        server.stop()
        raise SystemExit(f"the local server is not on 127.0.0.1: {server.base_url}")
    return server


def server_environ(server: Any) -> dict[str, str]:
    if hasattr(server, "environ"):
        env = dict(server.environ())
    else:
        env = {"OPENHANDS_BASE_URL": server.base_url, "OPENHANDS_API_KEY": API_KEY}
    if not env.get("OPENHANDS_BASE_URL", "").startswith("http://127.0.0.1:"):
        raise SystemExit(f"refusing a base URL that is not 127.0.0.1: {env.get('OPENHANDS_BASE_URL')!r}")
    return env


def request_counts(server: Any) -> collections.Counter[str]:
    return collections.Counter(getattr(r, "method", "?") for r in list(server.requests))


def server_statuses(server: Any) -> dict[str, int] | None:
    """How many conversations are in each status as the server sees them (a sanity figure), if it can tell."""
    try:
        ids = server.conversation_ids()
        if hasattr(server, "status_of"):  # the older server: one status string
            states = collections.Counter(str(server.status_of(i)) for i in ids)
        elif hasattr(server, "state_of"):  # the newer one: raw status fields, e.g. execution_status=running
            states = collections.Counter(
                ",".join(f"{k}={v}" for k, v in sorted(server.state_of(i).items())) for i in ids
            )
        else:
            return None
    except Exception:  # a changed server API: this is only a sanity figure
        return None
    return dict(states)


# ---------------------------------------------------------------------------------------------------- the kernel
def cpu_seconds(pid: int) -> tuple[float, str]:
    """User + system CPU seconds of the process (all its threads)."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system, "psutil"
    except ImportError:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks, "/proc/PID/stat"  # utime, stime: fields 14 and 15


@dataclass
class Frontend:
    """A minimal front end: executes cells, drains iopub all the time, and keeps what the benchmark needs."""

    client: Any
    msg_types: collections.Counter[str] = field(default_factory=collections.Counter)
    comm_msg_arrivals: list[float] = field(default_factory=list)
    comm_msg_methods: collections.Counter[str] = field(default_factory=collections.Counter)
    children: dict[str, set[str]] = field(default_factory=dict)  # every model a model's state ever referred to
    statuses: dict[str, str] = field(default_factory=dict)  # model id -> the latest synced ``status``
    #: (arrival, model id, whether it brought its model a new status) of each comm_msg
    comm_msg_models: list[tuple[float, str, bool]] = field(default_factory=list)
    comm_closes: int = 0
    running_models: dict[str, float] = field(default_factory=dict)  # model id -> when it first showed RUNNING
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    retry_notes: int = 0  # comm_msg updates that mention a retry (a poll that failed), over the whole run
    idle: set[str] = field(default_factory=set)
    raw_comm_msgs: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # (arrival, model, state)
    opened_states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _take(self, message: dict[str, Any]) -> None:
        arrived = time.monotonic()
        kind = message["msg_type"]
        self.msg_types[kind] += 1
        content = message["content"]
        if kind in ("comm_open", "comm_msg"):
            comm_id = content.get("comm_id", "")
            state = (content.get("data") or {}).get("state") or {}
            if kind == "comm_open":
                self.opened_states[comm_id] = state
            if kind == "comm_msg":
                self.raw_comm_msgs.append((arrived, comm_id, state))
                self.comm_msg_arrivals.append(arrived)
                status = state.get("status")
                new = isinstance(status, str) and status != self.statuses.get(comm_id)
                self.comm_msg_models.append((arrived, comm_id, new))
                self.comm_msg_methods[(content.get("data") or {}).get("method", "?")] += 1
            text = json.dumps(state)
            self.children.setdefault(comm_id, set()).update(_MODEL_REF.findall(text))  # children, layout, style
            if isinstance(state.get("status"), str):
                self.statuses[comm_id] = state["status"]
            if kind == "comm_msg" and "retr" in text.lower():
                self.retry_notes += 1
            if ("RUNNING" in text) if kind == "comm_open" else bool(_RUNNING_IN_UPDATE.search(text)):
                self.running_models.setdefault(comm_id, arrived)
        elif kind == "comm_close":
            self.comm_closes += 1
        parent = message.get("parent_header", {}).get("msg_id")
        if parent in self.outputs:
            if kind == "status" and content.get("execution_state") == "idle":
                self.idle.add(parent)
            elif kind in ("stream", "display_data", "update_display_data", "execute_result", "error"):
                self.outputs[parent].append(message)

    def drain(self, timeout: float = 0.0) -> int:
        """Take every iopub message already there (waiting up to ``timeout`` for the first)."""
        taken = 0
        while True:
            try:
                message = self.client.get_iopub_msg(timeout=timeout if taken == 0 else 0)
            except queue.Empty:
                return taken
            self._take(message)
            taken += 1

    def listen(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.drain(timeout=min(0.05, left))

    def execute(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Run ``code``, draining iopub while it runs (a full queue would drop widget messages); return its outputs."""
        msg_id = self.client.execute(code)
        self.outputs[msg_id] = []
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None or msg_id not in self.idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer in {timeout} s to {code[:60]!r}")
            self.drain(timeout=0.01)
            if reply is None:
                try:
                    candidate = self.client.get_shell_msg(timeout=0.01)
                except queue.Empty:
                    continue
                if candidate["parent_header"].get("msg_id") == msg_id:
                    reply = candidate
        if reply["content"]["status"] != "ok":
            raise RuntimeError(
                f"{code[:60]!r} failed in the kernel: {reply['content'].get('ename')}: {reply['content'].get('evalue')}"
            )
        return self.outputs.pop(msg_id)

    def printed(self, outputs: list[dict[str, Any]], marker: str) -> dict[str, Any]:
        text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
        for line in text.splitlines():
            if line.startswith(marker + " "):
                return json.loads(line[len(marker) + 1 :])
        raise RuntimeError(f"the kernel did not print {marker}: {text[-500:]!r}")

    def subtree(self, model_id: str) -> set[str]:
        seen, todo = set(), [model_id]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.children.get(current, ()))
        return seen

    def messages_by_panel(self, panel_ids: list[str], after: float, *, new_status: bool = False) -> dict[str, int]:
        """comm_msg messages that reached any model of each panel since ``after`` (``new_status``: only those that
        brought it a status it did not show)."""
        owner = {model: panel for panel in panel_ids for model in self.subtree(panel)}
        counts = dict.fromkeys(panel_ids, 0)
        for arrived, model, new in self.comm_msg_models:
            if arrived > after and model in owner and (new or not new_status):
                counts[owner[model]] += 1
        return counts

    def live_since(self, panel_id: str) -> float | None:
        """When any widget of this panel first showed RUNNING (None: not yet)."""
        times = [self.running_models[m] for m in self.subtree(panel_id) if m in self.running_models]
        return min(times) if times else None

    def status_of(self, panel_id: str) -> str | None:
        """The panel's latest synced ``status``, on whichever of its models carries it (the box's older code, the
        card's since one message carries the card and the status together)."""
        for model in (panel_id, *sorted(self.subtree(panel_id) - {panel_id})):
            if model in self.statuses:
                return self.statuses[model]
        return None

    def panels_showing_running(self, panel_ids: list[str]) -> int:
        return sum(self.live_since(p) is not None for p in panel_ids)


def start_kernel(env: dict[str, str], cwd: str) -> tuple[Any, Frontend]:
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]  # this interpreter
    manager.start_kernel(env=env, cwd=cwd)  # not the caller's directory: a checkout there would shadow the package
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    return manager, Frontend(client)


def kernel_env(server: Any, ipython_dir: str) -> dict[str, str]:
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_") and k.lower() not in proxies}
    env.update(server_environ(server))
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "IPYTHONDIR": ipython_dir})
    # The local server has no agent server to stream events from: measure polling, as the test suite does.
    env.setdefault("OPENHANDS_LIVE_EVENTS", os.environ.get("OPENHANDS_LIVE_EVENTS", "0"))
    return env


# ---------------------------------------------------------------------------------------------------- one N
def measure(
    panels: int,
    seconds: float,
    warmup: float,
    cell_size: int,
    live_timeout: float,
    changes: int = 0,
    finish: bool = False,
) -> dict[str, Any]:
    running_seconds = max(3600.0, 10 * (seconds + warmup + live_timeout))
    server = start_server(panels, running_seconds)
    manager = frontend = None
    result: dict[str, Any] = {"panels": panels}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-panels-ipython-") as ipython_dir:
            manager, frontend = start_kernel(kernel_env(server, ipython_dir), ipython_dir)
            info = frontend.printed(frontend.execute(KERNEL_INFO), "BENCH-INFO")
            result["kernel"] = info
            frontend.execute("%load_ext openhands_magics")
            # The machine's own noise: the same probe in the same kernel, before any panel exists.
            frontend.execute(PROBE_START)
            frontend.listen(min(seconds, 10.0))
            result["bare_lag_ms"] = frontend.printed(frontend.execute(PROBE_READ), "BENCH-LAG")

            started = time.monotonic()
            panel_ids: list[str] = []
            errors: list[str] = []
            for first in range(0, panels, cell_size):
                cell = "\n".join(f"%openhands benchmark task {i}" for i in range(first, min(panels, first + cell_size)))
                for message in frontend.execute(cell, timeout=600):
                    data = message["content"].get("data", {})
                    view = data.get("application/vnd.jupyter.widget-view+json")
                    if message["msg_type"] == "display_data" and view:
                        panel_ids.append(view["model_id"])
                    elif message["msg_type"] == "stream" and message["content"].get("name") == "stderr":
                        errors.append(message["content"]["text"].strip())
                    elif message["msg_type"] == "error":
                        errors.append(f"{message['content'].get('ename')}: {message['content'].get('evalue')}")
            result["start_seconds"] = time.monotonic() - started
            result["posts"] = request_counts(server)["POST"]
            result["panels_shown"] = len(panel_ids)
            if errors:
                result["start_errors"] = errors[:5]
            if len(panel_ids) != panels:
                raise RuntimeError(
                    f"{len(panel_ids)} panels shown for {panels} conversations; first errors: {errors[:3]}"
                )

            deadline = time.monotonic() + live_timeout
            while frontend.panels_showing_running(panel_ids) < panels and time.monotonic() < deadline:
                frontend.listen(0.2)
            result["live_after_seconds"] = time.monotonic() - started
            result["panels_live"] = frontend.panels_showing_running(panel_ids)
            live_times = sorted(t - started for p in panel_ids if (t := frontend.live_since(p)) is not None)
            if live_times:  # seconds from the first start cell to each panel showing RUNNING
                result["live_seconds"] = {
                    "first": live_times[0],
                    "p50": live_times[len(live_times) // 2],
                    "last": live_times[-1],
                }
            if result["panels_live"] < panels:
                print(
                    f"  warning: only {result['panels_live']}/{panels} panels showed RUNNING after "
                    f"{live_timeout:g} s; measuring anyway",
                    file=sys.stderr,
                )
            frontend.listen(warmup)

            frontend.execute(PROBE_START)
            frontend.drain()
            requests_before, comm_before = request_counts(server), len(frontend.comm_msg_arrivals)
            methods_before, types_before = frontend.comm_msg_methods.copy(), frontend.msg_types.copy()
            cpu_before, cpu_source = cpu_seconds(info["pid"])
            window_start = time.monotonic()
            frontend.listen(seconds)
            window = time.monotonic() - window_start
            cpu_after, _ = cpu_seconds(info["pid"])
            requests = request_counts(server) - requests_before
            comm_msgs = len(frontend.comm_msg_arrivals) - comm_before
            statuses = server_statuses(server)
            lag = frontend.printed(frontend.execute(PROBE_READ), "BENCH-LAG")

            result.update(
                {
                    "window_seconds": window,
                    "requests": dict(requests),
                    "get_per_min": requests["GET"] * 60 / window,
                    "comm_msgs": comm_msgs,
                    "widget_msgs_per_s": comm_msgs / window,
                    "comm_msg_methods": dict(frontend.comm_msg_methods - methods_before),
                    "iopub_msg_types": dict(frontend.msg_types - types_before),
                    "loop_lag_ms": lag,
                    "kernel_cpu_seconds": cpu_after - cpu_before,
                    "kernel_cpu_percent": 100 * (cpu_after - cpu_before) / window,
                    "cpu_source": cpu_source,
                    "retry_notes_whole_run": frontend.retry_notes,
                    "server_statuses_after_window": statuses,
                }
            )
            phases: list[tuple[str, Any]] = []
            if changes:
                phases.append(("changes", lambda: change_all(server, frontend, panel_ids, live_timeout, changes)))
            if finish:
                phases.append(("finish", lambda: finish_all(server, frontend, panel_ids, live_timeout)))
            for name, phase in phases:
                try:  # (a phase that fails keeps the window's figures and the other phase's)
                    result[name] = phase()
                except Exception as error:
                    result[f"{name}_error"] = f"{type(error).__name__}: {error}"
    finally:
        if frontend is not None:
            frontend.client.stop_channels()
        if manager is not None:
            manager.shutdown_kernel(now=True)
        server.stop()
    return result


def change_all(server: Any, frontend: Frontend, panel_ids: list[str], timeout: float, changes: int) -> dict[str, Any]:
    """Change every conversation's status at once, ``changes`` times, each time waiting for every panel to show it;
    the widget messages per panel per change, and the kernel's loop lag meanwhile.

    It starts from a settled heap (one ``gc.collect()`` in the kernel first), as ``bench_feed.py`` does, for its
    reason: making the panels leaves CPython one full collection of the whole heap to pay later, whatever allocates
    next, and unsettled it landed in a change round (a 42 ms collection read as that round's lag). The collections
    inside the rounds are still counted and timed. A change phase longer than a minute also holds each panel's
    once-a-minute clock redraw (500 panels: 1.25 messages per panel per change): the messages that brought a panel
    its new status are counted apart."""
    ids = server.conversation_ids()
    frontend.execute("import gc as _bench_gc_now; _bench_gc_now.collect()")
    frontend.execute(PROBE_START)
    frontend.drain()
    started = time.monotonic()
    rounds = []
    for number in range(changes):
        wanted = "PAUSED" if number % 2 == 0 else "RUNNING"
        fields = (
            {"sandbox_status": "PAUSED"}
            if wanted == "PAUSED"
            else {"sandbox_status": "RUNNING", "execution_status": "running"}
        )
        begun = time.monotonic()
        for conversation_id in ids:
            server.set_state(conversation_id, **fields)
        deadline = begun + timeout
        while time.monotonic() < deadline:
            if sum(frontend.status_of(p) == wanted for p in panel_ids) == len(panel_ids):
                break
            frontend.listen(0.1)
        shown = sum(frontend.status_of(p) == wanted for p in panel_ids)
        frontend.listen(1.0)  # what the change sent after the status (an answer read, a late button) arrives
        rounds.append(
            {
                "to": wanted,
                "panels_shown": shown,
                "seconds": time.monotonic() - begun,
                "after": begun,
                "until": time.monotonic(),
            }
        )
    lag = frontend.printed(frontend.execute(PROBE_READ), "BENCH-LAG")
    for r in rounds:  # the worst wake-up while each change was being drawn
        r["lag_max_ms"] = max([s for t, s in lag.get("spikes", []) if r["after"] <= t <= r["until"]], default=0.0)
    per_panel = frontend.messages_by_panel(panel_ids, started)
    values = sorted(per_panel.values())
    bringing = frontend.messages_by_panel(panel_ids, started, new_status=True)
    return {
        "status_msgs_per_panel_per_change": sum(bringing.values()) / len(bringing) / changes if bringing else None,
        "rounds": [{k: v for k, v in r.items() if k not in ("after", "until")} for r in rounds],
        "loop_lag_ms": lag,
        "msgs_per_panel_per_change": sum(values) / len(values) / changes if values else None,
        "msgs_per_panel_min_max": (values[0] / changes, values[-1] / changes) if values else None,
    }


def finish_all(server: Any, frontend: Frontend, panel_ids: list[str], timeout: float) -> dict[str, Any]:
    """End every conversation at once; once the kernel watches none, how many comms and widgets are left."""
    before = frontend.printed(frontend.execute(COMMS_READ), "BENCH-COMMS")
    closes_before = frontend.comm_closes
    for conversation_id in server.conversation_ids():
        server.set_state(conversation_id, sandbox_status="RUNNING", execution_status="finished")
    deadline = time.monotonic() + timeout
    after = before
    while time.monotonic() < deadline:
        frontend.listen(1.0)
        after = frontend.printed(frontend.execute(COMMS_READ), "BENCH-COMMS")
        if after["watched"] == 0 and after["final"] == after["handles"]:
            break
    frontend.listen(2.0)  # the last closes (a panel closes once its answer was read)
    after = frontend.printed(frontend.execute(COMMS_READ), "BENCH-COMMS")
    return {
        "before": before,
        "after": after,
        "comm_closes": frontend.comm_closes - closes_before,
        "widgets_per_panel_before": before["widgets"] / len(panel_ids) if panel_ids else None,
    }


# ---------------------------------------------------------------------------------------------------- report
def _gc_text(lag: dict[str, Any]) -> str:
    """The garbage collections meanwhile, by generation, and how many of the late wake-ups (>5 ms) had one."""
    gcs = lag.get("gc") or {}
    parts = [f"gen{g} {v['count']}x max {v['max_ms']:.1f} ms" for g, v in sorted(gcs.items())]
    spikes = len(lag.get("spikes", []))
    renders = lag.get("renders", 0)
    drawn = (
        f"; {renders} panel renders took {lag['render_ms_total']:.0f} ms in all "
        f"({lag['render_ms_total'] / renders:.2f} ms each, max {lag['render_ms_max']:.1f} ms)"
        if renders
        else ""
    )
    return f"GC {', '.join(parts) or 'none'}; {lag.get('spikes_with_gc', 0)}/{spikes} late wake-ups during a GC{drawn}"


COLUMNS = ("N", "GET/min", "widget msg/s", "lag p50 ms", "lag p99 ms", "lag max ms", "kernel CPU %")


def table(results: list[dict[str, Any]]) -> str:
    rows = [COLUMNS]
    for r in results:
        if "error" in r:
            rows.append((str(r["panels"]), "failed: " + r["error"][:80], "", "", "", "", ""))
            continue
        lag = r["loop_lag_ms"]
        rows.append(
            (
                str(r["panels"]),
                f"{r['get_per_min']:.1f}",
                f"{r['widget_msgs_per_s']:.1f}",
                f"{lag.get('p50', float('nan')):.2f}",
                f"{lag.get('p99', float('nan')):.2f}",
                f"{lag.get('max', float('nan')):.1f}",
                f"{r['kernel_cpu_percent']:.1f}",
            )
        )
    extra = []
    for r in results:
        if "loop_lag_ms" in r:
            extra.append(f"N={r['panels']} window: {_gc_text(r['loop_lag_ms'])}")
        if "bare_lag_ms" in r:
            bare = r["bare_lag_ms"]
            extra.append(
                f"N={r['panels']} same kernel before any panel: lag p50 {bare.get('p50', 0):.2f} ms, "
                f"p99 {bare.get('p99', 0):.2f} ms, max {bare.get('max', 0):.1f} ms; {_gc_text(bare)}"
            )
        changes, finish = r.get("changes"), r.get("finish")
        extra.extend(
            f"N={r['panels']} {name} failed: {r[name + '_error']}"
            for name in ("changes", "finish")
            if name + "_error" in r
        )
        if changes:
            lag = changes["loop_lag_ms"]
            low, high = changes["msgs_per_panel_min_max"] or (float("nan"), float("nan"))
            extra.append(
                f"N={r['panels']} changing at once: {changes['msgs_per_panel_per_change']:.2f} widget "
                f"msgs per panel per change (min {low:.2f}, max {high:.2f}; "
                f"{changes['status_msgs_per_panel_per_change']:.2f} brought the new status, the rest redrew the "
                "same one: the minute of its clock); "
                f"loop lag p50 {lag.get('p50', 0):.2f} ms, p99 {lag.get('p99', 0):.2f} ms, "
                f"max {lag.get('max', 0):.1f} ms; {_gc_text(lag)}; rounds "
                + ", ".join(
                    f"{x['to']} {x['panels_shown']}/{r['panels']} in {x['seconds']:.1f} s "
                    f"(lag max {x['lag_max_ms']:.0f} ms)"
                    for x in changes["rounds"]
                )
            )
        if finish:
            b, a = finish["before"], finish["after"]
            extra.append(
                f"N={r['panels']} finished: comms {b['comms']} -> {a['comms']}, widgets {b['widgets']} -> "
                f"{a['widgets']} ({finish['widgets_per_panel_before']:.1f} a live panel), "
                f"{finish['comm_closes']} comm_close, {a['watched']} still watched, "
                f"{a['final']}/{a['handles']} final"
            )
    measured = [row for row in rows if not row[1].startswith("failed")]
    widths = [max(len(row[i]) for row in measured) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        if row[1].startswith("failed"):
            lines.append(f"{row[0]:>{widths[0]}}  {row[1]}")
        else:
            lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(lines + extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--panels", default="1,10,100,200", help="comma-separated panel counts (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per N (default: %(default)s)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds between all panels showing RUNNING and the window (default: %(default)s)",
    )
    parser.add_argument("--cell-size", type=int, default=50, help="%%openhands lines per cell (default: %(default)s)")
    parser.add_argument(
        "--live-timeout",
        type=float,
        default=60.0,
        help="longest wait for the panels to show RUNNING (default: %(default)s)",
    )
    parser.add_argument(
        "--changes",
        type=int,
        default=4,
        help="after the window, change every status at once this many times (default: %(default)s)",
    )
    parser.add_argument(
        "--no-finish",
        dest="finish",
        action="store_false",
        help="skip ending every conversation at once and counting the comms left",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    args = parser.parse_args()
    counts = [int(n) for n in args.panels.split(",") if n.strip()]
    if not counts or min(counts) < 1 or args.seconds <= 0 or args.cell_size < 1:
        parser.error("need panel counts >= 1, --seconds > 0 and --cell-size >= 1")

    import openhands_magics

    started = time.monotonic()
    print(
        f"openhands_magics {getattr(openhands_magics, '__version__', '?')} from {openhands_magics.__file__}; "
        f"python {platform.python_version()} ({sys.executable}); {os.cpu_count()} CPUs; "
        f"window {args.seconds:g} s, warmup {args.warmup:g} s",
        flush=True,
    )
    results = []
    for n in counts:
        print(f"N={n}: starting…", file=sys.stderr, flush=True)
        phase = time.monotonic()
        try:
            result = measure(n, args.seconds, args.warmup, args.cell_size, args.live_timeout, args.changes, args.finish)
        except Exception as error:  # one failing N must not lose the others' figures
            result = {"panels": n, "error": f"{type(error).__name__}: {error}"}
        result["phase_seconds"] = time.monotonic() - phase
        results.append(result)
        package = result.get("kernel", {}).get("package")
        if package and os.path.realpath(package) != os.path.realpath(openhands_magics.__file__):
            print(f"  warning: the kernel imported {package}, not {openhands_magics.__file__}", file=sys.stderr)
        summary = result.get("error") or (
            f"{result['panels_live']}/{n} live, started in {result['start_seconds']:.1f} s, "
            f"{result['requests']} in {result['window_seconds']:.1f} s, kernel package {package}"
        )
        print(f"N={n}: {summary} ({result['phase_seconds']:.0f} s)", file=sys.stderr, flush=True)

    print(table(results))
    total = time.monotonic() - started
    print(f"total {total:.0f} s; compare ratios within one run: the machine is shared and noisy")
    if args.json:
        payload = {
            "package": openhands_magics.__file__,
            "version": getattr(openhands_magics, "__version__", None),
            "python": sys.version,
            "executable": sys.executable,
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "cell_size": args.cell_size,
            "changes": args.changes,
            "finish": args.finish,
            "lag_probe_sleep_ms": LAG_PROBE_SLEEP * 1000,
            "total_seconds": total,
            "results": results,
        }
        with open(args.json, "w") as out:
            json.dump(payload, out, indent=2, default=str)
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
