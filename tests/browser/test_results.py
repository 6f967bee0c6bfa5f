"""From a status to a result, in a real JupyterLab: what the agent did on the final card, a follow-up that runs again,
Pause / Resume and the commands, ``%openhands list`` (and ``--here`` after a kernel restart) and the done cue.

The local server's conversations leave an answer, two changed files, PR #42 and a cost, so every part of the final
card has something to show. Conversations that must stay RUNNING for a while (to click Pause, or to outlive a kernel
restart) are on servers of their own with a longer timeline, which the notebook names with ``%env``: one JupyterLab
serves the whole module. The record of conversations (``OPENHANDS_MAGICS_DATA_DIR``) is in a temp dir.

Saves ``tests/browser/artifacts/results-*.png`` every run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import API_KEY, MISSING
from .harness import ARTIFACTS, TEXT_AND_BACKGROUND_JS, JupyterLab, NotebookPage, contrast_ratio, wait_until

pytestmark = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("CI"), reason="browser tests need: " + "; ".join(MISSING)
)

FIRST_LINE = "Made load_csv 2.3x faster by reading the file in chunks."
FOLDED_LINE = "This last line is only in the folded part of the answer."
#: Markdown in three blocks: the card shows the first two (a paragraph and a list) and folds the third; the markup
#: must reach the page as text.
ANSWER = "\n".join(
    [
        FIRST_LINE,
        "",
        "- <b>not bold</b> is shown as typed, never as markup",
        "- the header is parsed once",
        "",
        "Details:",
        "",
        "- no copy of every row any more",
        "- memory use stays flat",
        "",
        FOLDED_LINE,
    ]
)
FOLLOW_UP_ANSWER = "Added demo/tests/test_load.py: three tests, all pass."
RESULTS = {
    "answer": ANSWER,
    "changes": (("UPDATED", "demo/data/load.py"), ("ADDED", "demo/tests/test_load.py")),
    "pr_numbers": (42,),
    "cost": 0.12,
    "prompt_tokens": 1000,
    "completion_tokens": 234,
}
#: Long enough to see RUNNING in the browser (a first run and a follow-up), short enough to wait for FINISHED.
RUNNING_SECONDS = 4.0
#: The cue's words at the start of the tab's title (U+25CF BLACK CIRCLE, then the final status).
CUE = "\u25cf OpenHands FINISHED"
FINISHED_BORDER = "rgb(47, 133, 90)"  # views.BADGE_COLORS["FINISHED"]

#: Every title the tab gets from now on, and whether the page has focus (the cue only marks an unfocused tab).
_RECORD_TITLES_JS = """() => {
  window.__ohTitles = [];
  new MutationObserver(() => window.__ohTitles.push(document.title))
    .observe(document.querySelector('title'), {childList: true, characterData: true, subtree: true});
  return document.hasFocus();
}"""
_BORDER_JS = "card => { const s = getComputedStyle(card); return [s.borderLeftWidth, s.borderLeftColor]; }"
#: Every status the notebook's kernel reports from now on (a restart shows as "restarting", then "idle").
_RECORD_KERNEL_JS = """() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  window.__ohKernel = {statuses: [], id: kernel.id};
  kernel.statusChanged.connect((_, status) => window.__ohKernel.statuses.push(status));
  return kernel.id;
}"""


# ---------------------------------------------------------------------------------------------------- fixtures
def _server(running: float, **results: object) -> LocalOpenHandsServer:
    return LocalOpenHandsServer(API_KEY, api="v1", timeline=Timeline(starting=1.0, running=running, **results)).start()


@pytest.fixture(scope="module")
def openhands_server() -> Iterator[LocalOpenHandsServer]:
    """Overrides conftest's: this module's default server leaves results (answer, changes, PR, cost)."""
    server = _server(RUNNING_SECONDS, **RESULTS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the kernels keep their record of conversations (``%openhands list --here`` reads it after a restart)."""
    return tmp_path_factory.mktemp("openhands-data")


