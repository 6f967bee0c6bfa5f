"""What the package promises, checked against a live OpenHands server (see ``conftest.py``; skipped without one)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from IPython import get_ipython
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

from openhands_magics.errors import NotFoundError, UnsupportedApiError, ValidationError
from openhands_magics.handle import ConversationHandle
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Session

from .conftest import Live

FINISH_WITHIN = 180  # seconds: a V1 start spawns a sandbox process (about 6-15 s here), then one fake agent step


def _follow(handle: ConversationHandle) -> list[tuple[float, str]]:
    seen: list[tuple[float, str]] = [(time.monotonic(), handle.conversation.status_line)]
    handle.wait(timeout=FINISH_WITHIN, on_change=lambda h: seen.append((time.monotonic(), h.conversation.status_line)))
    return seen


def test_auto_picks_the_servers_api_and_a_conversation_ends_finished_with_both_ids(live: Live) -> None:
    session = Session(PollSchedule(interval=1.0, max_interval=4.0))
    handle = session.start("say hello", endpoint=live.endpoint())
    client = session.client(handle.endpoint)
    if live.expect_api:
        assert client.api == live.expect_api
    seen = _follow(handle)
    statuses = [line for _, line in seen]
    print(f"\n{client.api}: " + " -> ".join(statuses))

    assert statuses[-1] == "FINISHED"
    assert handle.id and handle.url == f"{live.base_url}/conversations/{handle.id}"
    if client.api == "v1":
        assert handle.task_id and statuses[0].startswith("STARTING · ")
    elapsed = handle.elapsed()
    assert elapsed is not None and elapsed > 0.5  # a V1 start alone takes seconds; not "0 s"
    conversation = handle.conversation
    assert "session_api_key" not in conversation.extra
    for text in (repr(conversation), repr(dict(conversation.extra)), repr(handle)):
        assert "session_api_key" not in text
    session.close()


def test_wait_ends_within_one_poll_of_the_agent_finishing(live: Live) -> None:
    live.agent_delay(6)
    work = 6 * live.agent_steps()  # (with `up --llm-steps N` the agent takes N steps before its finish)
    session = Session(PollSchedule(interval=1.0, max_interval=4.0))
    handle = session.start("take your time", endpoint=live.endpoint())
    seen = _follow(handle)
    running = next(t for t, line in seen if line == "RUNNING")
    finished = next(t for t, line in seen if line == "FINISHED")
    print(f"\nRUNNING seen -> FINISHED seen: {finished - running:.1f} s for agent steps of 6 s, {work} s in all")
    # the agent works ~`work` s after RUNNING is first seen; a poll paces at most 4 s while nothing changes
    assert 4 < finished - running < work + 4 + 2
    session.close()


def test_unknown_and_malformed_ids(live: Live) -> None:
    session = Session()
    with pytest.raises(NotFoundError):
        session.attach("0" * 32, endpoint=live.endpoint())
    with pytest.raises(ValidationError):
        session.attach("not an id", endpoint=live.endpoint())
    session.close()


def test_the_wrong_api_forced_says_so_and_starts_nothing(live: Live) -> None:
    session = Session()
    detected = session.client(live.endpoint()).dialect().name
    if detected == "v0":
        pytest.skip("a server with V0 also has an early V1: forcing V1 there is allowed")
    with pytest.raises(UnsupportedApiError, match="does not speak the OpenHands V0 API"):
        session.start("never started", endpoint=live.endpoint(api="v0"))
    session.close()


def test_watching_by_task_id_conversation_id_and_link(live: Live) -> None:
    session = Session(PollSchedule(interval=1.0, max_interval=4.0))
    handle = session.start("say hello", endpoint=live.endpoint())
    handle.wait(timeout=FINISH_WITHIN)
    references = [handle.id, handle.url] + ([handle.task_id] if handle.task_id else [])
    for reference in references:
        again = session.attach(reference, endpoint=live.endpoint())
        if again.id is None:  # a start task read back: one refresh reads its conversation
            again.refresh()
        assert again.id == handle.id, reference
    session.close()


def test_a_batched_read_of_several_conversations_is_one_request(live: Live) -> None:
    session = Session(PollSchedule(interval=1.0, max_interval=4.0))
    endpoint = live.endpoint()
    if session.client(endpoint).dialect().name != "v1":
        pytest.skip("V0 reads one conversation a request")
    handles = [session.start(f"say hello {i}", endpoint=endpoint) for i in range(2)]
    for handle in handles:
        handle.wait(timeout=FINISH_WITHIN)
    fresh = session.client(endpoint).read([h.conversation for h in handles])
    assert [f.conversation_id for f in fresh if f] == [h.id for h in handles]
    session.close()


@pytest.fixture
def ip(live: Live, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("OPENHANDS_BASE_URL", live.base_url)
    monkeypatch.setenv("OPENHANDS_API_KEY", live.api_key)
    start_ipython()
    shell = get_ipython()
    shell.run_line_magic("load_ext", "openhands_magics")
    shell.run_line_magic("config", "OpenHandsMagics.poll_interval = 1.0")
    shell.run_line_magic("config", "OpenHandsMagics.max_poll_interval = 4.0")
    yield shell
    shell.run_line_magic("unload_ext", "openhands_magics")


def test_the_magic_waits_showing_the_phases_and_ends_finished(
    ip: InteractiveShell, live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    import openhands_magics

    handle = ip.run_cell_magic("openhands", f"--wait --timeout {FINISH_WITHIN}", "say hello\n")
    out, err = capsys.readouterr()
    print(out)
    assert err == "" and "Traceback" not in out
    assert handle.status == "FINISHED"
    assert any(line.startswith(f"{handle.id}: FINISHED") for line in out.strip().splitlines())
    assert openhands_magics.last() is handle and handle.id in out
    if handle.task_id:
        assert f"task {handle.task_id}: STARTING · " in out
