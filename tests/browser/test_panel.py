"""The %openhands panel in a real JupyterLab, in headless Chromium.

Always saves pictures of the panel in ``tests/browser/artifacts/``: ``panel-output-first.png`` (the output area when
the card first shows), ``panel-output.png`` (after its status changed) and ``panel-page.png`` (the whole page).
Status names are not asserted exactly: only that the badge has text and that it changes on its own.
"""

from __future__ import annotations

import os

import pytest

from .conftest import API_KEY, MISSING
from .harness import ARTIFACTS, JupyterLab, run_panel_notebook

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)


def test_panel_shows_a_live_card_with_a_link_to_the_server(page, jupyterlab: JupyterLab, openhands_server) -> None:
    seen = run_panel_notebook(page, jupyterlab, ARTIFACTS, prefix="panel")

    assert "Error" not in seen.load_ext_output and "openhands:" not in seen.load_ext_output, seen.load_ext_output
    # The live ipywidgets panel drew the card, not the static text/html fallback of a front end without widgets.
    assert seen.rendered_by_widget, f"the card is not inside a widget view: {seen.card_text!r}"
    assert seen.first_status and seen.later_status and seen.later_status != seen.first_status
    assert "another cell ran" in seen.other_cell_output
    # The link opens the conversation on the server it was started on, in a new tab.
    assert seen.href and seen.href.startswith(openhands_server.base_url + "/"), seen.href
    assert seen.target == "_blank"
    assert API_KEY not in seen.card_text
    for path in seen.screenshots.values():
        assert path.is_file() and path.stat().st_size > 1000, path
