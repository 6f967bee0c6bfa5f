"""Issue 14 (the client) against a live server: a conversation whose sandbox is gone says so (not "check the id"),
its changes say the sandbox is not running, and a batched read with one malformed id reads the others (V1 only)."""

from __future__ import annotations

import httpx
import pytest

from openhands_magics.errors import ConflictError
from openhands_magics.models import Conversation
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Session

from .conftest import Live
from .test_contract import FINISH_WITHIN


@pytest.fixture
def session(live: Live) -> Session:
    session = Session(PollSchedule(interval=1.0, max_interval=3.0))
    if session.client(live.endpoint()).dialect().name != "v1":
        pytest.skip("V0 servers have no sandboxes to lose")
    session.remember = False
    yield session
    session.close()


def test_a_conversation_whose_sandbox_was_deleted_says_the_sandbox_is_gone(session: Session, live: Live) -> None:
    handle = session.start("say hello", endpoint=live.endpoint())
    handle.wait(timeout=FINISH_WITHIN)
    sandbox_id = handle.conversation.sandbox_id
    headers = {"Authorization": f"Bearer {live.api_key}", "X-Session-API-Key": live.api_key}
    deleted = httpx.delete(
        f"{live.base_url}/api/v1/sandboxes/{sandbox_id}", params={"sandbox_id": sandbox_id}, headers=headers, timeout=60
    )
    assert deleted.status_code == 200, deleted.text
    client = session.client(handle.endpoint)
    for act in (client.pause, client.resume, lambda c: client.send_message(c, "and again")):
        with pytest.raises(ConflictError, match="sandbox is gone") as caught:
            act(handle.conversation)
        assert "check the conversation id" not in str(caught.value)
    with pytest.raises(ConflictError, match="sandbox is not running"):
        client.changes(handle.conversation)
    assert handle.refresh().sandbox_status == "MISSING"


def test_a_batched_read_with_one_malformed_id_reads_the_others(session: Session, live: Live) -> None:
    handle = session.start("say hello", endpoint=live.endpoint())
    handle.wait(timeout=FINISH_WITHIN)
    probes = [Conversation("not-a-uuid"), Conversation(handle.id), Conversation("../../api/settings")]
    read = session.client(handle.endpoint).read(probes)
    assert read[0] is None and read[2] is None and read[1] is not None and read[1].conversation_id == handle.id
