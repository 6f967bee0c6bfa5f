"""The local OpenHands server after the start (V1): follow-ups, pause/resume, delete, events and the work the agent
left (git changes, diffs, files, pull requests, metrics), checked over real HTTP with plain httpx.

The expected answers are OpenHands 1.11.0's, recorded from the real server. Timelines are short (a run is 0.3 s)
so that each test waits at most about a second.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from openhands_magics.testing import LocalOpenHandsServer, ManualClock, Timeline

from .conftest import wait_until
from .test_server import KEY, Serve, Served, no_proxies, serve_local  # noqa: F401 (fixtures used by name)

V1 = "/api/v1/app-conversations"
UNKNOWN = "0123456789abcdef0123456789abcdef"
NAIVE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: Ready at once; each run of the agent takes 0.3 s.
SHORT = Timeline(starting=0.05, running=0.3)
#: Ready at once; the agent works for longer than any test.
LONG = Timeline(starting=0.05, running=30.0)
CHANGES = (("UPDATED", "demo/data/load.py"), ("ADDED", "demo/README.md"), ("DELETED", "demo/old.py"))


@pytest.fixture
def serve(serve_local: Serve) -> Serve:  # noqa: F811 - the imported fixture, by name
    """``tests/test_server.py``'s servers (with a client holding the right key), this file's short timeline by
    default."""
    return lambda timeline=SHORT, **options: serve_local(timeline, **options)


def start(http: httpx.Client, text: str = "Fix the loader", *, clock: ManualClock | None = None) -> str:
    """Start a conversation and wait until it exists (on a server held by ``clock``: move it past the start)."""
    response = http.post(V1, json={"initial_message": {"content": [{"type": "text", "text": text}]}})
    assert response.status_code == 200, response.text
    task_id = response.json()["id"]
    if clock is not None:
        clock.advance(SHORT.starting)

    def ready() -> str | None:
        [task] = http.get(f"{V1}/start-tasks", params={"ids": task_id}).json()
        return task["app_conversation_id"]

    return wait_until(ready)


def read(http: httpx.Client, conversation_id: str) -> dict[str, Any] | None:
    [conversation] = http.get(V1, params={"ids": conversation_id}).json()
    return conversation


def status(http: httpx.Client, conversation_id: str) -> tuple[str, str | None]:
    conversation = read(http, conversation_id)
    assert conversation is not None
    return conversation["sandbox_status"], conversation["execution_status"]


def ended(http: httpx.Client, conversation_id: str, *, clock: ManualClock | None = None) -> dict[str, Any]:
    """Wait for the agent's current run to end (on a server held by ``clock``: move it past the run); the
    conversation then."""
    if clock is not None:
        clock.advance(SHORT.running + 0.01)
    return wait_until(lambda: (c := read(http, conversation_id)) and c["execution_status"] != "running" and c)


def send(http: httpx.Client, conversation_id: str, text: str = "And the tests", run: bool = True) -> httpx.Response:
    body = {"role": "user", "content": [{"type": "text", "text": text}], "run": run}
    return http.post(f"{V1}/{conversation_id}/send-message", json=body)


def events(http: httpx.Client, conversation_id: str, **params: Any) -> dict[str, Any]:
    response = http.get(f"/api/v1/conversation/{conversation_id}/events/search", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def sandbox(http: httpx.Client, conversation_id: str, action: str) -> httpx.Response:
    conversation = read(http, conversation_id)
    assert conversation is not None
    return http.post(f"/api/v1/sandboxes/{conversation['sandbox_id']}/{action}")


def summary(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each event as (kind, what it says): the text, the state's value or the action's kind."""
    said = []
    for event in items:
        if event["kind"] == "MessageEvent":
            said.append(("MessageEvent", event["llm_message"]["content"][0]["text"]))
        elif event["kind"] == "ConversationStateUpdateEvent":
            said.append(("ConversationStateUpdateEvent", event["value"]))
        elif event["kind"] == "ActionEvent":
            said.append(("ActionEvent", event["action"]["message"]))
        else:
            said.append((event["kind"], event["observation"]["content"][0]["text"]))
    return said


# ==================================================================================================== follow-ups


