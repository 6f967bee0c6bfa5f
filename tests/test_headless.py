"""Notebooks executed with no one watching (``jupyter nbconvert --execute``, ``papermill``): a plain ``%openhands``
cell waits for the final status by itself, so the saved notebook records it, as the final card, not a widget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET

#: Starts Jupyter kernels in other processes: CI runs these on one Python only (docs/development.md).
pytestmark = pytest.mark.kernel

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "run.ipynb"
    cells = ["%load_ext openhands_magics", "%openhands Clean up the CSV loader"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    return path


@pytest.fixture
def environ(tmp_path: Path) -> Iterator[dict[str, str]]:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.5, running=1.0)) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
        env.update(server.environ())
        env["IPYTHONDIR"] = str(tmp_path / "ipython")  # no profile of the developer's
        yield env


def _openhands_outputs(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"][1]["outputs"]


def _assert_final_recorded(outputs: list[dict]) -> None:
    printed = "".join(
        "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        for o in outputs
        if o["output_type"] == "stream" and o["name"] == "stdout"
    )
    lines = printed.splitlines()
    assert "FINISHED" in lines[-2] and lines[-1].endswith(": answer: Done.")  # the --wait log ends with the answer
    cards = [o for o in outputs if o["output_type"] == "display_data"]
    assert cards and all(WIDGET not in o["data"] for o in cards)  # the final card, not a widget
    assert "FINISHED" in "".join(cards[0]["data"]["text/html"]) and "FINISHED" in "".join(
        cards[0]["data"]["text/plain"]
    )
    assert SECRET not in json.dumps(outputs)


def test_nbconvert_execute_records_the_final_status(notebook: Path, environ: dict[str, str]) -> None:
    out = notebook.with_name("out.ipynb")
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--output", out.name, str(notebook)],
        env=environ,
        check=True,
        capture_output=True,
        timeout=120,
    )
    _assert_final_recorded(_openhands_outputs(out))


def test_papermill_records_the_final_status(notebook: Path, environ: dict[str, str]) -> None:
    out = notebook.with_name("out.ipynb")
    subprocess.run(
        [sys.executable, "-m", "papermill", "--kernel", "python3", str(notebook), str(out)],
        env=environ,
        check=True,
        capture_output=True,
        timeout=120,
    )
    _assert_final_recorded(_openhands_outputs(out))


def test_the_setting_turns_it_off(notebook: Path, environ: dict[str, str]) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[0].source = "%load_ext openhands_magics\n%config OpenHandsMagics.headless_wait = False"
    nbformat.write(nb, notebook)
    out = notebook.with_name("out.ipynb")
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--output", out.name, str(notebook)],
        env=environ,
        check=True,
        capture_output=True,
        timeout=120,
    )
    outputs = _openhands_outputs(out)
    assert not any(o["output_type"] == "stream" for o in outputs)  # no wait, no log of changes
    assert "FINISHED" not in json.dumps(outputs)


def test_a_fan_out_cell_waits_for_its_batch_and_the_saved_notebook_holds_the_final_grid(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    path = tmp_path / "fan-out.ipynb"
    cells = [
        "%load_ext openhands_magics",
        'files = ["a.py", "b.py", "c.py"]',
        "%%openhands --map files --max-running 2\nFix the lint errors in {item}",
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    out = path.with_name("out.ipynb")
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "--output", out.name, str(path)],
        env=environ,
        check=True,
        capture_output=True,
        timeout=120,
    )

    outputs = json.loads(out.read_text())["cells"][2]["outputs"]
    grids = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(grids) == 1 and WIDGET not in grids[0]["data"]  # the final grid, not a widget that needs a kernel
    html = "".join(grids[0]["data"]["text/html"])
    assert "3/3 finished · 0 running · 0 queued · 0 failed" in html and html.count(">FINISHED<") == 3
    printed = "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")
    assert printed.strip().splitlines()[-1] == "3/3 finished · 0 running · 0 queued · 0 failed"
    assert SECRET not in json.dumps(outputs)
