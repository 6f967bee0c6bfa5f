"""The widget panel and the text views: content, both ids, escaping, what reaches the browser and how often."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from types import SimpleNamespace
from typing import Any

import pytest

from openhands_magics import handle as handle_module
from openhands_magics import views
from openhands_magics._protocol.v1 import V1
from openhands_magics.events import Activity, Event
from openhands_magics.handle import ConversationHandle
from openhands_magics.models import Conversation, Cost
from openhands_magics.panel import ConversationPanel
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import PLANTED_SESSION_KEY, LocalOpenHandsServer, Timeline
from openhands_magics.views import format_elapsed, html_card, plain, status_change_line, text_summary

from .conftest import SECRET, wait_until

EVIL_TITLE = '<img src=x onerror="alert(1)"> & </b>'
BASE = "https://openhands.example"
TASK, CONV = "1" * 32, "2" * 32


def _75_seconds_ago() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=75)


@pytest.fixture
def session() -> Session:
    return Session()


@pytest.fixture
def handle(session: Session) -> ConversationHandle:
    starting = Conversation(
        None, status="STARTING", phase="waiting for sandbox", start_task_id=TASK, requested_at=_75_seconds_ago()
    )
    return session.record(starting, Endpoint.resolve(BASE, api_key=SECRET))


def _running(handle: ConversationHandle, **fields: object) -> Conversation:
    base = dict(
        conversation_id=CONV,
        status="RUNNING",
        start_task_id=TASK,
        requested_at=handle.conversation.requested_at,
        title="Speed up load.py",
    )
    return Conversation(**{**base, **fields})  # type: ignore[arg-type]


def _all_widget_state(panel: ConversationPanel) -> str:
    return json.dumps([panel.get_state(), *(child.get_state() for child in panel.children)], default=str)


def _card_state(panel: ConversationPanel) -> tuple[str, str, str]:
    """The facts the front end is told, as the card's model holds them."""
    state = panel.children[0].get_state()
    return state["status"], state["task_id"], state["conversation_id"]


def test_a_starting_panel_shows_the_phase_and_the_task_then_the_link_as_soon_as_the_conversation_exists(
    handle: ConversationHandle,
) -> None:
    panel = ConversationPanel(handle)
    card = panel.children[0].value
    assert _card_state(panel) == ("STARTING", TASK, "")
    assert (
        ">STARTING</span>" in card
        and "waiting for sandbox" in card
        and f'start task <code class="openhands-id" title="{TASK}"' in card
    )
    assert "<a href" not in card and "the link appears when the conversation is created" in card

    handle.update(_running(handle))

    card = panel.children[0].value
    assert _card_state(panel) == ("RUNNING", TASK, CONV)
    url = f"{BASE}/conversations/{CONV}"
    # The title is the link's text, the URL on hover; the id is shown short, whole on hover and when copied.
    assert f'<a href="{url}" title="{url}" target="_blank" rel="noopener noreferrer" ' in card
    assert re.search(r"<a [^>]*>Speed up load\.py</a>", card) and ">RUNNING</span>" in card
    assert f'id <code class="openhands-id" title="{CONV}"' in card and "max-width:9ch" in card


def test_the_card_is_sent_on_changes_only_plus_one_resync_a_minute(
    handle: ConversationHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]  # the monotonic clock and the wall clock move together
    monkeypatch.setattr(views.time, "monotonic", lambda: clock[0])
    wall = dt.datetime.now(dt.timezone.utc)
    monkeypatch.setattr(handle_module, "_now", lambda: wall + dt.timedelta(seconds=clock[0] - 1000))
    monkeypatch.setattr(views, "_now", lambda: wall + dt.timedelta(seconds=clock[0] - 1000))  # (the clock drawn)
    panel = ConversationPanel(handle)
    sent: list[str] = []
    panel.children[0].observe(lambda change: sent.append(change["new"]), "value")

    for _ in range(30):  # thirty polls that bring nothing new
        clock[0] += 1
        handle.update(handle.conversation)
    assert sent == []
    handle.update(_running(handle))
    assert len(sent) == 1
    clock[0] += 61
    handle.update(handle.conversation)
    assert len(sent) == 2  # the clock's resync
    handle.update(_running(handle, status="FINISHED"))
    clock[0] += 600
    handle.update(handle.conversation)
    assert len(sent) == 3  # final: the clock stopped, nothing to resync


