"""Conversation.from_json (the snapshot model) and the input/id checks in validation.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from openhands_magics.errors import ProtocolError, ValidationError
from openhands_magics.models import FINAL_STATUSES, Conversation, is_final_status
from openhands_magics.validation import (
    validate_conversation_id,
    validate_message,
    validate_repository,
    validate_user_conversation_id,
)

CONVERSATION_ID = "3f2b9c0e8d7a4b6c9e1f0a2b3c4d5e6f"
UTC = dt.timezone.utc


def full_payload(**overrides: Any) -> dict[str, Any]:
    """What OpenHands Cloud answers for GET /api/conversations/{id}, newer fields included."""
    payload: dict[str, Any] = {
        "conversation_id": CONVERSATION_ID,
        "title": "Fix the typo in README.md",
        "created_at": "2025-04-29T15:13:51.370706Z",
        "last_updated_at": "2025-04-29T15:20:02.000001Z",
        "status": "RUNNING",
        "selected_repository": "octo/demo",
        "trigger": "openhands_api",
        "runtime_status": "STATUS$READY",
        "pr_number": [12, 13],
    }
    payload.update(overrides)
    return payload


# ---------------------------------------------------------------------------------------------------- from_json


def test_from_json_reads_every_known_field_of_a_full_payload() -> None:
    conversation = Conversation.from_json(full_payload())

    assert conversation.conversation_id == CONVERSATION_ID
    assert conversation.id == CONVERSATION_ID
    assert conversation.title == "Fix the typo in README.md"
    assert conversation.status == "RUNNING"
    assert conversation.selected_repository == "octo/demo"
    assert conversation.trigger == "openhands_api"
    assert conversation.created_at == dt.datetime(2025, 4, 29, 15, 13, 51, 370706, tzinfo=UTC)
    assert conversation.last_updated_at == dt.datetime(2025, 4, 29, 15, 20, 2, 1, tzinfo=UTC)
    assert conversation.created_at is not None and conversation.created_at.utcoffset() == dt.timedelta(0)
    assert conversation.is_final is False


def test_from_json_keeps_unknown_fields_in_extra_and_only_there() -> None:
    conversation = Conversation.from_json(full_payload())

    assert dict(conversation.extra) == {"runtime_status": "STATUS$READY", "pr_number": [12, 13]}
    for known in ("conversation_id", "title", "created_at", "last_updated_at", "status", "selected_repository", "trigger"):
        assert known not in conversation.extra
    field_names = {f.name for f in dataclasses.fields(Conversation)}
    assert "runtime_status" not in field_names
    assert "pr_number" not in field_names
    assert not hasattr(conversation, "runtime_status")


def test_extra_is_read_only() -> None:
    conversation = Conversation.from_json(full_payload())
    with pytest.raises(TypeError):
        conversation.extra["runtime_status"] = "changed"  # type: ignore[index]


def test_naive_datetime_is_taken_as_utc() -> None:
    conversation = Conversation.from_json(full_payload(created_at="2025-04-29T15:13:51.370706"))
    assert conversation.created_at == dt.datetime(2025, 4, 29, 15, 13, 51, 370706, tzinfo=UTC)
    assert conversation.created_at is not None and conversation.created_at.tzinfo is not None


def test_explicit_offset_is_kept() -> None:
    conversation = Conversation.from_json(full_payload(created_at="2025-04-29T17:13:51+02:00"))
    assert conversation.created_at == dt.datetime(2025, 4, 29, 15, 13, 51, tzinfo=UTC)
    assert conversation.created_at is not None and conversation.created_at.utcoffset() == dt.timedelta(hours=2)


def test_only_conversation_id_is_required_and_missing_fields_are_none() -> None:
    conversation = Conversation.from_json({"conversation_id": CONVERSATION_ID})

    assert conversation.conversation_id == CONVERSATION_ID
    assert conversation.status is None
    assert conversation.title is None
    assert conversation.created_at is None
    assert conversation.last_updated_at is None
    assert conversation.selected_repository is None
    assert conversation.trigger is None
    assert dict(conversation.extra) == {}
    assert conversation.is_final is False


def test_null_and_empty_values_become_none() -> None:
    conversation = Conversation.from_json(
        full_payload(title=None, status=None, created_at="", last_updated_at=None, selected_repository=None)
    )
    assert conversation.title is None
    assert conversation.status is None
    assert conversation.created_at is None
    assert conversation.last_updated_at is None
    assert conversation.selected_repository is None


def test_lower_case_status_is_upper_cased() -> None:
    conversation = Conversation.from_json(full_payload(status="stopped"))
    assert conversation.status == "STOPPED"
    assert conversation.is_final is True


def test_unknown_status_is_kept_and_not_final() -> None:
    conversation = Conversation.from_json(full_payload(status="PAUSED_FOR_REVIEW"))
    assert conversation.status == "PAUSED_FOR_REVIEW"
    assert conversation.is_final is False


@pytest.mark.parametrize("status", ["STOPPED", "ARCHIVED", "ERROR"])
def test_final_statuses(status: str) -> None:
    assert Conversation.from_json(full_payload(status=status)).is_final is True
    assert is_final_status(status) is True
    assert is_final_status(status.lower()) is True
    assert status in FINAL_STATUSES


@pytest.mark.parametrize("status", ["STARTING", "RUNNING", "PAUSED_FOR_REVIEW"])
def test_non_final_statuses(status: str) -> None:
    assert Conversation.from_json(full_payload(status=status)).is_final is False
    assert is_final_status(status) is False


def test_is_final_status_of_none_is_false() -> None:
    assert is_final_status(None) is False


def test_conversation_is_immutable() -> None:
    conversation = Conversation.from_json(full_payload())
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.status = "STOPPED"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        conversation.conversation_id = "other"  # type: ignore[misc]
    assert conversation.status == "RUNNING"


def test_equality_ignores_extra() -> None:
    first = Conversation.from_json(full_payload())
    second = Conversation.from_json(full_payload(runtime_status="STATUS$STOPPED", pr_number=[]))
    assert first == second
    assert first != Conversation.from_json(full_payload(status="STOPPED"))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([full_payload()], id="list"),
        pytest.param(None, id="null"),
        pytest.param("3f2b9c0e8d7a4b6c9e1f0a2b3c4d5e6f", id="bare-string"),
        pytest.param({"title": "no id"}, id="missing-id"),
        pytest.param(full_payload(conversation_id=None), id="id-null"),
        pytest.param(full_payload(conversation_id=1234), id="id-int"),
        pytest.param(full_payload(conversation_id=""), id="id-empty"),
        pytest.param(full_payload(conversation_id="abc/def"), id="id-slash"),
        pytest.param(full_payload(conversation_id=".."), id="id-dotdot"),
        pytest.param(full_payload(conversation_id="../admin"), id="id-traversal"),
        pytest.param(full_payload(status={"state": "RUNNING"}), id="status-dict"),
        pytest.param(full_payload(title=["a", "b"]), id="title-list"),
        pytest.param(full_payload(created_at="yesterday afternoon"), id="date-unparseable"),
        pytest.param(full_payload(last_updated_at="2025-13-45T99:00:00Z"), id="date-out-of-range"),
        pytest.param(full_payload(created_at=1714403631), id="date-number"),
    ],
)
def test_bad_shapes_raise_protocol_error(payload: Any) -> None:
    with pytest.raises(ProtocolError) as raised:
        Conversation.from_json(payload)
    assert str(raised.value)  # a sentence a person can read
    assert raised.value.retryable is True


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


# ---------------------------------------------------------------------------------------------------- validate_repository


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
    ["owner", "owner/", "/repo", "a/b/c", "owner/..", "owner/.", "own er/repo", "owner/re po", "", "-owner/repo",
     "https://github.com/owner", "https://gitlab.com/owner/repo"],
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