def test_follow_up_runs_the_agent_again_at_once_then_ends(serve: Callable[..., Served]) -> None:
    clock = ManualClock()  # (a wall clock's 0.3 s run can end, on a loaded machine, before its status is read)
    server, http = serve(SHORT, clock=clock)
    conversation_id = start(http, clock=clock)
    assert ended(http, conversation_id, clock=clock)["execution_status"] == "finished"
    assert server.running_count() == 0

    response = send(http, conversation_id)

    assert (response.status_code, response.json()) == (
        200,
        {"success": True, "sandbox_status": "RUNNING", "message": None},
    )
    assert status(http, conversation_id) == ("RUNNING", "running")
    assert server.state_of(conversation_id)["execution_status"] == "running"
    assert server.running_count() == 1
    after = ended(http, conversation_id, clock=clock)
    assert (after["sandbox_status"], after["execution_status"]) == ("RUNNING", "finished")
    assert after["title"] == "Fix the loader"  # the first message's, through the follow-up too
    assert server.running_count() == 0
    assert summary(events(http, conversation_id)["items"]) == [
        ("MessageEvent", "Fix the loader"),
        ("ConversationStateUpdateEvent", "running"),
        ("ActionEvent", "Done."),
        ("ObservationEvent", "Done."),
        ("ConversationStateUpdateEvent", "finished"),
        ("MessageEvent", "And the tests"),
        ("ConversationStateUpdateEvent", "running"),
        ("ActionEvent", "Done."),
        ("ObservationEvent", "Done."),
        ("ConversationStateUpdateEvent", "finished"),
    ]


def test_follow_up_without_run_only_records_the_message(serve: Callable[..., Served]) -> None:
    server, http = serve(SHORT)
    conversation_id = start(http)
    ended(http, conversation_id)

    assert send(http, conversation_id, "Just a note", run=False).status_code == 200
    time.sleep(0.05)

    assert status(http, conversation_id) == ("RUNNING", "finished")
    assert server.running_count() == 0
    assert summary(events(http, conversation_id)["items"])[-2:] == [
        ("ConversationStateUpdateEvent", "finished"),
        ("MessageEvent", "Just a note"),
    ]
    # ``run`` defaults to false, as in the real request model
    body = {"content": [{"type": "text", "text": "Another note"}]}
    assert http.post(f"{V1}/{conversation_id}/send-message", json=body).status_code == 200
    assert status(http, conversation_id) == ("RUNNING", "finished")


def test_follow_up_during_a_run_joins_it(serve: Callable[..., Served]) -> None:
    clock = ManualClock()
    _, http = serve(SHORT, clock=clock)
    conversation_id = start(http, clock=clock)
    assert status(http, conversation_id) == ("RUNNING", "running")

    assert send(http, conversation_id, "Also this").status_code == 200
    ended(http, conversation_id, clock=clock)

    assert [kind for kind, _ in summary(events(http, conversation_id)["items"])] == [
        "MessageEvent",
        "ConversationStateUpdateEvent",
        "MessageEvent",
        "ConversationStateUpdateEvent",
        "ActionEvent",
        "ObservationEvent",
        "ConversationStateUpdateEvent",
    ]


def test_follow_up_starts_an_empty_conversation(serve: Callable[..., Served]) -> None:
    clock = ManualClock()
    _, http = serve(SHORT, clock=clock)
    response = http.post(V1, json={})
    task_id = response.json()["id"]
    clock.advance(SHORT.starting)
    conversation_id = wait_until(
        lambda: http.get(f"{V1}/start-tasks", params={"ids": task_id}).json()[0]["app_conversation_id"]
    )
    assert status(http, conversation_id) == ("RUNNING", "idle")

    assert send(http, conversation_id, "Now do something").status_code == 200

    assert status(http, conversation_id) == ("RUNNING", "running")
    assert ended(http, conversation_id, clock=clock)["title"] == "Now do something"


