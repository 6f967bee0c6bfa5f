"""The follow-up as one protocol operation (``Dialect.follow_up``), driven by either client: send; if the sandbox is
paused (known from the snapshot, or the 409 that says so) resume it, wait until it runs, and send then. The message
is taken at most once, whatever fails; the operation asks its driver for the pauses (``Wait``) and sleeps never.

Most of these run the clients on ``httpx.MockTransport`` (no sockets): a small scripted sandbox answers, so each
state a real server passes through while resuming (PAUSED, STARTING, ERROR) can be held as long as a test likes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import V1, Call, RetryPolicy, Wait, advance
from openhands_magics.errors import ConflictError, NotFoundError, TransportError, ValidationError
from openhands_magics.models import Conversation, ConversationStatus
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

BASE = "http://127.0.0.1:9"
CONVERSATION = "a" * 32
SANDBOX = "sandbox1"
QUICK = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)


class Sandbox:
    """A scripted V1 server for one conversation: ``state`` is its sandbox's; after a resume it reads ``resuming``
    (one state per read, then RUNNING). A send-message to a sandbox not RUNNING is refused with 409, as the real
    server does; ``lose`` makes the next accepted one lose its answer."""

    def __init__(self, state: str = "RUNNING", resuming: tuple[str, ...] = ()) -> None:
        self.state, self.resuming = state, list(resuming)
        self.calls: list[str] = []
        self.accepted: list[str] = []  # the messages the agent got
        self.lose = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path.rsplit('/', 1)[-1]}")
        if request.method == "GET" and path == "/api/v1/app-conversations":
            if self.state == "RESUMING":
                self.state = self.resuming.pop(0) if self.resuming else "RUNNING"
            shown = "STARTING" if self.state == "RESUMING" else self.state
            return httpx.Response(
                200,
                json=[
                    {
                        "id": CONVERSATION,
                        "sandbox_id": SANDBOX,
                        "sandbox_status": shown,
                        "execution_status": "finished" if shown == "RUNNING" else None,
                    }
                ],
            )
        if path == f"/api/v1/sandboxes/{SANDBOX}/resume":
            self.state = "RESUMING" if self.state == "PAUSED" else self.state
            return httpx.Response(200, json={"success": True})
        if path.endswith("/send-message"):
            if self.state != "RUNNING":
                return httpx.Response(409, json={"detail": f"Sandbox is {self.state}. Resume it first."})
            self.accepted.append(json.loads(request.content)["content"][0]["text"])
            if self.lose:
                raise httpx.ReadError("connection reset by peer")
            return httpx.Response(200, json={"success": True, "sandbox_status": "RUNNING", "message": None})
        return httpx.Response(404, json={"detail": "Not Found"})


def _snapshot(sandbox_status: str) -> Conversation:
    return Conversation(
        CONVERSATION,
        status=ConversationStatus.FINISHED,
        api="v1",
        sandbox_status=sandbox_status,
        execution_status="finished",
        sandbox_id=SANDBOX,
    )


def _client(sandbox: Sandbox, **options: Any) -> OpenHandsClient:
    return OpenHandsClient(
        SECRET, base_url=BASE, api="v1", retry=QUICK, transport=httpx.MockTransport(sandbox), **options
    )


def test_a_follow_up_to_a_running_sandbox_is_one_post() -> None:
    sandbox = Sandbox("RUNNING")
    with _client(sandbox) as client:
        sent = client.follow_up(_snapshot("RUNNING"), "and the tests")
    assert sandbox.calls == ["POST send-message"] and sandbox.accepted == ["and the tests"]
    assert (sent.status, sent.execution_status, sent.sandbox_status) == ("RUNNING", "running", "RUNNING")


def test_a_sandbox_known_paused_is_resumed_and_waited_for_then_the_message_is_sent_once() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING", "RESUMING"))
    with _client(sandbox) as client:
        sent = client.follow_up(_snapshot("PAUSED"), "and the tests", interval=0.001)
    assert sandbox.calls == [
        "GET app-conversations",
        "POST resume",  # (the resume reads the sandbox's id first)
        "GET app-conversations",
        "GET app-conversations",
        "GET app-conversations",
        "POST send-message",
    ]
    assert sandbox.accepted == ["and the tests"] and sent.status == ConversationStatus.RUNNING


def test_a_sandbox_paused_since_the_last_read_is_learnt_from_the_409_and_the_message_reaches_the_agent_once() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING",))
    with _client(sandbox) as client:
        client.follow_up(_snapshot("RUNNING"), "and the tests", interval=0.001)
    assert sandbox.calls[0] == "POST send-message" and sandbox.calls[-1] == "POST send-message"
    assert "POST resume" in sandbox.calls and sandbox.accepted == ["and the tests"]  # the 409 took nothing


def test_the_async_client_drives_the_same_operation() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING",))

    async def scenario() -> Conversation:
        async with AsyncOpenHandsClient(
            SECRET, base_url=BASE, api="v1", retry=QUICK, transport=httpx.MockTransport(sandbox)
        ) as client:
            return await client.follow_up(_snapshot("PAUSED"), "and the tests", interval=0.001)

    sent = asyncio.run(scenario())
    assert sandbox.accepted == ["and the tests"] and sent.status == ConversationStatus.RUNNING
    assert sandbox.calls.count("POST resume") == 1 and sandbox.calls[-1] == "POST send-message"


def test_the_operation_asks_its_driver_for_the_pauses_and_never_sleeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: pytest.fail("the operation slept"))
    sandbox = Sandbox("PAUSED", resuming=("RESUMING", "RESUMING"))
    operation = V1(BASE).follow_up(_snapshot("PAUSED"), "and the tests", resume_timeout=10, interval=2.5)
    steps: list[Call | Wait] = []
    answer: httpx.Response | None = None
    try:
        while True:
            step = advance(operation, answer)
            steps.append(step)
            answer = (
                None
                if isinstance(step, Wait)
                else sandbox(httpx.Request(step.method, BASE + step.path, params=step.params, json=step.json))
            )
    except StopIteration as done:
        sent = done.value
    assert [s for s in steps if isinstance(s, Wait)] == [Wait(2.5), Wait(2.5)]
    assert sandbox.accepted == ["and the tests"] and sent.execution_status == "running"


def test_a_sandbox_that_does_not_run_again_in_time_is_one_line_and_nothing_is_sent() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING",) * 1000)
    with _client(sandbox) as client:
        with pytest.raises(ConflictError, match=r"did not resume within 0.05 s \(its sandbox is STARTING\)") as caught:
            client.follow_up(_snapshot("PAUSED"), "and the tests", resume_timeout=0.05, interval=0.01)
    assert "\n" not in str(caught.value) and sandbox.accepted == [] and "POST send-message" not in sandbox.calls
    assert sandbox.calls.count("GET app-conversations") == 1 + 6  # the resume's read, then one per pause and a last


def test_a_sandbox_that_fails_while_it_resumes_ends_the_wait_at_once() -> None:
    sandbox = Sandbox("PAUSED", resuming=("ERROR",))
    with _client(sandbox) as client:
        with pytest.raises(ConflictError, match="could not be resumed: its sandbox is ERROR"):
            client.follow_up(_snapshot("PAUSED"), "and the tests", resume_timeout=30, interval=0.001)
    assert sandbox.accepted == [] and len(sandbox.calls) == 3  # read, resume, the read that saw ERROR


def test_a_read_that_fails_while_it_waits_is_read_again_at_the_next_pause() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING",))
    failures = iter([httpx.Response(502, json={"detail": "Bad gateway"})] * 4)

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and sandbox.state == "RESUMING":
            failed = next(failures, None)
            if failed is not None:
                sandbox.calls.append("GET failed")
                return failed
        return sandbox(request)

    with OpenHandsClient(
        SECRET, base_url=BASE, api="v1", retry=RetryPolicy(attempts=1), transport=httpx.MockTransport(flaky)
    ) as client:
        client.follow_up(_snapshot("PAUSED"), "and the tests", interval=0.001)
    assert sandbox.calls.count("GET failed") == 4 and sandbox.accepted == ["and the tests"]


def test_an_answer_lost_after_the_resume_says_it_may_have_been_sent_and_is_not_sent_again() -> None:
    sandbox = Sandbox("PAUSED")
    sandbox.lose = True
    with _client(sandbox) as client:
        with pytest.raises(TransportError, match="may have been sent anyway") as caught:
            client.follow_up(_snapshot("PAUSED"), "and the tests", interval=0.001)
    assert "try again" not in str(caught.value)
    assert sandbox.calls.count("POST send-message") == 1 and sandbox.accepted == ["and the tests"]


def test_a_second_409_after_the_resume_is_raised_not_sent_a_third_time() -> None:
    sandbox = Sandbox("RUNNING")
    refuse = lambda request: httpx.Response(409, json={"detail": "Sandbox is STARTING."})  # noqa: E731

    def stubborn(request: httpx.Request) -> httpx.Response:
        return refuse(request) if request.url.path.endswith("/send-message") else sandbox(request)

    with OpenHandsClient(
        SECRET, base_url=BASE, api="v1", retry=QUICK, transport=httpx.MockTransport(stubborn)
    ) as client:
        with pytest.raises(ConflictError, match="is paused: resume it first"):
            client.follow_up(_snapshot("RUNNING"), "and the tests", interval=0.001)
    assert sandbox.calls.count("POST resume") == 1


def test_a_conversation_deleted_while_it_resumes_says_so() -> None:
    sandbox = Sandbox("PAUSED", resuming=("RESUMING",))
    gone: Callable[[httpx.Request], httpx.Response] = sandbox

    def deleted_after_resume(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and sandbox.state == "RESUMING":
            return httpx.Response(200, json=[None])
        return gone(request)

    with OpenHandsClient(
        SECRET, base_url=BASE, api="v1", retry=QUICK, transport=httpx.MockTransport(deleted_after_resume)
    ) as client:
        with pytest.raises(NotFoundError, match="was not found"):
            client.follow_up(_snapshot("PAUSED"), "and the tests", interval=0.001)
    assert sandbox.accepted == []


@pytest.mark.parametrize(
    ("options", "wrong"),
    [
        ({"resume_timeout": 0}, "resume_timeout"),
        ({"interval": "1"}, "interval"),
        ({"resume_timeout": float("nan")}, "resume_timeout"),
    ],
)
def test_its_arguments_are_checked_before_anything_is_sent(options: dict[str, Any], wrong: str) -> None:
    sandbox = Sandbox("PAUSED")
    with _client(sandbox) as client:
        with pytest.raises(ValidationError, match=wrong):
            client.follow_up(_snapshot("PAUSED"), "and the tests", **options)
        with pytest.raises(ValidationError):
            client.follow_up(_snapshot("PAUSED"), "   ")
    assert sandbox.calls == []


def test_a_transport_that_is_not_one_is_one_line() -> None:
    with pytest.raises(ValidationError, match="transport must be an httpx transport"):
        OpenHandsClient(SECRET, base_url=BASE, transport=object())  # type: ignore[arg-type]


def test_a_handle_sent_to_a_paused_conversation_is_resumed_and_runs_again_over_real_http() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2)) as server:
        session = Session()
        handle = session.start("hi", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
        wait_until(lambda: handle.refresh().is_final)
        handle.pause()
        assert handle.conversation.sandbox_status == "PAUSED"
        handle.send("and the tests")
        assert handle.status == ConversationStatus.RUNNING
        follow_ups = [r for r in server.posts() if r.path.endswith("/send-message")]
        assert len(follow_ups) == 1 and server.state_of(handle.id or "")["sandbox_status"] == "RUNNING"
        session.close()


def test_a_handle_whose_sandbox_was_paused_elsewhere_learns_it_from_the_409_and_sends_once_over_real_http() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.05, running=0.2)) as server:
        session = Session()
        handle = session.start("hi", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
        wait_until(lambda: handle.refresh().is_final)
        with OpenHandsClient(SECRET, base_url=server.base_url) as elsewhere:  # (another notebook, Cloud's own pause)
            elsewhere.pause(handle.conversation)
        assert handle.conversation.sandbox_status == "RUNNING"  # what this handle last read
        handle.send("and the tests")
        posts = [r.path.rsplit("/", 1)[-1] for r in server.posts()]
        assert posts[-3:] == ["send-message", "resume", "send-message"]  # refused (409, not taken), resumed, sent
        assert handle.status == ConversationStatus.RUNNING
        assert server.state_of(handle.id or "")["sandbox_status"] == "RUNNING"
        session.close()
