"""In a real ipykernel: a fan-out goes on while another cell computes (the kernel's own loop blocked), and its final
grid reaches the front end before that cell ends. (The queue runs in the I/O thread; ipykernel sends display
messages from any thread.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openhands_magics.testing import LocalOpenHandsServer

from .test_kernel import KernelSession, kernel, kernel_server  # noqa: F401 - fixtures, used by name

#: Starts Jupyter kernels in other processes: CI runs these on one Python only (docs/development.md).
pytestmark = pytest.mark.kernel


def test_a_fan_outs_final_grid_reaches_the_front_end_while_another_cell_computes(
    kernel: KernelSession,
    kernel_server: LocalOpenHandsServer,
    tmp_path: Path,  # noqa: F811
) -> None:
    flag = tmp_path / "go"
    outputs, _ = kernel.execute('batch = openhands_magics.map("task {item}", ["a", "b", "c"], max_running=1)\nbatch')
    (shown,) = [m for m in outputs if m["msg_type"] == "display_data"]
    display_id = shown["content"]["transient"]["display_id"]
    busy = kernel.client.execute(f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)")

    def final_grid() -> bool:
        return any(
            m["msg_type"] == "update_display_data"
            and m["content"].get("transient", {}).get("display_id") == display_id
            and "3/3 finished" in str(m["content"]["data"].get("text/html", ""))
            for m in kernel.messages
        )

    try:
        kernel.listen_until(final_grid, timeout=40, what="the final grid while the cell computes")
        ended = [
            m
            for m in kernel.messages
            if m["parent_header"].get("msg_id") == busy
            and m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
        ]
        assert not ended  # the computing cell was still running when the final grid arrived
    finally:
        flag.touch()
    deadline = time.monotonic() + 20
    while (reply := kernel.client.get_shell_msg(timeout=20))["parent_header"].get("msg_id") != busy:
        assert time.monotonic() < deadline
    assert reply["content"]["status"] == "ok"
    assert kernel.printed("print(batch.summary)").strip() == "3/3 finished · 0 running · 0 queued · 0 failed"
    kernel.execute("openhands_magics.get_session().close()")
