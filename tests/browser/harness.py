"""A real-browser harness: a local OpenHands server, JupyterLab on 127.0.0.1, and headless Chromium (Playwright).

Used by ``conftest.py`` (pytest fixtures) and ``screenshot.py`` (a script for a person who wants to look), so both
drive JupyterLab the same way: write a notebook into the server's root dir, open it, run its cells through the UI
(click a cell, press Shift+Enter) and read what the page shows.

Nothing here talks to an outside host: the OpenHands server, JupyterLab and its kernels are on 127.0.0.1, and
Chromium runs with its background networking off. Every wait waits on a real condition and is bounded; the only
sleeps are short polls. Playwright is imported lazily, so this module imports on a machine without it (the tests
are then skipped with the reason :func:`missing_requirements` gives).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

    from openhands_magics.testing import LocalOpenHandsServer

__all__ = [
    "ARTIFACTS",
    "CHROMIUM_ARGS",
    "JupyterLab",
    "NotebookPage",
    "PanelObservation",
    "find_chromium",
    "launch_chromium",
    "missing_requirements",
    "run_panel_notebook",
    "start_openhands_server",
]

#: Where screenshots (always, from the panel test) and failure evidence (screenshot, console, JupyterLab log) go.
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

#: Without the background-networking flags Chromium tries outside hosts (updates, sync, field trials) and is refused.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

#: Environment variable naming a Chromium binary, if it is not ``chromium`` on PATH.
CHROMIUM_ENV = "OPENHANDS_TEST_CHROMIUM"

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------- requirements
def find_chromium() -> str | None:
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_requirements() -> list[str]:
    """Why the browser tests cannot run here (empty when they can)."""
    missing = []
    if find_chromium() is None:
        missing.append(f"no Chromium (apt-get install -y chromium, or set {CHROMIUM_ENV})")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("jupyterlab is not installed (pip install jupyterlab)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright is not installed (pip install playwright; its own browser download is not needed)")
    return missing


# ---------------------------------------------------------------------------------------------------- small helpers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, poll: float = 0.1) -> T:
    """Call ``probe`` until it returns something truthy; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (JupyterLab's kernels run in sessions of their own, so not in its group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# ---------------------------------------------------------------------------------------------------- OpenHands
def start_openhands_server(api_key: str, seconds: float) -> LocalOpenHandsServer:
    """A started local OpenHands server whose conversations spend ``seconds`` starting and ``seconds`` running.

    Works with both server APIs: ``Timeline`` (newer: ``api="v1", timeline=Timeline(...)``) when the package has it,
    else the ``schedule`` of (status, seconds) pairs.
    """
    from openhands_magics.testing import LocalOpenHandsServer

    try:
        from openhands_magics.testing import Timeline  # type: ignore[attr-defined]
    except ImportError:
        server = LocalOpenHandsServer(
            api_key, schedule=(("STARTING", seconds), ("RUNNING", seconds), ("STOPPED", None))
        )
    else:
        server = LocalOpenHandsServer(api_key, api="v1", timeline=Timeline(starting=seconds, running=seconds))  # type: ignore[call-arg]
    return server.start()


# ---------------------------------------------------------------------------------------------------- JupyterLab
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


class JupyterLab:
    """``python -m jupyterlab`` on 127.0.0.1 with a random token, in a directory of its own.

    Its config, data, runtime, settings and workspace dirs are all inside ``base_dir``, so a developer's own Jupyter
    setup (themes, open tabs, kernels) does not leak in; ``environ`` is added to its environment, and so to every
    kernel it starts (that is how ``%openhands`` finds the local server). ``dark=True`` selects JupyterLab Dark.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        environ: dict[str, str] | None = None,
        dark: bool = False,
        startup_timeout: float = 90.0,
        front_end: str = "lab",
    ) -> None:
        self._own_base = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix="openhands-jupyterlab-")) if base_dir is None else Path(base_dir)
        self.root_dir = self.base_dir / "root"
        self.settings_dir = self.base_dir / "settings"
        self.log_path = self.base_dir / "jupyterlab.log"
        self.environ = dict(environ or {})
        self.dark = dark
        self.startup_timeout = startup_timeout
        #: "lab" (JupyterLab) or "notebook" (Notebook 7: the same server and components, another shell).
        self.front_end = front_end
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -------------------------------------------------------------------------------- lifecycle
    def start(self) -> JupyterLab:
        for sub in ("root", "settings", "workspaces", "config", "data", "runtime", "ipython"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_user_settings()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "JUPYTER", "IPYTHON"))}
        env.update(
            JUPYTER_CONFIG_DIR=str(self.base_dir / "config"),
            JUPYTER_DATA_DIR=str(self.base_dir / "data"),
            JUPYTER_RUNTIME_DIR=str(self.base_dir / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.settings_dir),
            JUPYTERLAB_WORKSPACES_DIR=str(self.base_dir / "workspaces"),
            IPYTHONDIR=str(self.base_dir / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        )
        env.update(self.environ)
        command = [
            sys.executable, "-m", "jupyterlab" if self.front_end == "lab" else "notebook",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            # window.jupyterapp, as JupyterLab's own UI tests (galata) use it: the only sure sign a kernel is connected
            "--LabApp.expose_app_in_browser=True" if self.front_end == "lab"
            else "--JupyterNotebookApp.expose_app_in_browser=True",
        ]  # fmt: skip
        if os.geteuid() == 0:  # CI and containers run as root, which JupyterLab refuses unless told
            command.append("--allow-root")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            command,
            cwd=self.root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._answers, self.startup_timeout, f"JupyterLab to answer on {self.url}", poll=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {self._proc.returncode} at start:\n{self.log_tail()}")
        try:
            with self._request("/api/status", timeout=2) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _request(self, path: str, *, method: str = "GET", timeout: float = 5.0) -> Any:
        request = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}"},
        )  # fmt: skip
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - our own 127.0.0.1 server

    def stop(self) -> None:
        """Shut JupyterLab down through its API (which shuts its kernels down), then make sure nothing is left."""
        proc, self._proc = self._proc, None
        if proc is not None:
            leftovers = _descendants(proc.pid)
            if proc.poll() is None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    self._request("/api/shutdown", method="POST", timeout=10).close()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=10)
            for pid in leftovers:  # kernels that outlived the server
                if _alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no JupyterLab log)"

    def _write_user_settings(self) -> None:
        """User settings: never ask about or fetch Jupyter news (a toast over the page, and an outside request), and
        no autosave: a notebook is written only when a test saves it (:meth:`NotebookPage.save`), so a test that reads
        the file never meets a write it did not ask for (Jupyter writes a notebook in place, so a file being saved
        reads as cut-off JSON)."""
        settings = {
            "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
                "fetchNews": "false", "checkForUpdates": False,
            },
            "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
            "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {
                "theme": "JupyterLab Dark" if self.dark else "JupyterLab Light", "adaptive-theme": False,
            },
        }  # fmt: skip
        for relative, values in settings.items():
            path = self.settings_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))

    # -------------------------------------------------------------------------------- notebooks
    def write_notebook(self, name: str, cells: Sequence[str]) -> Path:
        """Write ``name`` (e.g. ``panel.ipynb``) into the root dir: one code cell per source, Python 3 kernel."""
        import nbformat

        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in cells],
            metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
        )
        path = self.root_dir / name
        nbformat.write(notebook, path)
        return path

    def notebook_url(self, name: str) -> str:
        """The notebook alone in a fresh workspace (``reset``): no tab of an earlier test is restored beside it.
        Notebook 7 shows one notebook a page."""
        if self.front_end == "notebook":
            return f"{self.url}/notebooks/{urllib.request.pathname2url(name)}?token={self.token}"
        return f"{self.url}/lab/tree/{urllib.request.pathname2url(name)}?token={self.token}&reset"


# ---------------------------------------------------------------------------------------------------- Chromium
@contextlib.contextmanager
def launch_chromium(*, dark: bool = False, viewport: tuple[int, int] = (1280, 800)) -> Iterator[BrowserContext]:
    """Debian's Chromium through Playwright, headless, with a fresh user-data dir removed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(f"no Chromium found (apt-get install -y chromium, or set {CHROMIUM_ENV})")
    with (
        tempfile.TemporaryDirectory(prefix="openhands-chromium-", ignore_cleanup_errors=True) as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": viewport[0], "height": viewport[1]},
            color_scheme="dark" if dark else "light",
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class ConsoleLog:
    """What the page said on its console and which errors it threw: evidence for a failing test."""

    lines: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> ConsoleLog:
        page.on("console", lambda message: self.lines.append(f"console.{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.lines.append(f"pageerror: {error}"))
        return self

    def text(self) -> str:
        return "\n".join(self.lines)


# ---------------------------------------------------------------------------------------------------- notebook UI
_EXECUTED_PROMPT = re.compile(r"^\s*\[\d+\]:?\s*$")

#: True once the current notebook's kernel is connected and idle (needs ``--LabApp.expose_app_in_browser``).
_KERNEL_READY_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = widget && widget.sessionContext && widget.sessionContext.session;
  const kernel = session && session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""

#: Before a save: note in ``window.__openhandsSave`` how the next save of the current document ends ("completed" or
#: "failed"), from the document's own ``saveState`` signal, which says "completed" once the server wrote the file.
_WATCH_SAVE_JS = """() => {
  const context = window.jupyterapp.shell.currentWidget.context;
  window.__openhandsSave = 'not started';
  const watch = (_, state) => {
    window.__openhandsSave = state;
    if (state !== 'started') context.saveState.disconnect(watch);
  };
  context.saveState.connect(watch);
}"""

#: The status badge inside a card: ``.openhands-status``, else an element naming itself a status/badge, else a span.
_BADGE_TEXT_JS = """card => {
  const badge = card.querySelector('.openhands-status')
    || card.querySelector('[class*="status"], [class*="badge"], [data-status]') || card.querySelector('span');
  return badge ? badge.textContent.trim() : '';
}"""


#: On an output area: ``[status, drawn by a widget]`` of its card (not the saved copy), or null while it has none.
_CARD_STATE_JS = f"""output => {{
  const card = output.querySelector('.openhands-conversation:not(.openhands-copy)');
  return card ? [({_BADGE_TEXT_JS})(card), card.closest('.jupyter-widgets') !== null] : null;
}}"""


class NotebookPage:
    """One notebook open in JupyterLab, driven through the UI."""

    def __init__(self, page: Page, lab: JupyterLab, name: str) -> None:
        self.page = page
        self.lab = lab
        self.name = name
        self.panel = page.locator(".jp-NotebookPanel").first
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    def open(self, cell_count: int, timeout: float = 90.0) -> NotebookPage:
        """Go to ``/lab/tree/NAME``, wait for its cells and for its kernel to be idle."""
        from playwright.sync_api import expect

        self.page.goto(self.lab.notebook_url(self.name), wait_until="domcontentloaded", timeout=timeout * 1000)
        expect(self.cells).to_have_count(cell_count, timeout=timeout * 1000)
        # Not the toolbar's "idle" indicator: it says idle before any kernel exists, and a cell run then is dropped.
        self.page.wait_for_function(_KERNEL_READY_JS, timeout=timeout * 1000, polling=100)
        return self

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def output(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-Cell-outputArea")

    def output_text(self, index: int) -> str:
        return self.output(index).inner_text(timeout=5000)

    def run_cell(self, index: int, timeout: float = 60.0) -> str:
        """Select cell ``index``, press Shift+Enter, wait until its prompt shows an execution count; its output text."""
        from playwright.sync_api import expect

        cell = self.cell(index)
        prompt = cell.locator(".jp-InputArea-prompt")
        before = prompt.inner_text(timeout=timeout * 1000)
        cell.locator(".jp-InputArea-editor").click(timeout=timeout * 1000)
        self.page.keyboard.press("Shift+Enter")
        expect(prompt).not_to_have_text(before, timeout=timeout * 1000)
        expect(prompt).to_have_text(_EXECUTED_PROMPT, timeout=timeout * 1000)
        return self.output_text(index)

    def save(self, timeout: float = 30.0) -> None:
        """Press Ctrl+S and return once JupyterLab says that save completed: the file on disk is then whole and
        holds what the notebook showed when the keys were pressed (and, autosave being off, nothing writes it
        again). Reading the file before that can meet it half written."""
        self.page.evaluate(_WATCH_SAVE_JS)
        self.page.keyboard.press("Control+s")
        self.page.wait_for_function(
            "() => ['completed', 'failed'].includes(window.__openhandsSave)", timeout=timeout * 1000, polling=100
        )
        state = self.page.evaluate("() => window.__openhandsSave")
        if state != "completed":
            raise AssertionError(
                f"JupyterLab could not save {self.name} ({state}); see its log:\n{self.lab.log_tail()}"
            )

    # -------------------------------------------------------------------------------- the %openhands panel
    def card(self, index: int) -> Locator:
        """The conversation card in cell ``index``'s output (class ``openhands-conversation``): the live panel's, or the
        final card in its place; not the saved copy displayed beside a live panel (``openhands-copy``), which is what
        a notebook shows only once the panel's widget is gone."""
        return self.output(index).locator(".openhands-conversation:not(.openhands-copy)").first

    def copy(self, index: int) -> Locator:
        """The saved copy of the card beside a live panel in cell ``index``'s output."""
        return self.output(index).locator(".openhands-conversation.openhands-copy").first

    def badge_text(self, index: int) -> str:
        return self.badge_in_widget(index)[0]

    def card_in_widget(self, index: int) -> bool:
        """True when the card is drawn by the ipywidgets view, not the static text/html fallback."""
        return self.badge_in_widget(index)[1]

    def badge_in_widget(self, index: int, timeout: float = 5.0) -> tuple[str, bool]:
        """The card's status and whether a widget draws it, read at one instant (a short run can end, and its final
        card replace the panel, between two separate reads), once the output has a card.

        Found and read in one evaluation of the output area: a card found first (a locator's element) and read in a
        second step can be detached meanwhile by the panel's next redraw (its HTML view replaces its content), and a
        detached card is inside no widget."""
        output = self.output(index)

        def read() -> tuple[str, bool] | None:
            seen = output.evaluate(_CARD_STATE_JS, timeout=timeout * 1000)
            return (str(seen[0]), bool(seen[1])) if seen else None

        return wait_until(read, timeout, f"a card in cell {index}'s output")


# ---------------------------------------------------------------------------------------------------- the panel run
PANEL_NOTEBOOK_CELLS = (
    "%load_ext openhands_magics",
    "%openhands say hello",
    "print('another cell ran while the panel kept polling')",
)


@dataclass
class PanelObservation:
    """What :func:`run_panel_notebook` saw; the test asserts on it, the script prints it."""

    first_status: str
    later_status: str
    seconds_to_change: float
    rendered_by_widget: bool
    href: str | None
    target: str | None
    card_text: str
    load_ext_output: str
    other_cell_output: str
    screenshots: dict[str, Path]


def run_panel_notebook(
    page: Page,
    lab: JupyterLab,
    out_dir: Path,
    *,
    prefix: str = "panel",
    name: str = "panel.ipynb",
    status_timeout: float = 45.0,
) -> PanelObservation:
    """Run ``%load_ext`` + ``%openhands say hello`` in JupyterLab, then another cell, and watch the panel change.

    Saves, in ``out_dir``: ``PREFIX-output-first.png`` (the panel's output area as it first appears),
    ``PREFIX-output.png`` (after its status changed) and ``PREFIX-page.png`` (the whole JupyterLab page then).
    """
    from playwright.sync_api import expect

    out_dir.mkdir(parents=True, exist_ok=True)
    lab.write_notebook(name, PANEL_NOTEBOOK_CELLS)
    notebook = NotebookPage(page, lab, name).open(len(PANEL_NOTEBOOK_CELLS))

    load_ext_output = notebook.run_cell(0)
    notebook.run_cell(1)
    card = notebook.card(1)
    try:
        expect(card).to_be_visible(timeout=30_000)
    except AssertionError as error:
        raise AssertionError(
            f"no visible .openhands-conversation card after %openhands; the cell's output was:\n"
            f"{notebook.output_text(1)!r}\n(%load_ext printed {load_ext_output!r})"
        ) from error
    # Who draws the card is asked with its first status, in one evaluation: on a loaded machine the conversation (4 s)
    # may be over soon after, and the widget gave way to the final card.
    first_status, rendered_by_widget = wait_until(
        lambda: seen if (seen := notebook.badge_in_widget(1))[0] else None, 10, "the card's status badge to have text"
    )
    shown_at = time.monotonic()
    screenshots = {"output-first": out_dir / f"{prefix}-output-first.png"}
    notebook.output(1).screenshot(path=screenshots["output-first"])

    # The kernel is free: another cell runs at once, and meanwhile the panel keeps polling and redrawing.
    other_cell_output = notebook.run_cell(2)
    later_status = wait_until(
        lambda: text if (text := notebook.badge_text(1)) and text != first_status else None,
        status_timeout,
        f"the panel's status to change from {first_status!r} (it is {notebook.badge_text(1)!r})",
    )
    seconds_to_change = time.monotonic() - shown_at
    # A card may show its link only once the server has created the conversation (not while it is starting).
    link = card.locator("a[href]").first
    try:
        expect(link).to_be_visible(timeout=status_timeout * 1000)
    except AssertionError as error:
        raise AssertionError(f"the card never showed a link; its text: {card.inner_text()!r}") from error
    observation = PanelObservation(
        first_status=first_status,
        later_status=later_status,
        seconds_to_change=seconds_to_change,
        rendered_by_widget=rendered_by_widget,
        href=link.get_attribute("href", timeout=5000),
        target=link.get_attribute("target", timeout=5000),
        card_text=card.inner_text(timeout=5000),
        load_ext_output=load_ext_output,
        other_cell_output=other_cell_output,
        screenshots=screenshots,
    )
    page.mouse.move(0, 0)  # no hover highlight in the pictures
    screenshots["output"] = out_dir / f"{prefix}-output.png"
    notebook.output(1).screenshot(path=screenshots["output"])
    screenshots["page"] = out_dir / f"{prefix}-page.png"
    page.screenshot(path=screenshots["page"])
    return observation


# ---------------------------------------------------------------------------------------------------- readability
def _relative_luminance(rgb: str) -> float:
    """WCAG's relative luminance of a computed CSS colour (``rgb(r, g, b)`` or ``rgba(r, g, b, a)``; alpha ignored)."""
    parts = [int(float(p)) / 255 for p in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [p / 12.92 if p <= 0.03928 else ((p + 0.055) / 1.055) ** 2.4 for p in parts]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG's contrast ratio of two computed CSS colours (1 to 21): how a test tells a theme left text readable
    without a person looking (4.5 is the bar for body text, 3 for large or secondary text)."""
    high, low = sorted((_relative_luminance(foreground), _relative_luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


#: For ``Locator.evaluate`` on an element: [its text colour, the first opaque background at or above it].
TEXT_AND_BACKGROUND_JS = """el => {
  const opaque = c => c !== 'transparent' && !/^rgba\\(.*,\\s*0\\)$/.test(c);
  let up = el;
  while (up && !opaque(getComputedStyle(up).backgroundColor)) up = up.parentElement;
  return [getComputedStyle(el).color, up ? getComputedStyle(up).backgroundColor : 'rgb(255, 255, 255)'];
}"""
