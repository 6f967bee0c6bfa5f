"""The local OpenHands-compatible server's HTTP contract, checked with plain httpx (not the package's client)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openhands_magics import testing
from openhands_magics.testing import DEMO_API_KEY, Fault, LocalOpenHandsServer, RecordedRequest

KEY = "sk-oh-server-test-key"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
#: Long enough that nothing moves during a test unless the test waits for it.
SLOW_SCHEDULE = (("STARTING", 30.0), ("RUNNING", 30.0), ("STOPPED", None))
QUICK_SCHEDULE = (("STARTING", 0.2), ("RUNNING", 0.2), ("STOPPED", None))
ALL_FIELDS = {"conversation_id", "title", "created_at", "last_updated_at", "status", "selected_repository", "trigger"}


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours *_PROXY variables; every request here must go straight to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(KEY, schedule=SLOW_SCHEDULE) as running:
        yield running


@pytest.fixture
def http(server: LocalOpenHandsServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=5.0) as client:
        yield client


def start(http: httpx.Client, message: str = "x", **fields: Any) -> str:
    response = http.post("/api/conversations", json={"initial_user_msg": message, **fields})
    assert response.status_code == 200, response.text
    conversation_id = response.json()["conversation_id"]
    assert isinstance(conversation_id, str)
    return conversation_id


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------- lifecycle


def test_server_listens_on_loopback_free_port(server: LocalOpenHandsServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert not server.base_url.endswith(":0")
    assert server.environ() == {"OPENHANDS_BASE_URL": server.base_url, "OPENHANDS_API_KEY": KEY}


def test_stopped_server_refuses_connections() -> None:
    server = LocalOpenHandsServer(KEY).start()
    base_url = server.base_url
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/api/conversations/abc", headers=auth(), timeout=2.0)


# ---------------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param(auth("wrong-key"), id="wrong-key"),
        pytest.param({"Authorization": KEY}, id="not-bearer"),
        pytest.param({"Authorization": f"Basic {KEY}"}, id="basic"),
        pytest.param({"X-Session-API-Key": KEY}, id="other-header"),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/conversations/abc"), ("POST", "/api/conversations")])
def test_api_without_the_right_bearer_key_is_401(
    server: LocalOpenHandsServer, headers: dict[str, str], method: str, path: str
) -> None:
    response = httpx.request(
        method, f"{server.base_url}{path}", headers=headers, json={"initial_user_msg": "x"}, timeout=5.0
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "NoCredentialsError"}
    assert server.conversation_ids() == []


# ---------------------------------------------------------------------------------------------------- create


def test_create_returns_ok_with_new_hex_id(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    response = http.post("/api/conversations", json={"initial_user_msg": "x"})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert HEX32.match(body["conversation_id"])
    assert body["conversation_status"] == "STARTING"
    assert server.conversation_ids() == [body["conversation_id"]]
    assert server.status_of(body["conversation_id"]) == "STARTING"


def test_each_create_gets_a_distinct_id(http: httpx.Client) -> None:
    ids = {start(http) for _ in range(3)}
    assert len(ids) == 3


def test_create_accepts_allowed_optional_fields(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http, "x", repository="octo/demo", selected_branch="main", git_provider="github")
    assert http.get(f"/api/conversations/{conversation_id}").json()["selected_repository"] == "octo/demo"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"initial_user_msg": "x", "selected_repository": "octo/demo"}, id="extra-field"),
        pytest.param({"initial_user_msg": "x", "title": "t"}, id="extra-title"),
        pytest.param({}, id="empty-object"),
        pytest.param({"repository": "octo/demo"}, id="missing-message"),
        pytest.param({"initial_user_msg": 42}, id="message-not-string"),
        pytest.param(["x"], id="list-body"),
    ],
)
def test_create_rejects_bad_bodies_with_422(server: LocalOpenHandsServer, http: httpx.Client, body: Any) -> None:
    response = http.post("/api/conversations", json=body)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert server.conversation_ids() == []


def test_extra_field_422_names_the_field(http: httpx.Client) -> None:
    response = http.post("/api/conversations", json={"initial_user_msg": "x", "selected_repository": "o/r"})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", "selected_repository"]


def test_create_with_non_json_body_is_422(http: httpx.Client) -> None:
    response = http.post("/api/conversations", content=b"not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_unsupported_method_and_path(http: httpx.Client) -> None:
    assert http.post("/api/conversations/abc").status_code == 405
    assert http.get("/api/nothing-here").status_code == 404
    assert http.get("/not-api").status_code == 404


# ---------------------------------------------------------------------------------------------------- read


def test_get_returns_every_field(http: httpx.Client) -> None:
    conversation_id = start(http, "Fix the bug\nsecond line", repository="octo/demo")

    response = http.get(f"/api/conversations/{conversation_id}")

    assert response.status_code == 200
    body = response.json()
    assert ALL_FIELDS <= set(body)
    assert body["conversation_id"] == conversation_id
    assert body["status"] == "STARTING"
    assert body["selected_repository"] == "octo/demo"
    assert body["trigger"] == "openhands_api"
    assert body["title"] == f"Conversation {conversation_id[:5]}"
    for name in ("created_at", "last_updated_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body[name]), body[name]


def test_get_after_running_has_title_from_first_line(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http, "Fix the bug\nsecond line")
    server.set_status(conversation_id, "RUNNING")

    body = http.get(f"/api/conversations/{conversation_id}").json()

    assert body["status"] == "RUNNING"
    assert body["title"] == "Fix the bug"
    assert body["selected_repository"] is None


def test_get_unknown_id_is_404(http: httpx.Client) -> None:
    response = http.get("/api/conversations/0123456789abcdef0123456789abcdef")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_status_follows_the_schedule_over_time() -> None:
    with LocalOpenHandsServer(KEY, schedule=QUICK_SCHEDULE) as server, httpx.Client(
        base_url=server.base_url, headers=auth(), timeout=5.0
    ) as client:
        conversation_id = start(client)
        seen: list[str] = []
        updated: list[str] = []

        def observe() -> bool:
            body = client.get(f"/api/conversations/{conversation_id}").json()
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
                updated.append(body["last_updated_at"])
            return body["status"] == "STOPPED"

        wait_until(observe, timeout=3.0)

        assert seen == ["STARTING", "RUNNING", "STOPPED"]
        assert updated == sorted(updated)
        assert len(set(updated)) == 3
        assert server.status_of(conversation_id) == "STOPPED"


def test_set_status_overrides_the_schedule(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    before = http.get(f"/api/conversations/{conversation_id}").json()
    for status in ("RUNNING", "ERROR", "ARCHIVED"):
        server.set_status(conversation_id, status)
        assert http.get(f"/api/conversations/{conversation_id}").json()["status"] == status
        assert server.status_of(conversation_id) == status
    after = http.get(f"/api/conversations/{conversation_id}").json()
    assert after["created_at"] == before["created_at"]
    assert after["last_updated_at"] >= before["last_updated_at"]


def test_set_status_of_unknown_id_raises(server: LocalOpenHandsServer) -> None:
    with pytest.raises(KeyError):
        server.set_status("nope", "RUNNING")


def test_get_of_conversation_with_empty_message_once_running(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http, "")
    server.set_status(conversation_id, "RUNNING")
    response = http.get(f"/api/conversations/{conversation_id}")
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------------- limits


def test_max_running_gives_429_until_one_stops() -> None:
    with LocalOpenHandsServer(KEY, schedule=SLOW_SCHEDULE, max_running=2) as server, httpx.Client(
        base_url=server.base_url, headers=auth(), timeout=5.0
    ) as client:
        first = start(client)
        start(client)

        refused = client.post("/api/conversations", json={"initial_user_msg": "third"})
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "30"
        assert "error" in refused.json()
        assert len(server.conversation_ids()) == 2

        server.set_status(first, "STOPPED")
        third = client.post("/api/conversations", json={"initial_user_msg": "third"})
        assert third.status_code == 200
        assert len(server.conversation_ids()) == 3

        assert client.post("/api/conversations", json={"initial_user_msg": "fourth"}).status_code == 429


def test_repository_allow_list() -> None:
    with LocalOpenHandsServer(KEY, repositories={"octo/ok"}) as server, httpx.Client(
        base_url=server.base_url, headers=auth(), timeout=5.0
    ) as client:
        denied = client.post("/api/conversations", json={"initial_user_msg": "x", "repository": "octo/other"})
        assert denied.status_code == 401
        assert denied.text.startswith('"')
        detail = denied.json()
        assert isinstance(detail, str)
        assert "octo/other" in detail
        assert server.conversation_ids() == []

        allowed = client.post("/api/conversations", json={"initial_user_msg": "x", "repository": "octo/ok"})
        assert allowed.status_code == 200
        no_repo = client.post("/api/conversations", json={"initial_user_msg": "x"})
        assert no_repo.status_code == 200


# ---------------------------------------------------------------------------------------------------- faults


def test_fault_affects_exactly_the_next_n_api_requests(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    server.inject(status=503, times=2, body={"error": "down"})

    first = http.get(f"/api/conversations/{conversation_id}")
    second = http.post("/api/conversations", json={"initial_user_msg": "y"})
    third = http.get(f"/api/conversations/{conversation_id}")

    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.json() == {"error": "down"}
    assert third.json()["conversation_id"] == conversation_id
    assert len(server.conversation_ids()) == 1  # the faulted POST created nothing


def test_fault_does_not_touch_the_human_page(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    server.inject(status=500)
    assert httpx.get(f"{server.base_url}/conversations/{conversation_id}", timeout=5.0).status_code == 200
    assert http.get(f"/api/conversations/{conversation_id}").status_code == 500
    assert http.get(f"/api/conversations/{conversation_id}").status_code == 200


def test_fault_filtered_by_method(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    server.inject(Fault(status=502, method="POST"))
    assert http.get(f"/api/conversations/{conversation_id}").status_code == 200
    assert http.post("/api/conversations", json={"initial_user_msg": "y"}).status_code == 502
    assert http.post("/api/conversations", json={"initial_user_msg": "y"}).status_code == 200


def test_fault_malformed_json_body(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    server.inject(body=b"not json", status=200)

    response = http.get(f"/api/conversations/{conversation_id}")

    assert response.status_code == 200
    assert response.content == b"not json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_custom_headers(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    server.inject(status=429, headers={"Retry-After": "7"}, body={"error": "slow down"})
    response = http.get("/api/conversations/abc")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_fault_drop_closes_without_answer(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http)
    server.inject(drop=True)
    with pytest.raises(httpx.TransportError):
        http.get(f"/api/conversations/{conversation_id}")
    assert http.get(f"/api/conversations/{conversation_id}").status_code == 200


def test_fault_delay_longer_than_client_timeout(server: LocalOpenHandsServer) -> None:
    server.inject(delay=0.6, status=200, body={"late": True})
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=0.1) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.get("/api/conversations/abc")
        assert time.monotonic() - started < 0.5


def test_fault_delay_shorter_than_timeout_still_answers(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    server.inject(delay=0.15, status=200, body={"late": True})
    started = time.monotonic()
    response = http.get("/api/conversations/abc")
    assert time.monotonic() - started >= 0.15
    assert response.json() == {"late": True}


# ---------------------------------------------------------------------------------------------------- human page


def test_human_page_is_html_without_auth_and_escapes_the_message(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http, "<script>alert(1)</script>")
    server.set_status(conversation_id, "RUNNING")

    response = httpx.get(f"{server.base_url}/conversations/{conversation_id}", timeout=5.0)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in response.text
    assert conversation_id in response.text
    assert server.requests[-1].authorization is None


def test_human_page_for_unknown_id_is_404(server: LocalOpenHandsServer) -> None:
    response = httpx.get(f"{server.base_url}/conversations/nope", timeout=5.0)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------------------------------------------- recording


def test_requests_are_recorded(server: LocalOpenHandsServer, http: httpx.Client) -> None:
    conversation_id = start(http, "hello", repository="octo/demo")
    http.get(f"/api/conversations/{conversation_id}?x=1")
    httpx.get(f"{server.base_url}/api/conversations/{conversation_id}", timeout=5.0)

    assert server.requests == [
        RecordedRequest("POST", "/api/conversations", f"Bearer {KEY}", {"initial_user_msg": "hello", "repository": "octo/demo"}),
        RecordedRequest("GET", f"/api/conversations/{conversation_id}", f"Bearer {KEY}", None),
        RecordedRequest("GET", f"/api/conversations/{conversation_id}", None, None),
    ]
    assert server.posts() == server.requests[:1]


def test_concurrent_requests_are_all_answered(server: LocalOpenHandsServer) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=server.base_url, headers=auth(), timeout=5.0) as client:
            code = client.post("/api/conversations", json={"initial_user_msg": "x"}).status_code
        with lock:
            results.append(code)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert results == [200] * 8
    assert len(server.conversation_ids()) == 8
    assert len(server.posts()) == 8


# ---------------------------------------------------------------------------------------------------- entry points


def test_module_entry_point_prints_base_url() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "openhands_magics.testing", "--port", "0", "--starting", "0.1"],
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
        first = lines[0]
        assert "http://127.0.0.1:" in first
        assert DEMO_API_KEY in first
        match = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        assert match is not None and int(match.group(1)) > 0
        response = httpx.get(f"{match.group(0)}/api/conversations/abc", headers=auth(DEMO_API_KEY), timeout=5.0)
        assert response.status_code == 404
    finally:
        process.kill()
        process.communicate(timeout=5)


def test_serve_sets_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so monkeypatch restores (or removes) the originals after serve() overwrote them
    monkeypatch.setenv("OPENHANDS_BASE_URL", "placeholder")
    monkeypatch.setenv("OPENHANDS_API_KEY", "placeholder")
    server = testing.serve(set_environ=True, api_key=KEY, schedule=SLOW_SCHEDULE)
    try:
        assert os.environ["OPENHANDS_BASE_URL"] == server.base_url
        assert os.environ["OPENHANDS_API_KEY"] == KEY
        response = httpx.post(
            f"{os.environ['OPENHANDS_BASE_URL']}/api/conversations",
            headers=auth(os.environ["OPENHANDS_API_KEY"]),
            json={"initial_user_msg": "x"},
            timeout=5.0,
        )
        assert response.status_code == 200
    finally:
        server.stop()


def test_serve_without_environ_leaves_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENHANDS_BASE_URL", "http://unchanged.invalid")
    monkeypatch.delenv("OPENHANDS_API_KEY", raising=False)
    server = testing.serve(set_environ=False)
    try:
        assert os.environ["OPENHANDS_BASE_URL"] == "http://unchanged.invalid"
        assert "OPENHANDS_API_KEY" not in os.environ
        assert server.api_key == DEMO_API_KEY
    finally:
        server.stop()
