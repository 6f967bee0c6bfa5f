"""Fixtures for the real-browser tests: a local OpenHands server, JupyterLab pointed at it, and headless Chromium.

The server, JupyterLab and the browser are started once per module; each test gets a fresh page. When a test
fails, its page's screenshot, console and the JupyterLab log are kept in ``tests/browser/artifacts/``.
Tests here are skipped (see ``test_*.py``'s ``pytestmark``) when Chromium, jupyterlab or playwright is missing,
except under CI (``CI`` set), where ``.ci/run`` installs them and their absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from .harness import ARTIFACTS, ConsoleLog, JupyterLab, launch_chromium, missing_requirements, start_openhands_server

#: The key the local server expects; it reaches the kernels only through OPENHANDS_API_KEY.
API_KEY = "sk-oh-browser-test-key"
#: Seconds a conversation spends starting, then running: long enough to see a first status, short enough to wait on.
STATUS_SECONDS = 2.0

MISSING = missing_requirements()
_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell at teardown whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report


def _require_browser_tools() -> None:
    if MISSING:
        if os.environ.get("CI"):  # .ci/run installs them: a CI run without them must not pass by skipping
            pytest.fail("browser tests need: " + "; ".join(MISSING))
        pytest.skip("browser tests need: " + "; ".join(MISSING))


@pytest.fixture(scope="module")
def openhands_server() -> Iterator[object]:
    _require_browser_tools()
    server = start_openhands_server(API_KEY, STATUS_SECONDS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def jupyterlab(openhands_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab on 127.0.0.1 whose kernels inherit OPENHANDS_BASE_URL / OPENHANDS_API_KEY for the local server."""
    lab = JupyterLab(tmp_path_factory.mktemp("jupyterlab"), environ=openhands_server.environ())
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser_tools()
    with launch_chromium() as context:
        yield context


@pytest.fixture
def page(browser, jupyterlab: JupyterLab, request: pytest.FixtureRequest) -> Iterator[object]:
    page = browser.new_page()
    console = ConsoleLog().attach(page)
    try:
        yield page
    finally:
        reports = request.node.stash.get(_REPORTS, {})
        if any(report.failed for report in reports.values()):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = f"FAILED-{request.node.name}"
            try:
                page.screenshot(path=ARTIFACTS / f"{stem}.png", timeout=10_000)
            except Exception as error:  # the evidence must not hide the failure
                (ARTIFACTS / f"{stem}.screenshot-error.txt").write_text(repr(error))
            (ARTIFACTS / f"{stem}.console.txt").write_text(console.text())
            shutil.copyfile(jupyterlab.log_path, ARTIFACTS / f"{stem}.jupyterlab.log")
        page.close()
