"""The harness's own readings, on a page of its own (no JupyterLab): what the other browser tests decide by must be
true of the page at one instant."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .conftest import MISSING
from .harness import NotebookPage

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)

#: A notebook's first cell whose output is a widget view, as JupyterLab nests them.
_CELL = (
    '<div class="jp-NotebookPanel"><div class="jp-Notebook"><div class="jp-Cell"><div class="jp-Cell-outputArea">'
    '<div class="jupyter-widgets widget-html" id="view"></div></div></div></div></div>'
)
#: The view redrawn as ipywidgets' HTML view does (its content replaced), as fast as the page can.
_REDRAWING_JS = """() => {
  const view = document.getElementById('view');
  const draw = () => {
    view.innerHTML = '<div class="openhands-conversation"><span class="openhands-status">RUNNING</span></div>';
  };
  draw();
  window.__redraws = 0;
  const again = () => { draw(); window.__redraws += 1; setTimeout(again, 0); };
  again();
}"""


@pytest.fixture
def bare_page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()


def test_a_card_redrawn_by_its_widget_is_read_as_drawn_by_it_every_time(bare_page) -> None:  # type: ignore[no-untyped-def]
    # (A card found first and read in a second step is read detached when a redraw comes between: inside no widget,
    # which once made a test save a notebook while its panel was still live.)
    bare_page.set_content(_CELL)
    bare_page.evaluate(_REDRAWING_JS)
    notebook = NotebookPage(bare_page, None, "none.ipynb")  # type: ignore[arg-type]

    readings = {notebook.badge_in_widget(0) for _ in range(100)}

    assert readings == {("RUNNING", True)}
    assert bare_page.evaluate("() => window.__redraws") > 100