def test_the_live_card_draws_whole_minutes_and_the_saved_card_says_what_was_last_seen(
    handle: ConversationHandle,
) -> None:
    handle.update(_running(handle))
    live = ConversationPanel(handle).children[0].value
    # Drawn by the kernel (a browser animation restarted, and so went back, whenever the card was shown again).
    assert "elapsed 1m" in live and "@keyframes" not in live and "animation" not in live
    assert 'class="oh-stale"' in live and ".jupyter-widgets-disconnected .openhands-conversation .oh-stale" in live
    saved = html_card(handle)
    assert ">RUNNING</span>" in saved and "last seen" in saved and "not followed now" in saved
    assert 'class="oh-live"' not in saved and "elapsed 1m" in saved


def test_a_finished_conversation_keeps_the_elapsed_time_it_was_seen_finishing_at(handle: ConversationHandle) -> None:
    handle.update(_running(handle))
    handle.update(_running(handle, status="FINISHED"))
    assert handle.seen_final_at is not None
    first = handle.elapsed()
    assert first is not None and 74 <= first <= 80
    assert handle.elapsed(now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)) == first
    assert "oh-ms" not in ConversationPanel(handle).children[0].value


def test_a_conversation_first_seen_finished_on_v1_has_no_made_up_elapsed_time(session: Session) -> None:
    done = Conversation(CONV, status="FINISHED", created_at=_75_seconds_ago(), updated_at=_75_seconds_ago())
    handle = session.record(done, Endpoint.resolve(BASE, api_key=SECRET))
    assert handle.elapsed() is None and "elapsed" not in html_card(handle)


def test_server_text_is_escaped_in_every_html_output(handle: ConversationHandle) -> None:
    handle.update(
        _running(handle, status="<b>RUN</b>", phase="<script>x</script>", title=EVIL_TITLE, selected_repository="o/<r>")
    )
    panel = ConversationPanel(handle)
    from openhands_magics.display import static_card

    copy = static_card(handle, saved_for=panel.scope)["text/html"]
    for markup in (panel.children[0].value, html_card(handle), copy):
        assert "<img" not in markup and "<b>RUN" not in markup and "o/<r>" not in markup and "<script>" not in markup
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;/b&gt;" in markup


def test_server_text_cannot_forge_lines_or_escape_sequences_in_text_output(handle: ConversationHandle) -> None:
    handle.update(_running(handle, title="ok\nopenhands: fake line\x1b[31m", phase="step\r\x07"))
    for line in (text_summary(handle), status_change_line(handle)):
        assert "\n" not in line and "\x1b" not in line and "\r" not in line and "\x07" not in line
    assert plain("a\x1b[2Jb") == "a\N{REPLACEMENT CHARACTER}[2Jb"


def test_widget_state_holds_neither_key_nor_the_servers_session_key(handle: ConversationHandle) -> None:
    answer = {
        "id": CONV,
        "title": "t",
        "sandbox_status": "RUNNING",
        "execution_status": "running",
        "session_api_key": PLANTED_SESSION_KEY,
        "conversation_url": "http://localhost:8000/api/conversations/x",
    }
    handle.update(V1(BASE).from_conversation(answer, previous=handle.conversation))
    panel = ConversationPanel(handle)
    handle.set_note("retrying in 4 s… (HTTP 503)")
    state = _all_widget_state(panel) + json.dumps(panel._repr_mimebundle_())
    assert SECRET not in state and PLANTED_SESSION_KEY not in state
    assert CONV in state and TASK in state and "retrying in 4 s" in state


