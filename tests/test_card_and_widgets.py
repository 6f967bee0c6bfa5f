"""Views from one value, and panels that cost little: a frozen Card drawn by every view; one link and one table
helper for the card, the list and the grid; a panel's change sent as one message per model; every widget a panel
or a grid made closed when it ends; redraws safe from any thread."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import ipywidgets as widgets
import pytest

from openhands_magics.handle import ConversationHandle
from openhands_magics.listing import ConversationList
from openhands_magics.models import Change, Conversation, Outcome
from openhands_magics.panel import ConversationPanel
from openhands_magics.session import Endpoint, Session
from openhands_magics.views import Card, grid_html, html_card, link, text_summary

from .conftest import SECRET

BASE = "https://openhands.example"
TASK, CONV = "1" * 32, "2" * 32


def _conversation(**fields: object) -> Conversation:
    base: dict[str, object] = dict(
        conversation_id=CONV,
        status="RUNNING",
        start_task_id=TASK,
        title="Fix the bug",
        requested_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=75),
    )
    return Conversation(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture
def session() -> Iterator[Session]:
    session = Session()
    yield session
    session.close()


@pytest.fixture
def handle(session: Session) -> ConversationHandle:
    return session.record(_conversation(), Endpoint.resolve(BASE, api_key=SECRET))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every widget message the kernel would send, as (model id, state)."""
    messages: list[tuple[str, dict[str, Any]]] = []
    real = widgets.Widget._send

    def record(widget: widgets.Widget, msg: dict[str, Any], buffers: Any = None) -> None:
        messages.append((widget.model_id, dict(msg.get("state", {}))))
        real(widget, msg, buffers)

    monkeypatch.setattr(widgets.Widget, "_send", record)
    return messages


def _open_widgets() -> set[str]:
    from ipywidgets.widgets.widget import _instances

    return set(_instances)  # (the registry behind ipywidgets.Widget.widgets: every widget whose comm is open)


# ---------------------------------------------------------------------------------------------------- the value
def test_a_card_is_a_frozen_value_that_stays_equal_while_only_time_passes(handle: ConversationHandle) -> None:
    card = Card.of(handle)
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.status = "FINISHED"  # type: ignore[misc]
    assert Card.of(handle) == card and hash(Card.of(handle)) == hash(card)  # the clock moved; the value did not
    assert 74 <= (card.elapsed() or 0) <= 90
    handle.update(_conversation(title="Fix the other bug"))
    assert Card.of(handle) != card and Card.of(handle).title == "Fix the other bug"
    # Every view draws the value it is given, the same as from the handle.
    assert html_card(Card.of(handle)) == html_card(handle) and text_summary(Card.of(handle)) == text_summary(handle)


def test_a_card_holds_server_text_neutralised_and_only_the_answer_keeps_its_lines(handle: ConversationHandle) -> None:
    handle.update(
        _conversation(status="FINISHED", title="t\x1b[2J\nforged", phase="p\x07", selected_repository="o/r\r")
    )
    handle.set_outcome(
        Outcome(
            answer="line one\r\nline two\x1b[31m\x00",
            changes=(Change("ADDED", "a\nb.py"),),
            problems=("it broke\nbadly",),
        )
    )
    handle.set_note("note\x1b]0;title\x07")
    card = Card.of(handle)
    for text in (card.title, card.phase, card.repository, card.note, card.problem, card.files and card.files[0][1]):
        assert text is not None and not any(c in text for c in "\x1b\x07\r\n\x00"), text
    assert card.answer == "line one\nline two\N{REPLACEMENT CHARACTER}[31m\N{REPLACEMENT CHARACTER}"
    assert card.files == (("A", "a\N{REPLACEMENT CHARACTER}b.py"),) and card.files_count == 1
    assert card.final_elapsed is not None and card.clock_from is None


def test_a_card_of_many_changed_files_keeps_eight_and_the_count(handle: ConversationHandle) -> None:
    handle.update(_conversation(status="FINISHED"))
    handle.set_outcome(Outcome(answer="ok", changes=tuple(Change("UPDATED", f"f{i}.py") for i in range(30_000))))
    card = Card.of(handle)
    assert card.files is not None and len(card.files) == 8 and card.files_count == 30_000
    assert "and 29992 more" in html_card(card) and "30000 files changed" in text_summary(card)