def test_send_message_422_for_a_bad_id_or_body(serve: Callable[..., Served]) -> None:
    _, http = serve(LONG)
    conversation_id = start(http)
    path = f"{V1}/{conversation_id}/send-message"

    bad_id = http.post(f"{V1}/not-a-uuid/send-message", json={"content": [{"type": "text", "text": "x"}]})
    empty = http.post(path, json={"content": [], "run": True})
    missing = http.post(path, json={"run": True})
    role = http.post(path, json={"role": "assistant", "content": [{"type": "text", "text": "x"}]})
    both = http.post(f"{V1}/xyz/send-message", json={"content": []})
    run = http.post(path, json={"content": [{"type": "text", "text": "x"}], "run": "maybe"})
    no_body = http.post(path)

    why = "invalid character: found `n` at 0"
    assert (bad_id.status_code, bad_id.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "uuid_parsing",
                    "loc": ["path", "conversation_id"],
                    "msg": f"Input should be a valid UUID, {why}",
                    "input": "not-a-uuid",
                    "ctx": {"error": why},
                },
            ]
        },
    )
    assert (empty.status_code, empty.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "too_short",
                    "loc": ["body", "content"],
                    "msg": "List should have at least 1 item after validation, not 0",
                    "input": [],
                    "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0},
                },
            ]
        },
    )
    assert (missing.status_code, missing.json()) == (
        422,
        {
            "detail": [
                {"type": "missing", "loc": ["body", "content"], "msg": "Field required", "input": {"run": True}},
            ]
        },
    )
    assert role.status_code == 422
    assert [(p["type"], p["loc"], p["msg"]) for p in role.json()["detail"]] == [
        ("literal_error", ["body", "role"], "Input should be 'user'")
    ]
    assert [p["loc"] for p in both.json()["detail"]] == [["path", "conversation_id"], ["body", "content"]]
    assert [(p["type"], p["loc"]) for p in run.json()["detail"]] == [("bool_parsing", ["body", "run"])]
    assert [(p["type"], p["loc"]) for p in no_body.json()["detail"]] == [("missing", ["body"])]
    assert summary(events(http, conversation_id)["items"]) == [
        ("MessageEvent", "Fix the loader"),
        ("ConversationStateUpdateEvent", "running"),
    ]  # nothing recorded


def test_send_message_404_for_an_unknown_or_deleted_conversation(serve: Callable[..., Served]) -> None:
    _, http = serve(LONG)
    conversation_id = start(http)
    assert http.delete(f"{V1}/{conversation_id}").status_code == 200

    for missing in (UNKNOWN, conversation_id):
        response = send(http, missing)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"Conversation {uuid.UUID(missing)} not found"},
        )


@pytest.mark.parametrize(
    ("sandbox_status", "code", "detail"),
    [
        ("MISSING", 410, "Conversation is archived. The sandbox no longer exists."),
        ("ERROR", 503, "Sandbox is in an error state and cannot accept messages."),
        ("STARTING", 409, "Sandbox is STARTING. Use POST /api/v1/sandboxes/{}/resume to resume it first."),
        ("PAUSED", 409, "Sandbox is PAUSED. Use POST /api/v1/sandboxes/{}/resume to resume it first."),
    ],
)
def test_send_message_wants_a_running_sandbox(
    serve: Callable[..., Served], sandbox_status: str, code: int, detail: str
) -> None:
    server, http = serve(LONG)
    conversation_id = start(http)
    sandbox_id = read(http, conversation_id)["sandbox_id"]  # type: ignore[index]
    server.set_state(conversation_id, sandbox_status=sandbox_status)

    response = send(http, conversation_id)

    assert (response.status_code, response.json()) == (code, {"detail": detail.format(sandbox_id)})
    assert status(http, conversation_id) == (sandbox_status, None)  # no agent while the sandbox is not RUNNING


# ==================================================================================================== pause, resume


def test_pause_then_resume(serve: Callable[..., Served]) -> None:
    server, http = serve(Timeline(starting=0.05, running=0.3, changes=CHANGES))
    conversation_id = start(http)
    ended(http, conversation_id)

    paused = sandbox(http, conversation_id, "pause")

    assert (paused.status_code, paused.json()) == (200, {"success": True})
    assert status(http, conversation_id) == ("PAUSED", None)
    assert server.state_of(conversation_id) == {"execution_status": None, "sandbox_status": "PAUSED"}
    assert send(http, conversation_id).status_code == 409
    git_paused = {"detail": "Sandbox is paused; resume it before reading git state."}
    for route, params in [
        ("git/changes", {"path": "/workspace/project"}),
        ("git/diff", {"path": "/workspace/project/demo/data/load.py"}),
    ]:
        response = http.get(f"{V1}/{conversation_id}/{route}", params=params)
        assert (response.status_code, response.json()) == (409, git_paused)
    file = http.get(f"{V1}/{conversation_id}/file", params={"file_path": "/workspace/project/demo/data/load.py"})
    assert (file.status_code, file.json()) == (200, "")
    assert sandbox(http, conversation_id, "pause").status_code == 200  # pausing again is fine

    resumed = sandbox(http, conversation_id, "resume")

    assert (resumed.status_code, resumed.json()) == (200, {"success": True})
    assert status(http, conversation_id) == ("RUNNING", "finished")
    assert send(http, conversation_id).status_code == 200
    assert http.get(f"{V1}/{conversation_id}/git/changes", params={"path": "/workspace/project"}).status_code == 200


