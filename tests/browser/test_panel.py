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


FEED_CELLS = (
    "%load_ext openhands_magics",
    "conv = %openhands --base-url {base_url} fix the CSV loader",
    """import datetime as dt, time
from openhands_magics.events import Activity, Event
from openhands_magics.models import Cost
while conv.status != "RUNNING":
    time.sleep(0.1)
now = dt.datetime.now(dt.timezone.utc)
steps = (
    Event(now, "command", "$ pytest -q tests/test_load.py"),
    Event(now, "observation", "failed (exit 1): 2 failed, 14 passed <in 0.8s>", is_error=True),
    Event(now, "thought", "thinking: the loader reads the header row twice"),
    Event(now, "edit", "edited data/load.py"),
    Event(now, "command", "$ pytest -q"),
)
time.sleep(0.6)  # (a first feed change within half a second of the last redraw waits for its turn)
conv.set_activity(Activity(steps=7, recent=steps, cost=Cost(0.0412, 9000, 1234), source="stream"))""",
)


def test_a_running_panel_shows_its_feed_and_only_the_controls_that_apply(page, jupyterlab: JupyterLab) -> None:
    """The activity feed mid-run, as JupyterLab draws it (the events fed into the handle as the stream would), and
    the card's style rule hiding the controls that do not apply: picture in ``panel-feed.png``."""
    from playwright.sync_api import expect

    from openhands_magics.testing import LocalOpenHandsServer, Timeline

    from .harness import NotebookPage

    server = LocalOpenHandsServer(API_KEY, api="v1", timeline=Timeline(starting=0.5, running=120)).start()
    try:
        cells = [cell.format(base_url=server.base_url) for cell in FEED_CELLS]
        jupyterlab.write_notebook("feed.ipynb", cells)
        notebook = NotebookPage(page, jupyterlab, "feed.ipynb").open(len(cells))
        notebook.run_cell(0)
        notebook.run_cell(1)
        notebook.run_cell(2)
        card = notebook.card(1)
        steps = card.locator(".openhands-step")
        expect(steps).to_have_count(5, timeout=15_000)
        assert notebook.card_in_widget(1)
        assert "7 steps · $0.04 · 10,234 tokens" in card.inner_text()
        assert steps.nth(1).evaluate("e => getComputedStyle(e).color") == "rgb(197, 48, 48)"  # the failure in red
        assert "<in 0.8s>" in steps.nth(1).inner_text()  # server text escaped, shown as text
        output = notebook.output(1)
        for label in ("Stop agent", "Pause", "Stop watching"):
            expect(output.get_by_role("button", name=label)).to_be_visible()
        expect(output.get_by_role("button", name="Resume")).to_be_hidden()  # in the box, hidden by the card's rule
        page.mouse.move(0, 0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        output.screenshot(path=ARTIFACTS / "panel-feed.png")
    finally:
        server.stop()
