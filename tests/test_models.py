"""The snapshot model (models.py), how each API dialect reads the server's answers into it (V1: start tasks and
app conversations; V0: status plus the agent's state), and the input/id checks in validation.py. Pure unit tests:
no server, no I/O. Payloads are shaped like the real server's answers (docs: /work/shared/openhands-api.md)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
from typing import Any

import pytest

from openhands_magics._protocol import v0, v1
from openhands_magics._protocol.v1 import V1
from openhands_magics.errors import NotFoundError, ProtocolError, ValidationError
from openhands_magics.models import (
    FINAL_STATUSES,
    Conversation,
    ConversationStatus,
    Cost,
    is_final_status,
    not_found,
    optional_str,
    parse_time,
    public_fields,
)
from openhands_magics.validation import (
    validate_conversation_id,
    validate_message,
    validate_repository,
    validate_user_conversation_id,
)

CONVERSATION_ID = "3f2b9c0e8d7a4b6c9e1f0a2b3c4d5e6f"
TASK_ID = "174edce6247b4cdc815e8a3b5305ea5e"
APP_CONVERSATION_ID = "71acf0d19ec9496ba62893d5925410ac"
#: The sandbox's key the server sends back with every V1 conversation: must never be kept or shown.
SANDBOX_SECRET = "oh-sandbox-key-SECRET-9d3e"
UTC = dt.timezone.utc
S = ConversationStatus


def hyphenated(hex_id: str) -> str:
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def start_answer(**overrides: Any) -> dict[str, Any]:
    """What POST /api/v1/app-conversations answers: the start task, in its first phase."""
    payload: dict[str, Any] = {
        "id": TASK_ID,
        "status": "WORKING",
        "detail": None,
        "app_conversation_id": None,
        "sandbox_id": None,
        "agent_server_url": None,
        "request": {
            "initial_message": {"content": [{"type": "text", "text": "say hello"}]},
            "selected_repository": "octo/demo",
        },
        "created_at": "2026-11-23T13:05:29.123456Z",
        "updated_at": "2026-11-23T13:05:29.123456Z",
    }
    payload.update(overrides)
    return payload


def ready_task(**overrides: Any) -> dict[str, Any]:
    """GET /api/v1/app-conversations/start-tasks?ids=TASK, once READY: read back, its times are naive."""
    payload = start_answer(
        status="READY",
        app_conversation_id=APP_CONVERSATION_ID,
        sandbox_id="4ni8x2mPq",
        agent_server_url="http://localhost:8001",
        created_at="2026-11-23T13:05:29.123456",
        updated_at="2026-11-23T13:05:35.500000",
    )
    payload.update(overrides)
    return payload


def conversation_item(**overrides: Any) -> dict[str, Any]:
    """One item of GET /api/v1/app-conversations?ids=ID, as OpenHands 1.11 answers it."""
    payload: dict[str, Any] = {
        "id": APP_CONVERSATION_ID,
        "title": "Conversation 71acf",
        "sandbox_id": "4ni8x2mPq",
        "selected_repository": "octo/demo",
        "selected_branch": None,
        "git_provider": "github",
        "trigger": None,
        "pr_number": [],
        "llm_model": "openai/fake-model",
        "metrics": {"accumulated_cost": 0.0, "accumulated_token_usage": {"prompt_tokens": 12, "completion_tokens": 3}},
        "parent_conversation_id": None,
        "sub_conversation_ids": [],
        "tags": {},
        "created_at": "2026-11-23T13:05:29.912868Z",
        "updated_at": "2026-11-23T13:05:29.912871Z",
        "sandbox_status": "RUNNING",
        "execution_status": "finished",
        "conversation_url": f"http://localhost:8001/api/conversations/{APP_CONVERSATION_ID}",
        "session_api_key": SANDBOX_SECRET,
    }
    payload.update(overrides)
    return payload


def agent_state_event(event_id: int, state: Any) -> dict[str, Any]:
    """A V0 ``agent_state_changed`` observation, as GET /api/conversations/{id}/events lists it."""
    return {
        "id": event_id,
        "timestamp": "2025-04-29T15:13:55.000001",
        "source": "environment",
        "message": "",
        "observation": "agent_state_changed",
        "content": "",
        "extras": {"agent_state": state, "reason": ""},
    }


def message_event(event_id: int) -> dict[str, Any]:
    return {"id": event_id, "source": "agent", "action": "message", "message": "Done.", "args": {"content": "Done."}}


@pytest.fixture
def dialect() -> V1:
    return V1("http://localhost:3000")


# ---------------------------------------------------------------------------------------------------- Conversation


def test_a_conversation_needs_only_its_id_and_everything_else_is_none() -> None:
    conversation = Conversation(CONVERSATION_ID)

    assert conversation.id == CONVERSATION_ID
    assert conversation.status is None
    assert conversation.title is None
    assert conversation.started_at is None
    assert dict(conversation.extra) == {}
    assert conversation.is_final is False
    assert conversation.is_started is True


def test_a_conversation_whose_start_task_still_runs_has_no_id_and_is_not_started() -> None:
    conversation = Conversation(None, status=S.STARTING, phase="waiting for sandbox", start_task_id=TASK_ID)

    assert conversation.id is None
    assert conversation.is_started is False
    assert conversation.is_final is False


def test_conversation_is_immutable() -> None:
    conversation = Conversation(CONVERSATION_ID, status=S.RUNNING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.status = S.FINISHED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.conversation_id = "other"  # type: ignore[misc]
    assert conversation.status == S.RUNNING


def test_extra_is_read_only(dialect: V1) -> None:
    conversation = dialect.from_conversation(conversation_item())
    with pytest.raises(TypeError):
        conversation.extra["llm_model"] = "changed"  # type: ignore[index]
    assert conversation.extra["llm_model"] == "openai/fake-model"


def test_equality_and_hash_ignore_extra(dialect: V1) -> None:
    first = dialect.from_conversation(conversation_item())
    second = dialect.from_conversation(conversation_item(llm_model="other/model", tags={"a": "b"}))

    assert first == second
    assert hash(first) == hash(second)
    assert first != dialect.from_conversation(conversation_item(execution_status="running"))


def test_a_snapshot_can_be_exported_copied_and_pickled(dialect: V1) -> None:
    conversation = dialect.from_conversation(conversation_item())

    assert dataclasses.asdict(conversation)["extra"]["llm_model"] == "openai/fake-model"
    assert copy.deepcopy(conversation).extra == conversation.extra
    assert pickle.loads(pickle.dumps(conversation)).extra == conversation.extra


def test_status_line_joins_status_and_phase() -> None:
    assert Conversation(None, status=S.STARTING, phase="waiting for sandbox").status_line == (
        "STARTING · waiting for sandbox"
    )
    assert Conversation(CONVERSATION_ID, status=S.RUNNING).status_line == "RUNNING"
    assert Conversation(CONVERSATION_ID).status_line == "?"


def test_started_at_is_when_the_start_was_asked_for_then_the_creation() -> None:
    asked = dt.datetime(2026, 11, 23, 13, 5, 29, tzinfo=UTC)
    created = asked + dt.timedelta(seconds=6)

    assert Conversation(CONVERSATION_ID, requested_at=asked, created_at=created).started_at == asked
    assert Conversation(CONVERSATION_ID, created_at=created).started_at == created


def test_not_found_names_the_conversation_or_else_its_start_task() -> None:
    by_id = not_found(Conversation(CONVERSATION_ID))
    by_task = not_found(Conversation(None, start_task_id=TASK_ID))

    assert isinstance(by_id, NotFoundError)
    assert CONVERSATION_ID in str(by_id)
    assert f"start task {TASK_ID}" in str(by_task)


# ---------------------------------------------------------------------------------------------------- final statuses


def test_final_statuses_are_exactly_the_ones_where_watching_stops() -> None:
    assert FINAL_STATUSES == {
        "FINISHED",
        "WAITING FOR INPUT",
        "STUCK",
        "ERROR",
        "STOPPED",
        "ARCHIVED",
        "DELETED",
    }


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_final_statuses_are_final_in_any_case(status: str) -> None:
    assert is_final_status(status) is True
    assert is_final_status(status.lower()) is True
    assert Conversation(CONVERSATION_ID, status=status).is_final is True


@pytest.mark.parametrize(
    "status", ["STARTING", "RUNNING", "IDLE", "PAUSED", "WAITING FOR CONFIRMATION", "DELETING", "SOMETHING_NEW"]
)
def test_non_final_statuses(status: str) -> None:
    assert is_final_status(status) is False
    assert Conversation(CONVERSATION_ID, status=status).is_final is False


def test_is_final_status_of_none_is_false() -> None:
    assert is_final_status(None) is False


# ---------------------------------------------------------------------------------------------------- parse_time


def test_parse_time_reads_z_as_utc() -> None:
    assert parse_time("2026-11-23T13:05:29.912868Z", "t") == dt.datetime(2026, 11, 23, 13, 5, 29, 912868, tzinfo=UTC)


def test_parse_time_takes_naive_times_as_utc() -> None:
    parsed = parse_time("2026-11-23T13:05:29.123456", "t")
    assert parsed == dt.datetime(2026, 11, 23, 13, 5, 29, 123456, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() == dt.timedelta(0)


def test_parse_time_keeps_an_explicit_offset() -> None:
    parsed = parse_time("2026-11-23T15:05:29+02:00", "t")
    assert parsed == dt.datetime(2026, 11, 23, 13, 5, 29, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() == dt.timedelta(hours=2)


@pytest.mark.parametrize("value", [None, ""])
def test_parse_time_of_nothing_is_none(value: Any) -> None:
    assert parse_time(value, "t") is None


@pytest.mark.parametrize(
    "value",
    ["yesterday afternoon", "2025-13-45T99:00:00Z", "Z", "2026-11-23T13:05:29ZZ", 1714403631, 17.5, True, ["2026"]],
)
def test_parse_time_refuses_what_is_not_an_iso_time(value: Any) -> None:
    with pytest.raises(ProtocolError, match="created_at"):
        parse_time(value, "created_at")


# ----------------------------------------------------------------------------------------- optional_str, public_fields


def test_optional_str_passes_text_and_numbers_and_none() -> None:
    assert optional_str("octo/demo", "x") == "octo/demo"
    assert optional_str(42, "x") == "42"
    assert optional_str(None, "x") is None


@pytest.mark.parametrize("value", [["a"], {"a": 1}, b"bytes"])
def test_optional_str_refuses_containers(value: Any) -> None:
    with pytest.raises(ProtocolError, match="title"):
        optional_str(value, "title")


def test_public_fields_keeps_unknown_fields_and_drops_known_ones_and_secrets() -> None:
    fields = public_fields({"id": "x", "metrics": {"cost": 1}, "session_api_key": SANDBOX_SECRET}, {"id"})

    assert dict(fields) == {"metrics": {"cost": 1}}
    with pytest.raises(TypeError):
        fields["id"] = "y"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------- V1 derive_status


@pytest.mark.parametrize(
    ("execution", "expected"),
    [
        ("idle", S.IDLE),
        ("running", S.RUNNING),
        ("paused", S.PAUSED),
        ("waiting_for_confirmation", S.WAITING_FOR_CONFIRMATION),
        ("finished", S.FINISHED),
        ("error", S.ERROR),
        ("stuck", S.STUCK),
        ("deleting", "DELETING"),
    ],
)
def test_v1_every_execution_status_of_a_running_sandbox(execution: str, expected: str) -> None:
    assert v1.derive_status("RUNNING", execution) == (expected, None)
    assert v1.derive_status("RUNNING", execution.upper()) == (expected, None)  # the front end spells some in caps
    assert v1.derive_status("running", execution) == (expected, None)


def test_v1_the_done_signal_is_execution_status_because_the_sandbox_stays_running() -> None:
    status, _ = v1.derive_status("RUNNING", "finished")
    assert status == S.FINISHED
    assert is_final_status(status)
    assert v1.derive_status("RUNNING", "running") == (S.RUNNING, None)


@pytest.mark.parametrize("sandbox", ["MISSING", "ERROR", "PAUSED", "STARTING", "RUNNING"])
@pytest.mark.parametrize(("execution", "verdict"), [("finished", S.FINISHED), ("error", S.ERROR), ("stuck", S.STUCK)])
def test_v1_the_agents_verdict_wins_over_the_sandbox(sandbox: str, execution: str, verdict: str) -> None:
    assert v1.derive_status(sandbox, execution) == (verdict, None)


@pytest.mark.parametrize(
    ("sandbox", "expected"),
    [
        ("MISSING", (S.STOPPED, "sandbox gone")),
        ("ERROR", (S.ERROR, "sandbox failed")),
        ("PAUSED", (S.PAUSED, "sandbox paused")),
        ("STARTING", (S.STARTING, "starting sandbox")),
        ("missing", (S.STOPPED, "sandbox gone")),
    ],
)
@pytest.mark.parametrize("execution", [None, "running", "idle", "waiting_for_confirmation"])
def test_v1_without_a_verdict_the_sandbox_says_more(
    sandbox: str, expected: tuple[str, str], execution: str | None
) -> None:
    assert v1.derive_status(sandbox, execution) == expected


def test_v1_a_running_sandbox_without_execution_status_is_running() -> None:
    assert v1.derive_status("RUNNING", None) == (S.RUNNING, None)


def test_v1_unknown_values_are_shown_upper_cased() -> None:
    assert v1.derive_status("RUNNING", "thinking_hard") == ("THINKING_HARD", None)
    assert v1.derive_status("HIBERNATING", None) == ("HIBERNATING", None)
    assert v1.derive_status(None, None) == (None, None)


# ---------------------------------------------------------------------------------------------------- V1 task_status


@pytest.mark.parametrize(
    ("task", "phase"),
    [
        ("WORKING", "preparing"),
        ("WAITING_FOR_SANDBOX", "waiting for sandbox"),
        ("PREPARING_REPOSITORY", "preparing repository"),
        ("RUNNING_SETUP_SCRIPT", "running setup script"),
        ("SETTING_UP_GIT_HOOKS", "setting up git hooks"),
        ("SETTING_UP_SKILLS", "setting up skills"),
        ("STARTING_CONVERSATION", "starting conversation"),
        ("READY", "starting conversation"),
        ("A_NEW_PHASE", "a new phase"),
    ],
)
def test_v1_every_start_task_phase_is_starting_with_a_readable_phase(task: str, phase: str) -> None:
    assert v1.task_status(task, None) == (S.STARTING, phase)
    assert v1.task_status(task.lower(), None) == (S.STARTING, phase)


def test_v1_a_failed_start_task_is_an_error_with_the_servers_reason() -> None:
    assert v1.task_status("ERROR", "No access to octo/private") == (S.ERROR, "No access to octo/private")


@pytest.mark.parametrize("detail", [None, ""])
def test_v1_a_failed_start_task_without_a_reason_still_gets_one(detail: str | None) -> None:
    status, phase = v1.task_status("ERROR", detail)
    assert status == S.ERROR
    assert phase and phase.strip()


def test_v1_a_start_task_without_a_status_is_starting() -> None:
    assert v1.task_status(None, None) == (S.STARTING, "starting")


# ---------------------------------------------------------------------------------------------------- V1 from_task


def test_v1_the_start_answer_is_a_starting_snapshot_of_the_task(dialect: V1) -> None:
    snapshot = dialect.from_task(start_answer())

    assert snapshot.conversation_id is None
    assert snapshot.is_started is False
    assert snapshot.start_task_id == TASK_ID
    assert (snapshot.status, snapshot.phase) == (S.STARTING, "preparing")
    assert snapshot.start_task_status == "WORKING"
    assert snapshot.selected_repository == "octo/demo"
    assert snapshot.api == "v1"
    assert snapshot.requested_at == dt.datetime(2026, 11, 23, 13, 5, 29, 123456, tzinfo=UTC)
    assert snapshot.started_at == snapshot.requested_at
    assert dict(snapshot.extra) == {"sandbox_id": None, "agent_server_url": None}


def test_v1_a_ready_task_carries_the_conversation_id(dialect: V1) -> None:
    snapshot = dialect.from_task(ready_task())

    assert snapshot.conversation_id == APP_CONVERSATION_ID
    assert snapshot.is_started is True
    assert snapshot.start_task_status == "READY"
    assert snapshot.is_final is False


def test_v1_task_times_read_back_naive_are_utc(dialect: V1) -> None:
    snapshot = dialect.from_task(ready_task())

    assert snapshot.requested_at == dt.datetime(2026, 11, 23, 13, 5, 29, 123456, tzinfo=UTC)
    assert snapshot.updated_at == dt.datetime(2026, 11, 23, 13, 5, 35, 500000, tzinfo=UTC)


def test_v1_task_ids_are_normalised_to_hex(dialect: V1) -> None:
    snapshot = dialect.from_task(
        ready_task(id=hyphenated(TASK_ID).upper(), app_conversation_id=hyphenated(APP_CONVERSATION_ID))
    )

    assert snapshot.start_task_id == TASK_ID
    assert snapshot.conversation_id == APP_CONVERSATION_ID


def test_v1_a_failed_task_is_an_error_with_its_detail(dialect: V1) -> None:
    snapshot = dialect.from_task(start_answer(status="ERROR", detail="Git provider  denied\naccess to octo/demo"))

    assert snapshot.status == S.ERROR
    assert snapshot.is_final is True
    assert snapshot.status_line == "ERROR · Git provider denied access to octo/demo"


@pytest.mark.parametrize("detail", [None, "", "   \n"])
def test_v1_a_failed_task_without_detail_still_says_why(dialect: V1, detail: str | None) -> None:
    snapshot = dialect.from_task(start_answer(status="ERROR", detail=detail))

    assert snapshot.status == S.ERROR
    assert snapshot.phase and snapshot.phase.strip()


def test_v1_a_task_keeps_the_repository_and_title_it_knew_before(dialect: V1) -> None:
    before = dialect.from_task(start_answer(request={}), repository="octo/demo")
    previous = dataclasses.replace(before, title="Say hello")
    after = dialect.from_task(ready_task(request={}, created_at=None), previous=previous)

    assert before.selected_repository == "octo/demo"
    assert after.selected_repository == "octo/demo"
    assert after.title == "Say hello"
    assert after.requested_at == before.requested_at


# ------------------------------------------------------------------------------------------------ V1 from_conversation


def test_v1_a_conversation_item_reads_every_known_field(dialect: V1) -> None:
    snapshot = dialect.from_conversation(conversation_item())

    assert snapshot.conversation_id == APP_CONVERSATION_ID
    assert snapshot.title == "Conversation 71acf"
    assert snapshot.selected_repository == "octo/demo"
    assert snapshot.trigger is None
    assert snapshot.created_at == dt.datetime(2026, 11, 23, 13, 5, 29, 912868, tzinfo=UTC)
    assert snapshot.updated_at == dt.datetime(2026, 11, 23, 13, 5, 29, 912871, tzinfo=UTC)
    assert (snapshot.sandbox_status, snapshot.execution_status) == ("RUNNING", "finished")
    assert snapshot.status == S.FINISHED
    assert snapshot.is_final is True
    assert snapshot.start_task_id is None


def test_v1_unknown_fields_are_kept_in_extra_and_only_there(dialect: V1) -> None:
    snapshot = dialect.from_conversation(conversation_item(brand_new_field={"x": 1}))

    assert set(snapshot.extra) == {
        "selected_branch",
        "llm_model",
        "parent_conversation_id",
        "sub_conversation_ids",
        "tags",
        "conversation_url",
        "brand_new_field",
    }
    assert snapshot.cost is not None and snapshot.cost.prompt_tokens == 12  # read into the model instead
    assert snapshot.extra["brand_new_field"] == {"x": 1}
    assert not hasattr(snapshot, "metrics")


def test_v1_the_sandbox_key_is_never_kept_nor_shown(dialect: V1) -> None:
    for snapshot in (
        dialect.from_conversation(conversation_item()),
        dialect.from_task(ready_task(session_api_key=SANDBOX_SECRET)),
    ):
        assert "session_api_key" not in snapshot.extra
        assert SANDBOX_SECRET not in repr(snapshot)
        assert SANDBOX_SECRET not in repr(dict(snapshot.extra))
        assert SANDBOX_SECRET not in repr([getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)])


def test_v1_a_hyphenated_conversation_id_is_normalised_to_hex(dialect: V1) -> None:
    snapshot = dialect.from_conversation(conversation_item(id=hyphenated(APP_CONVERSATION_ID).upper()))
    assert snapshot.conversation_id == APP_CONVERSATION_ID


def test_v1_the_task_is_carried_from_the_task_snapshot_to_the_conversation(dialect: V1) -> None:
    task = dialect.from_task(ready_task())
    snapshot = dialect.from_conversation(conversation_item(), previous=task)

    assert snapshot.start_task_id == TASK_ID
    assert snapshot.start_task_status == "READY"
    assert snapshot.requested_at == dt.datetime(2026, 11, 23, 13, 5, 29, 123456, tzinfo=UTC)
    assert snapshot.started_at == snapshot.requested_at != snapshot.created_at


def test_v1_a_conversation_without_statuses_has_none() -> None:
    snapshot = V1("http://localhost:3000").from_conversation({"id": APP_CONVERSATION_ID})

    assert snapshot.status is None
    assert snapshot.title is None
    assert dict(snapshot.extra) == {}


@pytest.mark.parametrize(
    "item",
    [
        pytest.param([conversation_item()], id="list"),
        pytest.param(None, id="null"),
        pytest.param(APP_CONVERSATION_ID, id="bare-string"),
        pytest.param({"title": "no id"}, id="missing-id"),
        pytest.param(conversation_item(id=None), id="id-null"),
        pytest.param(conversation_item(id=1234), id="id-int"),
        pytest.param(conversation_item(id=""), id="id-empty"),
        pytest.param(conversation_item(id="../admin"), id="id-traversal"),
        pytest.param(conversation_item(id="not-a-uuid"), id="id-not-uuid"),
        pytest.param(conversation_item(id=[APP_CONVERSATION_ID]), id="id-list"),
        pytest.param(conversation_item(title=["a", "b"]), id="title-list"),
        pytest.param(conversation_item(title={"text": "a"}), id="title-dict"),
        pytest.param(conversation_item(sandbox_status={"state": "RUNNING"}), id="status-dict"),
        pytest.param(conversation_item(execution_status=["finished"]), id="execution-list"),
        pytest.param(conversation_item(created_at="yesterday afternoon"), id="date-unparseable"),
        pytest.param(conversation_item(updated_at="2025-13-45T99:00:00Z"), id="date-out-of-range"),
        pytest.param(conversation_item(created_at=1714403631), id="date-number"),
    ],
)
def test_v1_bad_conversation_shapes_raise_protocol_error(dialect: V1, item: Any) -> None:
    with pytest.raises(ProtocolError) as raised:
        dialect.from_conversation(item)
    assert str(raised.value)  # a sentence a person can read
    assert raised.value.retryable is True


@pytest.mark.parametrize(
    "task",
    [
        pytest.param([start_answer()], id="list"),
        pytest.param(None, id="null"),
        pytest.param(TASK_ID, id="bare-string"),
        pytest.param({"status": "WORKING"}, id="missing-id"),
        pytest.param(start_answer(id="../x"), id="id-traversal"),
        pytest.param(start_answer(app_conversation_id="../admin"), id="conversation-id-traversal"),
        pytest.param(start_answer(app_conversation_id=12345), id="conversation-id-int"),
        pytest.param(start_answer(status=["READY"]), id="status-list"),
        pytest.param(start_answer(detail={"why": "x"}), id="detail-dict"),
        pytest.param(start_answer(request={"selected_repository": ["octo/demo"]}), id="repository-list"),
        pytest.param(start_answer(created_at="not a time"), id="date-unparseable"),
        pytest.param(start_answer(updated_at=17.5), id="date-number"),
    ],
)
def test_v1_bad_task_shapes_raise_protocol_error(dialect: V1, task: Any) -> None:
    with pytest.raises(ProtocolError) as raised:
        dialect.from_task(task)
    assert str(raised.value)


@pytest.mark.parametrize("bad", ["71acf0d1_ec9496ba62893d5925410ac", "+71acf0d19ec9496ba62893d5925410a"])
def test_v1_a_server_id_that_is_not_hex_is_refused(dialect: V1, bad: str) -> None:
    with pytest.raises(ProtocolError):
        dialect.from_conversation(conversation_item(id=bad))


# ---------------------------------------------------------------------------------------------------- V1 normalize_id


@pytest.mark.parametrize(
    "given",
    [
        APP_CONVERSATION_ID,
        hyphenated(APP_CONVERSATION_ID),
        APP_CONVERSATION_ID.upper(),
        hyphenated(APP_CONVERSATION_ID).upper(),
    ],
)
def test_v1_normalize_id_gives_hex(dialect: V1, given: str) -> None:
    assert dialect.normalize_id(given) == APP_CONVERSATION_ID


@pytest.mark.parametrize("given", ["../x", "nope", "", "71acf0d19ec9496ba62893d5925410a", f"{APP_CONVERSATION_ID}/x"])
def test_v1_normalize_id_refuses_what_is_not_a_uuid(dialect: V1, given: str) -> None:
    with pytest.raises(ValidationError):
        dialect.normalize_id(given)


@pytest.mark.parametrize(
    "given",
    [
        f"  {APP_CONVERSATION_ID}\n",
        f"https://app.all-hands.dev/conversations/{APP_CONVERSATION_ID}",
        f"http://localhost:3000/conversations/{hyphenated(APP_CONVERSATION_ID)}/",
    ],
)
def test_v1_normalize_id_accepts_a_pasted_link_like_v0(dialect: V1, given: str) -> None:
    assert dialect.normalize_id(given) == APP_CONVERSATION_ID


def test_v1_normalize_id_refuses_an_underscore(dialect: V1) -> None:
    with pytest.raises(ValidationError):
        dialect.normalize_id("71acf0d1_ec9496ba62893d5925410ac")


# ---------------------------------------------------------------------------------------------------- V0


@pytest.mark.parametrize(
    ("agent_state", "expected"),
    [
        ("loading", (S.STARTING, "loading agent")),
        ("init", (S.STARTING, "loading agent")),
        ("running", (S.RUNNING, None)),
        ("user_confirmed", (S.RUNNING, None)),
        ("user_rejected", (S.RUNNING, None)),
        ("rate_limited", (S.RUNNING, "rate limited by the LLM")),
        ("awaiting_user_input", (S.WAITING_FOR_INPUT, None)),
        ("awaiting_user_confirmation", (S.WAITING_FOR_CONFIRMATION, None)),
        ("paused", (S.PAUSED, None)),
        ("finished", (S.FINISHED, None)),
        ("rejected", (S.FINISHED, "the agent declined the task")),
        ("stopped", (S.STOPPED, "stopped by the user")),
        ("error", (S.ERROR, None)),
    ],
)
def test_v0_running_is_refined_by_every_agent_state(agent_state: str, expected: tuple[str, str | None]) -> None:
    assert v0.derive_status("RUNNING", agent_state) == expected
    assert v0.derive_status("running", agent_state.upper()) == expected


def test_v0_an_unknown_agent_state_is_shown_upper_cased() -> None:
    assert v0.derive_status("RUNNING", "daydreaming") == ("DAYDREAMING", None)


@pytest.mark.parametrize("server_status", ["STARTING", "STOPPED", "ARCHIVED", "ERROR"])
def test_v0_other_statuses_are_kept_whatever_the_agent_said(server_status: str) -> None:
    assert v0.derive_status(server_status, "running") == (server_status, None)
    assert v0.derive_status(server_status.lower(), None) == (server_status, None)


@pytest.mark.parametrize(
    ("server_status", "final"),
    [("STOPPED", True), ("ARCHIVED", True), ("ERROR", True), ("STARTING", False), ("RUNNING", False)],
)
def test_v0_stopped_archived_and_error_are_final(server_status: str, final: bool) -> None:
    status, _ = v0.derive_status(server_status, None)
    assert is_final_status(status) is final


def test_v0_no_status_is_none() -> None:
    assert v0.derive_status(None, "finished") == (None, None)
    assert v0.derive_status("", None) == (None, None)


def test_v0_latest_agent_state_is_the_newest_change() -> None:
    answer = {
        "events": [message_event(12), agent_state_event(11, "finished"), agent_state_event(5, "running")],
        "has_more": True,
    }
    assert v0.latest_agent_state(answer) == "finished"


def test_v0_latest_agent_state_skips_events_that_are_not_state_changes() -> None:
    answer = {
        "events": [message_event(9), "junk", {"observation": "run"}, agent_state_event(3, "awaiting_user_input")],
        "has_more": False,
    }
    assert v0.latest_agent_state(answer) == "awaiting_user_input"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"events": [message_event(3)], "has_more": False}, id="no-state-change"),
        pytest.param({"events": [], "has_more": False}, id="no-events"),
        pytest.param({"has_more": False}, id="no-events-key"),
        pytest.param({"events": "nope"}, id="events-not-a-list"),
        pytest.param([agent_state_event(1, "finished")], id="bare-list"),
        pytest.param(None, id="null"),
        pytest.param({"events": [{**agent_state_event(1, "finished"), "extras": None}]}, id="extras-null"),
        pytest.param({"events": [agent_state_event(1, 7)]}, id="state-not-text"),
    ],
)
def test_v0_latest_agent_state_is_none_when_absent_or_malformed(answer: Any) -> None:
    assert v0.latest_agent_state(answer) is None


# ------------------------------------------------------------------------------------------------- README status table


def _v1_row(execution: str | None, sandbox: str = "RUNNING") -> Conversation:
    return V1("http://localhost:3000").from_conversation(
        conversation_item(sandbox_status=sandbox, execution_status=execution)
    )


def _v0_row(server_status: str, agent_state: str | None) -> Conversation:
    status, phase = v0.derive_status(server_status, agent_state)
    return Conversation(
        CONVERSATION_ID, status=status, phase=phase, api="v0", server_status=server_status, agent_state=agent_state
    )


@pytest.mark.parametrize(
    ("snapshot", "shown", "final"),
    [
        pytest.param(lambda: _v1_row("running"), "RUNNING", False, id="v1-running"),
        pytest.param(lambda: _v1_row("finished"), "FINISHED", True, id="v1-finished"),
        pytest.param(lambda: _v1_row("error"), "ERROR", True, id="v1-error"),
        pytest.param(lambda: _v1_row("stuck"), "STUCK", True, id="v1-stuck"),
        pytest.param(
            lambda: _v1_row("waiting_for_confirmation"),
            "WAITING FOR CONFIRMATION",
            False,
            id="v1-waiting-for-confirmation",
        ),
        pytest.param(lambda: _v1_row("paused"), "PAUSED", False, id="v1-paused"),
        pytest.param(lambda: _v1_row("idle"), "IDLE", False, id="v1-idle"),
        pytest.param(lambda: _v1_row(None, sandbox="MISSING"), "STOPPED", True, id="v1-sandbox-missing"),
        pytest.param(lambda: _v1_row("running", sandbox="MISSING"), "STOPPED", True, id="v1-sandbox-missing-running"),
        pytest.param(lambda: _v0_row("RUNNING", "finished"), "FINISHED", True, id="v0-finished"),
        pytest.param(
            lambda: _v0_row("RUNNING", "awaiting_user_input"), "WAITING FOR INPUT", True, id="v0-awaiting-user-input"
        ),
        pytest.param(lambda: _v0_row("RUNNING", "running"), "RUNNING", False, id="v0-running"),
        pytest.param(lambda: _v0_row("RUNNING", None), "RUNNING", False, id="v0-running-no-agent-state"),
        pytest.param(lambda: _v0_row("STOPPED", None), "STOPPED", True, id="v0-stopped"),
    ],
)
def test_readme_status_table_holds(snapshot: Any, shown: str, final: bool) -> None:
    conversation = snapshot()
    assert conversation.status == shown
    assert conversation.is_final is final


# ---------------------------------------------------------------------------------------------------- validate_message


@pytest.mark.parametrize(
    "message",
    [
        'Fix "naïve" {parsing} of $HOME paths — 日本語 ✓',
        "keep  double   spaces\tand tabs",
        "    indented first line\n  second line",
        "it's 'single' and \"double\" quotes \\n backslash",
        "line one\n\n\nline four after blank lines",
        "trailing spaces on last line   ",
    ],
)
def test_validate_message_keeps_the_text_verbatim(message: str) -> None:
    assert validate_message(message) == message


def test_validate_message_drops_only_leading_and_trailing_blank_lines() -> None:
    message = "\n   \n\t\n    def f():\n        return {1: 'x'}\n\n  \n"
    assert validate_message(message) == "    def f():\n        return {1: 'x'}"


@pytest.mark.parametrize("message", ["", " ", "\n", "  \n\t\n   ", "\r\n\r\n"])
def test_validate_message_rejects_empty(message: str) -> None:
    with pytest.raises(ValidationError):
        validate_message(message)


def test_validate_message_keeps_unusual_line_separators_inside_the_text() -> None:
    message = "first\x0csecond\u2028third\r\nfourth"
    assert validate_message(message) == message


# ------------------------------------------------------------------------------------------------- validate_repository


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("owner/repo", "owner/repo"),
        ("a-b/c.d_e", "a-b/c.d_e"),
        ("  octocat/Hello-World  ", "octocat/Hello-World"),
        ("https://github.com/owner/repo.git", "owner/repo"),
        ("https://github.com/owner/repo", "owner/repo"),
        ("https://github.com/owner/repo/", "owner/repo"),
        ("github.com/owner/repo", "owner/repo"),
    ],
)
def test_validate_repository_accepts(given: str, expected: str) -> None:
    assert validate_repository(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "owner",
        "owner/",
        "/repo",
        "a/b/c",
        "owner/..",
        "owner/.",
        "own er/repo",
        "owner/re po",
        "",
        "-owner/repo",
        "https://github.com/owner",
        "https://gitlab.com/owner/repo",
    ],
)
def test_validate_repository_rejects(given: str) -> None:
    with pytest.raises(ValidationError) as raised:
        validate_repository(given)
    assert "owner/repo" in str(raised.value)


def test_validate_repository_accepts_mixed_case_github_url() -> None:
    assert validate_repository("https://GitHub.com/owner/repo") == "owner/repo"


# ---------------------------------------------------------------------------------------------------- conversation ids


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (CONVERSATION_ID, CONVERSATION_ID),
        (f"  {CONVERSATION_ID}\n", CONVERSATION_ID),
        ("3f2b9c0e-8d7a-4b6c-9e1f-0a2b3c4d5e6f", "3f2b9c0e-8d7a-4b6c-9e1f-0a2b3c4d5e6f"),
        (f"https://app.all-hands.dev/conversations/{CONVERSATION_ID}", CONVERSATION_ID),
        (f"http://127.0.0.1:8000/conversations/{CONVERSATION_ID}/", CONVERSATION_ID),
    ],
)
def test_validate_user_conversation_id_accepts(given: str, expected: str) -> None:
    assert validate_user_conversation_id(given) == expected


@pytest.mark.parametrize(
    "given", ["../x", "a b", "", "   ", "abc/def", "https://app.all-hands.dev/conversations/../admin", "id?x=1"]
)
def test_validate_user_conversation_id_rejects(given: str) -> None:
    with pytest.raises(ValidationError):
        validate_user_conversation_id(given)


def test_server_ids_are_protocol_errors_not_validation_errors() -> None:
    assert validate_conversation_id(CONVERSATION_ID) == CONVERSATION_ID
    with pytest.raises(ProtocolError):
        validate_conversation_id("../x")
    with pytest.raises(ProtocolError):
        validate_conversation_id(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- results
def test_v1_reads_sandbox_cost_and_pull_requests(dialect: V1) -> None:
    snapshot = dialect.from_conversation(conversation_item(pr_number=[12, 15]))

    assert snapshot.sandbox_id == "4ni8x2mPq"
    assert snapshot.cost == Cost(0.0, 12, 3)
    assert snapshot.cost.tokens == 15 and str(snapshot.cost) == "$0.00 · 15 tokens"
    assert [pr.url for pr in snapshot.pull_requests] == [
        "https://github.com/octo/demo/pull/12",
        "https://github.com/octo/demo/pull/15",
    ]


@pytest.mark.parametrize(
    ("provider", "url"),
    [
        ("gitlab", "https://gitlab.com/octo/demo/-/merge_requests/7"),
        ("bitbucket", "https://bitbucket.org/octo/demo/pull-requests/7"),
        (None, "https://github.com/octo/demo/pull/7"),
        ("azure_devops", None),  # a provider whose pages this client cannot build: the number alone
    ],
)
def test_pull_request_links_follow_the_provider(dialect: V1, provider: str | None, url: str | None) -> None:
    (pr,) = dialect.from_conversation(conversation_item(pr_number=[7], git_provider=provider)).pull_requests

    assert (pr.number, pr.url, str(pr)) == (7, url, url or "#7")


@pytest.mark.parametrize(
    "bad",
    [
        {"pr_number": "12"},
        {"pr_number": [True, -1, "3", None]},
        {"metrics": "lots"},
        {"metrics": {"accumulated_cost": "1", "accumulated_token_usage": [1]}},
    ],
)
def test_malformed_details_do_not_stop_the_status_from_being_read(dialect: V1, bad: dict[str, Any]) -> None:
    snapshot = dialect.from_conversation(conversation_item(**bad))

    assert snapshot.status == S.FINISHED
    if "pr_number" in bad:
        assert snapshot.pr_numbers == ()
    else:
        assert snapshot.cost in (None, Cost(None, None, None))