def test_paused_agent_does_not_count_as_running_and_its_run_ends_meanwhile(serve: Callable[..., Served]) -> None:
    clock = ManualClock()
    server, http = serve(SHORT, clock=clock)
    conversation_id = start(http, clock=clock)
    assert server.running_count() == 1

    sandbox(http, conversation_id, "pause")
    assert server.running_count() == 0
    clock.advance(SHORT.running + 0.01)  # the whole run passes while paused: the agent's clock does not stop
    assert server.running_count() == 0
    sandbox(http, conversation_id, "resume")

    assert status(http, conversation_id) == ("RUNNING", "finished")


def test_pause_unknown_sandbox_is_404(serve: Callable[..., Served]) -> None:
    _, http = serve(LONG)
    conversation_id = start(http)
    for action in ("pause", "resume"):
        response = http.post(f"/api/v1/sandboxes/no-such-sandbox/{action}")
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    sandbox_id = read(http, conversation_id)["sandbox_id"]  # type: ignore[index]
    http.delete(f"{V1}/{conversation_id}")
    assert http.post(f"/api/v1/sandboxes/{sandbox_id}/pause").status_code == 404


def test_forced_sandbox_status_wins_over_pause(serve: Callable[..., Served]) -> None:
    server, http = serve(LONG)
    conversation_id = start(http)
    sandbox(http, conversation_id, "pause")

    server.set_state(conversation_id, sandbox_status="RUNNING")

    assert status(http, conversation_id) == ("RUNNING", "running")
    assert send(http, conversation_id).status_code == 200


# ==================================================================================================== delete


def test_delete_then_reads_forget_it(serve: Callable[..., Served]) -> None:
    server, http = serve(LONG)
    kept, deleted = start(http, "keep"), start(http, "delete")
    assert server.running_count() == 2

    response = http.delete(f"{V1}/{uuid.UUID(deleted)}")  # hyphenated works too

    assert (response.status_code, response.json()) == (200, {"success": True})
    assert http.get(V1, params={"ids": [deleted, kept]}).json()[0] is None
    assert [c["id"] for c in http.get(f"{V1}/search").json()["items"]] == [kept]
    assert http.get(f"{V1}/count").json() == 1
    assert server.conversation_ids() == [kept]
    assert server.running_count() == 1
    assert events(http, deleted) == {"items": [], "next_page_id": None}
    with pytest.raises(KeyError):
        server.set_state(deleted, execution_status="finished")
    again = http.delete(f"{V1}/{deleted}")
    assert (again.status_code, again.json()) == (404, {"detail": "Conversation not found"})
    unknown = http.delete(f"{V1}/{UNKNOWN}")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Conversation not found"})
    bad = http.delete(f"{V1}/not-a-uuid")
    assert (bad.status_code, bad.json()) == (400, {"detail": "Invalid conversation ID format"})
    renamed = http.patch(f"{V1}/{kept}", json={"title": "x", "public": True})  # (the web app's rename and share)
    assert (renamed.status_code, renamed.json()["title"], renamed.json()["public"]) == (200, "x", True)
    assert http.patch(f"{V1}/{deleted}", json={"title": "x"}).status_code == 404
    assert http.get(f"{V1}/{kept}").status_code == 405


def test_running_count_with_follow_ups_and_deletes(serve: Callable[..., Served]) -> None:
    server, http = serve(SHORT, max_running=2)
    first, second = start(http), start(http)
    assert server.running_count() == 2
    assert http.post(V1, json={}).status_code == 429
    wait_until(lambda: server.running_count() == 0)

    send(http, first)
    send(http, second)
    assert server.running_count() == 2
    assert http.post(V1, json={}).status_code == 429
    http.delete(f"{V1}/{second}")
    assert server.running_count() == 1
    assert http.post(V1, json={}).status_code == 200
    assert server.running_count() == 2


# ==================================================================================================== work done