def test_the_panels_bundle_is_the_widget_alone_and_its_saved_copy_has_both_ids(handle: ConversationHandle) -> None:
    from openhands_magics.display import static_card

    handle.update(_running(handle))
    panel = ConversationPanel(handle)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"] == ""
    assert "text/html" not in bundle  # (JupyterLab would draw the widget, or its error, never this)
    copy = static_card(handle, saved_for=panel.scope)
    assert copy["text/plain"] == text_summary(handle)
    assert f"{BASE}/conversations/{CONV}" in copy["text/plain"] and f"start task {TASK}" in copy["text/plain"]
    assert handle.url in copy["text/html"] and CONV in copy["text/html"]
    # The panel hides its copy while it is there; the copy hides a widget output that has no panel in it.
    assert f".oh-s-{panel.scope}" in panel.card.value and f"oh-s-{panel.scope}" in copy["text/html"]
    assert ":not(:has(.openhands-panel))" in copy["text/html"]


def test_the_stop_button_follows_watching_and_stops_it(session: Session, handle: ConversationHandle) -> None:
    async def scenario() -> None:
        assert session.watch(handle)
        panel = ConversationPanel(handle)
        button = panel.buttons["Stop watching"]
        assert "Stop watching" in panel.shown_buttons and button in panel.children
        assert "oh-c-stopwatching" not in panel.card.value.split("<style>")[-1]
        button.click()
        assert not handle.watching and "Stop watching" not in panel.shown_buttons
        assert button in panel.children and ".oh-c-stopwatching" in panel.card.value.split("<style>")[-1]  # hidden
        assert session.watch(handle) and "Stop watching" in panel.shown_buttons  # watched again: the button is back
        panel.close()
        assert not handle.watching and panel.comm is None
        handle.set_note("after close")  # a closed panel no longer listens, and does not raise
        session.close()

    asyncio.run(scenario())


def test_text_summary_status_lines_and_elapsed_format(handle: ConversationHandle) -> None:
    assert text_summary(handle).startswith(
        "OpenHands conversation (not created yet) STARTING · waiting for sandbox (1m"
    )
    assert status_change_line(handle).startswith(f"task {TASK}: STARTING · waiting for sandbox after 1m")
    handle.update(_running(handle, status="FINISHED"))
    line = text_summary(handle)
    assert line.startswith(f"OpenHands conversation {CONV} FINISHED 'Speed up load.py' (1m")
    assert line.endswith(f"{BASE}/conversations/{CONV} · start task {TASK}")
    assert status_change_line(handle).endswith(f"{BASE}/conversations/{CONV}")
    assert [format_elapsed(s) for s in (0, 59, 61, 3600 + 120)] == ["0s", "59s", "1m 01s", "1h 02m"]


# ---------------------------------------------------------------------------------------------------- the feed
def _event(kind: str, summary: str, **fields: object) -> Event:
    return Event(time=dt.datetime.now(dt.timezone.utc), kind=kind, summary=summary, **fields)  # type: ignore[arg-type]


class FakeClock:
    """The panel's clock and timers, moved by hand: ``advance(s)`` runs the timers that came due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []

    def later(self, delay: float, function: Any) -> None:
        self.timers.append((self.now + delay, function))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted(t for t in self.timers if t[0] <= self.now):
            self.timers.remove(timer)
            timer[1]()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    from openhands_magics import panel as panel_module

    fake = FakeClock()
    monkeypatch.setattr(panel_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    monkeypatch.setattr(panel_module, "_later", fake.later)
    return fake


def _set_activity(handle: ConversationHandle, activity: Activity) -> None:
    """What the event stream does: a new Activity, and the handle's views told."""
    handle.set_activity(activity)


STEPS = [
    _event("command", "$ pytest -q"),
    _event("edit", "edited data/load.py"),
    _event("thought", "thinking: the loader reads the header twice"),
    _event("command", "$ echo \x1b[31mred\x1b[0m <script>alert(1)</script>"),
    _event("error", "error: pytest failed (exit 1) & <b>bold</b>", is_error=True),
    _event("message", "agent: I fixed the loader."),
]


