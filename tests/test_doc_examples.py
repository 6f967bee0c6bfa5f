"""Every Python and magic example of README.md and docs/*.md runs, as written, in a real ipykernel against the local
server, so that none can go stale.

The Markdown says what each fenced block is. A ```python block is a notebook cell: Python or magics (``%openhands``,
``%%openhands``). The blocks of one page run in order in one kernel, as the cells of a notebook would, so a page's
later examples use what its earlier ones made (``conv``, ``files``). A block must run without an exception and
without an ``openhands:`` error line on stderr. An HTML comment on the line just before a block changes that:

- ``<!-- no-run: REASON -->``: not run (a prompt, a server elsewhere, a line of a config file); reported as skipped
  with its reason, so the count of what is not checked is in every test run (``pytest -rs`` lists them);
- ``<!-- raises NAME: REASON -->``: run, and must end with the exception NAME (a cell that fails on purpose, for
  ``fix``).

Blocks in other languages (```bash, ```text) are not cells and are not run; a block with no language is refused, so
nothing escapes by being unlabelled. Each page gets a fresh kernel and a fresh local server; its environment points
the kernel at that server, as ``export OPENHANDS_BASE_URL=... OPENHANDS_API_KEY=...`` would, and the kernel has run
``%load_ext openhands_magics``, as the README's install says to do first.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET
from .test_kernel import KernelSession

#: Starts Jupyter kernels in other processes: CI runs these on one Python only (docs/development.md).
pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Quick, and leaving something for every result an example reads: an answer, a changed file, a PR, a cost.
DOCS_TIMELINE = Timeline(
    starting=0.3,
    running=0.8,
    answer="Cleaned up the loader.",
    changes=(("UPDATED", "demo/data/load.py"),),
    pr_numbers=(42,),
    cost=0.12,
    prompt_tokens=1000,
    completion_tokens=234,
)
FENCE = re.compile(r"^(?P<ticks>`{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^<!--\s*(?P<kind>no-run|raises)(?:\s+(?P<exception>\w+))?:\s*(?P<reason>.+?)\s*-->$")
CELL_TIMEOUT = 90


@dataclass(frozen=True)
class Example:
    page: Path
    line: int  #: the line of its opening fence, 1-based
    language: str
    code: str
    marker: str | None = None  #: "no-run" or "raises"
    reason: str = ""
    exception: str | None = None  #: what a "raises" block raises

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Example]:
    """The fenced blocks of a page, outermost only (a ```` fence may hold ``` lines), each with its marker."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        ticks, start = opening["ticks"], index
        index += 1
        while index < len(lines) and lines[index].rstrip() != ticks:
            index += 1
        if index >= len(lines):
            raise AssertionError(f"{page.name}:{start + 1}: a fence that never closes")
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        found.append(
            Example(
                page,
                start + 1,
                opening["info"].strip(),
                "\n".join(lines[start + 1 : index]),
                marker["kind"] if marker else None,
                marker["reason"] if marker else "",
                marker["exception"] if marker else None,
            )
        )
        index += 1
    return found


def cells() -> list[Example]:
    return [example for page in PAGES for example in blocks(page) if example.language == "python"]


@pytest.fixture(scope="module")
def kernels() -> Iterator[dict[Path, KernelSession]]:
    """One kernel (and one local server) per page, started when the page's first example runs."""
    opened: dict[Path, KernelSession] = {}
    servers: list[LocalOpenHandsServer] = []
    managers: list[KernelManager] = []

    def start(page: Path) -> KernelSession:
        server = LocalOpenHandsServer(api_key=SECRET, timeline=DOCS_TIMELINE).start()
        servers.append(server)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
        env.update(server.environ())
        manager = KernelManager(kernel_name="python3")
        manager.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        manager.start_kernel(env=env, cwd=str(ROOT))
        managers.append(manager)
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        session = KernelSession(client, manager=manager)
        session.execute("%load_ext openhands_magics")  # what the README's install says to do first
        return session

    class Kernels(dict[Path, KernelSession]):
        def __missing__(self, page: Path) -> KernelSession:
            self[page] = start(page)
            return self[page]

    opened = Kernels()
    yield opened
    for session in opened.values():
        session.client.stop_channels()
    for manager in managers:
        manager.shutdown_kernel(now=True)
    for server in servers:
        server.stop()


@pytest.mark.parametrize("example", cells(), ids=lambda example: example.name)
def test_every_python_and_magic_example_of_the_docs_runs_as_written(
    example: Example, kernels: dict[Path, KernelSession]
) -> None:
    if example.marker == "no-run":
        pytest.skip(f"marked no-run in the Markdown: {example.reason}")
    kernel = kernels[example.page]
    outputs, _ = kernel.execute(example.code, timeout=CELL_TIMEOUT, error=example.exception)
    if example.marker == "raises":
        return  # (execute checked that it ended with that exception)
    stderr = "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    said = [line for line in stderr.splitlines() if line.startswith("openhands:")]
    assert not said, f"{example.name} printed an error line: {said}"
    everything = repr([m["content"] for m in outputs])
    assert SECRET not in everything


def test_every_block_of_the_docs_says_what_it_is() -> None:
    unlabelled = [example.name for page in PAGES for example in blocks(page) if not example.language]
    assert not unlabelled, f"fenced blocks with no language (```python to run it, ```text for output): {unlabelled}"


def test_markers_sit_only_on_python_blocks() -> None:
    misplaced = [e.name for page in PAGES for e in blocks(page) if e.marker and e.language != "python"]
    assert not misplaced, f"no-run / raises markers on blocks that are not run anyway: {misplaced}"
    unnamed = [e.name for page in PAGES for e in blocks(page) if e.marker == "raises" and not e.exception]
    assert not unnamed, f"a raises marker names the exception (<!-- raises KeyError: why -->): {unnamed}"


def test_the_docs_have_examples_to_run_and_skip_few() -> None:
    examples = cells()
    skipped = [e for e in examples if e.marker == "no-run"]
    assert len(examples) >= 30, len(examples)
    assert len(skipped) <= len(examples) // 5, [e.name for e in skipped]


def test_every_docs_page_is_linked_from_the_readme_and_every_relative_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"README.md does not link {page.name}"
    link = re.compile(r"\]\((?!https?:|mailto:|#)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")
    for page in PAGES:
        for match in link.finditer(page.read_text(encoding="utf-8")):
            target = (page.parent / match["target"]).resolve()
            assert target.exists(), f"{page.relative_to(ROOT)} links {match['target']}, which does not exist"
