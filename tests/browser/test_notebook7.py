"""The same panel in Notebook 7 (``jupyter notebook``): live while other cells run, a link to the server, and the
final card after saving and reopening with a new kernel. Saves ``tests/browser/artifacts/nb7-*.png`` every run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from .conftest import MISSING
from .harness import ARTIFACTS, JupyterLab, NotebookPage, run_panel_notebook, wait_until

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)


@pytest.fixture(scope="module")
def notebook7(openhands_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:  # type: ignore[no-untyped-def]
    pytest.importorskip("notebook", reason="Notebook 7 is not installed (pip install notebook)")
    with JupyterLab(
        tmp_path_factory.mktemp("notebook7"), environ=openhands_server.environ(), front_end="notebook"
    ) as app:
        yield app


def test_the_panel_is_live_in_notebook_7(page, notebook7: JupyterLab, openhands_server) -> None:  # type: ignore[no-untyped-def]
    seen = run_panel_notebook(page, notebook7, ARTIFACTS, prefix="nb7-panel")
    assert seen.rendered_by_widget and seen.later_status != seen.first_status
    assert "another cell ran" in seen.other_cell_output
    assert seen.href.startswith(openhands_server.base_url + "/") and seen.target == "_blank"


def test_a_saved_notebook_reopened_in_notebook_7_shows_the_final_card(page, notebook7: JupyterLab) -> None:  # type: ignore[no-untyped-def]
    name = "saved7.ipynb"
    notebook7.write_notebook(name, ["%load_ext openhands_magics", "%openhands say hello"])
    notebook = NotebookPage(page, notebook7, name).open(2)
    notebook.run_cell(0)
    notebook.run_cell(1)
    wait_until(lambda: notebook.badge_text(1) == "FINISHED" or None, 45, "the panel to show FINISHED")
    # The badge turns FINISHED in the live widget first; the output becomes the static card (what is saved) once
    # what the agent did is read. Save after that, not between the two.
    wait_until(lambda: not notebook.card_in_widget(1) or None, 15, "the panel to give way to the final card")
    notebook.save()  # (returns once the save completed: reading the file during it can meet it half written)
    assert "FINISHED" in (notebook7.root_dir / name).read_text()
    for kernel in json.load(notebook7._request("/api/kernels")):  # noqa: SLF001
        notebook7._request(f"/api/kernels/{kernel['id']}", method="DELETE")  # noqa: SLF001
    cells = len(json.loads((notebook7.root_dir / name).read_text())["cells"])
    reopened = NotebookPage(page, notebook7, name).open(cells)
    reopened.card(1).wait_for(timeout=20_000)
    reopened.output(1).screenshot(path=ARTIFACTS / "nb7-saved-reopened.png")
    assert "FINISHED" in reopened.output_text(1) and "model not found" not in page.content()
