"""The local OpenHands server's HTTP contract (V1 and V0), checked over real HTTP with plain httpx.

The expected answers are the real server's (OpenHands 1.11.0 for V1, 1.6.0 for V0), quirks included: see the
project's API notes. Every server here is started by the test itself, with timelines short enough to bound each test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openhands_magics import testing
from openhands_magics.testing import (
    DEMO_API_KEY,
    PLANTED_SESSION_KEY,
    Fault,
    LocalOpenHandsServer,
    RecordedRequest,
    Timeline,
)

from .conftest import wait_until  # noqa: F401 (the other test files import it from here too)

KEY = "sk-oh-server-test-key"
HEX32 = re.compile(r"[0-9a-f]{32}")
Z_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
NAIVE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
#: Nothing moves during a test unless the test forces it.
FROZEN = Timeline(starting=30.0, running=30.0)
#: Starts at once, then the agent works for longer than any test.
READY_AT_ONCE = Timeline(starting=0.05, running=30.0)
QUICK = Timeline(starting=0.3, running=0.4)
PHASES = [
    "WORKING",
    "WAITING_FOR_SANDBOX",
    "PREPARING_REPOSITORY",
    "RUNNING_SETUP_SCRIPT",
    "SETTING_UP_GIT_HOOKS",
    "SETTING_UP_SKILLS",
    "STARTING_CONVERSATION",
]
V1 = "/api/v1/app-conversations"
UNKNOWN = "0123456789abcdef0123456789abcdef"
Served = tuple[LocalOpenHandsServer, httpx.Client]
Serve = Callable[..., Served]


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def plain(method: str, url: str, **options: Any) -> httpx.Response:
    """One request outside any client, so without its headers. ``verify=False``: plain http on loopback, and
    loading the CA bundle would cost ~0.15 s a request."""
    return httpx.request(method, url, verify=False, timeout=5.0, **options)


def message(text: str) -> dict[str, Any]:
    return {"initial_message": {"content": [{"type": "text", "text": text}]}}


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours *_PROXY variables; every request here must go straight to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve_local() -> Iterator[Serve]:
    """Start servers (and a client with the right Bearer key for each); all are stopped after the test."""
    opened: list[Served] = []

    def open_(timeline: Timeline = FROZEN, timeout: float = 5.0, **options: Any) -> Served:
        server = LocalOpenHandsServer(KEY, timeline=timeline, **options).start()
        client = httpx.Client(base_url=server.base_url, headers=bearer(), timeout=timeout, verify=False)
        opened.append((server, client))
        return server, client

    yield open_
    for server, client in opened:
        client.close()
        server.stop()


@pytest.fixture
def v1(serve_local: Serve) -> Served:
    return serve_local(READY_AT_ONCE)


@pytest.fixture
def v0(serve_local: Serve) -> Served:
    return serve_local(FROZEN, api="v0")


def post_task(http: httpx.Client, body: Any) -> dict[str, Any]:
    response = http.post(V1, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def read_task(http: httpx.Client, task_id: str) -> dict[str, Any]:
    [task] = http.get(f"{V1}/start-tasks", params={"ids": task_id}).json()
    return task


def finished_task(http: httpx.Client, task_id: str, timeout: float = 3.0) -> dict[str, Any]:
    return wait_until(lambda: (task := read_task(http, task_id))["status"] in ("READY", "ERROR") and task, timeout)


def start_ready(http: httpx.Client, text: str = "x", **fields: Any) -> str:
    """Start a V1 conversation and wait for its id."""
    task = finished_task(http, post_task(http, {**message(text), **fields})["id"])
    assert task["status"] == "READY", task
    return task["app_conversation_id"]


def read_conversation(http: httpx.Client, conversation_id: str) -> dict[str, Any]:
    [conversation] = http.get(V1, params={"ids": conversation_id}).json()
    return conversation


def start_v0(http: httpx.Client, text: str | None = "x", **fields: Any) -> str:
    response = http.post("/api/conversations", json={"initial_user_msg": text, **fields})
    assert response.status_code == 200, response.text
    return response.json()["conversation_id"]


# ==================================================================================================== lifecycle


def test_listens_on_a_free_loopback_port(serve_local: Serve) -> None:
    server, _ = serve_local()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert not server.base_url.endswith(":0")
    assert server.environ() == {"OPENHANDS_BASE_URL": server.base_url, "OPENHANDS_API_KEY": KEY}
    assert (server.api, server.api_key) == ("v1", KEY)


def test_stopped_server_refuses_connections() -> None:
    with LocalOpenHandsServer(KEY) as server:
        base_url = server.base_url
    with pytest.raises(httpx.ConnectError):
        plain("GET", f"{base_url}{V1}/count", headers=bearer())


def test_stop_closes_open_connections_so_a_kept_alive_client_cannot_start_anything_after() -> None:
    server = LocalOpenHandsServer(KEY, timeline=FROZEN).start()
    try:
        with httpx.Client(base_url=server.base_url, headers=bearer(), timeout=5.0, verify=False) as http:
            post_task(http, message("before stop"))  # the connection stays open for the next request
            server.stop()
            with pytest.raises(httpx.TransportError):
                http.post(V1, json=message("after stop"))
    finally:
        server.stop()  # (twice is fine)
    assert [r.body for r in server.posts()] == [message("before stop")]
    assert len(server.task_ids()) == 1


def test_stop_ends_a_request_still_waiting_for_its_answer() -> None:
    server = LocalOpenHandsServer(KEY, timeline=FROZEN).start()
    server.inject(status=200, body={"late": True}, delay=3.0)
    outcome: list[BaseException | httpx.Response] = []

    def ask() -> None:
        try:
            outcome.append(plain("GET", f"{server.base_url}{V1}/count", headers=bearer()))
        except httpx.HTTPError as error:
            outcome.append(error)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        wait_until(lambda: server.requests)
        started = time.monotonic()
        server.stop()
        asking.join(timeout=5)
        assert time.monotonic() - started < 2.0  # not after the answer's 3 s delay
    finally:
        server.stop()
        asking.join()
    [ended] = outcome
    assert isinstance(ended, httpx.TransportError)


@pytest.mark.parametrize(
    "options",
    [
        {"api": "v2"},
        {"auth": "basic"},
        {"timeline": Timeline(outcome="awaiting_user_input")},  # V0 only
        {"timeline": Timeline(outcome="done")},
    ],
)
def test_unknown_api_auth_or_outcome_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LocalOpenHandsServer(KEY, **options)


# ==================================================================================================== auth


@pytest.mark.parametrize("api", ["v1", "v0"])
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param(bearer("wrong-key"), id="wrong-key"),
        pytest.param({"Authorization": KEY}, id="not-bearer"),
        pytest.param({"X-Session-API-Key": KEY}, id="session-key-header"),
    ],
)
def test_bearer_auth_refuses_anything_but_the_bearer_key(serve_local: Serve, api: str, headers: dict[str, str]) -> None:
    server, http = serve_local(api=api)
    for method, path in [("GET", f"{V1}/count"), ("POST", V1), ("POST", "/api/conversations"), ("GET", "/api/nothing")]:
        response = plain(method, f"{server.base_url}{path}", headers=headers, json={})
        assert (response.status_code, response.json()) == (401, {"error": "NoCredentialsError"})
    assert http.get(f"{V1}/count").status_code == 200
    assert server.task_ids() == server.conversation_ids() == []


@pytest.mark.parametrize("api", ["v1", "v0"])
def test_session_key_auth_wants_the_x_session_api_key_header(serve_local: Serve, api: str) -> None:
    server, _ = serve_local(api=api, auth="session-key")
    url = f"{server.base_url}{V1}/count"
    assert plain("GET", url, headers={"X-Session-API-Key": KEY}).status_code == 200
    for headers in ({}, bearer(), {"X-Session-API-Key": "wrong"}):
        response = plain("GET", url, headers=headers)
        assert (response.status_code, response.json()) == (401, {"detail": "Unauthorized"})


@pytest.mark.parametrize("api", ["v1", "v0"])
def test_auth_none_takes_anything(serve_local: Serve, api: str) -> None:
    server, _ = serve_local(api=api, auth="none")
    for headers in ({}, bearer("whatever"), {"X-Session-API-Key": "whatever"}):
        assert plain("GET", f"{server.base_url}{V1}/count", headers=headers).json() == 0


# ==================================================================================================== V1: start


def test_v1_post_answers_a_working_start_task(serve_local: Serve) -> None:
    server, http = serve_local(FROZEN)
    task = post_task(http, {**message("say hello"), "selected_repository": "octo/demo", "selected_branch": "main"})

    assert set(task) == {
        "id",
        "created_by_user_id",
        "status",
        "detail",
        "app_conversation_id",
        "sandbox_id",
        "agent_server_url",
        "request",
        "created_at",
        "updated_at",
    }
    assert HEX32.fullmatch(task["id"])
    assert (task["status"], task["detail"], task["app_conversation_id"]) == ("WORKING", None, None)
    assert (task["sandbox_id"], task["agent_server_url"], task["created_by_user_id"]) == (None, None, None)
    assert Z_TIME.fullmatch(task["created_at"]) and Z_TIME.fullmatch(task["updated_at"])
    request = task["request"]
    assert request["initial_message"] == {
        "role": "user",
        "content": [{"cache_prompt": False, "type": "text", "text": "say hello"}],
        "run": False,
    }
    assert (request["selected_repository"], request["selected_branch"]) == ("octo/demo", "main")
    assert request["agent_type"] == "default"
    assert server.task_ids() == [task["id"]]
    assert server.conversation_ids() == []  # no conversation until the task is READY
    assert server.running_count() == 1


def test_v1_start_task_goes_through_the_phases_in_order_then_ready(serve_local: Serve) -> None:
    _, http = serve_local(Timeline(starting=0.7, running=30.0))
    task_id = post_task(http, message("x"))["id"]
    seen: list[dict[str, Any]] = []

    def observe() -> bool:
        task = read_task(http, task_id)
        if not seen or seen[-1]["status"] != task["status"]:
            seen.append(task)
        return task["status"] == "READY"

    wait_until(observe)

    statuses = [task["status"] for task in seen]
    assert statuses[0] == "WORKING" and statuses[-1] == "READY"
    assert statuses[:-1] == [phase for phase in PHASES if phase in statuses]  # in order, none unknown
    assert len(statuses) >= 5
    for task in seen:
        assert (task["sandbox_id"] is None) == (task["status"] == "WORKING")
        assert (task["agent_server_url"] is None) == (task["status"] not in ("STARTING_CONVERSATION", "READY"))
        assert (task["app_conversation_id"] is None) == (task["status"] != "READY")
        assert NAIVE_TIME.fullmatch(task["created_at"]) and NAIVE_TIME.fullmatch(task["updated_at"])  # no Z
    updated = [task["updated_at"] for task in seen]
    assert updated == sorted(updated) and len(set(updated)) == len(updated)
    ready = seen[-1]
    assert HEX32.fullmatch(ready["app_conversation_id"]) and ready["app_conversation_id"] != task_id
    assert ready["detail"] is None


@pytest.mark.parametrize("detail", ["sandbox failed to start", ""])
def test_v1_start_error_ends_the_task_in_error_with_its_detail(serve_local: Serve, detail: str) -> None:
    server, http = serve_local(Timeline(starting=0.2, running=30.0, start_error=detail))
    task = post_task(http, message("x"))
    assert task["status"] == "WORKING"

    ended = finished_task(http, task["id"])

    assert (ended["status"], ended["detail"], ended["app_conversation_id"]) == ("ERROR", detail, None)
    assert server.conversation_ids() == [] and server.running_count() == 0
    assert http.get(f"{V1}/count").json() == 0


def test_v1_repository_without_access_ends_in_error_after_a_200_post(serve_local: Serve) -> None:
    server, http = serve_local(READY_AT_ONCE, repositories={"octo/ok"})
    denied = post_task(http, {**message("x"), "selected_repository": "octo/other"})
    allowed = post_task(http, {**message("x"), "selected_repository": "octo/ok"})

    error = finished_task(http, denied["id"])
    ready = finished_task(http, allowed["id"])

    assert (error["status"], error["detail"], error["app_conversation_id"]) == ("ERROR", "", None)
    assert error["sandbox_id"] is not None and error["agent_server_url"] is None  # it failed preparing the repository
    assert ready["status"] == "READY"
    assert read_conversation(http, ready["app_conversation_id"])["selected_repository"] == "octo/ok"
    assert server.conversation_ids() == [ready["app_conversation_id"]]


def test_v1_ignores_unknown_fields_so_a_v0_body_starts_an_empty_conversation(v1: Served) -> None:
    server, http = v1
    body = {"initial_user_msg": "fix the bug", "repository": "octo/demo", "bogus": 1}
    task = post_task(http, body)

    assert task["request"]["initial_message"] is None
    assert task["request"]["selected_repository"] is None
    assert "bogus" not in task["request"] and "initial_user_msg" not in task["request"]
    assert server.posts()[-1].body == body
    conversation_id = finished_task(http, task["id"])["app_conversation_id"]
    conversation = read_conversation(http, conversation_id)
    assert (conversation["execution_status"], conversation["selected_repository"]) == ("idle", None)
    assert conversation["title"] == f"Conversation {conversation_id[:5]}"


@pytest.mark.parametrize(
    ("body", "kind", "loc"),
    [
        pytest.param({"initial_message": "hi"}, "model_attributes_type", ["body", "initial_message"], id="message-str"),
        pytest.param(
            {"initial_message": {"content": "hi"}}, "list_type", ["body", "initial_message", "content"], id="content"
        ),
        pytest.param({"selected_repository": 5}, "string_type", ["body", "selected_repository"], id="repository-int"),
        pytest.param(["x"], "model_attributes_type", ["body"], id="list-body"),
        pytest.param(None, "missing", ["body"], id="no-body"),
        pytest.param(b"not json", "json_invalid", ["body", 0], id="not-json"),
    ],
)
def test_v1_mistyped_body_is_422(v1: Served, body: Any, kind: str, loc: list[Any]) -> None:
    server, http = v1
    if isinstance(body, bytes):
        response = http.post(V1, content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.post(V1, content=b"" if body is None else json.dumps(body).encode())
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert (problem["type"], problem["loc"]) == (kind, loc)
    assert server.task_ids() == []


def test_v1_has_no_v0_routes(v1: Served) -> None:
    _, http = v1
    for method, path in [
        ("POST", "/api/conversations"),
        ("GET", "/api/conversations"),
        ("GET", f"/api/conversations/{UNKNOWN}"),
    ]:
        response = http.request(method, path, json={"initial_user_msg": "x"})
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


def test_v1_single_get_is_405_and_unknown_paths_404(v1: Served) -> None:
    _, http = v1
    conversation_id = start_ready(http)
    assert (http.get(f"{V1}/{conversation_id}").status_code, http.get(f"{V1}/{conversation_id}").json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    assert http.post(f"{V1}/search").status_code == 405
    assert http.get("/api/v1/nothing").status_code == 404
    assert http.get("/not-api").status_code == 404


# ==================================================================================================== V1: start tasks


def test_v1_start_tasks_list_keeps_order_with_null_for_unknown(v1: Served) -> None:
    _, http = v1
    first, second = post_task(http, message("a"))["id"], post_task(http, message("b"))["id"]
    hyphenated = str(uuid.UUID(second)).upper()

    tasks = http.get(f"{V1}/start-tasks", params={"ids": [second, UNKNOWN, first, hyphenated]}).json()

    assert [task and task["id"] for task in tasks] == [second, None, first, second]


def test_v1_start_tasks_malformed_ids_are_422_like_pydantic(v1: Served) -> None:
    _, http = v1
    response = http.get(f"{V1}/start-tasks", params={"ids": [UNKNOWN, "bad", "worse"]})
    assert response.status_code == 422
    length, character = "invalid length: found 3", "invalid character: found `w` at 0"
    assert response.json() == {
        "detail": [
            {
                "type": "uuid_parsing",
                "loc": ["query", "ids", 1],
                "msg": f"Input should be a valid UUID, {length}",
                "input": "bad",
                "ctx": {"error": length},
            },
            {
                "type": "uuid_parsing",
                "loc": ["query", "ids", 2],
                "msg": f"Input should be a valid UUID, {character}",
                "input": "worse",
                "ctx": {"error": character},
            },
        ]
    }
    missing = http.get(f"{V1}/start-tasks")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["type"] == "missing"


def test_v1_start_tasks_take_at_most_100_ids(v1: Served) -> None:
    _, http = v1
    ids = [f"{n:032x}" for n in range(101)]
    assert http.get(f"{V1}/start-tasks", params={"ids": ids[:100]}).json() == [None] * 100
    response = http.get(f"{V1}/start-tasks", params={"ids": ids})
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot request more than 100 start tasks at once, got 101"}


def test_v1_start_tasks_search_lists_newest_first(v1: Served) -> None:
    _, http = v1
    ids = [post_task(http, message(str(n)))["id"] for n in range(3)]
    page = http.get(f"{V1}/start-tasks/search", params={"limit": 2}).json()
    rest = http.get(f"{V1}/start-tasks/search", params={"limit": 2, "page_id": page["next_page_id"]}).json()
    assert [task["id"] for task in page["items"] + rest["items"]] == ids[::-1]
    assert rest["next_page_id"] is None


# ==================================================================================================== V1: conversations


def test_v1_conversations_list_keeps_order_with_null_and_takes_hyphenated_ids(v1: Served) -> None:
    _, http = v1
    conversation_id = start_ready(http)
    hyphenated = str(uuid.UUID(conversation_id))

    answer = http.get(V1, params={"ids": [UNKNOWN, hyphenated, conversation_id]}).json()

    assert [c and c["id"] for c in answer] == [None, conversation_id, conversation_id]


def test_v1_conversations_malformed_ids_are_400(v1: Served) -> None:
    _, http = v1
    response = http.get(V1, params={"ids": [UNKNOWN, "bad", ""]})
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid UUID format for ids: ['bad', '']"})
    assert http.get(V1).status_code == 422  # ids is required


def test_v1_conversations_take_at_most_99_ids(v1: Served) -> None:
    _, http = v1
    ids = [f"{n:032x}" for n in range(100)]
    assert http.get(V1, params={"ids": ids[:99]}).json() == [None] * 99
    response = http.get(V1, params={"ids": ids})
    assert (response.status_code, response.json()) == (400, {"detail": "Too many ids requested. Maximum is 99."})


def test_v1_conversation_has_the_real_fields_and_the_planted_session_key(v1: Served) -> None:
    _, http = v1
    conversation_id = start_ready(http, "Fix the bug", selected_repository="octo/demo", selected_branch="main")

    conversation = read_conversation(http, conversation_id)

    assert {
        "id",
        "created_by_user_id",
        "sandbox_id",
        "selected_repository",
        "selected_branch",
        "git_provider",
        "title",
        "trigger",
        "pr_number",
        "llm_model",
        "agent_kind",
        "metrics",
        "parent_conversation_id",
        "sub_conversation_ids",
        "public",
        "tags",
        "created_at",
        "updated_at",
        "sandbox_status",
        "execution_status",
        "conversation_url",
        "session_api_key",
    } <= set(conversation)
    assert "status" not in conversation and "conversation_id" not in conversation
    assert conversation["session_api_key"] == PLANTED_SESSION_KEY
    assert (conversation["selected_repository"], conversation["selected_branch"]) == ("octo/demo", "main")
    assert (conversation["sandbox_status"], conversation["execution_status"]) == ("RUNNING", "running")
    assert conversation["title"] == f"Conversation {conversation_id[:5]}"
    assert (conversation["trigger"], conversation["pr_number"]) == (None, [])
    assert conversation["metrics"]["accumulated_cost"] == 0.0 and "accumulated_token_usage" in conversation["metrics"]
    assert conversation["conversation_url"].endswith(f"/api/conversations/{conversation_id}")
    assert Z_TIME.fullmatch(conversation["created_at"]) and Z_TIME.fullmatch(conversation["updated_at"])


@pytest.mark.parametrize("outcome", ["finished", "error", "stuck"])
def test_v1_agent_ends_but_sandbox_stays_running_and_updated_at_stays(serve_local: Serve, outcome: str) -> None:
    server, http = serve_local(Timeline(starting=0.1, running=0.4, outcome=outcome))
    text = "A first line that is much longer than sixty characters, to see it cut\nsecond line"
    conversation_id = start_ready(http, text)
    before = read_conversation(http, conversation_id)
    assert before["execution_status"] == "running" and server.running_count() == 1

    after = wait_until(lambda: (c := read_conversation(http, conversation_id))["execution_status"] != "running" and c)

    assert after["execution_status"] == outcome
    assert after["sandbox_status"] == "RUNNING"
    assert after["updated_at"] == before["updated_at"]
    assert after["title"] == text[:60]
    assert server.state_of(conversation_id) == {"execution_status": outcome, "sandbox_status": "RUNNING"}
    assert server.running_count() == 0


def test_v1_search_and_count(v1: Served) -> None:
    _, http = v1
    ids = [start_ready(http, str(n)) for n in range(3)]

    page = http.get(f"{V1}/search", params={"limit": 2}).json()
    rest = http.get(f"{V1}/search", params={"limit": 2, "page_id": page["next_page_id"]}).json()

    assert [c["id"] for c in page["items"] + rest["items"]] == ids[::-1]
    assert rest["next_page_id"] is None
    assert all(c["session_api_key"] == PLANTED_SESSION_KEY for c in page["items"])
    assert http.get(f"{V1}/count").json() == 3
    assert http.get(f"{V1}/search", params={"limit": 0}).status_code == 422
    assert http.get(f"{V1}/search", params={"limit": 101}).status_code == 422


def test_v1_set_state_forces_raw_fields(v1: Served) -> None:
    server, http = v1
    conversation_id = start_ready(http)

    server.set_state(conversation_id, execution_status="paused", sandbox_status="PAUSED", title="Forced")

    conversation = read_conversation(http, conversation_id)
    assert (conversation["execution_status"], conversation["sandbox_status"]) == ("paused", "PAUSED")
    assert conversation["title"] == "Forced"
    assert server.state_of(conversation_id) == {"execution_status": "paused", "sandbox_status": "PAUSED"}
    with pytest.raises(ValueError):
        server.set_state(conversation_id, status="RUNNING")
    with pytest.raises(KeyError):
        server.set_state(UNKNOWN, execution_status="finished")


def test_v1_max_running_gives_clouds_concurrency_429_until_an_agent_ends(serve_local: Serve) -> None:
    server, http = serve_local(READY_AT_ONCE, max_running=2)
    first = start_ready(http)
    post_task(http, message("second"))

    refused = http.post(V1, json=message("third"))

    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert (detail["error"], detail["limit"], detail["current"]) == ("CONCURRENCY_LIMIT_REACHED", 2, 2)
    assert "Retry-After" not in refused.headers
    assert server.running_count() == 2 and len(server.task_ids()) == 2
    server.set_state(first, execution_status="finished")
    assert server.running_count() == 1
    assert http.post(V1, json=message("third")).status_code == 200
    assert http.post(V1, json=message("fourth")).status_code == 429


# ==================================================================================================== V0


def test_v0_post_answers_the_conversation_id_and_starting(v0: Served) -> None:
    server, http = v0
    response = http.post("/api/conversations", json={"initial_user_msg": "x", "repository": "octo/demo"})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "conversation_id", "message", "conversation_status"}
    assert (body["status"], body["message"], body["conversation_status"]) == ("ok", None, "STARTING")
    assert HEX32.fullmatch(body["conversation_id"])
    assert server.conversation_ids() == [body["conversation_id"]]
    assert server.task_ids() == []
    assert server.state_of(body["conversation_id"]) == {"status": "STARTING", "agent_state": "loading"}


@pytest.mark.parametrize(
    ("body", "kind", "loc"),
    [
        pytest.param(
            {"initial_user_msg": "x", "selected_repository": "o/r"},
            "extra_forbidden",
            ["body", "selected_repository"],
            id="v1-field",
        ),
        pytest.param(message("x"), "extra_forbidden", ["body", "initial_message"], id="v1-body"),
        pytest.param({"initial_user_msg": 42}, "string_type", ["body", "initial_user_msg"], id="message-int"),
        pytest.param(["x"], "model_attributes_type", ["body"], id="list-body"),
        pytest.param(b"not json", "json_invalid", ["body", 0], id="not-json"),
    ],
)
def test_v0_bad_body_is_422(v0: Served, body: Any, kind: str, loc: list[Any]) -> None:
    server, http = v0
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post("/api/conversations", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert (problem["type"], problem["loc"]) == (kind, loc)
    assert server.conversation_ids() == []


def test_v0_get_unknown_id_is_200_null(v0: Served) -> None:
    _, http = v0
    response = http.get(f"/api/conversations/{UNKNOWN}")
    assert response.status_code == 200
    assert response.content == b"null"


@pytest.mark.parametrize(("auth", "trigger"), [("bearer", "openhands_api"), ("none", "gui")])
def test_v0_get_has_the_real_fields(serve_local: Serve, auth: str, trigger: str) -> None:
    _, http = serve_local(FROZEN, api="v0", auth=auth)
    conversation_id = start_v0(http, "Fix the bug\nsecond line", repository="octo/demo")

    info = http.get(f"/api/conversations/{conversation_id}").json()

    assert set(info) == {
        "conversation_id",
        "title",
        "last_updated_at",
        "status",
        "runtime_status",
        "selected_repository",
        "selected_branch",
        "git_provider",
        "trigger",
        "num_connections",
        "url",
        "session_api_key",
        "created_at",
        "pr_number",
        "conversation_version",
        "sub_conversation_ids",
        "public",
        "sandbox_id",
    }
    assert (info["conversation_id"], info["status"]) == (conversation_id, "STARTING")
    assert info["conversation_version"] == "V0"
    assert (info["selected_repository"], info["trigger"]) == ("octo/demo", trigger)
    assert info["session_api_key"] == PLANTED_SESSION_KEY
    assert info["title"] == f"Conversation {conversation_id[:5]}"
    assert info["runtime_status"] == "STATUS$STARTING_RUNTIME"
    assert Z_TIME.fullmatch(info["created_at"]) and Z_TIME.fullmatch(info["last_updated_at"])


def test_v0_stays_running_after_the_agent_ended_without_close_delay(serve_local: Serve) -> None:
    server, http = serve_local(Timeline(starting=0.2, running=0.2), api="v0")
    conversation_id = start_v0(http, "Fix the bug\nsecond line")

    wait_until(lambda: server.state_of(conversation_id)["agent_state"] == "finished")
    time.sleep(0.2)

    info = http.get(f"/api/conversations/{conversation_id}").json()
    assert (info["status"], info["runtime_status"]) == ("RUNNING", "STATUS$RUNTIME_STARTED")
    assert info["title"] == "Fix the bug"
    assert server.state_of(conversation_id) == {"status": "RUNNING", "agent_state": "finished"}
    assert server.running_count() == 0


def test_v0_turns_stopped_only_after_close_delay(serve_local: Serve) -> None:
    server, http = serve_local(Timeline(starting=0.2, running=0.2, close_delay=0.4), api="v0")
    started = time.monotonic()
    conversation_id = start_v0(http)
    seen: list[str] = []

    def observe() -> bool:
        status = http.get(f"/api/conversations/{conversation_id}").json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "STOPPED"

    wait_until(lambda: server.state_of(conversation_id)["agent_state"] == "finished")
    assert server.state_of(conversation_id)["status"] == "RUNNING"
    wait_until(observe)

    assert time.monotonic() - started >= 0.8
    assert seen == ["RUNNING", "STOPPED"]
    assert server.state_of(conversation_id) == {"status": "STOPPED", "agent_state": "stopped"}
    info = http.get(f"/api/conversations/{conversation_id}").json()
    assert (info["runtime_status"], info["url"]) == (None, None)


def test_v0_events_like_the_real_stream(serve_local: Serve) -> None:
    _, http = serve_local(Timeline(starting=0.1, running=0.1, close_delay=0.1), api="v0")
    conversation_id = start_v0(http, "say hello")
    path = f"/api/conversations/{conversation_id}/events"
    wait_until(lambda: http.get(f"/api/conversations/{conversation_id}").json()["status"] == "STOPPED")

    stream = http.get(path).json()

    assert stream["has_more"] is False
    events = stream["events"]
    assert [e["id"] for e in events] == list(range(len(events)))
    assert [(e["source"], e.get("action") or e["observation"]) for e in events] == [
        ("environment", "agent_state_changed"),
        ("user", "message"),
        ("environment", "agent_state_changed"),
        ("agent", "finish"),
        ("environment", "agent_state_changed"),
        ("environment", "agent_state_changed"),
    ]
    assert [e["extras"]["agent_state"] for e in events if e.get("observation") == "agent_state_changed"] == [
        "loading",
        "running",
        "finished",
        "stopped",
    ]
    assert events[1]["message"] == events[1]["args"]["content"] == "say hello"
    assert events[2] == {
        "id": 2,
        "timestamp": events[2]["timestamp"],
        "source": "environment",
        "message": "",
        "observation": "agent_state_changed",
        "content": "",
        "extras": {"agent_state": "running", "reason": ""},
    }
    assert all(NAIVE_TIME.fullmatch(e["timestamp"]) for e in events)
    # last_updated_at is the agent's last activity, not when the status turned STOPPED
    info = http.get(f"/api/conversations/{conversation_id}").json()
    assert info["last_updated_at"] == events[4]["timestamp"] + "Z"

    newest = http.get(path, params={"reverse": "true", "limit": 2}).json()
    assert ([e["id"] for e in newest["events"]], newest["has_more"]) == ([5, 4], True)
    from_3 = http.get(path, params={"start_id": 3, "limit": 2}).json()
    assert ([e["id"] for e in from_3["events"]], from_3["has_more"]) == ([3, 4], True)
    assert [e["id"] for e in http.get(path, params={"start_id": 3, "reverse": "true"}).json()["events"]] == [5, 4, 3]


@pytest.mark.parametrize(
    ("outcome", "state", "last"),
    [
        ("error", "error", "error"),
        ("stuck", "error", "error"),
        ("awaiting_user_input", "awaiting_user_input", "message"),
    ],
)
def test_v0_outcomes(serve_local: Serve, outcome: str, state: str, last: str) -> None:
    server, http = serve_local(Timeline(starting=0.1, running=0.1, outcome=outcome), api="v0")
    conversation_id = start_v0(http)
    wait_until(lambda: server.state_of(conversation_id)["agent_state"] != "running" and server.running_count() == 0)

    path = f"/api/conversations/{conversation_id}/events"
    events = http.get(path, params={"reverse": "true", "limit": 2}).json()["events"]

    assert server.state_of(conversation_id) == {"status": "RUNNING", "agent_state": state}
    assert events[0]["extras"]["agent_state"] == state
    assert (events[1]["source"], events[1].get("action") or events[1].get("observation")) == ("agent", last)


def test_v0_empty_conversation_waits_for_a_message(serve_local: Serve) -> None:
    server, http = serve_local(Timeline(starting=0.1, running=30.0), api="v0")
    conversation_id = start_v0(http, None)
    bare = http.post("/api/conversations", json={})  # every field is optional on the real server
    assert bare.status_code == 200
    wait_until(lambda: server.running_count() == 0)  # their agent ended at once: it waits for a message
    assert server.state_of(conversation_id) == {"status": "RUNNING", "agent_state": "awaiting_user_input"}
    assert http.get(f"/api/conversations/{conversation_id}").json()["title"] == f"Conversation {conversation_id[:5]}"


def test_v0_events_errors(v0: Served) -> None:
    _, http = v0
    conversation_id = start_v0(http)
    path = f"/api/conversations/{conversation_id}/events"
    missing = http.get(f"/api/conversations/{UNKNOWN}/events")
    assert (missing.status_code, missing.json()) == (404, {"detail": f"Conversation {UNKNOWN} not found"})
    assert http.get(path, params={"limit": 101}).json() == {"detail": "Invalid limit"}
    bad = http.get(path, params={"start_id": "x", "reverse": "maybe"})
    assert bad.status_code == 422
    assert [p["type"] for p in bad.json()["detail"]] == ["int_parsing", "bool_parsing"]
    assert http.get(path, params={"limit": 0}).json() == {"events": [], "has_more": True}


def test_v0_list_is_newest_first(v0: Served) -> None:
    _, http = v0
    ids = [start_v0(http, str(n)) for n in range(3)]

    first = http.get("/api/conversations", params={"limit": 2}).json()
    everything = http.get("/api/conversations").json()

    assert [c["conversation_id"] for c in first["results"]] == ids[:0:-1]
    assert first["next_page_id"] is not None
    assert [c["conversation_id"] for c in everything["results"]] == ids[::-1]
    assert everything["next_page_id"] is None


def test_v0_start_error_is_a_500_text(serve_local: Serve) -> None:
    server, http = serve_local(Timeline(start_error="Internal Server Error"), api="v0")
    response = http.post("/api/conversations", json={"initial_user_msg": "x"})
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert response.headers["content-type"].startswith("text/plain")
    assert server.conversation_ids() == []


def test_v0_repository_without_access_is_401_with_a_bare_string(serve_local: Serve) -> None:
    server, http = serve_local(FROZEN, api="v0", repositories={"octo/ok"})
    denied = http.post("/api/conversations", json={"initial_user_msg": "x", "repository": "octo/other"})
    assert denied.status_code == 401
    assert denied.json() == "Unable to access repo octo/other"
    assert server.conversation_ids() == []
    assert start_v0(http, repository="octo/ok") and start_v0(http)


def test_v0_server_answers_v1_reads_empty(v0: Served) -> None:
    _, http = v0
    conversation_id = start_v0(http)
    assert http.get(V1, params={"ids": conversation_id}).json() == [None]
    assert http.get(f"{V1}/start-tasks", params={"ids": UNKNOWN}).json() == [None]
    assert http.get(f"{V1}/search").json() == {"items": [], "next_page_id": None}
    assert http.get(f"{V1}/start-tasks/search").json() == {"items": [], "next_page_id": None}
    assert http.get(f"{V1}/count").json() == 0
    assert http.get(V1, params={"ids": "bad"}).status_code == 400
    assert http.get(f"{V1}/{conversation_id}").status_code == 405
    assert http.post(V1, json=message("x")).status_code == 405  # this server starts V0 conversations only


def test_v0_set_state_and_max_running(serve_local: Serve) -> None:
    server, http = serve_local(FROZEN, api="v0", max_running=2)
    first, _ = start_v0(http), start_v0(http)
    refused = http.post("/api/conversations", json={"initial_user_msg": "x"})
    assert refused.status_code == 429
    assert refused.json()["detail"]["error"] == "CONCURRENCY_LIMIT_REACHED"

    server.set_state(first, status="RUNNING", agent_state="finished", title="Done")

    info = http.get(f"/api/conversations/{first}").json()
    assert (info["status"], info["title"]) == ("RUNNING", "Done")
    assert server.running_count() == 1
    assert http.post("/api/conversations", json={"initial_user_msg": "x"}).status_code == 200
    with pytest.raises(ValueError):
        server.set_state(first, execution_status="finished")


# ==================================================================================================== faults


def test_fault_answers_the_next_n_api_requests(v1: Served) -> None:
    server, http = v1
    server.inject(status=503, times=2, body={"error": "down"})

    first = http.get(f"{V1}/count")
    second = http.post(V1, json=message("y"))
    third = http.get(f"{V1}/count")

    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json() == {"error": "down"}
    assert server.task_ids() == []  # the faulted POST started nothing


def test_fault_filtered_by_method_and_path(v1: Served) -> None:
    server, http = v1
    server.inject(Fault(status=502, method="POST"))
    server.inject(status=418, path_prefix=f"{V1}/start-tasks")
    assert http.get(f"{V1}/count").status_code == 200
    assert http.get(f"{V1}/start-tasks", params={"ids": UNKNOWN}).status_code == 418
    assert http.post(V1, json=message("y")).status_code == 502
    assert http.post(V1, json=message("y")).status_code == 200


def test_fault_malformed_body_and_headers(v1: Served) -> None:
    server, http = v1
    server.inject(status=200, body=b"not json", headers={"X-Extra": "1"})
    response = http.get(f"{V1}/count")
    assert (response.status_code, response.content, response.headers["X-Extra"]) == (200, b"not json", "1")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_drop_closes_without_an_answer(v1: Served) -> None:
    server, http = v1
    server.inject(drop=True)
    with pytest.raises(httpx.TransportError):
        http.get(f"{V1}/count")
    assert http.get(f"{V1}/count").status_code == 200


def test_fault_delay_longer_than_the_client_timeout(v1: Served) -> None:
    server, _ = v1
    server.inject(delay=0.6, status=200, body={"late": True})
    with httpx.Client(base_url=server.base_url, headers=bearer(), timeout=0.1, verify=False) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{V1}/count")
        assert time.monotonic() - started < 0.5


def test_fault_delay_shorter_than_the_timeout_still_answers(v1: Served) -> None:
    server, http = v1
    server.inject(delay=0.15, status=200, body={"late": True})
    started = time.monotonic()
    assert http.get(f"{V1}/count").json() == {"late": True}
    assert time.monotonic() - started >= 0.15


# ==================================================================================================== page, recording


@pytest.mark.parametrize("api", ["v1", "v0"])
def test_human_page_is_html_without_auth_and_escaped(serve_local: Serve, api: str) -> None:
    server, http = serve_local(Timeline(starting=0.05, running=0.05), api=api)
    text = "<script>alert(1)</script>"
    conversation_id = start_ready(http, text) if api == "v1" else start_v0(http, text)
    server.inject(status=500)  # faults are for the API only
    wait_until(lambda: "alert" in plain("GET", f"{server.base_url}/conversations/{conversation_id}").text)

    response = plain("GET", f"{server.base_url}/conversations/{conversation_id}")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert conversation_id in response.text
    assert plain("GET", f"{server.base_url}/conversations/{UNKNOWN}").status_code == 404


def test_requests_are_recorded(v1: Served) -> None:
    server, http = v1
    http.post(V1, json=message("hello"), headers={"X-Trace": "t1"})
    http.get(f"{V1}/start-tasks?ids=a&ids=b")
    plain("GET", f"{server.base_url}{V1}/count")

    post, get, anonymous = server.requests
    assert (post.method, post.path, post.query, post.body) == ("POST", V1, {}, message("hello"))
    assert post.headers["x-trace"] == "t1" and post.authorization == f"Bearer {KEY}"
    assert all(name == name.lower() for name in post.headers)
    assert (get.path, get.query, get.body) == (f"{V1}/start-tasks", {"ids": ["a", "b"]}, None)
    assert anonymous.authorization is None
    assert server.posts() == [post]
    assert isinstance(post, RecordedRequest)


def test_concurrent_posts_are_all_answered(serve_local: Serve) -> None:
    server, _ = serve_local(FROZEN)
    results: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=server.base_url, headers=bearer(), timeout=5.0, verify=False) as client:
            results.append(client.post(V1, json=message("x")).status_code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert results == [200] * 8
    assert len(set(server.task_ids())) == 8 and len(server.posts()) == 8


# ==================================================================================================== entry points


def test_module_entry_point_prints_base_url_and_key() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "openhands_magics.testing", "--api", "v0", "--auth", "none", "--starting", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""))
        reader.start()
        reader.join(timeout=8)
        assert lines, "no output within 8 s"
        assert DEMO_API_KEY in lines[0]
        match = re.search(r"http://127\.0\.0\.1:\d+", lines[0])
        assert match is not None
        response = plain("GET", f"{match.group(0)}/api/conversations/{UNKNOWN}")
        assert (response.status_code, response.json()) == (200, None)  # V0, no auth
    finally:
        process.kill()
        process.communicate(timeout=5)


def test_serve_sets_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", "placeholder")  # so that monkeypatch restores them afterwards
    monkeypatch.setenv("OPENHANDS_API_KEY", "placeholder")
    server = testing.serve(set_environ=True, api_key=KEY, timeline=FROZEN)
    try:
        assert os.environ["OPENHANDS_BASE_URL"] == server.base_url
        assert os.environ["OPENHANDS_API_KEY"] == KEY
        response = plain("POST", f"{server.base_url}{V1}", headers=bearer(), json=message("x"))
        assert response.status_code == 200
    finally:
        server.stop()


def test_serve_without_environ_leaves_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://unchanged.invalid")
    monkeypatch.delenv("OPENHANDS_API_KEY", raising=False)
    server = testing.serve(set_environ=False)
    try:
        assert os.environ["OPENHANDS_BASE_URL"] == "http://unchanged.invalid"
        assert "OPENHANDS_API_KEY" not in os.environ
        assert server.api_key == DEMO_API_KEY
    finally:
        server.stop()