@pytest.fixture(scope="module")
def jupyterlab(openhands_server, record_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:  # type: ignore[no-untyped-def]
    """Overrides conftest's: also points the record of conversations at a temp dir (never the real home)."""
    environ = {**openhands_server.environ(), "OPENHANDS_MAGICS_DATA_DIR": str(record_dir)}
    with JupyterLab(tmp_path_factory.mktemp("jupyterlab"), environ=environ) as lab:
        yield lab


# ---------------------------------------------------------------------------------------------------- helpers
def _open(page, lab: JupyterLab, name: str, cells: list[str]) -> NotebookPage:  # type: ignore[no-untyped-def]
    lab.write_notebook(name, cells)
    return NotebookPage(page, lab, name).open(len(cells))


def _env_cell(server: LocalOpenHandsServer) -> str:
    """A first cell for a notebook on a server of its own (the key is the same everywhere)."""
    return f"%load_ext openhands_magics\n%env OPENHANDS_BASE_URL={server.base_url}"


def _await_status(notebook: NotebookPage, index: int, wanted: str, timeout: float) -> None:
    """Wait for cell ``index``'s card to say ``wanted``; on timeout, fail with what the card says instead."""
    notebook.card(index).wait_for(timeout=30_000)
    try:
        wait_until(lambda: notebook.badge_text(index) == wanted or None, timeout, f"{wanted} in cell {index}")
    except TimeoutError as error:
        raise AssertionError(f"{error}; the card says {notebook.card(index).inner_text()!r}") from None


def _conversation_id(notebook: NotebookPage, index: int) -> str:
    """The id from the card's link (it appears once the start task made the conversation)."""
    link = notebook.card(index).locator("a[href*='/conversations/']").first
    link.wait_for(timeout=30_000)
    return (link.get_attribute("href") or "").rsplit("/", 1)[-1]


#: Each diff line's text and background, as the browser draws them.
_LINE_COLOURS_JS = """(diff) => Object.fromEntries([...diff.querySelectorAll('details div div')]
    .map((line) => [line.textContent, getComputedStyle(line).backgroundColor]))"""


def _shot(notebook: NotebookPage, index: int, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    notebook.page.mouse.move(0, 0)  # no hover highlight in the picture
    path = ARTIFACTS / f"results-{name}.png"
    notebook.output(index).screenshot(path=path)
    return path


def _record_titles(page) -> bool:  # type: ignore[no-untyped-def]
    """Start recording the tab's titles; make the page read as unfocused, so the cue has a tab to mark.

    Playwright's Chromium reports focus for every page, where a person's tab in the background has none: only
    ``document.hasFocus`` (what the cue asks) is made to answer False. Returns what the browser itself said."""
    had_focus = bool(page.evaluate(_RECORD_TITLES_JS))
    page.evaluate("() => { document.hasFocus = () => false; }")
    return had_focus


def _cue_titles(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [title for title in page.evaluate("window.__ohTitles") if title.startswith("\u25cf")]


# ---------------------------------------------------------------------------------------------------- the tests
def test_final_card_shows_answer_prs_changes_and_cost(page, jupyterlab: JupyterLab) -> None:  # type: ignore[no-untyped-def]
    notebook = _open(
        page,
        jupyterlab,
        "final.ipynb",
        ["%load_ext openhands_magics", "%openhands --repo octo/demo make the loader faster"],
    )
    had_focus = _record_titles(page)
    title_before = page.title()
    notebook.run_cell(0)
    notebook.run_cell(1)
    _await_status(notebook, 1, "FINISHED", 45)
    wait_until(lambda: not notebook.card_in_widget(1) or None, 15, "the panel to give way to the final card")
    card = notebook.card(1)
    # The answer is read once the turn is over, so the final card can be drawn a moment before it, then again with it.
    text = wait_until(lambda: FIRST_LINE in card.inner_text() and card.inner_text(), 15, "the answer on the final card")

    # What the agent did: the start of its answer, its pull request on GitHub, the changed files, the cost.
    assert FIRST_LINE in text and "show more" in text, text
    assert "<b>not bold</b>" in text and card.locator("b", has_text="not bold").count() == 0, text
    pr = card.locator("a", has_text="PR #42")
    assert pr.get_attribute("href") == "https://github.com/octo/demo/pull/42" and pr.get_attribute("target") == "_blank"
    assert re.search(r"2 files changed: M\s+demo/data/load\.py, A\s+demo/tests/test_load\.py", text), text
    assert "$0.12 \u00b7 1,234 tokens" in text, text
    assert card.evaluate(_BORDER_JS) == ["4px", FINISHED_BORDER]

    # The rest of the answer is folded until "show more" is clicked.
    folded = card.locator(".openhands-answer details > div")
    assert FOLDED_LINE in folded.text_content() and not folded.is_visible()
    assert FOLDED_LINE not in card.locator(".openhands-answer").inner_text()
    card.get_by_text("show more").click()
    folded.wait_for(state="visible", timeout=5000)
    opened = card.inner_text()
    assert FOLDED_LINE in folded.inner_text() and FOLDED_LINE in opened, opened
    assert opened.count(FIRST_LINE) == 1, f"the opened answer shows its first lines twice: {opened!r}"
    switch = card.locator(".openhands-answer summary").inner_text()
    assert "show less" in switch and "show more" not in switch, switch  # what it reads once open

    # The files line opens the diff in place: a section per file, added lines green, removed ones red.
    switch = card.locator("details.openhands-files > summary")
    diff = card.locator("details.openhands-files .openhands-diff")
    assert "show the diff" in switch.inner_text() and not diff.is_visible()
    switch.get_by_text("show the diff").click()
    diff.wait_for(state="visible", timeout=5000)
    assert "hide the diff" in switch.inner_text()
    sections = diff.locator("details")
    assert sections.count() == 2 and "demo/data/load.py" in sections.nth(0).inner_text()
    colours = diff.evaluate(_LINE_COLOURS_JS)
    assert colours["+new line"] == "rgba(46, 160, 67, 0.22)" and colours["-old line"] == "rgba(248, 81, 73, 0.22)"
    _shot(notebook, 1, "final-card")

    # Told when it is done: the tab's title is marked while the page has no focus, and given back on focus.
    cues = wait_until(lambda: _cue_titles(page), 10, f"a title starting with {CUE!r} (had focus: {had_focus})")
    assert cues[0].startswith(CUE) and "make the loader faster" in cues[0], cues
    page.evaluate("() => window.dispatchEvent(new Event('focus'))")
    assert page.title() == title_before, (page.title(), title_before)


#: The live panel's title, link and details, each with the colour behind it, read in one synchronous function: the
#: panel redraws on each update, so a card looked up first and measured after could be detached, its colours empty.
_LIVE_PARTS_JS = f"""output => {{
  const card = output.querySelector('.openhands-conversation:not(.openhands-copy)');
  const measure = {TEXT_AND_BACKGROUND_JS};
  return {{title: measure(card.querySelector('b')), link: measure(card.querySelector('a')),
          details: measure(card.querySelector('div'))}};
}}"""


def test_the_live_panel_and_the_final_card_are_readable_in_the_dark_theme(  # type: ignore[no-untyped-def]
    browser, openhands_server, record_dir: Path, tmp_path
) -> None:
    environ = {**openhands_server.environ(), "OPENHANDS_MAGICS_DATA_DIR": str(record_dir)}
    with JupyterLab(tmp_path / "dark", environ=environ, dark=True) as lab:
        page = browser.new_page()
        try:
            notebook = _open(
                page,
                lab,
                "dark.ipynb",
                ["%load_ext openhands_magics", "%openhands --repo octo/demo make the loader faster"],
            )
            notebook.run_cell(0)
            notebook.run_cell(1)
            notebook.card(1).locator("a[href]").first.wait_for(timeout=30_000)
            live = {f"live {name}": pair for name, pair in notebook.output(1).evaluate(_LIVE_PARTS_JS).items()}
            _shot(notebook, 1, "live-card-dark")
            _await_status(notebook, 1, "FINISHED", 45)
            wait_until(lambda: not notebook.card_in_widget(1) or None, 15, "the panel to give way to the final card")
            card = notebook.card(1)
            card.get_by_text("show more").click()
            card.locator(".openhands-answer details > div").wait_for(state="visible", timeout=5000)
            parts = {
                "answer": ".openhands-answer",
                "unfolded answer": ".openhands-answer details > div",
                "show more": ".openhands-answer summary",
                "PR link": ".openhands-results a",
                "changed file": ".openhands-results code",
            }
            final = {
                name: card.locator(selector).first.evaluate(TEXT_AND_BACKGROUND_JS) for name, selector in parts.items()
            }
            _shot(notebook, 1, "final-card-dark")
        finally:
            page.close()
    # Body text to WCAG AA (4.5); the muted "show more" and the live panel's secondary lines as secondary text (3).
    colors = {**live, **final}
    for name, (foreground, background) in colors.items():
        floor = 4.5 if name in ("answer", "unfolded answer", "PR link", "changed file") else 3.0
        assert contrast_ratio(foreground, background) >= floor, (name, colors)


def test_follow_up_runs_again_and_finishes_again(page, jupyterlab: JupyterLab, openhands_server) -> None:  # type: ignore[no-untyped-def]
    cells = [
        "%load_ext openhands_magics",
        "%openhands make the loader faster",
        "%config OpenHandsMagics.notify = False",
        "%%openhands --continue\nnow add tests",
    ]
    notebook = _open(page, jupyterlab, "follow-up.ipynb", cells)
    _record_titles(page)
    notebook.run_cell(0)
    notebook.run_cell(1)
    conversation_id = _conversation_id(notebook, 1)
    _await_status(notebook, 1, "FINISHED", 45)
    wait_until(lambda: _cue_titles(page), 10, "the done cue of the first run")
    page.evaluate("() => window.dispatchEvent(new Event('focus'))")
    openhands_server.set_result(conversation_id, answer=FOLLOW_UP_ANSWER)  # the next run says something else
    notebook.run_cell(2)

    notebook.run_cell(3)
    notebook.card(3).wait_for(timeout=30_000)
    # (the follow-up runs 2 s: its RUNNING and where it is drawn are read together, before its final card comes)
    _, live = wait_until(
        lambda: (seen := notebook.badge_in_widget(3))[0] == "RUNNING" and seen, 10, "RUNNING in cell 3"
    )
    assert live, "the follow-up's panel is not live"
    _shot(notebook, 3, "follow-up-running")
    _await_status(notebook, 3, "FINISHED", 30)
    wait_until(lambda: not notebook.card_in_widget(3) or None, 15, "the follow-up's final card")
    follow_up = notebook.card(3).inner_text()
    assert FOLLOW_UP_ANSWER in follow_up and FIRST_LINE not in follow_up, follow_up
    assert conversation_id in (notebook.card(3).locator("a[href*='/conversations/']").get_attribute("href") or "")
    _shot(notebook, 3, "follow-up-finished")
    # The first run's card is as it ended; notify = False left the tab's title alone this time.
    assert notebook.badge_text(1) == "FINISHED" and FIRST_LINE in notebook.card(1).inner_text()
    assert len(_cue_titles(page)) == 1, page.evaluate("window.__ohTitles")


def test_pause_and_resume_buttons_and_commands_and_list(page, jupyterlab: JupyterLab) -> None:  # type: ignore[no-untyped-def]
    server = _server(60.0)  # the agent works for a minute: time to pause it and go on
    try:
        cells = [
            _env_cell(server),
            "conv = %openhands keep working for a minute",
            'get_ipython().run_line_magic("openhands", f"pause {conv.id}")',
            'get_ipython().run_line_magic("openhands", f"resume {conv.id}")',
            "%openhands list",
            'get_ipython().run_line_magic("openhands", f"delete {conv.id} --yes")',
            "%openhands list",
        ]
        notebook = _open(page, jupyterlab, "steer.ipynb", cells)
        notebook.run_cell(0)
        notebook.run_cell(1)
        conversation_id = _conversation_id(notebook, 1)
        _await_status(notebook, 1, "RUNNING", 15)
        output = notebook.output(1)
        pause, resume = (output.get_by_role("button", name=name, exact=True) for name in ("Pause", "Resume"))
        assert pause.is_visible() and not resume.is_visible()

        pause.click(timeout=10_000)
        _await_status(notebook, 1, "PAUSED", 15)
        resume.wait_for(state="visible", timeout=10_000)
        assert not pause.is_visible() and server.state_of(conversation_id)["sandbox_status"] == "PAUSED"
        _shot(notebook, 1, "paused")
        resume.click(timeout=10_000)
        _await_status(notebook, 1, "RUNNING", 15)
        pause.wait_for(state="visible", timeout=10_000)
        assert not resume.is_visible() and server.state_of(conversation_id)["execution_status"] == "running"

        # The same through the commands: one line each, and the panel follows.
        assert notebook.run_cell(2).strip().startswith(f"openhands: paused {conversation_id}")
        _await_status(notebook, 1, "PAUSED", 10)
        assert notebook.run_cell(3).strip().startswith(f"openhands: resumed {conversation_id}")
        _await_status(notebook, 1, "RUNNING", 10)

        notebook.run_cell(4)
        table = notebook.output(4).locator("table.openhands-conversations")
        table.wait_for(timeout=10_000)
        row = table.locator("tbody tr")
        assert row.count() == 1 and row.locator("code").get_attribute("title") == conversation_id
        assert row.locator(".openhands-status").inner_text() == "RUNNING"
        link = row.locator("a[href]").first.get_attribute("href")  # (the title is the link)
        assert link == f"{server.base_url}/conversations/{conversation_id}", link
        _shot(notebook, 4, "list")

        assert notebook.run_cell(5).strip() == f"openhands: deleted {conversation_id}."
        assert conversation_id not in server.conversation_ids()
        _await_status(notebook, 1, "DELETED", 10)  # the live panel ends on what happened to it
        assert "No conversations." in notebook.run_cell(6)
    finally:
        server.stop()


def test_list_here_after_a_kernel_restart_brings_the_panel_back(page, jupyterlab: JupyterLab, record_dir: Path) -> None:  # type: ignore[no-untyped-def]
    server = _server(20.0)  # outlives the restart, then finishes while the test watches
    try:
        cells = [_env_cell(server), "%openhands outlive the kernel", f"{_env_cell(server)}\n%openhands list --here"]
        notebook = _open(page, jupyterlab, "restart.ipynb", cells)
        notebook.run_cell(0)
        notebook.run_cell(1)
        conversation_id = _conversation_id(notebook, 1)
        # The kernel's writer thread appends the line that names the conversation a moment after the card shows it
        # (its queue gathers for 50 ms; the package's own readers have it written first, this test reads the file).
        wait_until(lambda: _recorded(record_dir, conversation_id, "restart.ipynb") or None, 10, "the record's line")

        _restart_kernel(notebook)
        out = notebook.run_cell(2)
        assert notebook.cell(2).locator(".jp-InputArea-prompt").inner_text().strip() == "[1]:", "no new kernel"
        _await_status(notebook, 2, "RUNNING", 10)
        assert notebook.card_in_widget(2), "the panel brought back is not live"
        table = notebook.output(2).locator("table.openhands-conversations")
        assert table.locator(f"code[title='{conversation_id}']").count() == 1, out
        assert "1 watched again" in table.locator("caption").inner_text()
        _shot(notebook, 2, "list-here")
        _await_status(notebook, 2, "FINISHED", 35)
    finally:
        server.stop()


def _recorded(record_dir: Path, conversation_id: str, notebook: str) -> bool:
    """Whether the record on disk has a line naming the conversation and the notebook it was started from."""
    lines = (record_dir / "conversations.jsonl").read_text().splitlines()
    return any(conversation_id in line and notebook in line for line in lines)


def _restart_kernel(notebook: NotebookPage) -> None:
    """Kernel menu → "Restart Kernel…" → "Restart", as a person does; wait until the front end has the new kernel."""
    page = notebook.page
    kernel_id = page.evaluate(_RECORD_KERNEL_JS)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Kernel$")).click(timeout=10_000)
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Restart Kernel…$")).click(timeout=10_000)
    page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept", has_text="Restart").click(timeout=10_000)
    wait_until(lambda: "restarting" in page.evaluate("window.__ohKernel.statuses") or None, 30, "the kernel to restart")
    page.wait_for_function(
        """id => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                   return k && k.id === id && k.connectionStatus === 'connected' && k.status === 'idle'; }""",
        arg=kernel_id,
        timeout=60_000,
        polling=100,
    )
