"""Issue 17, re-runs that never pay twice: ``--once`` derives the conversation's id from the notebook and the task,
looks it up first and attaches to what exists; the same task still running from this notebook is shown again
instead of started twice; ``--new`` starts another; and the local server honours a chosen id as the real one does
(a second start with it ends ERROR, so the look-up must come first)."""

from __future__ import annotations

import uuid

import time
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics.once import once_id
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, Output, papermill_twice

QUICKER = Timeline(starting=0.05, running=0.1)


def _starts(server: LocalOpenHandsServer) -> list[dict]:
    return [r.body for r in server.posts() if r.path == "/api/v1/app-conversations"]


def _endpoint(server: LocalOpenHandsServer) -> Endpoint:
    return Endpoint.resolve(server.base_url, api_key=SECRET, api="auto")


@pytest.fixture
def quicker() -> LocalOpenHandsServer:
    with LocalOpenHandsServer(SECRET, timeline=QUICKER) as server:
        yield server


def test_the_id_depends_on_the_server_the_notebook_the_task_and_its_options_only() -> None:
    one = once_id("https://app.all-hands.dev", "/home/me/a.ipynb", "Fix the loader", [("repository", "o/r")])
    assert one == once_id("https://app.all-hands.dev/", "/home/me/a.ipynb", "Fix the loader", [("repository", "o/r")])
    assert len(one) == 32 and int(one, 16) >= 0
    others = {
        once_id("https://other.example", "/home/me/a.ipynb", "Fix the loader", [("repository", "o/r")]),
        once_id("https://app.all-hands.dev", "/home/me/b.ipynb", "Fix the loader", [("repository", "o/r")]),
        once_id("https://app.all-hands.dev", "/home/me/a.ipynb", "Fix the loader!", [("repository", "o/r")]),
        once_id("https://app.all-hands.dev", "/home/me/a.ipynb", "Fix the loader", [("repository", "o/s")]),
    }
    assert one not in others and len(others) == 4


def test_the_id_of_a_task_stays_the_same_from_one_version_to_the_next() -> None:
    # A notebook re-run after an upgrade must still find the conversation its task started: a version-5 UUID of the
    # scheme, the server, the notebook, the task and its options, whatever computes it.
    one = once_id("https://app.all-hands.dev", "/home/me/a.ipynb", "Fix the loader", [("repository", "o/r")])
    assert one == "e0214485ffea59f4932234b374b0e756"
    assert uuid.UUID(one).version == 5 and uuid.UUID(one).variant == uuid.RFC_4122


def test_a_second_session_running_the_same_task_once_attaches_and_starts_nothing(quicker: LocalOpenHandsServer) -> None:
    first = Session()
    try:
        started = first.start("Clean up the CSV loader", endpoint=_endpoint(quicker), once=True)
        started.wait(timeout=10)
    finally:
        first.close()
    [post] = _starts(quicker)
    assert post["conversation_id"] == started.id  # the chosen id is the conversation's
    again = Session()  # a kernel restart, a papermill re-run: a new process with nothing in memory
    try:
        attached = again.start("Clean up the CSV loader", endpoint=_endpoint(quicker), once=True)
        assert attached.id == started.id and len(_starts(quicker)) == 1
        assert (
            attached.note
            and attached.note.startswith("already started at ")
            and "--new starts another" in attached.note
        )
        changed = again.start("Clean up the CSV loader, again", endpoint=_endpoint(quicker), once=True)
        assert changed.id != started.id or changed.id is None
        assert len(_starts(quicker)) == 2
        another = again.start("Clean up the CSV loader", endpoint=_endpoint(quicker), once=True, new=True)
        assert len(_starts(quicker)) == 3 and "conversation_id" not in _starts(quicker)[-1]
        assert another is not attached
    finally:
        again.close()


def test_the_same_task_still_running_from_this_notebook_is_shown_again_not_started_twice(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    first = ip.run_line_magic("openhands", "Summarise the notebook")
    second = ip.run_line_magic("openhands", "Summarise the notebook")
    assert second is first and len(_starts(quick)) == 1
    assert "still running from this notebook" in (first.note or "")
    other = ip.run_line_magic("openhands", "--new Summarise the notebook")
    assert other is not first and len(_starts(quick)) == 2
    first.wait(timeout=10), other.wait(timeout=10)
    after = ip.run_line_magic("openhands", "Summarise the notebook")  # over: once is off here, so a new run
    assert after is not first and len(_starts(quick)) == 3
    output.read()


def test_once_on_the_magic_line_attaches_after_a_restart_and_once_with_new_is_one_line(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    import openhands_magics.session as session_module

    first = ip.run_line_magic("openhands", "--once --wait Tidy the imports")
    session_module.get_session().close()
    session_module._session = None  # the kernel restarted: nothing of the first run is in memory
    again = ip.run_line_magic("openhands", "--once Tidy the imports")
    assert again.id == first.id and len(_starts(quick)) == 1 and "already started" in again.note
    output.read()
    assert ip.run_line_magic("openhands", "--once --new Tidy the imports") is None
    assert "--once and --new ask for opposite things" in output.one_error_line()
    assert len(_starts(quick)) == 1


def test_once_on_a_v0_server_starts_anew_and_says_why(
    ip: InteractiveShell, v0_env: LocalOpenHandsServer, output: Output
) -> None:
    handle = ip.run_line_magic("openhands", "--once hello")
    assert handle is not None and "needs OpenHands 1.7 or later" in (handle.note or "")
    assert [r.body for r in v0_env.posts() if r.path == "/api/conversations"] == [{"initial_user_msg": "hello"}]
    output.read()


def test_the_local_server_honours_a_chosen_id_and_a_second_start_with_it_ends_error(
    quicker: LocalOpenHandsServer,
) -> None:
    from openhands_magics.client import OpenHandsClient

    chosen = "0123456789abcdef0123456789abcdef"
    with OpenHandsClient(SECRET, base_url=quicker.base_url) as client:
        first = client.start_conversation("one", conversation_id=chosen)
        second = client.start_conversation("two", conversation_id=chosen)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            first, second = client.read([first, second])  # type: ignore[misc]
            if first.conversation_id and second.is_final:  # type: ignore[union-attr]
                break
            time.sleep(0.05)
    assert first.conversation_id == chosen  # type: ignore[union-attr]
    assert second.status == "ERROR" and "500 Internal Server Error" in (second.phase or "")  # type: ignore[union-attr]


@pytest.mark.kernel
def test_a_notebook_run_twice_by_papermill_starts_each_conversation_once(tmp_path: Path) -> None:
    path = tmp_path / "twice.ipynb"
    cells = [
        "%load_ext openhands_magics",
        "%openhands Clean up the CSV loader",
        "%openhands --repo octo/demo Add a test",
    ]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    import os

    with LocalOpenHandsServer(SECRET, timeline=QUICKER) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENHANDS_")}
        env.update(server.environ(), IPYTHONDIR=str(tmp_path / "ipython"))
        _, second = papermill_twice(path, env, timeout=120)
        starts = _starts(server)
    assert len(starts) == 2 and all("conversation_id" in s for s in starts)
    saved = second.read_text()
    assert "already started at" in saved and "FINISHED" in saved