def test_git_changes_once_the_agent_ended(serve: Callable[..., Served]) -> None:
    server, http = serve(Timeline(starting=0.05, running=0.3, changes=CHANGES))
    conversation_id = start(http)
    path = f"{V1}/{conversation_id}/git/changes"
    workspace = {"path": "/workspace/project"}
    assert http.get(path, params=workspace).json() == []  # the agent is still working

    ended(http, conversation_id)

    response = http.get(path, params=workspace)
    assert (response.status_code, response.json()) == (
        200,
        [
            {"status": "ADDED", "path": "demo/README.md"},
            {"status": "UPDATED", "path": "demo/data/load.py"},
            {"status": "DELETED", "path": "demo/old.py"},
        ],
    )
    assert http.get(path, params={"path": "/workspace/project", "ref": "HEAD"}).json() == response.json()
    assert http.get(path, params={"path": "/workspace"}).json() == []  # not a repository
    missing = http.get(path)
    assert (missing.status_code, missing.json()) == (
        422,
        {"detail": [{"type": "missing", "loc": ["query", "path"], "msg": "Field required", "input": None}]},
    )
    unknown = http.get(f"{V1}/{UNKNOWN}/git/changes", params=workspace)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"detail": f"Conversation {uuid.UUID(UNKNOWN)} is not reachable"},
    )
    bad = http.get(f"{V1}/bad/git/changes", params=workspace)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "conversation_id"]
    server.set_state(conversation_id, sandbox_status="MISSING")
    assert http.get(path, params=workspace).status_code == 404  # not paused, not running: not reachable


def test_git_diff_and_file(serve: Callable[..., Served]) -> None:
    server, http = serve(Timeline(starting=0.05, running=0.3, changes=CHANGES))
    conversation_id = start(http)
    diff_path, file_path = f"{V1}/{conversation_id}/git/diff", f"{V1}/{conversation_id}/file"
    load = "/workspace/project/demo/data/load.py"
    early = http.get(diff_path, params={"path": load})
    assert (early.status_code, early.json()) == (502, {"detail": "Agent server error: 400"})
    ended(http, conversation_id)

    def diff(name: str) -> Any:
        response = http.get(diff_path, params={"path": f"/workspace/project/{name}"})
        assert response.status_code == 200, response.text
        return response.json()

    assert diff("demo/data/load.py") == {"modified": "new line\n", "original": "old line\n"}
    assert list(diff("demo/data/load.py")) == ["modified", "original"]
    assert diff("demo/README.md") == {"modified": "new line\n", "original": None}
    assert diff("demo/old.py") == {"modified": None, "original": "old line\n"}
    for other in ("/workspace/project/demo/other.py", "demo/data/load.py"):
        response = http.get(diff_path, params={"path": other})
        assert (response.status_code, response.json()) == (502, {"detail": "Agent server error: 400"})
    assert http.get(diff_path).json()["detail"][0]["loc"] == ["query", "path"]

    def file(name: str | None) -> Any:
        response = http.get(file_path, params={} if name is None else {"file_path": name})
        assert response.status_code == 200
        return response.json()

    assert file(load) == "new line\n"
    assert file("/workspace/project/demo/old.py") == ""  # deleted
    assert file("/workspace/project/demo/other.py") == file(None) == ""
    assert http.get(f"{V1}/{UNKNOWN}/file", params={"file_path": load}).json() == ""

    server.set_result(conversation_id, diffs={"demo/data/load.py": ("a = 1\n", "a = 2\n")})

    assert diff("demo/data/load.py") == {"modified": "a = 2\n", "original": "a = 1\n"}
    assert file(load) == "a = 2\n"


# ==================================================================================================== events


