"""A notebook saved after its conversation finished, reopened with a fresh kernel: the last card, never a widget error.

Saves ``tests/browser/artifacts/saved-reopened.png`` (the reopened output) every run. The file is read once the save
completed (JupyterLab's own signal): Jupyter writes a notebook in place, so a read during the save meets cut-off JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import MISSING
from .harness import ARTIFACTS, JupyterLab, NotebookPage, wait_until

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)

CELLS = ("%load_ext openhands_magics", "%openhands say hello")


def test_a_saved_notebook_reopened_with_a_new_kernel_shows_the_final_card(
    page,
    jupyterlab: JupyterLab,
    openhands_server,  # type: ignore[no-untyped-def]
) -> None:
    name = "saved.ipynb"
    jupyterlab.write_notebook(name, CELLS)
    notebook = NotebookPage(page, jupyterlab, name).open(len(CELLS))
    notebook.run_cell(0)
    notebook.run_cell(1)
    wait_until(lambda: notebook.badge_text(1) == "FINISHED" or None, 45, "the panel to show FINISHED")
    wait_until(lambda: not notebook.card_in_widget(1) or None, 10, "the widget to give way to the static card")

    notebook.save()  # returns once the file is written whole: read once, no retries
    saved = json.loads((jupyterlab.root_dir / name).read_text())
    outputs = saved["cells"][1].get("outputs", [])
    assert "FINISHED" in json.dumps(outputs), outputs
    assert all("application/vnd.jupyter.widget-view+json" not in output.get("data", {}) for output in outputs)

    for kernel in json.load(jupyterlab._request("/api/kernels")):  # noqa: SLF001 - the harness's own API helper
        jupyterlab._request(f"/api/kernels/{kernel['id']}", method="DELETE")  # noqa: SLF001
    cells = len(saved["cells"])  # (Shift+Enter may add an empty one)
    reopened = NotebookPage(page, jupyterlab, name).open(cells)  # a new kernel that knows no widget
    card = reopened.card(1)
    card.wait_for(timeout=20_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    reopened.output(1).screenshot(path=ARTIFACTS / "saved-reopened.png")
    text = reopened.output_text(1)
    assert "FINISHED" in text and "model not found" not in page.content()
    assert card.locator("a[href]").first.get_attribute("href").startswith(openhands_server.base_url)

    html = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "html", "--stdout", str(jupyterlab.root_dir / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "openhands-conversation" in html and "FINISHED" in html
