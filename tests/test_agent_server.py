"""The local server's agent server (``LocalOpenHandsServer.agent_url``): its WebSocket and REST, over real sockets
with the ``websockets`` client, checked against what the real 1.11.0 sent (``openhands_magics/testing/recorded``).

Most tests hold the server's clock (:class:`ManualClock`): a frame is due when the test moves the clock past its
time, so what a socket receives, and when, is the test's to say.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from openhands_magics import testing
from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, ManualClock, Timeline

from .conftest import wait_until

KEY = "sk-oh-agent-server-test-key"
RECORDED = Path(testing.__file__).parent / "recorded"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
NAIVE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")
V1 = "/api/v1/app-conversations"
UNKNOWN = "0123456789abcdef0123456789abcdef"
#: The recorded run: 3 terminal steps 1 s apart, then the finish.
THREE_STEPS = Timeline(
    starting=1.0, running=4.0, steps=("echo step 1", "echo step 2", "echo step 3"), answer="Hello! Done."
)
Serve = Callable[..., tuple[LocalOpenHandsServer, httpx.Client]]


def recorded(name: str = "events-1.11.0.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RECORDED / name).read_text().splitlines()]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def serve(clock: ManualClock) -> Iterator[Serve]:
    """Start servers on the test's clock (and an app-server client for each); all stopped after the test."""
    opened: list[tuple[LocalOpenHandsServer, httpx.Client]] = []

    def open_(timeline: Timeline = THREE_STEPS, **options: Any) -> tuple[LocalOpenHandsServer, httpx.Client]:
        options.setdefault("clock", clock)
        server = LocalOpenHandsServer(KEY, timeline=timeline, **options).start()
        headers = {"Authorization": f"Bearer {KEY}"}
        client = httpx.Client(base_url=server.base_url, headers=headers, timeout=5.0, trust_env=False)
        opened.append((server, client))
        return server, client

    yield open_
    for server, client in opened:
        client.close()
        server.stop()


