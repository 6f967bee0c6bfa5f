"""The agent server's WebSocket and REST against the real server, checked with the same shapes as the local one's
(``tests/test_agent_server.py``): both are held to the frames recorded from 1.11.0
(``openhands_magics/testing/recorded``), so the two stay alike.

Needs the fake LLM making the agent run 3 shell commands 1 s apart (``up --llm-steps 3 --llm-delay 1``). Run::

    OPENHANDS_CONTRACT_BASE_URL=http://127.0.0.1:3300 OPENHANDS_CONTRACT_EXPECT_API=v1 \\
    OPENHANDS_CONTRACT_LLM=http://127.0.0.1:18300 .venv/bin/pytest tests/contract/test_agent_server_contract.py

The conversation's ``session_api_key`` is kept in a local variable only: never printed, never in an assertion.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openhands_magics import testing

from .conftest import Live

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import ClientConnection, connect  # noqa: E402

RECORDED = Path(testing.__file__).parent / "recorded"
#: The fake LLM as the other engineers expect to find it.
SHARED_LLM = {"delay": 1, "steps": ["echo step 1", "echo step 2", "echo step 3"]}
UNKNOWN = "0123456789abcdef0123456789abcdef"


def recorded(name: str = "events-1.11.0.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECORDED / name).read_text().splitlines()]


@dataclass
class Agent:
    """A conversation on the real server and its agent server (the key stays here)."""

    base_url: str
    task_id: str
    conversation_id: str
    url: str
    key: str

    def __repr__(self) -> str:  # never the key
        return f"Agent({self.conversation_id!r} at {self.url!r})"

    def socket(self, key: str | None = "", **query: str) -> ClientConnection:
        key = self.key if key == "" else key
        headers = {"X-Session-API-Key": key} if key is not None else {}
        query = query or {"resend_mode": "all"}
        url = self.url.replace("http://", "ws://") + f"/sockets/events/{self.conversation_id}?"
        return connect(url + "&".join(f"{k}={v}" for k, v in query.items()), additional_headers=headers, proxy=None)

    def rest(self, method: str, path: str, body: Any = None, key: str = "") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "X-Session-API-Key": self.key if key == "" else key}
        data = json.dumps(body).encode() if body is not None else None
        return _http(method, self.url + path, data, headers)


def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - the loopback URL the tester gave
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def app(live: Live, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "X-Session-API-Key": live.api_key}
    return _http(method, live.base_url + path, json.dumps(body).encode() if body is not None else None, headers)


def message(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def start(live: Live, text: str | None = "hi", before_ready: Callable[[str], None] | None = None) -> Agent:
    """Start a conversation and wait for READY (``before_ready`` gets the task id first)."""
    body = {"initial_message": {"content": [{"type": "text", "text": text}]}} if text is not None else {}
    status, task = app(live, "POST", "/api/v1/app-conversations", body)
    assert status == 200, task
    if before_ready:
        before_ready(task["id"])
    deadline = time.monotonic() + 120
    while True:
        [task] = app(live, "GET", f"/api/v1/app-conversations/start-tasks?ids={task['id']}")[1]
        if task["status"] in ("READY", "ERROR"):
            break
        assert time.monotonic() < deadline, "the start task never ended"
        time.sleep(0.3)
    assert task["status"] == "READY", task["detail"]
    [conversation] = app(live, "GET", f"/api/v1/app-conversations?ids={task['app_conversation_id']}")[1]
    url = conversation["conversation_url"].split("/api/conversations/")[0]
    return Agent(live.base_url, task["id"], conversation["id"], url, conversation["session_api_key"])


def until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = 60) -> list[dict[str, Any]]:
    got = []
    while True:
        got.append(json.loads(ws.recv(timeout=timeout)))
        if done(got[-1]):
            return got


def quiet(ws: ClientConnection, seconds: float = 3.0) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(json.loads(ws.recv(timeout=seconds)))
        except TimeoutError:
            return got


def deduplicated(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames without repeats, each where it last came. The real server subscribes a socket before it replays,
    so an event that happens during the replay can come twice (live, then in the replay: same id, same content);
    the local one replays and subscribes at once, so it never repeats one."""
    seen: dict[str, dict[str, Any]] = {}
    for frame in frames:
        if frame["id"] in seen:
            assert seen[frame["id"]] == frame
            del seen[frame["id"]]
        seen[frame["id"]] = frame
    return list(seen.values())


