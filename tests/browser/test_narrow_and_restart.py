"""A JupyterLab 800 px wide (the width of half a laptop screen, or one side of a side-by-side layout), and a kernel
restart under a live panel, each checked through the UI and looked at.

Saves every run, in ``tests/browser/artifacts/``: ``narrow-800.png`` (the page: a live panel and the list),
``restart-800.png`` (the old panel after the kernel restarted) and ``reopened-800.png`` (that notebook saved,
closed and opened again with a new kernel). The module's server holds its clock: the conversations stay RUNNING
however slowly the page draws.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from .conftest import API_KEY, MISSING
from .harness import ARTIFACTS, JupyterLab, NotebookPage, wait_until

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)

WIDTH, HEIGHT = 800, 720
TASK = "Make the CSV loader read every date column as UTC and rerun the loader's tests"

#: How far the content of an element reaches past its right edge (0: nothing clipped or scrolled away).
_OVERFLOW_JS = "el => el.scrollWidth - el.clientWidth"
_KERNEL_IDLE_JS = """() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""


@pytest.fixture(scope="module")
def held_server() -> Iterator[object]:
    from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline

    clock = ManualClock()
    server = LocalOpenHandsServer(API_KEY, api="v1", timeline=Timeline(starting=0.5, running=600.0), clock=clock)
    server.start()
    server.clock = clock  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _running_panel(page, lab: JupyterLab, server, name: str, cells: list[str]) -> NotebookPage:  # type: ignore[no-untyped-def]
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    lab.write_notebook(name, cells)
    notebook = NotebookPage(page, lab, name).open(len(cells))
    before = len(server.posts())
    notebook.run_cell(0)
    notebook.run_cell(1)
    wait_until(lambda: len(server.posts()) > before or None, 60, "the conversation to be started")
    server.clock.advance(1.0)  # started; it runs (the clock holds it there)
    wait_until(lambda: notebook.badge_text(1) == "RUNNING" or None, 30, "the panel to say RUNNING")
    notebook.card(1).locator("a[href]").first.wait_for(timeout=30_000)
    return notebook


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=ARTIFACTS / name)


def test_at_800_px_the_panel_and_the_list_fit_their_output_and_fold_what_is_secondary(
    page, jupyterlab: JupyterLab, held_server
) -> None:  # type: ignore[no-untyped-def]
    # (a repository, so the list's row has a line to fold whenever it is drawn: the running agent's cost comes with
    # its stream, and a list drawn before that, on a loaded machine, had nothing to fold)
    cells = ["%load_ext openhands_magics", f"%openhands --base-url {held_server.base_url} --repo octo/loader {TASK}",
             f"%openhands --base-url {held_server.base_url} list"]  # fmt: skip
    notebook = _running_panel(page, jupyterlab, held_server, "narrow.ipynb", cells)
    notebook.run_cell(2)
    card, output = notebook.card(1), notebook.output(1)
    assert notebook.card_in_widget(1)

    # The link reads as the task's first words (no title yet: the server's placeholder is no name), the URL on hover.
    link = card.locator("a[href]").first
    assert (
        link.inner_text().startswith("Make the CSV loader read every date") and "Conversation" not in link.inner_text()
    )
    assert link.get_attribute("title") == link.get_attribute("href")
    assert link.get_attribute("href").startswith(f"{held_server.base_url}/conversations/")
    # Nothing of the panel is clipped or scrolled away: the card wraps, the buttons sit under it, inside the output.
    area = output.locator(".jp-OutputArea-output").first
    assert area.evaluate(_OVERFLOW_JS) <= 1, "the panel is wider than its output"
    right = area.bounding_box()["x"] + area.bounding_box()["width"]
    card_box = card.bounding_box()
    for label in ("Stop agent", "Pause", "Stop watching"):
        button = output.get_by_role("button", name=label).bounding_box()
        assert button["x"] + button["width"] <= right + 1, label
        assert button["y"] >= card_box["y"] + card_box["height"] - 1, f"{label} is not under the card"
    assert link.bounding_box()["x"] + link.bounding_box()["width"] <= right + 1
    # The id is short on screen and whole on hover; the saved copy beside the panel is hidden while it lives.
    ident = card.locator("code.openhands-id").first
    assert len(ident.get_attribute("title")) == 32 and ident.bounding_box()["width"] < 100
    assert notebook.copy(1).count() == 1 and notebook.copy(1).is_hidden()

    # The list: the title and the time stay, repository, PR and cost fold into a line under the title.
    table = notebook.output(2).locator("table.openhands-conversations")
    assert (
        table.locator("th", has_text="repository").is_hidden() and table.locator("th", has_text="created").is_visible()
    )
    fold = table.locator(".oh-fold").first
    assert fold.is_visible() and "octo/loader" in fold.inner_text()
    assert notebook.output(2).locator(".jp-OutputArea-output").first.evaluate(_OVERFLOW_JS) <= 1
    assert table.locator("a[href]").first.inner_text().startswith("Make the CSV loader")
    assert "UTC" in table.locator("td span[title]").first.get_attribute("title")
    _shot(page, "narrow-800.png")


def test_after_a_kernel_restart_the_old_panel_says_what_it_last_saw_and_reopened_shows_a_card(
    page, jupyterlab: JupyterLab, held_server
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    name = "restart.ipynb"
    cells = ["%load_ext openhands_magics", f"%openhands --base-url {held_server.base_url} {TASK}"]
    notebook = _running_panel(page, jupyterlab, held_server, name, cells)
    # The saved copy beside the panel is an output of its own, updated after the badge: on a loaded machine it can
    # still be on its way when the badge says RUNNING (CI: the restart then met "last seen STARTING").
    copy = notebook.copy(1)
    wait_until(lambda: "RUNNING" in (copy.text_content(timeout=5000) or "") or None, 30, "the copy to say RUNNING")
    card, output = notebook.card(1), notebook.output(1)
    stale = card.locator(".openhands-last-seen")
    expect(stale).to_be_hidden()

    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    page.wait_for_function(_KERNEL_IDLE_JS, timeout=60_000, polling=100)
    # The old panel no longer claims a live status: its last known state, as such, and no controls.
    expect(stale).to_be_visible(timeout=10_000)
    assert "last seen RUNNING at" in stale.inner_text() and "--reattach" in stale.inner_text()
    expect(card.locator(".oh-live")).to_be_hidden()
    for label in ("Stop agent", "Pause", "Stop watching"):
        expect(output.get_by_role("button", name=label)).to_be_hidden()
    _shot(page, "restart-800.png")

    notebook.save()
    saved = json.loads((jupyterlab.root_dir / name).read_text())
    for kernel in json.load(jupyterlab._request("/api/kernels")):  # noqa: SLF001 - the harness's own API helper
        jupyterlab._request(f"/api/kernels/{kernel['id']}", method="DELETE")  # noqa: SLF001
    reopened = NotebookPage(page, jupyterlab, name).open(len(saved["cells"]))  # a new kernel that knows no widget
    shown = reopened.output(1).locator(".openhands-conversation:visible")
    expect(shown).to_have_count(1, timeout=20_000)
    assert "last seen RUNNING" in shown.inner_text()
    assert shown.locator("a[href]").first.get_attribute("href").startswith(held_server.base_url)
    expect(reopened.output(1).get_by_text("Error displaying widget")).to_be_hidden()
    assert "Error displaying widget" not in reopened.output(1).inner_text()
    _shot(page, "reopened-800.png")