def test_a_card_says_when_it_was_created_in_local_time_with_utc_on_hover(handle: ConversationHandle) -> None:
    created = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    handle.update(_conversation(requested_at=None, created_at=created))
    card = Card.of(handle)
    local = created.astimezone().strftime("%Y-%m-%d %H:%M %Z")
    assert card.started_at == created
    assert f'<span title="2025-01-02 03:04:05 UTC">{local}</span>' in html_card(card)
    assert Card.of(handle) == card  # (a card of the same moment is the same card: no redraw)


def test_a_card_is_named_by_its_title_else_the_first_words_of_its_task_never_by_a_placeholder(
    handle: ConversationHandle,
) -> None:
    handle.task = "Make the loader read dates as UTC, then rerun every test of the loader and report\nmore"
    handle.update(_conversation(title="Conversation 2c356"))  # (the real server's name for an untitled one)
    card = Card.of(handle)
    assert card.title is None and card.name == "Make the loader read dates as UTC, then rerun every test of…"
    markup = html_card(card)
    assert "Conversation 2c356" not in markup and "untitled" not in markup
    assert f">{card.name}</a>" in markup and "Conversation 2c356" not in text_summary(card)
    handle.update(_conversation(title="Loader dates in UTC"))
    assert Card.of(handle).name == "Loader dates in UTC"
    handle.label = "Fix: KeyError in cell 12"  # (what `fix` names it: the server's title is the same for every fix)
    assert ">Fix: KeyError in cell 12</a>" in html_card(handle)


def test_a_follow_ups_card_shows_the_message_sent_and_which_follow_up_it_is(handle: ConversationHandle) -> None:
    assert "follow-up" not in html_card(handle)
    handle.begin_turn(_conversation(), "now also <b>the writer</b>")
    handle.begin_turn(_conversation(), "and the tests")
    markup = html_card(handle)
    assert "follow-up 2 of conversation" in markup and f'title="{CONV}"' in markup
    assert "you sent: <q>and the tests</q>" in markup
    handle.begin_turn(_conversation(), "<b>bold</b>\nsecond line")
    assert "<q>&lt;b&gt;bold&lt;/b&gt; ⏎ second line</q>" in html_card(handle)


def test_the_fix_label_names_the_error_and_its_cell() -> None:
    from openhands_magics.commands.fix import label
    from openhands_magics.context import CellError, ErrorLog

    errors = ErrorLog()
    errors.entries.append(CellError(12, "KeyError", "'x'", "KeyError: 'x'", "d['x']"))
    assert label(errors) == "Fix: KeyError in cell 12"
    errors.entries.append(CellError(None, "ValueError", "bad", "ValueError: bad", "int('a')"))
    assert label(errors) == "Fix: ValueError"


# ---------------------------------------------------------------------------------------------------- shared helpers
def test_the_card_the_list_and_the_grid_draw_links_and_tables_with_the_same_helpers(
    session: Session, handle: ConversationHandle
) -> None:
    assert handle.url is not None
    card = html_card(handle)
    listed = ConversationList([handle])._repr_html_()
    row = SimpleNamespace(index=0, handle=handle, status="RUNNING", label="a.py", error=None)
    grid = grid_html(SimpleNamespace(rows=[row], summary="0/1 finished"))
    # The title is the link everywhere (the URL on hover).
    assert link(handle.url, "Fix the bug") in card and 'title="https://openhands.example/conversations/' in card
    assert link(handle.url, "Fix the bug") in listed and link(handle.url, "Fix the bug") in grid
    opening = '<table class="openhands-{}" style="border-collapse:collapse;font-size:90%;'
    assert opening.format("conversations") in listed and opening.format("grid") in grid
    cell = listed.split("<td ", 1)[1].split(">", 1)[0]
    assert f"<td {cell}>" in grid  # the same cell style
    assert link("javascript:alert(1)", "open") == "open" and link(None, "<b>") == "&lt;b&gt;"


