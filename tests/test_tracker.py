"""The tracker alone, with no I/O: what a source of updates (a snapshot, ``None``, an error) does to a handle, when
what the agent did must be read, and that a follow-up makes an old read old. No server, no thread, no loop."""

from __future__ import annotations

import dataclasses

from openhands_magics.errors import AuthenticationError, ServerError
from openhands_magics.handle import ConversationHandle
from openhands_magics.models import Conversation, ConversationStatus, Outcome
from openhands_magics.polling import GONE, PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.tracker import Tracker

SCHEDULE = PollSchedule(interval=1, max_interval=8, growth=2)
CONVERSATION = Conversation(conversation_id="c0ffee" * 5 + "00", status=ConversationStatus.RUNNING)


def _handle() -> ConversationHandle:
    return ConversationHandle(CONVERSATION, Session(), Endpoint("http://127.0.0.1:1", api_key="k"))  # type: ignore[arg-type]


def _tracker() -> tuple[Tracker, list[ConversationHandle], list[tuple[ConversationHandle, Exception]]]:
    reads: list[ConversationHandle] = []
    gave_up: list[tuple[ConversationHandle, Exception]] = []
    tracker = Tracker(SCHEDULE, read_outcome=reads.append, gave_up=lambda h, e: gave_up.append((h, e)))
    return tracker, reads, gave_up


def test_a_tracked_handle_is_due_after_one_interval_and_slows_down_while_nothing_changes() -> None:
    tracker, _, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    assert handle.watching and tracker.next_due() == 1 and tracker.due(horizon=0.5) == []
    assert tracker.due(horizon=1) == [handle]
    tracker.apply(handle, CONVERSATION, now=1)  # unchanged: the pause doubles
    tracker.apply(handle, CONVERSATION, now=3)
    assert tracker.next_due() == 7


def test_a_final_snapshot_asks_the_owner_to_read_the_outcome_and_watching_ends_when_it_is_in() -> None:
    tracker, reads, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    tracker.apply(handle, dataclasses.replace(CONVERSATION, status=ConversationStatus.FINISHED), now=1)
    assert reads == [handle] and handle.watching and tracker.next_due() is None  # nothing to poll; a read to finish
    tracker.concluded(handle, Outcome(answer="Done."))
    assert handle.answer == "Done." and not handle.watching and handle not in tracker


def test_null_from_a_source_is_deleted_elsewhere_with_nothing_to_read() -> None:
    tracker, reads, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    tracker.apply(handle, None, now=1)
    assert (handle.status, handle.conversation.phase) == (ConversationStatus.DELETED, GONE)
    assert reads == [] and not handle.watching


def test_an_error_retrying_can_fix_backs_off_and_one_it_cannot_is_told_before_watching_ends() -> None:
    tracker, _, gave_up = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    tracker.failed(handle, ServerError("boom"), now=1)
    assert handle.watching and handle.note == "retrying in 2 s… (boom)" and tracker.next_due() == 3
    refused = AuthenticationError("The API key was rejected.")
    tracker.failed(handle, refused, now=3)
    assert gave_up == [(handle, refused)] and not handle.watching
    assert handle.note == "Stopped watching: The API key was rejected."


def test_a_follow_up_while_the_last_outcome_is_read_makes_that_read_old() -> None:
    tracker, reads, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    tracker.apply(handle, dataclasses.replace(CONVERSATION, status=ConversationStatus.FINISHED), now=1)
    handle.begin_turn(CONVERSATION)  # a follow-up was accepted: running again
    tracker.track(handle, now=2)
    tracker.concluded(handle, Outcome(answer="the old turn's"))
    assert handle.outcome is None and handle.watching and tracker.due(horizon=3) == [handle]


def test_a_follow_up_whose_watch_has_not_reached_the_loop_yet_still_makes_the_last_read_old() -> None:
    """The follow-up begins in the caller's thread and its watch is marshalled to the loop, where the last turn's
    read may come back first: it must neither end the new turn's watching (its panel froze, RUNNING, as a static
    card) nor put the last turn's answer on it."""
    tracker, reads, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    tracker.apply(handle, dataclasses.replace(CONVERSATION, status=ConversationStatus.FINISHED), now=1)
    handle.begin_turn(CONVERSATION)  # accepted, in the caller's thread; the new turn's track is still on its way
    handle.set_watching(True)
    tracker.concluded(handle, Outcome(answer="the old turn's"))
    assert handle.outcome is None and handle.watching
    tracker.track(handle, now=2)  # (now it arrives)
    assert tracker.due(horizon=3) == [handle]


def test_an_update_for_a_handle_not_tracked_is_ignored() -> None:
    tracker, reads, _ = _tracker()
    handle = _handle()
    tracker.apply(handle, None, now=0)
    tracker.failed(handle, ServerError("boom"), now=0)
    assert handle.status == ConversationStatus.RUNNING and handle.note is None and reads == []


def test_a_sandbox_coming_up_makes_the_streamed_conversations_due_at_once() -> None:
    # (a self-hosted server at its sandbox limit pauses its oldest sandboxes to start one more, and a paused
    # sandbox's stream goes quiet: only a read tells)
    tracker, _, _ = _tracker()
    streamed, polled, starting = _handle(), _handle(), _handle()
    for handle in (streamed, polled, starting):
        tracker.track(handle, now=0)
    tracker.streamed(streamed, True, now=0)
    starting.update(dataclasses.replace(CONVERSATION, sandbox_status="STARTING"))
    assert streamed not in tracker.due(horizon=5)  # (read every two minutes while its stream is open)

    tracker.apply(starting, dataclasses.replace(CONVERSATION, sandbox_status="STARTING"), now=1)
    assert streamed not in tracker.due(horizon=2)
    tracker.apply(starting, dataclasses.replace(CONVERSATION, sandbox_status="RUNNING"), now=2)
    assert streamed in tracker.due(horizon=2)
    tracker.apply(streamed, dataclasses.replace(CONVERSATION, sandbox_status="RUNNING"), now=2)
    tracker.apply(starting, dataclasses.replace(CONVERSATION, sandbox_status="RUNNING"), now=3)  # (up already)
    assert streamed not in tracker.due(horizon=10)


def test_a_watch_again_before_the_loop_took_the_stop_stays_watched() -> None:
    # conv.stop_watching() then conv.watch() at once: each says so in the caller's thread and sends its half to the
    # loop, which takes them in order, after both. The stop's half must not undo what the second watch said.
    tracker, _, _ = _tracker()
    handle = _handle()
    tracker.track(handle, now=0)
    seen: list[bool] = []
    handle.subscribe(lambda h: seen.append(h.watching))
    handle.set_watching(False)  # unwatch(), the caller's half
    handle.set_watching(True)  # watch(), the caller's half
    tracker.unwatched(handle)  # the loop takes the stop: the watch goes on ...
    assert handle.watching and handle in tracker
    tracker.watched(handle, now=1)  # ... and the watch's half finds it tracked
    assert handle.watching and handle in tracker and seen == [False, True]
    handle.set_watching(False)  # a stop alone
    tracker.unwatched(handle)
    assert not handle.watching and handle not in tracker


def test_a_stop_before_the_loop_took_the_watch_leaves_nothing_tracked() -> None:
    tracker, _, _ = _tracker()
    handle = _handle()
    handle.set_watching(True)  # watch(), the caller's half ...
    handle.set_watching(False)  # ... and "Stop watching" before the loop took it
    tracker.watched(handle, now=0)  # the watch's half does nothing ...
    tracker.unwatched(handle)  # ... nor the stop's
    assert not handle.watching and handle not in tracker
