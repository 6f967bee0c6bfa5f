"""OpenHandsClient / AsyncOpenHandsClient against the local server over real HTTP: both APIs, detection, auth
styles, and every failure."""

from __future__ import annotations

import asyncio
import pickle
import time
import traceback

import httpx
import pytest

from openhands_magics import AsyncOpenHandsClient, OpenHandsClient
from openhands_magics._protocol import KeyAuth, RetryPolicy
from openhands_magics.config import ApiKey
from openhands_magics.errors import (
    ConcurrencyLimitError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    OpenHandsError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    UnsupportedApiError,
    ValidationError,
)
from openhands_magics.models import Conversation
from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, ManualClock, Timeline
from openhands_magics.testing.server import TEAM_LIMIT

from .conftest import FAST, QUICK_RETRY, SECRET

MESSAGE = '  \n\n  Fix "naïve" {parsing} of $HOME\\n paths —\n\twith tabs  \n\n'
VERBATIM = '  Fix "naïve" {parsing} of $HOME\\n paths —\n\twith tabs  '


def follow(client: OpenHandsClient, snapshot: Conversation, until: str, timeout: float = 10) -> list[str]:
    """Refresh until the status is ``until``; the status lines seen on the way."""
    seen = [snapshot.status_line]
    deadline = time.monotonic() + timeout
    while snapshot.status != until:
        assert time.monotonic() < deadline, f"still {seen} after {timeout} s"
        time.sleep(0.05)
        snapshot = client.refresh(snapshot)
        if snapshot.status_line != seen[-1]:
            seen.append(snapshot.status_line)
    return seen


def api_calls(server: LocalOpenHandsServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.requests]


# ---------------------------------------------------------------------------------------------------- V1


def test_v1_start_posts_the_message_verbatim_and_answers_with_the_start_task(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    started = client.start_conversation(MESSAGE, repository="octo/demo")

    [post] = server.posts()
    assert post.path == "/api/v1/app-conversations"
    assert post.authorization == f"Bearer {SECRET}"
    assert post.body == {
        "initial_message": {"content": [{"type": "text", "text": VERBATIM}]},
        "selected_repository": "octo/demo",
    }
    assert started.start_task_id in server.task_ids()
    assert started.conversation_id is None  # it does not exist yet: the start task makes it
    assert (started.status, started.phase, started.api) == ("STARTING", "preparing", "v1")
    assert started.selected_repository == "octo/demo"


def test_auto_asks_with_reads_only_before_the_first_post_and_remembers_the_answer(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    client.start_conversation("hi")
    with OpenHandsClient(SECRET, base_url=server.base_url) as second:
        second.start_conversation("again")

    assert api_calls(server) == [
        ("GET", "/api/conversations"),  # V0's list: 404 on a V1 server
        ("GET", "/api/v1/app-conversations"),  # V1's batched read of an id nobody has
        ("POST", "/api/v1/app-conversations"),
        ("POST", "/api/v1/app-conversations"),  # the second client did not ask again
    ]
    assert client.api == second.api == "v1"


def test_a_v1_conversation_goes_through_the_start_phases_to_finished() -> None:
    clock = ManualClock()  # (each phase a tenth of a second, read twice in each: none is missed, however slow)
    with (
        LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.7, running=0.6), clock=clock) as server,
        OpenHandsClient(SECRET, base_url=server.base_url, timeout=2.0, retry=QUICK_RETRY) as client,
    ):
        started = snapshot = client.start_conversation("say hello")
        seen = [started.status_line]
        for _ in range(40):
            if snapshot.status == "FINISHED":
                break
            clock.advance(0.05)
            snapshot = client.refresh(snapshot)
            if snapshot.status_line != seen[-1]:
                seen.append(snapshot.status_line)
        final = client.refresh(started)

    assert seen[:3] == ["STARTING · preparing", "STARTING · waiting for sandbox", "STARTING · preparing repository"]
    assert "RUNNING" in seen and seen[-1] == "FINISHED"
    assert final.conversation_id in server.conversation_ids()
    assert final.start_task_id == started.start_task_id  # both ids, on the same snapshot
    assert (final.sandbox_status, final.execution_status) == ("RUNNING", "finished")  # the sandbox stays up
    assert final.is_final and final.started_at == started.started_at


