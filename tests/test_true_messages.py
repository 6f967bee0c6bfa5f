"""Messages say what really happened: a conversation whose sandbox is gone is not an id to check, a server older than
1.8 has no changes to give (it is not the id either), and a follow-up whose answer was lost after the server took it
may have been sent: it is never "try again". Against the local server taught the real server's quirks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from openhands_magics import OpenHandsClient
from openhands_magics._protocol import RetryPolicy
from openhands_magics.errors import ConflictError, UnsupportedApiError
from openhands_magics.models import Conversation
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline
from openhands_magics.testing.v1 import set_version

from .conftest import SECRET, wait_until

DONE = Timeline(starting=0.05, running=0.1, changes=(("UPDATED", "demo/a.py"),))


@pytest.fixture
def quick() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=DONE) as server:
        yield server


@pytest.fixture
def session() -> Iterator[Session]:
    opened = Session()
    yield opened
    opened.close()


def _done(client: OpenHandsClient, server: LocalOpenHandsServer) -> Conversation:
    task = client.start_conversation("hi")
    wait_until(lambda: server.conversation_ids())
    return wait_until(lambda: (c := client.refresh(task)).is_final and c)


def _delete_sandbox(server: LocalOpenHandsServer, sandbox_id: str) -> None:
    response = httpx.delete(
        f"{server.base_url}/api/v1/sandboxes/{sandbox_id}",
        params={"sandbox_id": sandbox_id},
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert response.status_code == 200, response.text


def _client(server: LocalOpenHandsServer) -> OpenHandsClient:
    return OpenHandsClient(SECRET, base_url=server.base_url, api="v1", retry=RetryPolicy(attempts=1))


# ---------------------------------------------------------------------------------------------------- sandbox gone
@pytest.mark.parametrize("verb", ["pause", "resume", "send"])
def test_a_conversation_whose_sandbox_is_gone_says_so_not_check_the_id(quick: LocalOpenHandsServer, verb: str) -> None:
    with _client(quick) as client:
        conversation = _done(client, quick)
        _delete_sandbox(quick, conversation.sandbox_id or "")
        act: dict[str, Any] = {
            "pause": client.pause,
            "resume": client.resume,
            "send": lambda c: client.send_message(c, "and the tests"),
        }
        with pytest.raises(ConflictError, match="sandbox is gone .*new conversation") as caught:
            act[verb](conversation)
    text = str(caught.value)
    assert "check the conversation id" not in text and "try again" not in text and "\n" not in text


def test_a_handles_follow_up_after_its_sandbox_went_says_the_sandbox_is_gone(
    quick: LocalOpenHandsServer, session: Session
) -> None:
    handle = session.start("hi", endpoint=Endpoint.resolve(quick.base_url, api_key=SECRET))
    handle.wait(timeout=10)
    _delete_sandbox(quick, handle.conversation.sandbox_id or "")
    with pytest.raises(ConflictError, match="sandbox is gone"):
        handle.pause()
    with pytest.raises(ConflictError, match="sandbox is gone|archived"):
        handle.send("more")


def test_the_changes_of_a_conversation_whose_sandbox_is_not_running_say_so(quick: LocalOpenHandsServer) -> None:
    with _client(quick) as client:
        conversation = _done(client, quick)
        quick.set_state(conversation.conversation_id or "", sandbox_status="STARTING")
        with pytest.raises(ConflictError, match="sandbox is not running .*starting") as caught:
            client.changes(conversation)
        outcome = client.outcome(conversation)
    assert "check the conversation id" not in str(caught.value)
    assert outcome.changes is None and "sandbox is not running" in outcome.problems[0]


def test_a_pause_of_a_sandbox_whose_process_died_says_it_is_gone(quick: LocalOpenHandsServer) -> None:
    with _client(quick) as client:
        conversation = _done(client, quick)
        quick.set_state(conversation.conversation_id or "", sandbox_status="MISSING")
        with pytest.raises(ConflictError, match="sandbox is gone"):
            client.pause(conversation)


# ---------------------------------------------------------------------------------------------------- older servers
def test_changes_and_diffs_on_a_server_before_1_8_say_it_is_too_old(
    quick: LocalOpenHandsServer, session: Session
) -> None:
    set_version(quick, "1.7.0")
    handle = session.start("hi", endpoint=Endpoint.resolve(quick.base_url, api_key=SECRET))
    handle.wait(timeout=10)
    for read in (handle.changes, handle.diff, lambda: handle.diff("demo/a.py")):
        with pytest.raises(UnsupportedApiError, match=r"older than OpenHands 1\.8.*upgrade it") as caught:
            read()
        assert "check the conversation id" not in str(caught.value)
    assert handle.answer == "Done."  # what the old server does have is still read
    assert handle.outcome is not None and "older than OpenHands 1.8" in handle.outcome.problems[0]


def test_changes_on_a_1_8_server_are_read(quick: LocalOpenHandsServer) -> None:
    set_version(quick, "1.8.0")
    with _client(quick) as client:
        conversation = _done(client, quick)
        assert [c.path for c in client.changes(conversation)] == ["demo/a.py"]


def test_an_unknown_conversations_follow_up_still_says_to_check_the_id(quick: LocalOpenHandsServer) -> None:
    from openhands_magics.errors import NotFoundError

    with _client(quick) as client, pytest.raises(NotFoundError, match="check the conversation id"):
        client.send_message(Conversation("0123456789abcdef0123456789abcdef"), "hi")