def post(http: httpx.Client, text: str | None = "Fix the loader") -> str:
    """Start a conversation; its start task's id."""
    body = {"initial_message": {"content": [{"type": "text", "text": text}]}} if text is not None else {}
    response = http.post(V1, json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def ready(http: httpx.Client, clock: ManualClock, text: str | None = "Fix the loader") -> str:
    """Start a conversation and move the clock to its READY; its id."""
    task_id = post(http, text)
    clock.advance(THREE_STEPS.starting)
    [task] = http.get(f"{V1}/start-tasks", params={"ids": task_id}).json()
    assert task["status"] == "READY", task
    return str(task["app_conversation_id"])


def read(http: httpx.Client, conversation_id: str) -> dict[str, Any]:
    [conversation] = http.get(V1, params={"ids": conversation_id}).json()
    return dict(conversation)


def socket_url(server: LocalOpenHandsServer, conversation_id: str, **query: str) -> str:
    base = server.agent_url.replace("http://", "ws://") + f"/sockets/events/{conversation_id}"
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def open_socket(
    server: LocalOpenHandsServer, conversation_id: str, key: str | None = PLANTED_SESSION_KEY, **query: str
) -> ClientConnection:
    headers = {"X-Session-API-Key": key} if key is not None else {}
    query = query or {"resend_mode": "all"}
    return connect(socket_url(server, conversation_id, **query), additional_headers=headers, proxy=None, open_timeout=5)


def frames(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` frames."""
    return [json.loads(ws.recv(timeout=timeout)) for _ in range(count)]


def until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
    """Frames up to the first for which ``done`` is true (included)."""
    got = []
    while True:
        got.append(json.loads(ws.recv(timeout=timeout)))
        if done(got[-1]):
            return got


def quiet(ws: ClientConnection, seconds: float = 0.3) -> list[dict[str, Any]]:
    """Frames that come within ``seconds`` (each), until none does. Only for what must *not* come (``== []``), or
    after :func:`settle`: a loaded machine can hold back a frame that will come for longer than ``seconds``."""
    got = []
    while True:
        try:
            got.append(json.loads(ws.recv(timeout=seconds)))
        except TimeoutError:
            return got


def settle(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The ``count`` frames that must come (waited for, however late), and any that follow them at once: a test
    that expects ``count`` frames still sees one too many."""
    return frames(ws, count) + quiet(ws)


def replay(ws: ClientConnection, server: LocalOpenHandsServer, conversation_id: str) -> list[dict[str, Any]]:
    """A ``resend_mode=all`` socket's first frames: the snapshot and every event stored so far (the clock stands)."""
    return settle(ws, 1 + len(server.events(conversation_id)))


def status_is(value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("key") == "execution_status" and frame.get("value") == value


def shape(frame: dict[str, Any]) -> str:
    """A frame's kind, and what it is about (its state key, its action's or observation's kind)."""
    if frame["kind"] == "ConversationStateUpdateEvent":
        value = f"={frame['value']}" if frame["key"] == "execution_status" else ""
        return f"State:{frame['key']}{value}"
    if frame["kind"] == "ActionEvent":
        return f"Action:{frame['action']['kind']}"
    if frame["kind"] == "ObservationEvent":
        return f"Observation:{frame['observation']['kind']}"
    return str(frame["kind"])


def agent_rest(
    server: LocalOpenHandsServer, method: str, path: str, key: str = PLANTED_SESSION_KEY, **options: Any
) -> httpx.Response:
    headers = {"X-Session-API-Key": key}
    return httpx.request(method, server.agent_url + path, headers=headers, timeout=5.0, trust_env=False, **options)


def whole_run(server: LocalOpenHandsServer, clock: ManualClock, conversation_id: str) -> list[dict[str, Any]]:
    """Every frame of the conversation's first run, from a socket opened at READY (``resend_mode=all``)."""
    with open_socket(server, conversation_id) as ws:
        first = frames(ws, 6)
        clock.advance(THREE_STEPS.running)
        rest = until(ws, lambda f: f["key"] == "full_state" if f["kind"] == "ConversationStateUpdateEvent" else False)
    return first + rest


# ==================================================================================================== the frames
def test_a_whole_run_streams_the_recorded_frames_in_the_recorded_order(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    got = whole_run(server, clock, ready(http, clock))
    real = recorded()

    assert [shape(f) for f in got] == [shape(f) for f in real]
    assert [shape(f) for f in got][:6] == [
        "State:full_state",
        "SystemPromptEvent",
        "MessageEvent",
        "State:last_user_message_id",
        "State:execution_status=running",
        "State:stats",
    ]
    for mine, theirs in zip(got, real):  # the same fields, in the same order, down to the parts a client reads
        assert list(mine) == list(theirs), shape(theirs)
        for part in ("action", "observation", "tool_call", "llm_message"):
            if part in theirs:
                assert list(mine[part]) == list(theirs[part]), (shape(theirs), part)
        if "metadata" in theirs.get("observation", {}):
            assert list(mine["observation"]["metadata"]) == list(theirs["observation"]["metadata"])
        if theirs.get("key") == "full_state":
            assert list(mine["value"]) == list(theirs["value"])
            assert list(mine["value"]["agent"]) == list(theirs["value"]["agent"])
        if theirs.get("key") == "stats":
            assert list(mine["value"]["usage_to_metrics"]["agent"]) == list(
                theirs["value"]["usage_to_metrics"]["agent"]
            )
        if theirs["kind"] == "SystemPromptEvent":
            assert [list(tool) for tool in mine["tools"]] == [list(tool) for tool in theirs["tools"]]


def test_terminal_output_keeps_the_raw_escape_sequences(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    got = whole_run(server, clock, ready(http, clock))
    mine = [f["observation"]["content"][0]["text"] for f in got if shape(f) == "Observation:TerminalObservation"]
    theirs = [
        f["observation"]["content"][0]["text"] for f in recorded() if shape(f) == "Observation:TerminalObservation"
    ]

    assert mine == theirs == [f"\x1b[?2004lstep {n}\n\x1b[?2004h" for n in (1, 2, 3)]
    assert [f["action"]["command"] for f in got if shape(f) == "Action:TerminalAction"] == [
        "echo step 1",
        "echo step 2",
        "echo step 3",
    ]


def test_ids_and_time_stamps_are_like_the_real_ones(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    got = whole_run(server, clock, ready(http, clock))

    assert all(UUID4.fullmatch(f["id"]) and NAIVE_TIME.fullmatch(f["timestamp"]) for f in got)
    assert len({f["id"] for f in got}) == len(got)
    actions = [f for f in got if f["kind"] == "ActionEvent"]
    observations = [f for f in got if f["kind"] == "ObservationEvent"]
    assert [o["action_id"] for o in observations] == [a["id"] for a in actions]
    assert [o["tool_call_id"] for o in observations] == [a["tool_call_id"] for a in actions]
    assert all(a["tool_call_id"].startswith("call_") and a["llm_response_id"].startswith("chatcmpl-") for a in actions)
    # as recorded: a step's stats update is sent after its observation but stamped just before its action
    for action, stats in zip(actions[:3], [f for f in got if f.get("key") == "stats"][1:]):
        assert stats["timestamp"] < action["timestamp"]
    # steps evenly spread over the run: 1 s apart here, as the recorded run
    times = [dt.datetime.fromisoformat(a["timestamp"]) for a in actions]
    assert [round((b - a).total_seconds(), 3) for a, b in zip(times, times[1:])] == [1.0, 1.0, 1.0]
    finish = actions[-1]
    assert finish["action"] == {"message": "Hello! Done.", "kind": "FinishAction"}
    assert json.loads(finish["tool_call"]["arguments"]) == {"message": "Hello! Done."}


def test_frames_come_when_the_clock_passes_their_time_and_not_before(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    with open_socket(server, conversation_id) as ws:
        assert len(replay(ws, server, conversation_id)) == 6  # snapshot and replay
        clock.advance(0.99)
        assert quiet(ws) == []
        clock.advance(0.01)
        assert [shape(f) for f in settle(ws, 3)] == [
            "Action:TerminalAction",
            "Observation:TerminalObservation",
            "State:stats",
        ]
        assert quiet(ws) == []


def test_stats_grow_per_step_to_the_timelines_totals(serve: Serve, clock: ManualClock) -> None:
    timeline = Timeline(
        starting=1.0,
        running=4.0,
        steps=("echo 1", "echo 2", "echo 3"),
        cost=0.5,
        prompt_tokens=1000,
        completion_tokens=250,
    )
    server, http = serve(timeline)
    got = whole_run(server, clock, ready(http, clock))
    usage = [f["value"]["usage_to_metrics"]["agent"] for f in got if f.get("key") == "stats"]

    assert [u["accumulated_token_usage"]["prompt_tokens"] for u in usage] == [200, 400, 600, 800, 1000]
    assert [u["accumulated_token_usage"]["completion_tokens"] for u in usage] == [50, 100, 150, 200, 250]
    assert [round(u["accumulated_cost"], 6) for u in usage] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert read(http, server.conversation_ids()[0])["metrics"]["accumulated_cost"] == 0.5  # the app server agrees


def test_without_totals_tokens_grow_as_the_fake_llm_counts_them(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    got = whole_run(server, clock, ready(http, clock))
    mine = [
        f["value"]["usage_to_metrics"]["agent"]["accumulated_token_usage"]["prompt_tokens"]
        for f in got
        if f.get("key") == "stats"
    ]
    theirs = [
        f["value"]["usage_to_metrics"]["agent"]["accumulated_token_usage"]["prompt_tokens"]
        for f in recorded()
        if f.get("key") == "stats"
    ]
    assert mine == theirs == [10, 20, 30, 40, 50]


def test_an_edit_step_is_a_file_editor_action_and_an_error_step_an_agent_error(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve(Timeline(starting=1.0, running=3.0, steps=("edit:data/load.py", "error:No such tool: tests")))
    got = whole_run(server, clock, ready(http, clock))
    edit = next(f for f in got if shape(f) == "Action:FileEditorAction")
    edited = next(f for f in got if shape(f) == "Observation:FileEditorObservation")
    error = next(f for f in got if f["kind"] == "AgentErrorEvent")

    assert edit["tool_name"] == "file_editor"
    assert edit["action"] == {
        "command": "str_replace",
        "path": "/workspace/project/data/load.py",
        "old_str": "old line",
        "new_str": "new line",
        "kind": "FileEditorAction",
    }
    assert edited["observation"]["path"] == "/workspace/project/data/load.py" and edited["action_id"] == edit["id"]
    assert list(error) == ["id", "timestamp", "source", "tool_name", "tool_call_id", "error", "kind"]
    assert (error["source"], error["error"]) == ("agent", "No such tool: tests")
    assert shape(got[-3]) == "State:execution_status=finished"  # the agent went on after the error


def test_an_error_outcome_ends_with_the_error_status_then_a_conversation_error(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve(Timeline(starting=1.0, running=2.0, steps=("echo hi",), outcome="error"))
    got = whole_run(server, clock, ready(http, clock))

    assert [shape(f) for f in got[-3:]] == [
        "State:execution_status=error",
        "ConversationErrorEvent",
        "State:full_state",
    ]
    error = got[-2]
    assert list(error) == ["id", "timestamp", "source", "code", "detail", "kind"] and error["source"] == "environment"
    assert not any(shape(f) == "Action:FinishAction" for f in got)
    assert read(http, server.conversation_ids()[0])["execution_status"] == "error"


# ==================================================================================================== resend modes
def test_resend_mode_all_replays_everything_then_streams_the_rest_live(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    clock.advance(1.5)  # step 1 done
    with open_socket(server, conversation_id, resend_mode="all") as ws:
        replayed = replay(ws, server, conversation_id)
        clock.advance(2.5)
        live = until(ws, status_is("finished")) + settle(ws, 2)

    assert shape(replayed[0]) == "State:full_state" and replayed[0]["value"]["execution_status"] == "running"
    assert [f["id"] for f in replayed[1:]] == [e["id"] for e in server.events(conversation_id)][: len(replayed) - 1]
    assert [shape(f) for f in replayed[-3:]] == [
        "Action:TerminalAction",
        "Observation:TerminalObservation",
        "State:stats",
    ]
    assert shape(live[0]) == "Action:TerminalAction" and live[0]["action"]["command"] == "echo step 2"
    assert [f["id"] for f in replayed[1:] + live if f.get("key") != "full_state"] == [
        e["id"] for e in server.events(conversation_id)
    ]


def test_resend_mode_since_replays_from_the_time_stamp_on_it_included(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    clock.advance(5.0)
    stored = server.events(conversation_id)
    step2 = [e for e in stored if e["kind"] == "ActionEvent"][1]

    since = [e["id"] for e in stored if e["timestamp"] >= step2["timestamp"]]
    for after in (step2["timestamp"], step2["timestamp"] + "Z"):
        with open_socket(server, conversation_id, resend_mode="since", after_timestamp=after) as ws:
            got = settle(ws, 1 + len(since))
        assert shape(got[0]) == "State:full_state"
        assert got[1]["id"] == step2["id"]
        assert [f["id"] for f in got[1:]] == since
    with open_socket(server, conversation_id, resend_mode="since") as ws:  # no time stamp: nothing replayed
        assert [shape(f) for f in settle(ws, 1)] == ["State:full_state"]


def test_without_a_resend_mode_only_the_snapshot_then_live_frames_come(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    with connect(
        socket_url(server, conversation_id), additional_headers={"X-Session-API-Key": PLANTED_SESSION_KEY}, proxy=None
    ) as ws:
        assert [shape(f) for f in settle(ws, 1)] == ["State:full_state"]
        clock.advance(1.0)
        assert shape(frames(ws, 1)[0]) == "Action:TerminalAction"


def test_a_reconnect_after_a_cut_gets_what_it_missed_with_since(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    with open_socket(server, conversation_id) as ws:
        seen = replay(ws, server, conversation_id)
        wait_until(lambda: server.sockets(conversation_id) == 1)
        assert server.drop_sockets() == 1
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    wait_until(lambda: server.sockets(conversation_id) == 0)
    clock.advance(2.0)  # steps 1 and 2 happen while no one listens
    last = seen[-1]["timestamp"]
    with open_socket(server, conversation_id, resend_mode="since", after_timestamp=last) as ws:
        again = settle(ws, 1 + sum(e["timestamp"] >= last for e in server.events(conversation_id)))[1:]

    assert again[0]["id"] == seen[-1]["id"]  # the last one seen comes again (>=): a client drops it by id
    assert [shape(f) for f in again[1:]] == [
        "Action:TerminalAction",
        "Observation:TerminalObservation",
        "State:stats",
    ] * 2


# ==================================================================================================== keys and codes
def test_a_wrong_key_is_refused_at_the_handshake_with_a_403(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    for attempt in (
        lambda: open_socket(server, conversation_id, key="wrong"),
        lambda: connect(socket_url(server, conversation_id, session_api_key="wrong"), proxy=None),
    ):
        with pytest.raises(InvalidStatus) as refused:
            attempt()
        assert refused.value.response.status_code == 403
    with connect(
        socket_url(server, conversation_id, session_api_key=PLANTED_SESSION_KEY, resend_mode="all"), proxy=None
    ) as ws:
        assert shape(json.loads(ws.recv(timeout=5))) == "State:full_state"


def test_without_a_key_the_first_frame_must_authenticate_or_the_socket_closes_4001(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve(socket_auth_timeout=0.5)
    conversation_id = ready(http, clock)
    with open_socket(server, conversation_id, key=None) as ws:
        ws.send(json.dumps({"type": "auth", "session_api_key": PLANTED_SESSION_KEY}))
        assert len(replay(ws, server, conversation_id)) == 6
    for first in ({"type": "auth", "session_api_key": "wrong"}, {"role": "user"}, "not json", None):
        with open_socket(server, conversation_id, key=None) as ws:
            if first is not None:  # None: say nothing, past the timeout
                ws.send(first if isinstance(first, str) else json.dumps(first))
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "Authentication failed")  # type: ignore[union-attr]


def test_an_unknown_conversation_closes_4004_and_an_id_that_is_no_uuid_is_a_403(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve()
    ready(http, clock)
    with open_socket(server, UNKNOWN) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4004, "Conversation not found")  # type: ignore[union-attr]
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, "not-a-uuid")
    assert refused.value.response.status_code == 403


def test_past_max_subscribers_a_socket_closes_1013(serve: Serve, clock: ManualClock) -> None:
    server, http = serve(max_subscribers=2)
    conversation_id = ready(http, clock)
    with open_socket(server, conversation_id), open_socket(server, conversation_id):
        wait_until(lambda: server.sockets(conversation_id) == 2)
        with open_socket(server, conversation_id) as third:
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=5)
    assert closed.value.rcvd.code == 1013  # type: ignore[union-attr]
    assert closed.value.rcvd.reason == "Too many connections for this conversation"  # type: ignore[union-attr]


def test_blocked_websockets_answer_a_plain_404_and_the_rest_api_still_works(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    server.block_websockets()
    with pytest.raises(InvalidStatus) as refused:
        open_socket(server, conversation_id)
    assert refused.value.response.status_code == 404
    assert agent_rest(server, "GET", f"/api/conversations/{conversation_id}").status_code == 200
    server.block_websockets(False)
    with open_socket(server, conversation_id) as ws:
        assert len(replay(ws, server, conversation_id)) == 6


def test_the_socket_ends_when_the_server_stops(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    with open_socket(server, conversation_id) as ws:
        replay(ws, server, conversation_id)
        server.stop()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


# ==================================================================================================== REST
def test_the_agent_servers_conversation_has_the_real_shape(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    response = agent_rest(server, "GET", f"/api/conversations/{conversation_id}")
    theirs = json.loads((RECORDED / "agent-conversation-1.11.0.json").read_text())

    assert response.status_code == 200
    mine = response.json()
    assert list(mine) == list(theirs)
    assert theirs["workspace"] == {"working_dir": ".", "kind": "LocalWorkspace"}
    # relative, as the process sandbox's "." (one local agent server holds every sandbox, each in its sub-directory)
    assert mine["workspace"]["kind"] == "LocalWorkspace" and mine["workspace"]["working_dir"].startswith("sandboxes/")
    assert mine["id"] == str(__import__("uuid").UUID(conversation_id)) and mine["execution_status"] == "running"
    assert read(http, conversation_id)["conversation_url"] == f"{server.agent_url}/api/conversations/{conversation_id}"


def test_agent_server_rest_wants_the_session_key_and_answers_unknown_ids_as_the_real_one(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    for method, path in [
        ("GET", f"/api/conversations/{conversation_id}"),
        ("GET", f"/api/conversations/{conversation_id}/agent_final_response"),
        ("POST", f"/api/conversations/{conversation_id}/interrupt"),
    ]:
        refused = agent_rest(server, method, path, key="wrong")
        assert (refused.status_code, refused.json()) == (401, {"detail": "Unauthorized"})
    unknown = {
        ("GET", ""): (404, {"detail": "Not Found"}),
        ("GET", "/agent_final_response"): (404, {"detail": "Not Found"}),
        ("POST", "/interrupt"): (400, {"detail": "Bad Request"}),
        ("POST", "/run"): (404, {"detail": "Not Found"}),
    }
    for (method, tail), expected in unknown.items():
        answer = agent_rest(server, method, f"/api/conversations/{UNKNOWN}{tail}")
        assert (answer.status_code, answer.json()) == expected, tail
    confirm = agent_rest(
        server, "POST", f"/api/conversations/{UNKNOWN}/events/respond_to_confirmation", json={"accept": True}
    )
    assert (confirm.status_code, confirm.json()) == (
        404,
        {"detail": "Conversation not found: 01234567-89ab-cdef-0123-456789abcdef"},
    )
    assert PLANTED_SESSION_KEY not in json.dumps(server.events(conversation_id))


def test_interrupt_stops_the_agent_at_once_and_run_goes_on_where_it_stopped(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    base = f"/api/conversations/{conversation_id}"
    with open_socket(server, conversation_id) as ws:
        replay(ws, server, conversation_id)
        clock.advance(1.5)  # step 1 done, step 2 on its way
        settle(ws, 3)
        answer = agent_rest(server, "POST", base + "/interrupt")
        stopped = settle(ws, 6)
        assert (answer.status_code, answer.json()) == (200, {"success": True})
        theirs = recorded("events-interrupt-1.11.0.jsonl")
        after = [shape(f) for f in theirs[[f["kind"] for f in theirs].index("InterruptEvent") - 3 :]][:6]
        assert (
            [shape(f) for f in stopped]
            == after
            == [
                "State:stats",
                "State:stats",
                "State:execution_status=paused",
                "InterruptEvent",
                "State:full_state",
                "State:full_state",
            ]
        )
        assert list(stopped[3]) == ["id", "timestamp", "source", "kind"] and stopped[3]["source"] == "user"
        assert read(http, conversation_id)["execution_status"] == "paused"
        assert agent_rest(server, "GET", base + "/agent_final_response").json() == {"response": ""}
        clock.advance(60.0)
        assert quiet(ws) == []  # a paused agent does nothing

        assert agent_rest(server, "POST", base + "/run").json() == {"success": True}
        assert [shape(f) for f in settle(ws, 1)] == ["State:execution_status=running"]
        assert agent_rest(server, "POST", base + "/run").status_code == 409
        clock.advance(0.5)  # what was left of step 2
        assert [f["action"]["command"] for f in settle(ws, 3) if f["kind"] == "ActionEvent"] == ["echo step 2"]
        clock.advance(2.0)
        rest = until(ws, status_is("finished")) + settle(ws, 2)
    assert [shape(f) for f in rest][-4:] == [
        "Observation:FinishObservation",
        "State:execution_status=finished",
        "State:stats",
        "State:full_state",
    ]
    assert agent_rest(server, "GET", base + "/agent_final_response").json() == {"response": "Hello! Done."}
    assert read(http, conversation_id)["execution_status"] == "finished"


def test_with_confirm_each_step_waits_until_accepted_and_a_rejection_ends_the_run_idle(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve(
        Timeline(starting=1.0, running=4.0, steps=("echo step 1", "echo step 2", "echo step 3"), confirm=True)
    )
    conversation_id = ready(http, clock)
    base = f"/api/conversations/{conversation_id}"
    # as the real one (recorded/README.md): the action, the status, then the run's end publishes stats and a snapshot
    waits = [
        "Action:TerminalAction",
        "State:execution_status=waiting_for_confirmation",
        "State:stats",
        "State:full_state",
    ]
    with open_socket(server, conversation_id) as ws:
        replay(ws, server, conversation_id)
        clock.advance(1.0)
        assert [shape(f) for f in settle(ws, len(waits))] == waits
        assert read(http, conversation_id)["execution_status"] == "waiting_for_confirmation"
        clock.advance(30.0)
        assert quiet(ws) == []  # it waits for as long as it takes

        accept = agent_rest(server, "POST", base + "/events/respond_to_confirmation", json={"accept": True})
        assert (accept.status_code, accept.json()) == (200, {"success": True})
        assert [shape(f) for f in settle(ws, 2)] == [
            "State:execution_status=running",
            "Observation:TerminalObservation",
        ]
        clock.advance(1.0)
        assert [shape(f) for f in settle(ws, len(waits))] == waits
        body = {"accept": False, "reason": "not this one"}
        assert agent_rest(server, "POST", base + "/events/respond_to_confirmation", json=body).status_code == 200
        rejected = settle(ws, 2)
    assert [shape(f) for f in rejected] == ["State:execution_status=idle", "UserRejectObservation"]
    assert list(rejected[1]) == list(
        next(f for f in recorded("events-confirm-1.11.0.jsonl") if f["kind"] == "UserRejectObservation")
    )
    assert rejected[1]["rejection_reason"] == "not this one"
    clock.advance(60.0)
    assert read(http, conversation_id)["execution_status"] == "idle"
    missing = agent_rest(server, "POST", base + "/events/respond_to_confirmation", json={"reason": "x"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "accept"]


def test_confirmation_is_turned_on_per_conversation_as_on_the_real_server(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    base = f"/api/conversations/{conversation_id}"
    answer = agent_rest(server, "POST", base + "/confirmation_policy", json={"policy": {"kind": "AlwaysConfirm"}})
    assert (answer.status_code, answer.json()) == (200, {"success": True})
    assert agent_rest(server, "GET", base).json()["confirmation_policy"] == {"kind": "AlwaysConfirm"}
    update = server.events(conversation_id)[-1]
    assert (update["key"], update["value"]) == ("confirmation_policy", {"kind": "AlwaysConfirm"})
    clock.advance(1.0)
    assert read(http, conversation_id)["execution_status"] == "waiting_for_confirmation"
    assert (
        agent_rest(server, "POST", base + "/confirmation_policy", json={"policy": {"kind": "Sometimes"}}).status_code
        == 422
    )


def test_a_message_on_the_socket_runs_the_agent_and_a_bad_one_is_a_server_error_frame(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    clock.advance(THREE_STEPS.running)
    with open_socket(server, conversation_id) as ws:
        replay(ws, server, conversation_id)
        ws.send(json.dumps({"role": "user", "content": [{"type": "text", "text": "And the tests"}]}))
        said = settle(ws, 4)
        ws.send(json.dumps({"content": "no role"}))
        error = json.loads(ws.recv(timeout=5))
    assert [shape(f) for f in said] == [
        "MessageEvent",
        "State:last_user_message_id",
        "State:execution_status=running",
        "State:stats",
    ]
    assert said[0]["llm_message"]["content"][0]["text"] == "And the tests"
    assert read(http, conversation_id)["execution_status"] == "running"
    assert error["kind"] == "ServerErrorEvent" and error["source"] == "environment" and error["detail"]


def test_a_follow_up_through_the_app_server_shows_on_the_socket(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    clock.advance(THREE_STEPS.running)
    with open_socket(server, conversation_id) as ws:
        replay(ws, server, conversation_id)
        body = {"role": "user", "content": [{"type": "text", "text": "Again"}], "run": True}
        assert http.post(f"{V1}/{conversation_id}/send-message", json=body).status_code == 200
        assert [shape(f) for f in settle(ws, 3)][:3] == [
            "MessageEvent",
            "State:last_user_message_id",
            "State:execution_status=running",
        ]


# ==================================================================================================== the app server
def test_events_search_lags_in_batches_of_five_and_the_rest_comes_30_seconds_later(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve(Timeline(starting=1.0, running=3.0, steps=("echo step 1", "echo step 2")))
    conversation_id = ready(http, clock)
    path = f"/api/v1/conversation/{conversation_id}/events/search"

    def searched() -> list[dict[str, Any]]:
        return list(http.get(path).json()["items"])

    assert [shape(e) for e in searched()] == [  # the webhook's snapshot and the first 4 events: one batch
        "State:full_state",
        "SystemPromptEvent",
        "MessageEvent",
        "State:last_user_message_id",
        "State:execution_status=running",
    ]
    clock.advance(3.0)
    assert read(http, conversation_id)["execution_status"] == "finished"  # the status itself is read at once
    at_the_end = searched()
    assert len(at_the_end) == 15  # 17 events: the last 2 wait for a batch that will not fill
    clock.advance(29.9)
    assert searched() == at_the_end
    clock.advance(0.1)
    everything = searched()
    assert len(everything) == 17 and [e for e in everything if e["id"] in {x["id"] for x in at_the_end}] == at_the_end
    stored = {e["id"] for e in server.events(conversation_id)}
    assert stored <= {e["id"] for e in everything}
    assert [shape(e) for e in everything if e["id"] not in stored] == ["State:full_state", "State:full_state"]
    stamps = [e["timestamp"] for e in everything]
    assert stamps == sorted(stamps)


def test_the_recorded_run_reaches_events_search_whole_in_the_real_ones_order(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    conversation_id = ready(http, clock)
    clock.advance(THREE_STEPS.running)
    items = http.get(f"/api/v1/conversation/{conversation_id}/events/search").json()["items"]
    step = ["State:stats", "Action:TerminalAction", "Observation:TerminalObservation"]
    assert [shape(e) for e in items] == [  # as the real 1.11.0 answered it after the recorded run (20 = 4 batches)
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


def test_the_30_second_flush_is_a_timeline_field(serve: Serve, clock: ManualClock) -> None:
    server, http = serve(Timeline(starting=1.0, running=2.0, steps=("echo hi",), search_flush=5.0))
    conversation_id = ready(http, clock)
    clock.advance(2.0)
    path = f"/api/v1/conversation/{conversation_id}/events/search"
    assert len(http.get(path).json()["items"]) == 10  # of 14: the last 4 wait 5 s
    clock.advance(4.9)
    assert len(http.get(path).json()["items"]) == 10
    clock.advance(0.1)
    found = http.get(path).json()["items"]
    assert len(found) == 14 and {e["id"] for e in server.events(conversation_id)} <= {e["id"] for e in found}
    finished = next(e for e in server.events(conversation_id) if e.get("value") == "finished")
    later = http.get(path, params={"timestamp__gte": finished["timestamp"]}).json()["items"]
    assert [shape(e) for e in later] == ["State:execution_status=finished", "State:full_state"]


def test_events_search_of_a_timeline_without_steps_is_as_before(serve: Serve, clock: ManualClock) -> None:
    server, http = serve(Timeline(starting=1.0, running=2.0))
    conversation_id = ready(http, clock)
    clock.advance(2.0)
    items = http.get(f"/api/v1/conversation/{conversation_id}/events/search").json()["items"]
    assert [shape(e) for e in items] == [
        "MessageEvent",
        "State:execution_status=running",
        "Action:FinishAction",
        "Observation:FinishObservation",
        "State:execution_status=finished",
    ]
    assert {e["id"] for e in items} <= {e["id"] for e in server.events(conversation_id)}  # the socket's ids


def test_pending_messages_queued_under_task_id_are_delivered_at_ready_and_no_others(
    serve: Serve, clock: ManualClock
) -> None:
    server, http = serve()
    task_id = post(http)

    def queue(target: str, text: str) -> httpx.Response:
        return http.post(
            f"/api/v1/conversations/{target}/pending-messages",
            json={"role": "user", "content": [{"type": "text", "text": text}]},
        )

    first = queue(f"task-{task_id}", "delivered")
    assert first.status_code == 201 and first.json()["queued"] is True and first.json()["position"] == 1
    assert UUID4.fullmatch(first.json()["id"])
    assert queue(f"task-{task_id}", "delivered too").json()["position"] == 2
    assert queue(task_id, "never delivered: the bare task id").status_code == 201
    bad = http.post(f"/api/v1/conversations/task-{task_id}/pending-messages", json={"content": []})
    assert (bad.status_code, bad.json()) == (400, {"detail": "content must be a non-empty list"})
    clock.advance(THREE_STEPS.starting)
    [conversation_id] = server.conversation_ids()
    assert queue(conversation_id, "never delivered: after READY").status_code == 201
    clock.advance(1.0)

    said = [
        e["llm_message"]["content"][0]["text"] for e in server.events(conversation_id) if e["kind"] == "MessageEvent"
    ]
    assert said == ["Fix the loader", "delivered", "delivered too"]
    statuses = [e["value"] for e in server.events(conversation_id) if e.get("key") == "execution_status"]
    assert statuses == ["running"]  # delivered into the running run: it goes on, as recorded
    for n in range(8):
        queue("task-full", f"m{n}")
    assert queue("task-full", "9").status_code == 201 and queue("task-full", "10").status_code == 201
    full = queue("task-full", "11")
    assert (full.status_code, full.json()) == (
        429,
        {"detail": "Too many pending messages. Maximum 10 messages per conversation."},
    )


def test_a_pending_message_starts_an_idle_conversation_at_ready(serve: Serve, clock: ManualClock) -> None:
    server, http = serve()
    task_id = post(http, None)
    body = {"role": "user", "content": [{"type": "text", "text": "Start with this"}]}
    assert http.post(f"/api/v1/conversations/task-{task_id}/pending-messages", json=body).status_code == 201
    clock.advance(THREE_STEPS.starting)
    [conversation_id] = server.conversation_ids()
    assert read(http, conversation_id)["execution_status"] == "running"


def test_the_title_arrives_title_delay_after_the_finish(serve: Serve, clock: ManualClock) -> None:
    server, http = serve(Timeline(starting=1.0, running=2.0, steps=("echo hi",), title_delay=5.0))
    conversation_id = ready(http, clock)
    clock.advance(2.0)
    finished = read(http, conversation_id)
    assert finished["execution_status"] == "finished" and finished["title"] == f"Conversation {conversation_id[:5]}"
    clock.advance(4.9)
    assert read(http, conversation_id)["title"] == f"Conversation {conversation_id[:5]}"
    clock.advance(0.1)
    assert read(http, conversation_id)["title"] == "Fix the loader"
    assert agent_rest(server, "GET", f"/api/conversations/{conversation_id}").json()["title"] == "Fix the loader"


def test_on_the_wall_clock_frames_come_when_due(serve: Serve) -> None:
    timeline = Timeline(starting=0.05, running=0.4, steps=("echo a",))
    server, http = serve(timeline, clock=time.monotonic)
    task_id = post(http)
    wait_until(lambda: server.conversation_ids())
    [conversation_id] = server.conversation_ids()
    started = time.monotonic()
    with open_socket(server, conversation_id) as ws:
        got = until(ws, status_is("finished"))
    assert 0.2 < time.monotonic() - started < 3.0 and task_id
    assert [shape(f) for f in got if f["kind"] == "ActionEvent"] == ["Action:TerminalAction", "Action:FinishAction"]
