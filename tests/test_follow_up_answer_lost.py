"""A follow-up whose answer was lost after the server may have taken it (a dropped connection, a timeout, a 5xx, an
unreadable or oversized answer) says it may have been sent and where to look, never "try again": re-running would
send the instruction twice. Only a follow-up that provably never left (refused connection, a 409, a 503) may be sent
again. Both clients; the request is never repeated by the client itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import RetryPolicy
from openhands_magics.errors import OpenHandsError, ProtocolError, ServerError, TransportError
from openhands_magics.models import Conversation
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET, wait_until

#: Retries as the default policy allows them, quickly: a follow-up must still be posted once.
RETRIES = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
SEND = "/api/v1/app-conversations/"
LOST = [
    pytest.param({"drop": True}, TransportError, id="connection-dropped"),
    pytest.param({"delay": 1.5}, TransportError, id="timeout"),
    pytest.param({"status": 500, "body": {"detail": "boom"}}, ServerError, id="500"),
    pytest.param({"status": 502, "body": {"detail": "Failed to reach agent server."}}, ServerError, id="502"),
    pytest.param({"status": 200, "body": b"{not json"}, ProtocolError, id="unreadable"),
    pytest.param({"status": 200, "body": b"[" + b" " * 300_000 + b"]"}, ProtocolError, id="too-large"),
]


def _running(server: LocalOpenHandsServer) -> Conversation:
    with OpenHandsClient(SECRET, base_url=server.base_url, api="v1") as client:
        task = client.start_conversation("hi")
        wait_until(lambda: server.conversation_ids())
        return client.refresh(task)


def _follow_ups(server: LocalOpenHandsServer) -> list[Any]:
    return [r for r in server.posts() if r.path.endswith("/send-message")]


def _says_maybe_sent(error: BaseException, conversation: Conversation, server: LocalOpenHandsServer) -> None:
    text = str(error)
    assert "may have been sent anyway" in text and f"{server.base_url}/conversations/{conversation.id}" in text
    assert "try again" not in text and "failed … try again" not in text and "\n" not in text


@pytest.mark.parametrize(("fault", "kind"), LOST)
def test_a_follow_up_whose_answer_was_lost_says_it_may_have_been_sent_never_try_again(
    long_server: LocalOpenHandsServer, fault: dict[str, Any], kind: type
) -> None:
    conversation = _running(long_server)
    long_server.inject(method="POST", path_prefix=SEND, times=5, **fault)
    with OpenHandsClient(
        SECRET, base_url=long_server.base_url, api="v1", timeout=1.0, retry=RETRIES, max_answer_bytes=100_000
    ) as client:
        with pytest.raises(kind) as caught:
            client.send_message(conversation, "and the tests")
    _says_maybe_sent(caught.value, conversation, long_server)
    assert len(_follow_ups(long_server)) == 1  # posted once: never repeated by the client


@pytest.mark.parametrize(("fault", "kind"), LOST)
def test_the_async_client_says_the_same(long_server: LocalOpenHandsServer, fault: dict[str, Any], kind: type) -> None:
    conversation = _running(long_server)

    async def scenario() -> None:
        async with AsyncOpenHandsClient(
            SECRET, base_url=long_server.base_url, api="v1", timeout=1.0, retry=RETRIES, max_answer_bytes=100_000
        ) as client:
            await client.send_message(conversation, "and the tests")

    long_server.inject(method="POST", path_prefix=SEND, times=5, **fault)
    with pytest.raises(kind) as caught:
        asyncio.run(scenario())
    _says_maybe_sent(caught.value, conversation, long_server)
    assert len(_follow_ups(long_server)) == 1


def test_a_handles_follow_up_whose_answer_was_lost_says_so_and_the_next_one_works(
    long_server: LocalOpenHandsServer,
) -> None:
    session = Session()
    handle = session.start("hi", endpoint=Endpoint.resolve(long_server.base_url, api_key=SECRET, timeout=1.0))
    wait_until(lambda: long_server.conversation_ids())
    handle.refresh()
    long_server.inject(method="POST", path_prefix=SEND, drop=True)
    with pytest.raises(TransportError) as caught:
        handle.send("and the tests")
    _says_maybe_sent(caught.value, handle.conversation, long_server)
    handle.send("and the docs")  # nothing is left broken
    assert len(_follow_ups(long_server)) == 2
    session.close()


def test_a_follow_up_that_never_left_may_be_sent_again(long_server: LocalOpenHandsServer, dead_url: str) -> None:
    conversation = _running(long_server)
    with OpenHandsClient(SECRET, base_url=dead_url, api="v1", retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(TransportError, match="Could not connect") as caught:
            client.send_message(conversation, "and the tests")
    assert caught.value.request_sent is False and "may have been sent" not in str(caught.value)
    long_server.inject(
        method="POST",
        path_prefix=SEND,
        status=503,
        body={"detail": "Sandbox is in an error state and cannot accept messages."},
    )
    with OpenHandsClient(SECRET, base_url=long_server.base_url, api="v1", retry=RETRIES) as client:
        with pytest.raises(OpenHandsError) as refused:
            client.send_message(conversation, "and the tests")
    assert "may have been sent" not in str(refused.value) and "error state" in str(refused.value)


def test_other_requests_keep_saying_try_again(long_server: LocalOpenHandsServer) -> None:
    conversation = _running(long_server)
    long_server.inject(method="GET", drop=True, times=5)
    with OpenHandsClient(SECRET, base_url=long_server.base_url, api="v1", retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(TransportError, match="try again") as caught:
            client.refresh(conversation)
    assert "may have been sent" not in str(caught.value)
