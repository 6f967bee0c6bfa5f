"""The widget panel and the text views: content, escaping, widget state, closing."""

from __future__ import annotations

import json

import pytest

from openhands_magics import OpenHandsClient
from openhands_magics.handle import ConversationHandle
from openhands_magics.models import Conversation
from openhands_magics.panel import ConversationPanel
from openhands_magics.testing import LocalOpenHandsServer
from openhands_magics.views import format_elapsed, html_card, text_summary

from .conftest import SECRET

EVIL_TITLE = '<img src=x onerror="alert(1)"> & </b>'


@pytest.fixture
def handle(client: OpenHandsClient) -> ConversationHandle:
    return ConversationHandle(client.start_conversation("panel"), client, record=False)


def _all_widget_state(panel: ConversationPanel) -> str:
    return json.dumps([panel.get_state(), *(child.get_state() for child in panel.children)], default=str)


def test_panel_shows_link_badge_and_follows_the_handle(handle: ConversationHandle) -> None:
    panel = ConversationPanel(handle)
    assert panel.status == "STARTING" and panel.conversation_id == handle.id
    card = panel.children[0].value
    assert f'<a href="{handle.url}" target="_blank" rel="noopener noreferrer">' in card
    assert ">STARTING</span>" in card

    handle.update(Conversation.from_json({**_payload(handle), "status": "RUNNING", "title": "Speed up load.py"}))
    assert panel.status == "RUNNING"
    assert "Speed up load.py" in panel.children[0].value and ">RUNNING</span>" in panel.children[0].value


def test_server_text_is_escaped_in_every_html_output(handle: ConversationHandle) -> None:
    handle.update(Conversation.from_json({**_payload(handle), "status": "<b>RUN</b>", "title": EVIL_TITLE, "selected_repository": "o/<r>"}))
    panel = ConversationPanel(handle)
    for markup in (panel.children[0].value, html_card(handle), panel._repr_mimebundle_()["text/html"]):
        assert "<img" not in markup and "<b>RUN" not in markup and "o/<r>" not in markup
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &lt;/b&gt;" in markup


def test_widget_state_holds_no_key_even_after_updates(handle: ConversationHandle) -> None:
    panel = ConversationPanel(handle, on_stop=lambda: None)
    handle.set_note("retrying in 4 s… (HTTP 503)")
    state = _all_widget_state(panel)
    assert SECRET not in state
    assert handle.id in state and "retrying in 4 s" in state


def test_mimebundle_has_text_fallbacks_for_nbconvert_and_papermill(handle: ConversationHandle) -> None:
    bundle = ConversationPanel(handle)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == text_summary(handle)
    assert handle.url in bundle["text/plain"] and "STARTING" in bundle["text/plain"]
    assert handle.url in bundle["text/html"]


def test_stop_button_and_close_stop_the_watch_once(handle: ConversationHandle) -> None:
    stops: list[int] = []
    panel = ConversationPanel(handle, on_stop=lambda: stops.append(1))
    button = panel.children[1]
    assert button.layout.display != "none"
    button.click()
    assert stops == [1] and button.layout.display == "none"
    panel.close()
    assert stops == [1]  # already stopped: not called twice
    handle.set_note("after close")  # a closed panel no longer listens, and does not raise
    assert panel.comm is None


def test_closing_the_panel_stops_the_watch(handle: ConversationHandle) -> None:
    stops: list[int] = []
    ConversationPanel(handle, on_stop=lambda: stops.append(1)).close()
    assert stops == [1]


def test_final_status_hides_the_stop_button(handle: ConversationHandle) -> None:
    panel = ConversationPanel(handle, on_stop=lambda: None)
    handle.update(Conversation.from_json({**_payload(handle), "status": "STOPPED"}))
    assert panel.children[1].layout.display == "none"


def test_text_summary_and_elapsed(server: LocalOpenHandsServer, handle: ConversationHandle) -> None:
    server.set_status(handle.id, "RUNNING")
    handle.refresh()
    line = text_summary(handle)
    assert line.startswith(f"OpenHands conversation {handle.id} RUNNING 'panel' (")
    assert line.endswith(handle.url)
    assert [format_elapsed(s) for s in (0, 59, 61, 3600 + 120)] == ["0s", "59s", "1m 01s", "1h 02m"]


def _payload(handle: ConversationHandle) -> dict[str, object]:
    return {"conversation_id": handle.id, "status": handle.status, "created_at": "2026-01-01T00:00:00Z"}
