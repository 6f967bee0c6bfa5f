"""OpenHandsClient / AsyncOpenHandsClient against the local server over real HTTP: the contract and every failure."""

from __future__ import annotations

import asyncio
import pickle
import traceback

import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import BearerAuth, RetryPolicy
from openhands_magics.config import ApiKey
from openhands_magics.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    OpenHandsError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import QUICK_RETRY, SECRET

MESSAGE = '  \n\n  Fix "naïve" {parsing} of $HOME\\n paths —\n\twith tabs  \n\n'


def test_start_sends_message_verbatim_with_repository_and_bearer_key(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    conversation = client.start_conversation(MESSAGE, repository="octo/demo")

    [post] = server.posts()
    assert post.path == "/api/conversations"
    assert post.authorization == f"Bearer {SECRET}"
    assert post.body == {"initial_user_msg": '  Fix "naïve" {parsing} of $HOME\\n paths —\n\twith tabs  ', "repository": "octo/demo"}
    assert conversation.conversation_id in server.conversation_ids()
    assert conversation.status == "STARTING"
    assert conversation.selected_repository == "octo/demo"
    assert client.conversation_url(conversation.id) == f"{server.base_url}/conversations/{conversation.id}"


def test_start_without_repository_omits_the_field(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    client.start_conversation("hello")
    assert server.posts()[0].body == {"initial_user_msg": "hello"}


def test_get_returns_typed_snapshot_following_the_server(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    started = client.start_conversation("Make it faster", repository="octo/demo")
    server.set_status(started.id, "RUNNING")

    fetched = client.get_conversation(started.id)

    assert fetched.status == "RUNNING"
    assert fetched.title == "Make it faster"
    assert fetched.selected_repository == "octo/demo"
    assert fetched.trigger == "openhands_api"
    assert fetched.created_at is not None and fetched.created_at.tzinfo is not None
    assert fetched.last_updated_at is not None and fetched.last_updated_at >= fetched.created_at
    assert fetched.extra["runtime_status"] == "STATUS$READY"  # unknown fields are kept, not fatal
    server.set_status(started.id, "STOPPED")
    assert client.get_conversation(started.id).is_final


def test_wrong_key_is_an_authentication_error_about_the_key(server: LocalOpenHandsServer) -> None:
    with OpenHandsClient("wrong-key", base_url=server.base_url) as wrong:
        with pytest.raises(AuthenticationError, match="API key was rejected.*OPENHANDS_API_KEY") as caught:
            wrong.start_conversation("hi")
    assert caught.value.status_code == 401
    assert len(server.posts()) == 1  # not retried


def test_repository_without_access_is_an_authentication_error_naming_it() -> None:
    with LocalOpenHandsServer(api_key=SECRET, repositories={"octo/mine"}) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url) as client:
            client.start_conversation("ok", repository="octo/mine")
            with pytest.raises(AuthenticationError, match="cannot access repository octo/theirs"):
                client.start_conversation("no", repository="octo/theirs")


def test_older_servers_git_provider_400_is_an_authentication_error(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(status=400, body={"status": "error", "message": "Git auth failed", "msg_id": "STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR"})
    with pytest.raises(AuthenticationError, match="cannot access repository octo/x.*Git auth failed"):
        client.start_conversation("hi", repository="octo/x")


def test_other_400_is_a_bad_request_quoting_the_server(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(status=400, body={"status": "error", "message": "Settings not found", "msg_id": "CONFIGURATION$SETTINGS_NOT_FOUND"})
    with pytest.raises(BadRequestError, match="Settings not found"):
        client.start_conversation("hi")


def test_eleventh_running_conversation_is_rate_limited_with_retry_after(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.schedule = (("RUNNING", None),)
    for number in range(10):
        client.start_conversation(f"task {number}")
    with pytest.raises(RateLimitError, match="10 conversations at once.*retry in 30 s") as caught:
        client.start_conversation("one too many")
    assert caught.value.retry_after == 30
    assert len(server.posts()) == 11  # the 429 POST was not retried


def test_unknown_id_is_not_found_for_404_and_for_openhands_null(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_conversation("0" * 32)
    server.inject(status=200, body=b"null")  # what OpenHands really answers for an unknown id
    with pytest.raises(NotFoundError, match="was not found"):
        client.get_conversation("1" * 32)


def test_get_retries_5xx_and_malformed_json_then_succeeds(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    conversation = client.start_conversation("hi")
    server.inject(status=503, body={"detail": "busy"}, method="GET")
    server.inject(status=200, body=b"<html>proxy error</html>", method="GET")
    assert client.get_conversation(conversation.id).id == conversation.id
    assert [r.method for r in server.requests] == ["POST", "GET", "GET", "GET"]


def test_get_gives_up_after_the_retry_budget_with_a_server_error(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(status=502, times=5, method="GET")
    with pytest.raises(ServerError, match="HTTP 502"):
        client.get_conversation("a" * 32)
    assert len(server.requests) == QUICK_RETRY.attempts


def test_get_honours_retry_after_on_429(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    conversation = client.start_conversation("hi")
    server.inject(status=429, body={"message": "Too many requests"}, headers={"Retry-After": "0"}, method="GET")
    assert client.get_conversation(conversation.id).id == conversation.id


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 200, "body": b"{not json"}, {"drop": True}])
def test_post_is_never_retried_once_it_may_have_reached_the_server(
    server: LocalOpenHandsServer, client: OpenHandsClient, fault: dict[str, object]
) -> None:
    server.inject(method="POST", **fault)
    with pytest.raises(OpenHandsError, match=f"may have been started anyway: check {server.base_url} before retrying"):
        client.start_conversation("do it once")
    assert len(server.posts()) == 1
    assert server.conversation_ids() == []


def test_an_odd_field_in_the_post_answer_does_not_lose_the_started_id(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(method="POST", status=200, body={"status": "ok", "conversation_id": "abc123", "title": {"not": "text"}})
    conversation = client.start_conversation("keep my id")
    assert (conversation.conversation_id, conversation.status) == ("abc123", "STARTING")


def test_a_refusal_that_names_an_id_keeps_the_id_in_the_message(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(method="POST", status=200, body={"status": "error", "conversation_id": "abc123", "message": "no LLM set"})
    with pytest.raises(BadRequestError, match="did not start the conversation: no LLM set .*abc123"):
        client.start_conversation("hi")


def test_post_timeout_is_a_transport_error_and_not_retried(server: LocalOpenHandsServer) -> None:
    server.inject(method="POST", delay=1.0)
    with OpenHandsClient(SECRET, base_url=server.base_url, timeout=0.2, retry=QUICK_RETRY) as slow:
        with pytest.raises(TransportError, match="did not answer within 0.2 s"):
            slow.start_conversation("slow")
    assert len(server.posts()) == 1


def test_connection_refused_is_one_clear_transport_error(dead_url: str) -> None:
    with OpenHandsClient(SECRET, base_url=dead_url, retry=QUICK_RETRY) as client:
        with pytest.raises(TransportError, match="Could not connect to http://127.0.0.1:.*is the server up") as caught:
            client.start_conversation("hi")
    assert caught.value.request_sent is False
    assert "may have been started" not in str(caught.value)  # it never reached a server


def test_invalid_id_from_the_server_never_reaches_a_url(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(method="POST", status=200, body={"status": "ok", "conversation_id": "../../admin"})
    with pytest.raises(ProtocolError, match="invalid conversation id"):
        client.start_conversation("hi")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.start_conversation("  \n \n"), ValidationError),
        (lambda c: c.start_conversation("hi", repository="not a repo"), ValidationError),
        (lambda c: c.get_conversation("../../etc/passwd"), ValidationError),
    ],
)
def test_bad_input_is_refused_before_sending(server: LocalOpenHandsServer, client: OpenHandsClient, call, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        call(client)
    assert server.requests == []


def test_no_key_is_a_configuration_error_that_says_how_to_set_one() -> None:
    with pytest.raises(ConfigurationError, match="OPENHANDS_API_KEY.*%openhands --login"):
        OpenHandsClient()


@pytest.mark.parametrize("url", ["http://example.com", "http://10.0.0.5:3000", "ftp://host", "not a url"])
def test_key_is_never_sent_over_plain_http_off_this_machine(url: str) -> None:
    with pytest.raises(ConfigurationError):
        OpenHandsClient(SECRET, base_url=url)


@pytest.mark.parametrize("url", ["https://app.all-hands.dev/", "http://localhost:3000", "http://127.0.0.2:1", "http://[::1]:3000"])
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    with OpenHandsClient(SECRET, base_url=url) as client:
        assert client.base_url == url.rstrip("/")


def test_environment_configures_key_and_base_url(server_env: LocalOpenHandsServer) -> None:
    with OpenHandsClient() as client:
        assert client.base_url == server_env.base_url
        client.start_conversation("from env")
    assert server_env.posts()[0].authorization == f"Bearer {SECRET}"


def test_redirects_are_not_followed_so_the_key_stays_put(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(status=307, headers={"Location": "http://127.0.0.1:9/steal"}, body=b"")
    with pytest.raises(OpenHandsError, match="HTTP 307"):
        client.get_conversation("a" * 32)
    assert len(server.requests) == 1


def test_the_key_never_shows_in_reprs_pickles_or_tracebacks(server: LocalOpenHandsServer, dead_url: str) -> None:
    key = ApiKey(SECRET)
    assert SECRET not in repr(key) + str(key) + repr(BearerAuth(key))
    with pytest.raises(TypeError):
        pickle.dumps(key)
    for base_url, fault in ((dead_url, None), (server.base_url, {"status": 500}), (server.base_url, {"drop": True})):
        if fault:
            server.inject(**fault)
        with OpenHandsClient(SECRET, base_url=base_url, retry=RetryPolicy(attempts=1)) as client:
            assert SECRET not in repr(client)
            with pytest.raises(OpenHandsError) as caught:
                client.start_conversation("hi")
        rendered = "".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format())
        assert SECRET not in rendered
        assert "During handling" not in rendered  # httpx's exception (and its frames) are dropped, not chained


def test_async_client_starts_polls_and_maps_errors(server: LocalOpenHandsServer) -> None:
    async def scenario() -> None:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=QUICK_RETRY) as client:
            started = await client.start_conversation("async hello", repository="octo/demo")
            server.inject(status=503, method="GET")
            server.set_status(started.id, "RUNNING")
            assert (await client.get_conversation(started.id)).status == "RUNNING"
            with pytest.raises(NotFoundError):
                await client.get_conversation("f" * 32)
            server.inject(method="POST", status=500)
            with pytest.raises(ServerError):
                await client.start_conversation("not twice")

    asyncio.run(scenario())
    assert [r.method for r in server.requests] == ["POST", "GET", "GET", "GET", "POST"]