def test_events_follow_the_run_in_the_real_shapes(serve: Callable[..., Served]) -> None:
    _, http = serve(Timeline(starting=0.05, running=0.3, answer="Fixed the loader."))
    conversation_id = start(http, "Fix the loader")

    during = events(http, conversation_id)["items"]
    assert summary(during) == [("MessageEvent", "Fix the loader"), ("ConversationStateUpdateEvent", "running")]
    ended(http, conversation_id)
    page = events(http, conversation_id)

    assert page["next_page_id"] is None
    message, running, action, observation, finished = page["items"]
    assert message == {
        "id": message["id"],
        "timestamp": message["timestamp"],
        "source": "user",
        "llm_message": {
            "role": "user",
            "content": [{"cache_prompt": False, "type": "text", "text": "Fix the loader"}],
            "thinking_blocks": [],
        },
        "activated_skills": [],
        "extended_content": [],
        "kind": "MessageEvent",
    }
    assert running == {
        "id": running["id"],
        "timestamp": running["timestamp"],
        "source": "environment",
        "key": "execution_status",
        "value": "running",
        "kind": "ConversationStateUpdateEvent",
    }
    arguments = json.dumps({"message": "Fixed the loader."})
    call_id = action["tool_call_id"]
    assert action == {
        "id": action["id"],
        "timestamp": action["timestamp"],
        "source": "agent",
        "thought": [],
        "thinking_blocks": [],
        "action": {"message": "Fixed the loader.", "kind": "FinishAction"},
        "tool_name": "finish",
        "tool_call_id": call_id,
        "tool_call": {"id": call_id, "name": "finish", "arguments": arguments, "origin": "completion"},
        "llm_response_id": action["llm_response_id"],
        "security_risk": "UNKNOWN",
        "summary": "finish: " + arguments,
        "kind": "ActionEvent",
    }
    assert call_id.startswith("call_") and action["llm_response_id"].startswith("chatcmpl-")
    assert observation == {
        "id": observation["id"],
        "timestamp": observation["timestamp"],
        "source": "environment",
        "tool_name": "finish",
        "tool_call_id": call_id,
        "observation": {
            "content": [{"cache_prompt": False, "type": "text", "text": "Fixed the loader."}],
            "is_error": False,
            "kind": "FinishObservation",
        },
        "action_id": action["id"],
        "extended_content": [],
        "kind": "ObservationEvent",
    }
    assert (finished["key"], finished["value"]) == ("execution_status", "finished")
    assert list(message)[:2] == ["id", "timestamp"] and list(message)[-1] == "kind"
    assert all(UUID4.fullmatch(e["id"]) for e in page["items"])
    assert len({e["id"] for e in page["items"]}) == 5
    assert all(NAIVE_TIME.fullmatch(e["timestamp"]) for e in page["items"])
    stamps = [e["timestamp"] for e in page["items"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    assert [e["id"] for e in during] == [e["id"] for e in page["items"][:2]]  # stable from poll to poll
    assert events(http, conversation_id) == page


@pytest.mark.parametrize("outcome", ["error", "stuck"])
def test_events_of_a_run_that_did_not_finish(serve: Callable[..., Served], outcome: str) -> None:
    _, http = serve(Timeline(starting=0.05, running=0.2, outcome=outcome))
    conversation_id = start(http)
    ended(http, conversation_id)
    assert summary(events(http, conversation_id)["items"]) == [
        ("MessageEvent", "Fix the loader"),
        ("ConversationStateUpdateEvent", "running"),
        ("ConversationStateUpdateEvent", outcome),
    ]


def test_events_order_filter_and_paging(serve: Callable[..., Served]) -> None:
    _, http = serve(SHORT)
    conversation_id = start(http)
    ended(http, conversation_id)
    send(http, conversation_id, "Second")
    ended(http, conversation_id)
    everything = events(http, conversation_id)["items"]
    assert len(everything) == 10

    newest = events(http, conversation_id, sort_order="TIMESTAMP_DESC")["items"]
    messages = events(http, conversation_id, kind__eq="MessageEvent")["items"]
    actions = events(http, conversation_id, kind__eq="ActionEvent", sort_order="TIMESTAMP_DESC")["items"]
    first = events(http, conversation_id, limit=4)
    second = events(http, conversation_id, limit=4, page_id=first["next_page_id"])
    third = events(http, conversation_id, limit=4, page_id=second["next_page_id"])

    assert newest == everything[::-1]
    assert summary(messages) == [("MessageEvent", "Fix the loader"), ("MessageEvent", "Second")]
    assert [a["id"] for a in actions] == [e["id"] for e in everything if e["kind"] == "ActionEvent"][::-1]
    assert events(http, conversation_id, kind__eq="PauseEvent")["items"] == []
    assert first["next_page_id"] is not None and second["next_page_id"] is not None
    assert third["next_page_id"] is None
    assert first["items"] + second["items"] + third["items"] == everything
    desc = events(http, conversation_id, limit=3, sort_order="TIMESTAMP_DESC")
    assert desc["items"] == everything[:-4:-1]


def test_events_query_errors(serve: Callable[..., Served]) -> None:
    _, http = serve(LONG)
    conversation_id = start(http)
    path = f"/api/v1/conversation/{conversation_id}/events/search"

    zero, over = http.get(path, params={"limit": 0}), http.get(path, params={"limit": 101})
    order = http.get(path, params={"sort_order": "NEWEST"})

    assert (zero.status_code, zero.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "greater_than",
                    "loc": ["query", "limit"],
                    "msg": "Input should be greater than 0",
                    "input": "0",
                    "ctx": {"gt": 0},
                },
            ]
        },
    )
    assert (over.status_code, over.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "less_than_equal",
                    "loc": ["query", "limit"],
                    "msg": "Input should be less than or equal to 100",
                    "input": "101",
                    "ctx": {"le": 100},
                },
            ]
        },
    )
    assert (order.status_code, order.json()) == (
        422,
        {
            "detail": [
                {
                    "type": "enum",
                    "loc": ["query", "sort_order"],
                    "msg": "Input should be 'TIMESTAMP' or 'TIMESTAMP_DESC'",
                    "input": "NEWEST",
                    "ctx": {"expected": "'TIMESTAMP' or 'TIMESTAMP_DESC'"},
                },
            ]
        },
    )
    assert events(http, UNKNOWN) == {"items": [], "next_page_id": None}
    broken = http.get("/api/v1/conversation/not-a-uuid/events/search")
    assert (broken.status_code, broken.text) == (500, "Internal Server Error")
    assert http.get(f"{V1}/{conversation_id}/events/search").status_code == 404  # "conversation", not "app-..."