def test_the_session_key_the_server_sends_back_is_dropped_on_arrival(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    snapshot = client.start_conversation("hi")
    follow(client, snapshot, "FINISHED")
    final = client.refresh(snapshot)
    assert "session_api_key" not in final.extra
    assert PLANTED_SESSION_KEY not in repr(final) + repr(dict(final.extra))
    assert "llm_model" in final.extra  # other unknown fields are kept


def test_a_start_task_that_fails_is_an_error_status_with_its_reason() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.2, start_error="Chromium is required")) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url) as client:
            seen = follow(client, client.start_conversation("hi"), "ERROR")
    assert seen[-1] == "ERROR · Chromium is required"


def test_a_repository_without_access_fails_in_the_start_task_with_a_reason_even_if_the_server_gives_none() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.2), repositories={"octo/mine"}) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url) as client:
            snapshot = client.start_conversation("no", repository="octo/theirs")  # a 200, like the real server
            follow(client, snapshot, "ERROR")
            assert "no access to the repository" in client.refresh(snapshot).phase


def test_reads_are_batched_up_to_99_ids_a_request(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.max_running = 200
    started = [client.start_conversation(f"task {i}") for i in range(150)]
    time.sleep(FAST.starting + 0.1)
    tasks_read = client.read(started)  # start tasks: READY, then their conversations
    server.requests.clear()

    fresh = client.read(tasks_read)

    assert all(s is not None and s.conversation_id for s in fresh)
    reads = [r for r in server.requests if r.path == "/api/v1/app-conversations"]
    assert [len(r.query["ids"]) for r in reads] == [99, 51]
    assert len(server.requests) == 2


def test_an_unknown_id_is_not_found_and_a_start_task_id_is_found_too(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    with pytest.raises(NotFoundError, match="No conversation or start task 0{32}"):
        client.get_conversation("0" * 32)
    started = client.start_conversation("hi")
    found = client.get_conversation(started.start_task_id.upper())  # any spelling of the UUID
    assert found.start_task_id == started.start_task_id


def test_refresh_of_a_conversation_the_server_lost_is_not_found(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    gone = Conversation("ab" * 16, api="v1")
    with pytest.raises(NotFoundError, match=f"Conversation {'ab' * 16} was not found"):
        client.refresh(gone)


def test_ids_that_are_not_uuids_are_refused_before_sending_on_v1(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    client.dialect()
    server.requests.clear()
    for bad in ("../../etc/passwd", "abc", "0" * 31):
        with pytest.raises(ValidationError, match="not a conversation or start task id"):
            client.get_conversation(bad)
    assert server.requests == []


def test_a_non_uuid_id_from_the_server_never_reaches_a_url(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    server.inject(method="POST", status=200, body={"id": "../../admin", "status": "WORKING"})
    with pytest.raises(ProtocolError, match="invalid start task id"):
        client.start_conversation("hi")


# ---------------------------------------------------------------------------------------------------- V0


def test_auto_picks_v0_on_a_server_that_still_has_it_and_sends_the_v0_body(v0_server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=v0_server.base_url) as client:
        started = client.start_conversation(MESSAGE, repository="octo/demo")
    assert client.api == "v0"
    assert api_calls(v0_server) == [("GET", "/api/conversations"), ("POST", "/api/conversations")]
    assert v0_server.posts()[0].body == {"initial_user_msg": VERBATIM, "repository": "octo/demo"}
    assert (started.conversation_id in v0_server.conversation_ids(), started.status) == (True, "STARTING")


def test_v0_finishes_when_the_agent_does_although_the_status_stays_running(v0_server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=v0_server.base_url) as client:
        started = client.start_conversation("say hello")
        seen = follow(client, started, "FINISHED")
        final = client.refresh(started)
    assert seen[0] == "STARTING" and seen[-1] == "FINISHED"
    assert (final.server_status, final.agent_state) == ("RUNNING", "finished")  # what V0 itself says
    assert "session_api_key" not in final.extra


def test_v0_unknown_id_is_not_found_for_openhands_null(v0_server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=v0_server.base_url) as client:
        with pytest.raises(NotFoundError, match="was not found"):
            client.get_conversation("1" * 32)


def test_v0_unknown_fields_are_422_a_bad_request(v0_server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=v0_server.base_url, api="v0") as client:
        v0_server.inject(
            method="POST",
            status=422,
            body={"detail": [{"type": "extra_forbidden", "msg": "Extra inputs are not permitted"}]},
        )
        with pytest.raises(BadRequestError, match="Extra inputs are not permitted"):
            client.start_conversation("hi")


def test_v0_refusal_that_names_an_id_keeps_the_id_in_the_message(v0_server: LocalOpenHandsServer) -> None:
    v0_server.inject(
        method="POST", status=200, body={"status": "error", "conversation_id": "abc123", "message": "no LLM set"}
    )
    with OpenHandsClient(SECRET, base_url=v0_server.base_url, api="v0") as client:
        with pytest.raises(BadRequestError, match="did not start the conversation: no LLM set .*abc123"):
            client.start_conversation("hi")


# ---------------------------------------------------------------------------------------------------- API choice


def test_a_forced_v0_on_a_v1_server_says_so_and_never_talks_of_conversation_ids(server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=server.base_url, api="v0") as client:
        with pytest.raises(UnsupportedApiError, match="does not speak the OpenHands V0 API.*auto or v1") as caught:
            client.start_conversation("hi")
    assert "conversation id" not in str(caught.value)
    assert server.conversation_ids() == []


def test_a_forced_v1_never_sends_a_v0_body_and_a_forced_v1_on_a_v0_server_fails_cleanly(
    v0_server: LocalOpenHandsServer,
) -> None:
    v0_server.inject(method="POST", path_prefix="/api/v1/", status=404, body={"detail": "Not Found"})
    with OpenHandsClient(SECRET, base_url=v0_server.base_url, api="v1") as client:
        with pytest.raises(UnsupportedApiError, match="does not speak the OpenHands V1 API"):
            client.start_conversation("hi")
    assert [r.path for r in v0_server.posts()] == ["/api/v1/app-conversations"]


def test_a_server_with_neither_api_gets_one_line_and_nothing_is_posted(server: LocalOpenHandsServer) -> None:
    server.inject(status=404, body={"detail": "Not Found"}, times=2)
    with OpenHandsClient(SECRET, base_url=server.base_url) as client:
        neither = "speaks neither OpenHands API.*is the base URL an OpenHands server"
        with pytest.raises(UnsupportedApiError, match=neither):
            client.start_conversation("hi")
    assert server.posts() == []


def test_the_api_comes_from_the_environment_and_nonsense_is_refused(
    server: LocalOpenHandsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENHANDS_API", "V1")
    with OpenHandsClient(SECRET, base_url=server.base_url) as client:
        client.start_conversation("hi")
    assert api_calls(server) == [("POST", "/api/v1/app-conversations")]  # nothing asked: it was set
    monkeypatch.setenv("OPENHANDS_API", "v2")
    with pytest.raises(ConfigurationError, match="OPENHANDS_API must be one of auto, v1, v0"):
        OpenHandsClient(SECRET, base_url=server.base_url)


# ---------------------------------------------------------------------------------------------------- auth


def test_a_self_hosted_server_with_a_session_key_works_without_any_setting() -> None:
    with LocalOpenHandsServer(SECRET, auth="session-key", timeline=FAST) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url) as client:
            started = client.start_conversation("hi")
            follow(client, started, "FINISHED")
        headers = [(r.headers.get("x-session-api-key"), r.authorization) for r in server.requests]
    assert headers[0] == (None, f"Bearer {SECRET}")  # tried Cloud's way first: 401
    assert headers[1] == (SECRET, None)  # then the session header, remembered from then on
    assert all(h == (SECRET, None) for h in headers[1:])


def test_wrong_key_is_an_authentication_error_about_the_key(server: LocalOpenHandsServer) -> None:
    with OpenHandsClient("wrong-key", base_url=server.base_url, api="v1") as wrong:
        with pytest.raises(AuthenticationError, match="API key was rejected.*OPENHANDS_API_KEY") as caught:
            wrong.start_conversation("hi")
    assert caught.value.status_code == 401
    assert len(server.posts()) == 2  # once per auth header, never more: a 401 started nothing


def test_older_servers_git_provider_400_is_an_authentication_error(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    server.inject(
        method="POST",
        status=400,
        body={"status": "error", "message": "Git auth failed", "msg_id": "STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR"},
    )
    with pytest.raises(AuthenticationError, match="cannot access repository octo/x.*Git auth failed"):
        client.start_conversation("hi", repository="octo/x")


def test_other_400_is_a_bad_request_quoting_the_server(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    server.inject(method="POST", status=400, body={"status": "error", "message": "Settings not found"})
    with pytest.raises(BadRequestError, match="Settings not found"):
        client.start_conversation("hi")


# ---------------------------------------------------------------------------------------------------- failures


def test_eleventh_running_conversation_of_a_team_is_refused_as_too_many_running() -> None:
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.1, running=60), max_running=TEAM_LIMIT) as server:
        with OpenHandsClient(SECRET, base_url=server.base_url, api="v1") as client:
            for number in range(10):
                client.start_conversation(f"task {number}")
            with pytest.raises(ConcurrencyLimitError, match="runs at most 10 at once and 10 run now") as caught:
                client.start_conversation("one too many")
    assert (caught.value.limit, caught.value.running) == (10, 10)
    assert len(server.posts()) == 11  # the 429 POST was not retried


def test_a_rate_limit_429_on_a_start_is_not_read_as_a_full_account(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    client.dialect()
    server.inject(status=429, body={"message": "Too many requests"}, headers={"Retry-After": "1"}, method="POST")
    with pytest.raises(RateLimitError) as caught:
        client.start_conversation("hi")
    assert not isinstance(caught.value, ConcurrencyLimitError) and caught.value.retry_after == 1


def test_reads_retry_5xx_and_malformed_json_then_succeed(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    started = client.start_conversation("hi")
    server.requests.clear()
    server.inject(status=503, body={"detail": "busy"}, method="GET")
    server.inject(status=200, body=b"<html>proxy error</html>", method="GET")
    assert client.refresh(started).start_task_id == started.start_task_id
    assert [r.method for r in server.requests] == ["GET", "GET", "GET"]


def test_reads_give_up_after_the_retry_budget_with_a_server_error(
    server: LocalOpenHandsServer, client: OpenHandsClient
) -> None:
    client.dialect()
    server.requests.clear()
    server.inject(status=502, times=5, method="GET")
    with pytest.raises(ServerError, match="HTTP 502"):
        client.get_conversation("a" * 32)
    assert len(server.requests) == QUICK_RETRY.attempts


def test_reads_honour_retry_after_on_429(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    started = client.start_conversation("hi")
    server.inject(status=429, body={"message": "Too many requests"}, headers={"Retry-After": "0"}, method="GET")
    assert client.refresh(started).start_task_id == started.start_task_id


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 200, "body": b"{not json"}, {"drop": True}])
def test_a_start_is_never_retried_once_it_may_have_reached_the_server(
    server: LocalOpenHandsServer, client: OpenHandsClient, fault: dict[str, object]
) -> None:
    client.dialect()
    server.inject(method="POST", **fault)
    maybe = f"may have been started anyway: check {server.base_url} before retrying"
    with pytest.raises(OpenHandsError, match=maybe) as caught:
        client.start_conversation("do it once")
    assert caught.value.maybe_started_at == server.base_url
    assert len(server.posts()) == 1
    assert server.task_ids() == []


def test_a_post_timeout_is_a_transport_error_and_not_retried(server: LocalOpenHandsServer) -> None:
    server.inject(method="POST", delay=1.0)
    with OpenHandsClient(SECRET, base_url=server.base_url, timeout=0.2, retry=QUICK_RETRY, api="v1") as slow:
        with pytest.raises(TransportError, match="did not answer within 0.2 s"):
            slow.start_conversation("slow")
    assert len(server.posts()) == 1


def test_connection_refused_is_one_clear_transport_error(dead_url: str) -> None:
    with OpenHandsClient(SECRET, base_url=dead_url, retry=QUICK_RETRY, api="v1") as client:
        with pytest.raises(TransportError, match="Could not connect to http://127.0.0.1:.*is the server up") as caught:
            client.start_conversation("hi")
    assert caught.value.request_sent is False
    assert "may have been started" not in str(caught.value)  # it never reached a server


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.start_conversation("  \n \n"), ValidationError),
        (lambda c: c.start_conversation("hi", repository="not a repo"), ValidationError),
        (lambda c: c.start_conversation(None), ValidationError),
        (lambda c: c.get_conversation(123), ValidationError),
    ],
)
def test_bad_input_is_refused_before_sending(  # type: ignore[no-untyped-def]
    server: LocalOpenHandsServer, client: OpenHandsClient, call, error
) -> None:
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


@pytest.mark.parametrize(
    "url", ["https://app.all-hands.dev/", "http://localhost:3000", "http://127.0.0.2:1", "http://[::1]:3000"]
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    with OpenHandsClient(SECRET, base_url=url) as client:
        assert client.base_url == url.rstrip("/")


def test_environment_configures_key_and_base_url(server_env: LocalOpenHandsServer) -> None:
    with OpenHandsClient() as client:
        assert client.base_url == server_env.base_url
        client.start_conversation("from env")
    assert server_env.posts()[0].authorization == f"Bearer {SECRET}"


def test_redirects_are_not_followed_so_the_key_stays_put(server: LocalOpenHandsServer, client: OpenHandsClient) -> None:
    client.dialect()
    server.requests.clear()
    server.inject(status=307, headers={"Location": "http://127.0.0.1:9/steal"}, body=b"")
    with pytest.raises(OpenHandsError, match="HTTP 307"):
        client.get_conversation("a" * 32)
    assert len(server.requests) == 1


def test_the_key_never_shows_in_reprs_pickles_or_tracebacks(server: LocalOpenHandsServer, dead_url: str) -> None:
    key = ApiKey(SECRET)
    assert SECRET not in repr(key) + str(key) + repr(KeyAuth(key, server.base_url))
    with pytest.raises(TypeError):
        pickle.dumps(key)
    for base_url, fault in ((dead_url, None), (server.base_url, {"status": 500}), (server.base_url, {"drop": True})):
        if fault:
            server.inject(method="POST", **fault)
        with OpenHandsClient(SECRET, base_url=base_url, retry=RetryPolicy(attempts=1), api="v1") as client:
            assert SECRET not in repr(client)
            with pytest.raises(OpenHandsError) as caught:
                client.start_conversation("hi")
        rendered = "".join(traceback.TracebackException.from_exception(caught.value, capture_locals=True).format())
        assert SECRET not in rendered
        assert "During handling" not in rendered  # httpx's exception (and its frames) are dropped, not chained


def test_async_client_starts_follows_and_maps_errors(server: LocalOpenHandsServer) -> None:
    async def scenario() -> list[str]:
        async with AsyncOpenHandsClient(SECRET, base_url=server.base_url, retry=QUICK_RETRY) as client:
            snapshot = await client.start_conversation("async hello", repository="octo/demo")
            seen = [snapshot.status_line]
            server.inject(status=503, method="GET")
            while not snapshot.is_final:
                await asyncio.sleep(0.05)
                snapshot = await client.refresh(snapshot)
                if snapshot.status_line != seen[-1]:
                    seen.append(snapshot.status_line)
            with pytest.raises(NotFoundError):
                await client.get_conversation("f" * 32)
            server.inject(method="POST", status=500)
            with pytest.raises(ServerError, match="may have been started anyway"):
                await client.start_conversation("not twice")
            assert client.api == "v1"
            return seen

    seen = asyncio.run(scenario())
    assert seen[0] == "STARTING · preparing" and seen[-1] == "FINISHED" and "RUNNING" in seen
    assert len(server.posts()) == 2


# ---------------------------------------------------------------------------------------------------- transport=
def test_a_mock_transport_gets_what_the_network_would_the_key_in_its_header_and_nowhere_else() -> None:
    seen: list[httpx.Request] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[None])

    async def both() -> None:
        with OpenHandsClient(
            SECRET, base_url="http://127.0.0.1:9", api="v1", transport=httpx.MockTransport(server)
        ) as client:
            assert client.read([Conversation("a" * 32)]) == [None]
            assert SECRET not in repr(client)
        async with AsyncOpenHandsClient(
            SECRET, base_url="http://127.0.0.1:9", api="v1", transport=httpx.MockTransport(server)
        ) as aclient:
            assert await aclient.read([Conversation("b" * 32)]) == [None]

    asyncio.run(both())
    assert [r.url.params["ids"] for r in seen] == ["a" * 32, "b" * 32]
    assert {r.headers["Authorization"] for r in seen} == {f"Bearer {SECRET}"}
    assert all(r.headers["User-Agent"].startswith("openhands-magics/") for r in seen)


def test_a_transport_of_the_wrong_kind_is_one_line_before_anything_is_sent() -> None:
    with pytest.raises(ValidationError, match="must be an async httpx transport"):
        AsyncOpenHandsClient(SECRET, base_url="http://127.0.0.1:9", transport=httpx.HTTPTransport())
    with pytest.raises(ValidationError, match="must be an httpx transport"):
        OpenHandsClient(SECRET, base_url="http://127.0.0.1:9", transport=httpx.AsyncHTTPTransport())
