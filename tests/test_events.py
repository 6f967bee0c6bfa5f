"""The agent's events as a person reads them: frames recorded on the real 1.11.0 (trimmed) turned into one-liners,
with terminal escape sequences gone, secrets blanked, and the live activity folded from them."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from openhands_magics import _secrets
from openhands_magics.events import EMPTY_ACTIVITY, Activity, Event, Trajectory, fold, fold_all, parse
from openhands_magics.models import Cost

ACTION = {
    "id": "89bd5144-3767-4e34-96a6-7c99432ae620",
    "timestamp": "2026-12-01T13:23:13.033110",
    "source": "agent",
    "thought": [],
    "action": {"command": "echo step 1", "is_input": False, "timeout": None, "reset": False, "kind": "TerminalAction"},
    "tool_name": "terminal",
    "tool_call_id": "call_356de9b7110f",
    "summary": "step 1: echo step 1",
    "kind": "ActionEvent",
}
OBSERVATION = {
    "id": "4d1e0878-3374-4686-a6a0-2bcb678449e4",
    "timestamp": "2026-12-01T13:23:13.060703",
    "source": "environment",
    "tool_name": "terminal",
    "observation": {
        "content": [{"type": "text", "text": "\u001b[?2004lstep 1\n\u001b[?2004h"}],
        "is_error": False,
        "command": "echo step 1",
        "exit_code": 0,
        "kind": "TerminalObservation",
    },
    "action_id": "89bd5144-3767-4e34-96a6-7c99432ae620",
    "kind": "ObservationEvent",
}
FINISH = {
    "id": "236c55b0-0de8-47e0-b371-dd9f7cf7e156",
    "timestamp": "2026-12-01T13:23:31.306434",
    "source": "agent",
    "thought": [],
    "action": {"message": "Hello! Done.", "kind": "FinishAction"},
    "tool_name": "finish",
    "kind": "ActionEvent",
}
STATS = {
    "id": "cbac09e2-ff67-4249-9e81-a39bfddc2b2b",
    "timestamp": "2026-12-01T13:23:06.983505",
    "source": "environment",
    "key": "stats",
    "value": {
        "usage_to_metrics": {
            "agent": {
                "accumulated_cost": 0.25,
                "accumulated_token_usage": {"prompt_tokens": 10, "completion_tokens": 5},
            },
            "title": {"accumulated_cost": 0.5, "accumulated_token_usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        }
    },
    "kind": "ConversationStateUpdateEvent",
}


def status(value: str, at: str = "2026-12-01T13:23:31.313564") -> dict[str, object]:
    return {
        "id": f"s-{value}",
        "timestamp": at,
        "key": "execution_status",
        "value": value,
        "kind": "ConversationStateUpdateEvent",
    }


def test_a_terminal_action_reads_as_its_command_with_its_time_in_utc() -> None:
    event = parse(ACTION)
    assert event is not None
    assert (event.kind, event.summary, event.tool, event.command) == (
        "command",
        "$ echo step 1",
        "terminal",
        "echo step 1",
    )
    assert event.time == dt.datetime(2026, 12, 1, 13, 23, 13, 33110, tzinfo=dt.timezone.utc)
    assert event.id == ACTION["id"] and event.is_action


def test_terminal_output_loses_its_escape_sequences() -> None:
    event = parse(OBSERVATION)
    assert event is not None
    assert event.kind == "observation" and not event.is_error
    assert event.text == "step 1\n" and "\x1b" not in event.summary
    assert event.action_id == ACTION["id"]


def test_control_characters_in_a_command_cannot_forge_a_line_or_move_the_cursor() -> None:
    hostile = {
        **ACTION,
        "action": {"kind": "TerminalAction", "command": "ls\r\n\u001b[2J\u001b]0;pwned\u0007\u202eevil\x00"},
    }
    event = parse(hostile)
    assert event is not None
    assert "\n" not in event.summary and "\r" not in event.summary
    assert all(c.isprintable() for c in event.summary)
    assert "\x1b" not in (event.command or "") and "\u202e" not in (event.command or "")


def test_a_failed_command_is_an_error_worth_showing() -> None:
    failed = {**OBSERVATION, "observation": {**OBSERVATION["observation"], "exit_code": 2, "content": "No such file"}}  # type: ignore[dict-item]
    event = parse(failed)
    assert event is not None and event.is_error
    assert event.summary == "failed (exit 2): No such file"
    assert fold(EMPTY_ACTIVITY, event).recent == (event,)


def test_an_edit_says_which_file_and_a_thought_says_what_it_thinks() -> None:
    edit = parse(
        {
            "kind": "ActionEvent",
            "tool_name": "file_editor",
            "action": {"kind": "FileEditorAction", "command": "str_replace", "path": "data/load.py"},
        }
    )
    think = parse(
        {
            "kind": "ActionEvent",
            "tool_name": "think",
            "action": {"kind": "ThinkAction", "thought": "the CSV\nhas a header"},
        }
    )
    assert edit is not None and (edit.kind, edit.summary, edit.path) == ("edit", "edited data/load.py", "data/load.py")
    assert think is not None and (think.kind, think.summary) == ("thought", "thinking: the CSV ⏎ has a header")


def test_errors_and_the_agents_messages_read_as_one_line_each() -> None:
    error = parse({"kind": "AgentErrorEvent", "error": "tool crashed", "tool_name": "terminal"})
    crash = parse({"kind": "ConversationErrorEvent", "code": "LLMError", "detail": "rate limited"})
    said = parse(
        {
            "kind": "MessageEvent",
            "source": "agent",
            "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "Done."}]},
        }
    )
    assert error is not None and error.is_error and error.summary == "error: tool crashed"
    assert crash is not None and crash.kind == "error" and crash.summary == "error: LLMError: rate limited"
    assert said is not None and said.summary == "agent: Done."


def test_a_stats_update_is_the_live_cost_of_every_llm_added_up() -> None:
    event = parse(STATS)
    assert event is not None and event.kind == "status"
    assert event.cost == Cost(0.75, 11, 6)
    assert fold(EMPTY_ACTIVITY, event).cost == Cost(0.75, 11, 6)


def test_what_nobody_reads_is_skipped_and_malformed_frames_never_raise() -> None:
    assert parse({"kind": "SystemPromptEvent", "system_prompt": {"text": "…"}}) is None
    assert parse({"kind": "ConversationStateUpdateEvent", "key": "last_user_message_id", "value": "x"}) is None
    for junk in (
        {},
        {"kind": "ActionEvent", "action": 3},
        {"kind": 5},
        {"kind": "ObservationEvent", "observation": []},
    ):
        parse(junk)  # no exception
    assert parse("not a mapping") is None  # type: ignore[arg-type]


def test_a_key_the_agent_prints_is_blanked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "sk-very-secret-123456")
    leaked = {
        **OBSERVATION,
        "observation": {**OBSERVATION["observation"], "content": "SOME_API_KEY=sk-very-secret-123456"},
    }  # type: ignore[dict-item]
    event = parse(leaked)
    assert event is not None and "sk-very-secret" not in (event.text or "") + event.summary
    session_key = "session-key-of-this-conversation"
    echoed = {**ACTION, "action": {"kind": "TerminalAction", "command": f"curl -H 'X: {session_key}'"}}
    known = _secrets.Secrets((session_key, *_secrets.secrets()))
    event = parse(echoed, known=known)
    assert event is not None and session_key not in event.summary and _secrets.BLANK in event.summary
    assert os.environ["SOME_API_KEY"]


def test_the_activity_counts_steps_keeps_the_last_five_and_the_answer() -> None:
    frames = [STATS, status("running", "2026-12-01T13:23:06")]
    for n in range(7):
        frames += [
            {**ACTION, "id": f"a{n}", "action": {"kind": "TerminalAction", "command": f"echo {n}"}},
            {**OBSERVATION, "id": f"o{n}", "action_id": f"a{n}"},
        ]
    frames += [FINISH, status("finished")]
    activity = fold_all(EMPTY_ACTIVITY, (parse(f) for f in frames))
    assert activity.steps == 8
    assert [e.summary for e in activity.recent] == [
        "$ echo 3",
        "$ echo 4",
        "$ echo 5",
        "$ echo 6",
        "finished: Hello! Done.",
    ]
    assert activity.answer == "Hello! Done." and activity.status == "finished" and activity.pending is None
    assert activity.last_time == dt.datetime(2026, 12, 1, 13, 23, 31, 313564, tzinfo=dt.timezone.utc)


def test_an_action_waiting_for_confirmation_is_pending_until_answered() -> None:
    action = parse(ACTION)
    activity = fold_all(EMPTY_ACTIVITY, [action, parse(status("waiting_for_confirmation"))])
    assert activity.pending == action
    assert activity.recent[-1].summary == "status: waiting for confirmation"
    assert fold(activity, parse(status("running"))).pending is None
    assert fold(activity, parse(OBSERVATION)).pending is None


def test_an_event_that_changes_nothing_keeps_the_same_activity() -> None:
    assert fold(EMPTY_ACTIVITY, None) is EMPTY_ACTIVITY
    assert isinstance(EMPTY_ACTIVITY, Activity) and EMPTY_ACTIVITY.source == "polling" and EMPTY_ACTIVITY.steps == 0


def test_a_trajectory_is_a_tuple_of_events_with_a_dataframe() -> None:
    pandas = pytest.importorskip("pandas")
    trajectory = Trajectory(e for e in map(parse, [ACTION, OBSERVATION, FINISH]) if isinstance(e, Event))
    assert len(trajectory) == 3 and trajectory[0].summary == "$ echo step 1"
    frame = trajectory.to_dataframe()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["kind"]) == ["command", "observation", "finish"] and "summary" in frame.columns
    assert "2 steps" in repr(trajectory)