def status_is(*values: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("key") == "execution_status" and frame.get("value") in values


def shape(frame: dict[str, Any]) -> str:
    """As in ``tests/test_agent_server.py``: the kind, and what it is about."""
    if frame["kind"] == "ConversationStateUpdateEvent":
        value = f"={frame['value']}" if frame["key"] == "execution_status" else ""
        return f"State:{frame['key']}{value}"
    if frame["kind"] == "ActionEvent":
        return f"Action:{frame['action']['kind']}"
    if frame["kind"] == "ObservationEvent":
        return f"Observation:{frame['observation']['kind']}"
    return str(frame["kind"])


def same_fields(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """The checks ``test_a_whole_run_streams_the_recorded_frames_in_the_recorded_order`` makes locally."""
    assert list(mine) == list(theirs), shape(theirs)
    for part in ("action", "observation", "tool_call", "llm_message"):
        if part in theirs:
            assert list(mine[part]) == list(theirs[part]), (shape(theirs), part)
    if theirs.get("key") == "full_state":
        assert list(mine["value"]) == list(theirs["value"])
    if theirs.get("key") == "stats":
        assert list(mine["value"]["usage_to_metrics"]["agent"]) == list(theirs["value"]["usage_to_metrics"]["agent"])


@pytest.fixture(autouse=True)
def shared_llm() -> Iterator[None]:
    """Afterwards the fake LLM as the others expect it (autouse, so set up before ``live`` and torn down after its
    own reset, which sets no delay)."""
    yield
    llm = os.environ.get("OPENHANDS_CONTRACT_LLM")
    if llm:
        request = urllib.request.Request(f"{llm}/fake/config", data=json.dumps(SHARED_LLM).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - the loopback URL the tester gave


@pytest.fixture
def steps(live: Live) -> None:
    """The fake LLM as recorded: 3 terminal steps, 1 s apart, then "Hello! Done."."""
    if not live.llm:
        pytest.skip("OPENHANDS_CONTRACT_LLM is not set")
    if live.expect_api == "v0":
        pytest.skip("V0 servers have no agent server")
    live.fake_llm(**SHARED_LLM, answer="Hello! Done.")


# ==================================================================================================== the frames
def test_a_whole_run_has_the_recorded_frames_in_the_recorded_order(live: Live, steps: None) -> None:
    agent = start(live)
    with agent.socket() as ws:
        got = until(ws, status_is("finished"))
        got = deduplicated(got + quiet(ws))
    real = recorded()
    # the socket opened while the agent ran: the replay and the live frames together are the same run
    assert [shape(f) for f in got] == [shape(f) for f in real]
    for mine, theirs in zip(got, real):
        same_fields(mine, theirs)
    texts = [f["observation"]["content"][0]["text"] for f in got if shape(f) == "Observation:TerminalObservation"]
    assert texts == [f"\x1b[?2004lstep {n}\n\x1b[?2004h" for n in (1, 2, 3)]
    stats = [f for f in got if f.get("key") == "stats"]
    actions = [f for f in got if f["kind"] == "ActionEvent"]
    assert all(s["timestamp"] < a["timestamp"] for s, a in zip(stats[1:], actions))  # stamped before, sent after


def test_resend_since_replays_from_the_time_stamp_on_it_included(live: Live, steps: None) -> None:
    agent = start(live)
    with agent.socket() as ws:
        run = deduplicated(until(ws, status_is("finished")) + quiet(ws))
    step2 = [f for f in run if f["kind"] == "ActionEvent"][1]
    with agent.socket(resend_mode="since", after_timestamp=step2["timestamp"]) as ws:
        got = quiet(ws)
    got = deduplicated(got)
    assert shape(got[0]) == "State:full_state" and got[1]["id"] == step2["id"]
    stored = [f for f in run if f.get("key") != "full_state"]
    assert [f["id"] for f in got[1:]] == [f["id"] for f in stored if f["timestamp"] >= step2["timestamp"]]
    with agent.socket(resend_mode="since") as ws:
        assert [shape(f) for f in quiet(ws)] == ["State:full_state"]


# ==================================================================================================== keys and codes
def test_keys_and_close_codes_are_as_the_local_server_answers_them(live: Live, steps: None) -> None:
    agent = start(live)
    with pytest.raises(InvalidStatus) as refused:
        agent.socket(key="wrong")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        connect(agent.url.replace("http://", "ws://") + "/sockets/events/not-a-uuid", proxy=None)
    assert refused.value.response.status_code == 403
    with agent.socket(key=None) as ws:
        ws.send(json.dumps({"type": "auth", "session_api_key": "wrong"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "Authentication failed")  # type: ignore[union-attr]
    with agent.socket(key=None) as ws:
        ws.send(json.dumps({"type": "auth", "session_api_key": agent.key}))
        assert shape(json.loads(ws.recv(timeout=20))) == "State:full_state"
    unknown = Agent(agent.base_url, agent.task_id, UNKNOWN, agent.url, agent.key)
    with unknown.socket() as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4004, "Conversation not found")  # type: ignore[union-attr]


# ==================================================================================================== REST
def test_the_agent_servers_rest_has_the_recorded_shapes(live: Live, steps: None) -> None:
    agent = start(live)
    base = f"/api/conversations/{agent.conversation_id}"
    status, info = agent.rest("GET", base)
    theirs = json.loads((RECORDED / "agent-conversation-1.11.0.json").read_text())
    assert status == 200 and list(info) == list(theirs)
    assert info["workspace"] == {"working_dir": ".", "kind": "LocalWorkspace"}
    assert info["id"] == str(uuid.UUID(agent.conversation_id))
    assert agent.rest("GET", base, key="wrong") == (401, {"detail": "Unauthorized"})
    assert agent.rest("GET", f"/api/conversations/{UNKNOWN}") == (404, {"detail": "Not Found"})
    assert agent.rest("POST", f"/api/conversations/{UNKNOWN}/interrupt") == (400, {"detail": "Bad Request"})
    with agent.socket() as ws:
        until(ws, status_is("finished"))
    assert agent.rest("GET", base + "/agent_final_response") == (200, {"response": "Hello! Done."})


def test_interrupt_stops_at_once_and_run_goes_on(live: Live, steps: None) -> None:
    agent = start(live)
    base = f"/api/conversations/{agent.conversation_id}"
    with agent.socket() as ws:
        until(ws, lambda f: shape(f) == "Observation:TerminalObservation")
        assert agent.rest("POST", base + "/interrupt") == (200, {"success": True})
        stopped = quiet(ws)
        assert agent.rest("GET", base + "/agent_final_response") == (200, {"response": ""})
        assert agent.rest("POST", base + "/run") == (200, {"success": True})
        rest = until(ws, status_is("finished"))
    kinds = [shape(f) for f in stopped]
    assert kinds[kinds.index("State:execution_status=paused") :] == [
        "State:execution_status=paused",
        "InterruptEvent",
        "State:full_state",
        "State:full_state",
    ]
    assert shape(rest[0]) == "State:execution_status=running"
    commands = [f["action"]["command"] for f in rest if shape(f) == "Action:TerminalAction"]
    assert commands == ["echo step 2", "echo step 3"]  # on where it stopped


def test_confirmation_waits_before_each_step_and_a_rejection_ends_idle(live: Live, steps: None) -> None:
    agent = start(live, None)
    base = f"/api/conversations/{agent.conversation_id}"
    assert agent.rest("POST", base + "/confirmation_policy", {"policy": {"kind": "AlwaysConfirm"}}) == (
        200,
        {"success": True},
    )
    waits = [
        "Action:TerminalAction",
        "State:execution_status=waiting_for_confirmation",
        "State:stats",
        "State:full_state",
    ]
    with agent.socket() as ws:
        assert [(shape(f), f["value"]) for f in quiet(ws, 1.0)][1:] == [
            ("State:confirmation_policy", {"kind": "AlwaysConfirm"})
        ]
        body = {**message("confirm me"), "run": True}
        assert app(live, "POST", f"/api/v1/app-conversations/{agent.conversation_id}/send-message", body)[0] == 200
        first = until(ws, status_is("waiting_for_confirmation"))
        first += quiet(ws)  # an accept sent before the run wound down (its stats and snapshot) is lost: 200, no run
        assert [shape(f) for f in first[-4:]] == waits
        assert agent.rest("POST", base + "/events/respond_to_confirmation", {"accept": True}) == (
            200,
            {"success": True},
        )
        accepted = until(ws, status_is("waiting_for_confirmation")) + quiet(ws)
        assert [shape(f) for f in accepted] == [
            "State:execution_status=running",
            "Observation:TerminalObservation",
            *waits,
        ]
        answer = agent.rest("POST", base + "/events/respond_to_confirmation", {"accept": False, "reason": "not this"})
        assert answer == (200, {"success": True})
        rejected = quiet(ws)
    assert [shape(f) for f in rejected] == ["State:execution_status=idle", "UserRejectObservation"]
    assert rejected[1]["rejection_reason"] == "not this"
    assert agent.rest("POST", base + "/events/respond_to_confirmation", {"reason": "x"})[0] == 422


# ==================================================================================================== the app server
def test_pending_messages_only_under_task_id_are_delivered(live: Live, steps: None) -> None:
    answers = {}

    def queue(task_id: str) -> None:
        for target in (f"task-{task_id}", task_id):
            answers[target] = app(live, "POST", f"/api/v1/conversations/{target}/pending-messages", message(target))

    agent = start(live, "hi", before_ready=queue)
    assert all(status == 201 and body["queued"] and body["position"] == 1 for status, body in answers.values())
    with agent.socket() as ws:
        run = until(ws, status_is("finished"))
    said = [f["llm_message"]["content"][0]["text"] for f in run if f["kind"] == "MessageEvent"]
    assert said == ["hi", f"task-{agent.task_id}"]
    assert [f["value"] for f in run if f.get("key") == "execution_status"] == ["running", "finished"]


def test_events_search_has_the_sockets_events_and_the_webhooks_snapshots_sorted_by_time(
    live: Live, steps: None
) -> None:
    agent = start(live)
    with agent.socket() as ws:
        run = deduplicated(until(ws, status_is("finished")) + quiet(ws))
    stored = {f["id"] for f in run[1:]}  # (the first: this socket's own snapshot)
    path = f"/api/v1/conversation/{agent.conversation_id}/events/search?limit=100"
    deadline = time.monotonic() + 45  # the batches: 5 events, or 30 s after the first one not sent
    while True:
        items = app(live, "GET", path)[1]["items"]
        if stored <= {e["id"] for e in items}:
            break
        assert time.monotonic() < deadline, "events/search never had every event the socket sent"
        time.sleep(1.0)
    assert [shape(e) for e in items if e["id"] not in stored] == ["State:full_state"]  # the webhook's, at READY
    assert shape(items[0]) == "State:full_state" and items[0]["id"] not in stored
    stamps = [e["timestamp"] for e in items]
    assert stamps == sorted(stamps)
    step = ["State:stats", "Action:TerminalAction", "Observation:TerminalObservation"]
    assert [shape(e) for e in items] == [  # what tests/test_agent_server.py expects of the local one
        "State:full_state",
        "SystemPromptEvent",
        "MessageEvent",
        "State:last_user_message_id",
        "State:execution_status=running",
        "State:stats",
        *step,
        *step,
        *step,
        "State:stats",
        "Action:FinishAction",
        "Observation:FinishObservation",
        "State:execution_status=finished",
        "State:full_state",
    ]