# ==================================================================================================== results


def test_pr_number_and_metrics_once_the_agent_ended(serve: Callable[..., Served]) -> None:
    timeline = Timeline(
        starting=0.05, running=0.3, pr_numbers=(7, 9), cost=0.25, prompt_tokens=1200, completion_tokens=80
    )
    _, http = serve(timeline)
    conversation_id = start(http)
    before = read(http, conversation_id)
    assert before is not None
    assert before["pr_number"] == [] and before["metrics"]["accumulated_cost"] == 0.0

    after = ended(http, conversation_id)

    assert after["pr_number"] == [7, 9]
    assert after["metrics"] == {
        "model_name": "default",
        "accumulated_cost": 0.25,
        "max_budget_per_task": None,
        "accumulated_token_usage": {
            "model": "",
            "prompt_tokens": 1200,
            "completion_tokens": 80,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "context_window": 0,
            "per_turn_token": 0,
            "response_id": "",
        },
    }
    assert before["metrics"]["accumulated_token_usage"] == {
        **after["metrics"]["accumulated_token_usage"],
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def test_server_that_keeps_no_events(serve: Callable[..., Served]) -> None:
    timeline = Timeline(starting=0.05, running=0.2, cost=0.5, prompt_tokens=10, changes=CHANGES, keeps_events=False)
    server, http = serve(timeline)
    conversation_id = start(http)

    after = ended(http, conversation_id)

    assert after["execution_status"] == "finished"
    assert events(http, conversation_id) == {"items": [], "next_page_id": None}
    assert after["metrics"]["accumulated_cost"] == 0.0
    assert after["metrics"]["accumulated_token_usage"]["prompt_tokens"] == 0
    changes = http.get(f"{V1}/{conversation_id}/git/changes", params={"path": "/workspace/project"}).json()
    assert len(changes) == 3  # git still answers: the agent server is there
    assert send(http, conversation_id).status_code == 200
    assert server.state_of(conversation_id)["execution_status"] == "running"  # follow-ups work, unrecorded
    assert events(http, conversation_id)["items"] == []


def test_set_result_overrides_one_conversation(serve: Callable[..., Served]) -> None:
    server, http = serve(Timeline(starting=0.05, running=0.3, answer="First answer.", cost=0.1))
    changed, untouched = start(http), start(http)
    ended(http, changed)
    ended(http, untouched)

    server.set_result(
        changed,
        answer="Second answer.",
        changes=[("MOVED", "demo/new.py")],
        pr_numbers=[3],
        cost=1.5,
        prompt_tokens=5,
        completion_tokens=6,
    )
    send(http, changed)
    after = ended(http, changed)

    actions = events(http, changed, kind__eq="ActionEvent")["items"]
    assert [a["action"]["message"] for a in actions] == ["First answer.", "Second answer."]  # the first run's stays
    assert (after["pr_number"], after["metrics"]["accumulated_cost"]) == ([3], 1.5)
    usage = after["metrics"]["accumulated_token_usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (5, 6)
    git = http.get(f"{V1}/{changed}/git/changes", params={"path": "/workspace/project"}).json()
    assert git == [{"status": "MOVED", "path": "demo/new.py"}]
    moved = http.get(f"{V1}/{changed}/git/diff", params={"path": "/workspace/project/demo/new.py"}).json()
    assert moved == {"modified": "new line\n", "original": "old line\n"}
    other = read(http, untouched)
    assert other is not None
    assert (other["pr_number"], other["metrics"]["accumulated_cost"]) == ([], 0.1)
    assert [a["action"]["message"] for a in events(http, untouched, kind__eq="ActionEvent")["items"]] == [
        "First answer."
    ]

    server.set_result(changed, cost=2.0)  # only the given ones change
    again = read(http, changed)
    assert again is not None
    assert (again["pr_number"], again["metrics"]["accumulated_cost"]) == ([3], 2.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"changes": [("CHANGED", "a.py")]},
        {"changes": ["a.py"]},
        {"pr_numbers": ["7"]},
        {"cost": "1"},
        {"prompt_tokens": 1.5},
        {"answer": 3},
        {"diffs": {"a.py": "text"}},
    ],
)
def test_set_result_refuses_wrong_types(serve: Callable[..., Served], fields: dict[str, Any]) -> None:
    server, http = serve(LONG)
    conversation_id = start(http)
    with pytest.raises(ValueError):
        server.set_result(conversation_id, **fields)


