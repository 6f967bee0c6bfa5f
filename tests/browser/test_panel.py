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
    "import os\nos.environ['OPENHANDS_LIVE_EVENTS'] = '1'  # (the live stream: the local server has an agent server)"
    "\n%load_ext openhands_magics",
    "conv = %openhands --base-url {base_url} fix the CSV loader",
)
#: What the local agent server's agent does, over its WebSocket, while it runs.
FEED_STEPS = ("pytest -q tests/test_load.py", "error:pytest failed <exit 1>", "edit:data/load.py", "pytest -q")


def test_a_running_panel_shows_its_feed_and_only_the_controls_that_apply(page, jupyterlab: JupyterLab) -> None:
    """The activity feed mid-run, as JupyterLab draws it from the local agent server's event stream, the card's
    style rule hiding the controls that do not apply (``panel-feed.png``), then the final card with its steps folded
    (``panel-feed-final.png``)."""
    from playwright.sync_api import expect

    from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline

    from .harness import NotebookPage, wait_until

    # The test holds the server's clock: the conversation stays mid-run (every step done, not finished) until the
    # live panel has been looked at, however slowly the machine draws it; then it ends.
    clock = ManualClock()
    timeline = Timeline(starting=0.5, running=12.0, steps=FEED_STEPS, cost=0.04, prompt_tokens=9000)
    server = LocalOpenHandsServer(API_KEY, api="v1", timeline=timeline, clock=clock).start()
    try:
        cells = [cell.format(base_url=server.base_url) for cell in FEED_CELLS]
        jupyterlab.write_notebook("feed.ipynb", cells)
        notebook = NotebookPage(page, jupyterlab, "feed.ipynb").open(len(cells))
        notebook.run_cell(0)
        notebook.run_cell(1)
        wait_until(lambda: server.posts() or None, 60, "the conversation to be started")
        clock.advance(timeline.starting + 0.1)
        clock.advance(timeline.running * 0.9)  # (step k of n is due at k/(n+1) of the run: all four are)
        card = notebook.card(1)
        expect(card.locator(".openhands-step", has_text="data/load.py")).to_be_visible(timeout=30_000)
        assert notebook.card_in_widget(1)
        text = card.inner_text()
        assert "$ pytest -q tests/test_load.py" in text and "steps" in text, text
        error = card.locator(".openhands-step", has_text="pytest failed")
        assert error.evaluate("e => getComputedStyle(e).color") == "rgb(197, 48, 48)"  # the error in red
        assert "<exit 1>" in error.inner_text()  # server text escaped, shown as text
        output = notebook.output(1)
        for label in ("Stop agent", "Pause", "Stop watching"):
            expect(output.get_by_role("button", name=label)).to_be_visible()
        expect(output.get_by_role("button", name="Resume")).to_be_hidden()  # in the box, hidden by the card's rule
        page.mouse.move(0, 0)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        output.screenshot(path=ARTIFACTS / "panel-feed.png")

        # It ends: the output becomes the static card, its steps folded into a collapsed "N steps".
        clock.advance(timeline.running)
        expect(card.locator(".openhands-status")).to_have_text("FINISHED", timeout=30_000)
        trajectory = card.locator("details.openhands-trajectory")
        expect(trajectory.locator("summary")).to_contain_text("steps", timeout=10_000)
        expect(trajectory.locator(".openhands-step").first).to_be_hidden()  # collapsed
        wait_until(lambda: not notebook.card_in_widget(1) or None, 15, "the saved card, no widget left")
        # (what the agent did is read once it is over, and redraws the card, closing what was opened before it)
        expect(card.locator(".openhands-results")).to_contain_text("no files changed", timeout=15_000)
        trajectory.locator("summary").click()
        expect(trajectory.locator(".openhands-step").first).to_be_visible()
        page.mouse.move(0, 0)
        output.screenshot(path=ARTIFACTS / "panel-feed-final.png")
    finally:
        server.stop()