def test_the_feed_shows_the_last_steps_escaped_without_escape_sequences_and_five_lines_at_most(
    handle: ConversationHandle, clock: FakeClock
) -> None:
    handle.update(_running(handle))
    panel = ConversationPanel(handle)
    clock.advance(1)
    _set_activity(handle, Activity(steps=8, recent=tuple(STEPS), cost=Cost(0.12, 1000, 234), notice=None))

    card = panel.card.value
    lines = re.findall(r'<div class="openhands-step oh-(\w+)" style="([^"]*)">(.*?)</div>', card)
    assert [kind for kind, _, _ in lines] == ["edit", "thought", "command", "error", "message"]  # the last five
    assert "8 steps · $0.12 · 1,234 tokens" in card
    assert "\x1b" not in card and "[31m" not in card and "<script>" not in card and "<b>bold" not in card
    assert lines[2][2] == "$ echo red &lt;script&gt;alert(1)&lt;/script&gt;"
    assert "color:#c53030" in lines[3][1] and "#c53030" not in lines[0][1]  # the error in red, the rest not
    assert "edited data/load.py" in card and "thinking: the loader" in card


def test_a_notice_is_said_once_quietly_and_a_final_card_folds_the_feed_into_n_steps(
    handle: ConversationHandle, clock: FakeClock
) -> None:
    handle.update(_running(handle))
    panel = ConversationPanel(handle)
    clock.advance(1)
    notice = "live updates unavailable here: polling every 5 s"
    _set_activity(handle, Activity(steps=2, recent=tuple(STEPS[:2]), notice=notice))
    assert panel.card.value.count(notice) == 1 and 'class="openhands-notice"' in panel.card.value

    handle.update(_running(handle, status="FINISHED"))

    final = panel.card.value
    assert "<details" in final and "2 steps" in final and notice not in final and "$ pytest -q" in final
    assert "<details" in html_card(handle) and "steps" not in text_summary(handle)  # (the line stays a status line)
    assert "openhands-feed" not in html_card(handle)


def test_a_burst_of_events_redraws_a_panel_at_most_twice_a_second_and_a_final_status_at_once(
    handle: ConversationHandle, clock: FakeClock
) -> None:
    advance = clock.advance
    handle.update(_running(handle))
    panel = ConversationPanel(handle)
    drawn: list[tuple[float, str]] = []
    panel.card.observe(lambda change: drawn.append((clock.now, change["new"])), "value")
    activity = Activity()
    for number in range(150):  # three seconds of 50 events a second
        advance(0.02)
        activity = Activity(steps=number + 1, recent=(*activity.recent, _event("command", f"$ step {number}"))[-5:])
        _set_activity(handle, activity)
    advance(0.5)  # the last one is drawn too

    for second in range(3):
        assert sum(100 + second < at <= 101 + second for at, _ in drawn) <= 2
    assert 5 <= len(drawn) <= 8 and "150 steps" in drawn[-1][1] and "$ step 149" in drawn[-1][1]
    before = len(drawn)
    _set_activity(handle, Activity(steps=151, recent=activity.recent))
    handle.update(_running(handle, status="FINISHED"))  # within the gap: still drawn at once, with the latest feed
    assert len(drawn) == before + 1 and ">FINISHED</span>" in drawn[-1][1] and "151 steps" in drawn[-1][1]
    advance(1.0)  # a timer set before the final draw finds nothing new to draw
    assert len(drawn) == before + 1