def test_set_result_wants_an_existing_v1_conversation(serve: Callable[..., Served]) -> None:
    server, _ = serve(LONG)
    with pytest.raises(KeyError):
        server.set_result(UNKNOWN, answer="x")
    v0, _ = serve(LONG, api="v0")
    with pytest.raises(ValueError):
        v0.set_result(UNKNOWN, answer="x")


@pytest.mark.parametrize(
    "timeline",
    [Timeline(changes=(("NEW", "a.py"),)), Timeline(pr_numbers=("1",)), Timeline(keeps_events="no")],  # type: ignore[arg-type]
)
def test_timeline_results_are_checked(timeline: Timeline) -> None:
    with pytest.raises(ValueError):
        LocalOpenHandsServer(KEY, timeline=timeline)


# ==================================================================================== the sandbox gone, older servers


def test_deleting_a_sandbox_leaves_its_conversation_missing_as_on_the_real_server(serve: Callable[..., Served]) -> None:
    server, http = serve(LONG)
    conversation_id = start(http)
    sandbox_id = read(http, conversation_id)["sandbox_id"]  # type: ignore[index]
    without_query = http.delete(f"/api/v1/sandboxes/{sandbox_id}")  # the real route reads the id from the query
    assert (without_query.status_code, without_query.json()["detail"][0]["loc"]) == (422, ["query", "sandbox_id"])

    deleted = http.delete(f"/api/v1/sandboxes/{sandbox_id}", params={"sandbox_id": sandbox_id})

    assert (deleted.status_code, deleted.json()) == (200, {"success": True})
    assert status(http, conversation_id) == ("MISSING", None)
    assert (send(http, conversation_id).status_code, send(http, conversation_id).json()) == (
        404,
        {"detail": f"Sandbox not found for conversation {uuid.UUID(conversation_id)}"},
    )
    for action in ("pause", "resume"):
        response = sandbox(http, conversation_id, action)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    changes = http.get(f"{V1}/{conversation_id}/git/changes", params={"path": "/workspace/project"})
    assert (changes.status_code, changes.json()) == (
        404,
        {"detail": f"Conversation {uuid.UUID(conversation_id)} is not reachable"},
    )
    again = http.delete(f"/api/v1/sandboxes/{sandbox_id}", params={"sandbox_id": sandbox_id})
    assert (again.status_code, again.json()) == (404, {"detail": "Not Found"})


def test_a_sandbox_whose_process_died_cannot_be_paused_or_resumed(serve: Callable[..., Served]) -> None:
    server, http = serve(LONG)
    conversation_id = start(http)
    server.set_state(conversation_id, sandbox_status="MISSING")
    for action in ("pause", "resume"):
        response = sandbox(http, conversation_id, action)
        assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize(
    ("version", "has_git_routes"), [("1.7.0", False), ("1.7", False), ("1.8.0", True), ("1.11.0", True)]
)
def test_a_server_set_to_an_older_version_lacks_the_routes_that_came_later(
    serve: Callable[..., Served], version: str, has_git_routes: bool
) -> None:
    from openhands_magics.testing.v1 import set_version

    server, http = serve(Timeline(starting=0.05, running=0.1, changes=CHANGES))
    set_version(server, version)
    conversation_id = ended(http, start(http))["id"]
    for route, path in [("git/changes", "/workspace/project"), ("git/diff", "/workspace/project/demo/data/load.py")]:
        response = http.get(f"{V1}/{conversation_id}/{route}", params={"path": path})
        if has_git_routes:
            assert response.status_code == 200, response.text
        else:
            assert (response.status_code, response.json()) == (404, {"detail": "Not Found"})
    assert send(http, conversation_id).status_code == 200  # the other routes are all there


def test_set_version_refuses_what_it_cannot_be(serve: Callable[..., Served]) -> None:
    from openhands_magics.testing.v1 import set_version

    server, _ = serve(LONG)
    with pytest.raises(ValueError, match="1.7.0 or later"):
        set_version(server, "1.6.0")
    with LocalOpenHandsServer(KEY, api="v0") as old:
        with pytest.raises(ValueError, match="for V1 servers"):
            set_version(old, "1.7.0")
