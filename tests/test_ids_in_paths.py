"""No id reaches a URL path unchecked, wherever it came from: the server (a sandbox id, a conversation id), a saved
notebook or the record (``--reattach``, ``list --here``), or a person. One from the server is a ProtocolError, one a
person gave a ValidationError, and a batched read skips a malformed one instead of losing the whole batch."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from openhands_magics import OpenHandsClient
from openhands_magics._protocol import Call, RetryPolicy
from openhands_magics.errors import ProtocolError, ValidationError
from openhands_magics.models import Conversation
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer, Timeline

from .conftest import SECRET, wait_until

QUICK = Timeline(starting=0.05, running=60)
ESCAPES = ["..", "../..", "../../../api/settings", "a/b", "%2E%2E", "x?y=1", "x#y", "x y", "."]


@pytest.fixture
def v1() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, timeline=QUICK) as server:
        yield server


@pytest.fixture
def v0() -> Iterator[LocalOpenHandsServer]:
    with LocalOpenHandsServer(SECRET, api="v0", timeline=QUICK) as server:
        yield server


def _client(server: LocalOpenHandsServer, api: str = "v1") -> OpenHandsClient:
    return OpenHandsClient(SECRET, base_url=server.base_url, api=api, retry=RetryPolicy(attempts=1))


def _ready(client: OpenHandsClient, server: LocalOpenHandsServer) -> Conversation:
    snapshot = client.start_conversation("hi")
    wait_until(lambda: len(server.conversation_ids()) >= len(server.task_ids()))
    return client.refresh(snapshot)


def _paths(server: LocalOpenHandsServer) -> list[str]:
    return [request.path for request in server.requests]


@pytest.mark.parametrize("bad", ESCAPES)
@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_a_sandbox_id_from_the_server_that_is_not_an_id_is_refused_and_nothing_is_posted(
    v1: LocalOpenHandsServer, bad: str, verb: str
) -> None:
    with _client(v1) as client:
        snapshot = _ready(client, v1)
        row = {
            "id": snapshot.conversation_id,
            "sandbox_id": bad,
            "sandbox_status": "RUNNING",
            "execution_status": "running",
        }
        v1.inject(method="GET", status=200, body=[row], path_prefix="/api/v1/app-conversations")
        with pytest.raises(ProtocolError, match="invalid sandbox id"):
            getattr(client, verb)(snapshot)
    assert v1.posts()[1:] == []  # only the start: no pause or resume went anywhere
    assert not any(path.startswith("/api/v1/pause") or path == "/api/v1/resume" for path in _paths(v1))


@pytest.mark.parametrize("bad", ESCAPES + ["0" * 32 + "\n"])
def test_an_id_read_from_a_notebook_never_reaches_a_v0_path_and_reads_as_unknown(
    v0: LocalOpenHandsServer, bad: str
) -> None:
    with _client(v0, api="v0") as client:
        good = client.start_conversation("hi")
        before = len(v0.requests)
        read = client.read([Conversation(bad, api="v0"), good, Conversation(bad, start_task_id=bad)])
        assert read[0::2] == [None, None]
        assert [r.path for r in v0.requests[before:]][:1] == [f"/api/conversations/{good.conversation_id}"]
    assert not any("settings" in path or path.count("/") > 3 for path in _paths(v0)[before:] if "events" not in path)


@pytest.mark.parametrize("bad", ESCAPES + ["not-a-uuid", "0123456789abcdef0123456789abcdeg"])
def test_one_malformed_id_among_many_is_skipped_and_the_others_are_read(v1: LocalOpenHandsServer, bad: str) -> None:
    with _client(v1) as client:
        first, second = _ready(client, v1), _ready(client, v1)
        task = client.start_conversation("still starting")
        probes = [
            Conversation(first.conversation_id),
            Conversation(bad),
            Conversation(None, start_task_id=bad),
            Conversation(bad, start_task_id=task.start_task_id),
            Conversation(second.conversation_id),
            Conversation(None, start_task_id=task.start_task_id),
        ]
        read = client.read(probes)
    assert [r.conversation_id if r else None for r in read[:5]] == [
        first.conversation_id,
        None,
        None,
        None,
        second.conversation_id,
    ]
    assert read[5] is not None and read[5].start_task_id == task.start_task_id
    assert all(bad not in values for r in v1.requests for values in r.query.values())


def test_a_hyphenated_id_from_a_notebook_is_read_as_the_hex_id_the_server_knows(v1: LocalOpenHandsServer) -> None:
    import uuid

    with _client(v1) as client:
        snapshot = _ready(client, v1)
        (read,) = client.read([Conversation(str(uuid.UUID(snapshot.conversation_id)))])
    assert read is not None and read.conversation_id == snapshot.conversation_id


def test_reattaching_keeps_the_good_ids_and_forgets_the_malformed_one(v1: LocalOpenHandsServer) -> None:
    session = Session()
    endpoint = Endpoint.resolve(v1.base_url, api_key=SECRET, api="v1")
    started = session.start("hi", endpoint=endpoint)
    wait_until(lambda: v1.conversation_ids())
    started.refresh()
    probes = [Conversation("../../../api/settings"), Conversation(started.id)]
    handles = session.reattach(probes, endpoint=endpoint)
    assert [h.id for h in handles] == [started.id]
    assert not any("settings" in path for path in _paths(v1))
    session.close()


@pytest.mark.parametrize("bad", ["../../../api/settings", "..", "a/b", "x\n"])
@pytest.mark.parametrize("api", ["v1", "v0"])
def test_a_hand_made_snapshot_with_a_bad_id_is_a_validation_error_before_anything_is_sent(
    v1: LocalOpenHandsServer, bad: str, api: str
) -> None:
    snapshots = [Conversation(bad, api=api), Conversation(None, start_task_id=bad, api=api)]
    with _client(v1, api=api) as client:
        for snapshot in snapshots:
            for call in (
                client.pause,
                client.resume,
                client.delete,
                client.answer,
                client.changes,
                client.outcome,
                client.refresh,
                lambda s: client.diff(s, "a.py"),
                lambda s: client.send_message(s, "hi"),
            ):
                with pytest.raises(ValidationError, match="is not an id"):
                    call(snapshot)
    assert v1.requests == []


@pytest.mark.parametrize("bad", ["../../../api/settings", "..", "%2e%2e", "x/y"])
def test_an_id_a_person_types_is_refused_before_any_request_on_either_api(v0: LocalOpenHandsServer, bad: str) -> None:
    session = Session()
    for api in ("auto", "v0", "v1"):
        endpoint = Endpoint.resolve(v0.base_url, api_key=SECRET, api=api)
        with pytest.raises(ValidationError):
            session.attach(bad, endpoint=endpoint)
        with pytest.raises(ValidationError):
            session.find(bad, endpoint=endpoint)
    assert not any("settings" in path for path in _paths(v0))
    session.close()


@pytest.mark.parametrize("bad", ESCAPES + [None, 5, ""])
def test_the_path_builder_refuses_any_id_that_is_not_one(bad: object) -> None:
    from openhands_magics._protocol.common import item_path

    with pytest.raises(ProtocolError, match="invalid sandbox id"):
        item_path("/api/v1/sandboxes/{}/pause", bad, "sandbox id")
    assert item_path("/api/v1/sandboxes/{}/pause", "Ab_9-z", "sandbox id") == "/api/v1/sandboxes/Ab_9-z/pause"


@pytest.mark.parametrize("path", ["/api/v1/..", "/api/./x", "/api//x", "/api/x%2F", "/api/x?y", "api/x", "/api/x/"])
def test_no_call_can_carry_a_path_that_is_not_plain_words_and_ids(path: str) -> None:
    with pytest.raises(ProtocolError, match="Refusing to send"):
        Call("GET", path)


def test_a_start_task_whose_conversation_id_is_malformed_is_a_protocol_error_not_a_request(
    v1: LocalOpenHandsServer,
) -> None:
    with _client(v1) as client:
        task = client.start_conversation("hi")
        row = {"id": task.start_task_id, "status": "READY", "app_conversation_id": "../../api/settings"}
        v1.inject(method="GET", status=200, body=[row], path_prefix="/api/v1/app-conversations/start-tasks")
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="invalid conversation id"):
            client.refresh(task)
        assert time.monotonic() - started < 2
    assert not any("settings" in path for path in _paths(v1))