def test_redraws_that_come_due_together_are_drawn_one_at_a_time_with_the_loop_let_go_between_them() -> None:
    from openhands_magics import panel as panel_module

    turns = panel_module._Turns()
    ran: list[tuple[str, float]] = []
    timeline: list[str] = []  # "draw" for each redraw, "select" for each time the loop polled (its GIL let go)

    def redraw(name: str) -> Any:
        def run() -> None:
            if name == "broken":
                raise RuntimeError("a broken view")
            ran.append((name, time.monotonic()))
            timeline.append("draw")

        return run

    async def main() -> None:
        loop = asyncio.get_running_loop()
        select = loop._selector.select  # type: ignore[attr-defined]

        def watched(timeout: float | None = None) -> Any:
            timeline.append("select")
            return select(timeout)

        loop._selector.select = watched  # type: ignore[attr-defined]
        for name in ("a", "broken", "b", "c"):
            turns.add(loop, redraw(name))
        assert ran == []  # (queued: the first is drawn in the loop's next turn, never inside the caller)
        while len(ran) < 3:
            await asyncio.sleep(0.001)

    asyncio.run(main())
    assert [name for name, _ in ran] == ["a", "b", "c"]  # oldest first; a broken one stops none of the others
    gaps = [later - earlier for (_, earlier), (_, later) in zip(ran, ran[1:])]
    assert all(gap >= panel_module.PACE for gap in gaps), gaps
    # Between two redraws the loop polled (the wait may be 0 on a loaded machine, whose clock passed PACE meanwhile:
    # a poll lets go of the GIL all the same).
    draws = [i for i, what in enumerate(timeline) if what == "draw"]
    assert len(draws) == 3 and all("select" in timeline[a:b] for a, b in zip(draws, draws[1:])), timeline

    async def again() -> None:  # a new I/O thread's loop: nothing of the old one's queue is left to block it
        turns.add(asyncio.get_running_loop(), redraw("d"))
        while len(ran) < 4:
            await asyncio.sleep(0.001)

    asyncio.run(again())
    assert ran[-1][0] == "d"