# ---------------------------------------------------------------------------------------------------- messages
def test_a_status_change_is_one_widget_message_even_when_it_swaps_the_buttons(
    handle: ConversationHandle, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    panel = ConversationPanel(handle)
    card_id = panel.children[0].model_id
    assert panel.shown_buttons == ("Stop agent", "Pause") or panel.shown_buttons == ("Pause",)
    sent.clear()

    handle.update(_conversation(status="PAUSED", title="Paused now"))  # status, title, Pause out, Resume in

    assert [model for model, _ in sent] == [card_id]  # the card's HTML, its facts and the buttons' rule together
    [(_, state)] = sent
    assert ">PAUSED</span>" in state["value"] and state["status"] == "PAUSED" and "children" not in state
    assert panel.shown_buttons == ("Resume",)
    hidden = state["value"].rsplit("<style>", 1)[1]
    assert ".oh-c-pause" in hidden and ".oh-c-resume" not in hidden
    sent.clear()
    handle.update(_conversation(status="PAUSED", title="Paused now"))  # a poll that brings nothing
    handle.set_note(None)
    assert sent == []
    handle.update(_conversation(status="RUNNING", title="Paused now"))
    assert [model for model, _ in sent] == [card_id]
    panel.close()


def test_stop_watching_hides_its_button_with_one_message_to_the_card(
    session: Session, handle: ConversationHandle, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    handle.set_watching(True)  # (as a poller would)
    panel = ConversationPanel(handle)
    sent.clear()
    handle.set_watching(False)
    assert [(model, sorted(state)) for model, state in sent] == [(panel.children[0].model_id, ["value"])]
    assert "Stop watching" not in panel.shown_buttons and panel.buttons["Stop watching"] in panel.children
    panel.close()


# ---------------------------------------------------------------------------------------------------- no comm left
def test_a_closed_panel_leaves_no_widget_of_it_open(handle: ConversationHandle) -> None:
    before = _open_widgets()
    panel = ConversationPanel(handle)
    made = _open_widgets() - before
    assert len(made) == 11  # the box, the card, four buttons; three layouts, two styles (it was 14 with three)
    handle.update(_conversation(status="PAUSED"))  # the buttons shown change; none is made or lost
    assert _open_widgets() - before == made

    panel.close()

    assert _open_widgets() - before == set()
    assert all(button.comm is None and button.layout.comm is None for button in panel.buttons.values())
    assert panel.children[0].comm is None and panel.children[0].style.comm is None and panel.layout.comm is None
    panel.close()  # twice is harmless


class _Outputs(list):  # type: ignore[type-arg]
    """The panels' outputs, and (``copies``) the saved copies displayed beside them."""

    copies: list[tuple[Any, Any]]


@pytest.fixture
def shown_in_kernel(session: Session, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """``display.show`` as in a kernel: each panel's output updates as (panel, [what it was updated with, ...]); the
    saved copies beside them in ``copies``."""
    from openhands_magics import display as display_module

    outputs = _Outputs()
    copies: list[tuple[Any, Any]] = []
    outputs.copies = copies

    def fake_display(obj: Any, **_: Any) -> Any:
        updates: list[Any] = []
        if isinstance(obj, ConversationPanel):  # (its saved copy, the output after it, is the test's below)
            outputs.append((obj, updates))
        else:
            copies.append((obj, updates))
        return SimpleNamespace(update=lambda new, **__: updates.append(new))

    monkeypatch.setattr(display_module, "_shell", lambda: SimpleNamespace(kernel=object()))
    monkeypatch.setattr("IPython.display.display", fake_display)
    monkeypatch.setattr(session, "watch", lambda h: h.set_watching(True) or True)
    monkeypatch.setattr(display_module, "_kept", type(display_module._kept)())
    monkeypatch.setattr(display_module, "_closer", [True])  # (no I/O thread to register with in these tests)
    return outputs


def test_a_panel_that_ends_for_good_is_replaced_by_its_card_and_leaves_no_comm(
    session: Session, handle: ConversationHandle, shown_in_kernel: list[tuple[Any, Any]]
) -> None:
    from openhands_magics import display as display_module

    before = _open_widgets()
    display_module.show(session, handle)
    assert len(_open_widgets() - before) == 11
    handle.update(_conversation(status="STOPPED"))  # its sandbox is gone: nothing to reply to
    handle.set_watching(False)  # (the poller lets it go)

    assert _open_widgets() - before == set()
    [(_, updates)] = shown_in_kernel
    assert updates and "text/html" in updates[-1] and ">STOPPED</span>" in updates[-1]["text/html"]
    # The saved copy beside the panel was its card while it lived, and empties at the end (one card, where it was).
    [(first, copy_updates)] = shown_in_kernel.copies  # type: ignore[attr-defined]
    assert ">RUNNING</span>" in first["text/html"] and "last seen" in first["text/html"]
    assert copy_updates[-1] == {"text/plain": ""}


def test_a_finished_panel_becomes_its_card_without_making_a_reply_box_first(
    session: Session,
    handle: ConversationHandle,
    shown_in_kernel: list[tuple[Any, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openhands_magics import display as display_module

    made: list[object] = []
    real = widgets.Text.__init__
    monkeypatch.setattr(widgets.Text, "__init__", lambda self, **kw: made.append(self) or real(self, **kw))
    before = _open_widgets()
    display_module.show(session, handle)
    handle.update(_conversation(status="FINISHED"))
    handle.set_watching(False)
    assert made == [] and _open_widgets() - before == set()  # (a reply box made only to be closed: none)
    [(panel, updates)] = shown_in_kernel
    assert panel.reply is None and ">FINISHED</span>" in updates[-1]["text/html"]


def test_with_reply_panels_the_latest_finished_panels_keep_a_reply_box_and_older_ones_become_their_card(
    session: Session, shown_in_kernel: list[tuple[Any, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from openhands_magics import display as display_module

    assert display_module.REPLY_PANELS == 0  # (off by default: a finished panel becomes its card, no comm left)
    monkeypatch.setattr(display_module, "REPLY_PANELS", 3)

    before = _open_widgets()
    endpoint = Endpoint.resolve(BASE, api_key=SECRET)
    handles = [
        session.record(_conversation(conversation_id=f"{i:032x}", start_task_id=f"{i + 100:032x}"), endpoint)
        for i in range(display_module.REPLY_PANELS + 2)
    ]
    for h in handles:
        display_module.show(session, h)
    for h in handles:
        h.update(dataclasses.replace(h.conversation, status="FINISHED"))
        h.set_watching(False)

    kept = handles[-display_module.REPLY_PANELS :]
    for panel, updates in shown_in_kernel:
        static = [u for u in updates if isinstance(u, dict) and "text/html" in u]
        assert bool(static) is (panel._handle not in kept)  # the older ones were replaced by their card
        assert (panel.comm is not None) is (panel._handle in kept)  # and every widget of theirs closed
    panel = shown_in_kernel[-1][0]
    assert panel.reply is not None and panel.shown_buttons == ("Send",)
    assert "oh-c-reply" not in panel.card.value.rsplit("<style>", 1)[-1]
    assert "Reply to the agent" in panel.reply.placeholder

    asyncio.run(display_module._finish_kept())  # what the I/O thread's stop does (%unload_ext)
    assert _open_widgets() - before == set()


def test_a_finished_grid_closes_its_widget_layout_and_style(monkeypatch: pytest.MonkeyPatch) -> None:
    from openhands_magics.batch import Batch

    updates: list[Any] = []
    monkeypatch.setattr("IPython.core.getipython.get_ipython", lambda: SimpleNamespace(kernel=object()))
    shown = SimpleNamespace(update=lambda obj, **_: updates.append(obj))
    monkeypatch.setattr("IPython.display.display", lambda *_, **__: shown)
    batch = SimpleNamespace(done=False, rows=[], summary="0/0", _views=[])
    before = _open_widgets()
    Batch._ipython_display_(batch)  # type: ignore[arg-type]
    assert len(_open_widgets() - before) == 3  # the grid, its layout, its style
    batch.done = True
    for follow in list(batch._views):
        follow()
    assert _open_widgets() - before == set() and batch._views == [] and len(updates) == 1


# ---------------------------------------------------------------------------------------------------- threads
def test_a_change_arriving_on_many_threads_at_once_is_drawn_once(
    handle: ConversationHandle, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    panel = ConversationPanel(handle)
    card_id = panel.children[0].model_id
    sent.clear()
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def deliver() -> None:
        try:
            start.wait(timeout=5)
            panel.render(handle)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    handle._conversation = _conversation(status="ERROR")  # (the snapshot changed; each thread tells the panel)
    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert failures == [] and not any(thread.is_alive() for thread in threads)
    assert [model for model, _ in sent] == [card_id]  # one redraw, not eight
    assert panel.status == "ERROR"
    panel.close()


def test_a_panel_closed_on_one_thread_while_another_redraws_sends_nothing_after(
    handle: ConversationHandle, sent: list[tuple[str, dict[str, Any]]]
) -> None:
    panel = ConversationPanel(handle)
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        statuses = ["RUNNING", "PAUSED"]
        number = 0
        while not stop.is_set():
            number += 1
            try:
                handle.update(_conversation(status=statuses[number % 2], title=f"t{number}"))
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                return

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(200):  # let it draw a while
            if len(sent) > 20:
                break
            threading.Event().wait(0.005)
        panel.close()
        after = len(sent)
        threading.Event().wait(0.05)
    finally:
        stop.set()
        worker.join(timeout=10)
    assert failures == [] and after > 0
    assert len(sent) == after  # nothing after the close
    assert panel.comm is None and all(button.comm is None for button in panel.buttons.values())