# ---------------------------------------------------------------------------------------------------- controls
def test_stop_agent_approve_reject_and_send_call_the_handles_verbs(
    handle: ConversationHandle, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(handle, "interrupt", lambda: calls.append(("interrupt", None)))
    monkeypatch.setattr(handle, "confirm", lambda: calls.append(("confirm", None)))
    monkeypatch.setattr(handle, "reject", lambda reason="": calls.append(("reject", reason)))
    monkeypatch.setattr(handle, "send", lambda text: calls.append(("send", text)) or handle)
    handle.update(_running(handle))
    panel = ConversationPanel(handle)
    assert "Stop agent" in panel.shown_buttons and "Approve" not in panel.buttons and panel.reply is None
    tips = {name: button.tooltip for name, button in panel.buttons.items()}
    assert "conversation stays" in tips["Stop agent"] and "sandbox" in tips["Pause"]
    assert "keeps working" in tips["Stop watching"]  # three verbs, and the tooltips say which is which

    panel.buttons["Stop agent"].click()
    pending = _event("command", "$ rm -rf build/")
    handle.update(_running(handle, status="WAITING FOR CONFIRMATION"))
    _set_activity(handle, Activity(steps=3, recent=(pending,), pending=pending))
    assert {"Approve", "Reject"} <= set(panel.shown_buttons)  # made now, the first time they apply
    assert "waiting for your confirmation: <code>$ rm -rf build/</code>" in panel.card.value
    panel.buttons["Approve"].click()
    panel.buttons["Reject"].click()

    handle.update(_running(handle, status="FINISHED"))
    _set_activity(handle, Activity(steps=3, recent=(pending,)))
    clock.advance(1)
    assert panel.shown_buttons == ("Send",) and panel.reply is not None
    assert "Approve" not in panel.shown_buttons and ".oh-c-approve" in panel.card.value.rsplit("<style>", 1)[1]
    panel.reply.value = "   "
    panel.buttons["Send"].click()  # an empty text sends nothing
    panel.reply.value = "Now add a test."
    panel.buttons["Send"].click()
    assert calls == [("interrupt", None), ("confirm", None), ("reject", "rejected in the notebook"),
                     ("send", "Now add a test.")]  # fmt: skip
    assert panel.reply.value == ""  # sent: the box is empty again
    panel.close()
    assert panel.reply.comm is None and all(b.comm is None for b in panel.buttons.values())


def test_a_follow_up_that_fails_becomes_the_note_and_keeps_the_text(
    handle: ConversationHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openhands_magics.errors import ConflictError

    def refuse(text: str) -> ConversationHandle:
        raise ConflictError("The conversation is busy <409>: wait for it to finish.", status_code=409)

    monkeypatch.setattr(handle, "send", refuse)
    handle.update(_running(handle, status="FINISHED"))
    panel = ConversationPanel(handle)
    assert panel.reply is not None
    panel.reply.value = "one more thing"
    panel.buttons["Send"].click()
    assert handle.note == "The conversation is busy <409>: wait for it to finish."
    assert "busy &lt;409&gt;" in panel.card.value and panel.reply.value == "one more thing"
    panel.close()


# ---------------------------------------------------------------------------------------------------- for real
def _local_run(server: LocalOpenHandsServer) -> tuple[Session, ConversationHandle, ConversationPanel]:
    session = Session(PollSchedule(interval=0.2, max_interval=0.4))
    handle = session.start("fix the loader", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    panel = ConversationPanel(handle)
    assert handle.watch()
    return session, handle, panel


def test_against_the_local_agent_server_approve_and_reject_answer_the_pending_action(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")
    steps = ("echo step 1", "echo step 2", "echo step 3")
    with LocalOpenHandsServer(
        SECRET, timeline=Timeline(starting=0.2, running=3.0, steps=steps, confirm=True)
    ) as server:
        session, handle, panel = _local_run(server)
        try:
            # (the buttons and the card's HTML are two traits the I/O thread sets one after the other: wait for both)
            pending = "waiting for your confirmation: <code>$ echo step 1</code>"
            wait_until(lambda: "Approve" in panel.shown_buttons and pending in panel.card.value, timeout=10)
            panel.buttons["Approve"].click()
            wait_until(lambda: "$ echo step 2" in panel.card.value and "Approve" in panel.shown_buttons, timeout=10)
            panel.buttons["Reject"].click()
            wait_until(lambda: "Approve" not in panel.shown_buttons and handle.activity.pending is None, timeout=10)
            kinds = [e.get("kind") for e in server.events(handle.id)]
            assert "UserRejectObservation" in kinds and handle.note is None
            assert "$ echo step 3" not in panel.card.value  # rejected: the agent did not go on
        finally:
            panel.close()
            session.close()


def test_against_the_local_agent_server_the_feed_follows_the_run_and_stop_agent_interrupts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENHANDS_LIVE_EVENTS", "1")
    steps = ("echo step 1", "edit:data/load.py", "echo step 3", "echo step 4")
    with LocalOpenHandsServer(SECRET, timeline=Timeline(starting=0.2, running=8.0, steps=steps)) as server:
        session, handle, panel = _local_run(server)
        try:
            wait_until(lambda: "data/load.py" in panel.card.value, timeout=15)  # (edited /workspace/…/data/load.py)
            card = panel.card.value
            assert "$ echo step 1" in card and re.search(r"\d+ steps?", card) and "Stop agent" in panel.shown_buttons
            panel.buttons["Stop agent"].click()
            wait_until(lambda: "InterruptEvent" in [e.get("kind") for e in server.events(handle.id)], timeout=5)
            assert handle.note is None and not handle.is_final  # the agent stopped; the conversation stays
            time.sleep(2.5)  # step 3 was due meanwhile
            assert "$ echo step 3" not in panel.card.value
            # The agent stopped, not its sandbox: no "Resume", but a follow-up goes on from there.
            wait_until(lambda: "Send" in panel.shown_buttons, timeout=5)
            assert "Resume" not in panel.shown_buttons and panel.reply is not None
            panel.reply.value = "go on, please"
            panel.buttons["Send"].click()
            assert handle.note is None and panel.reply.value == ""
            wait_until(lambda: "$ echo step 3" in panel.card.value, timeout=15)
        finally:
            panel.close()
            session.close()
