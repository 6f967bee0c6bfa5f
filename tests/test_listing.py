"""``ConversationList``: a real list of handles that shows itself as an HTML table, a text table or a DataFrame,
with the server's text escaped (HTML) or neutralised (text)."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time

import pytest

from openhands_magics.client import OpenHandsClient
from openhands_magics.errors import ConfigurationError
from openhands_magics.handle import ConversationHandle
from openhands_magics.listing import ConversationList
from openhands_magics.models import Conversation, Cost
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import SECRET

BASE = "https://openhands.example"
UPDATED = dt.datetime(2025, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
CREATED = dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
HOSTILE_TITLE = '\x1b[2J<img src=x onerror="alert(1)">\nforged line, long enough to be cut'


def _local(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z")


@pytest.fixture
def handles() -> list[ConversationHandle]:
    session, endpoint = Session(), Endpoint.resolve(BASE, api_key=SECRET)
    conversations = [
        Conversation(
            "a" * 32,
            status="FINISHED",
            title="Fix the flaky test",
            selected_repository="octo/hello",
            pr_numbers=(12,),
            cost=Cost(0.1234, 1000, 234),
            created_at=CREATED,
            updated_at=UPDATED,
        ),
        Conversation(
            "b" * 32,
            status="RUNNING",
            title=HOSTILE_TITLE,
            selected_repository="o/<r>",
            created_at=CREATED,
            cost=Cost(0.0, 0, 0),
        ),
        Conversation(
            "c" * 32, status="PAUSED", title=None, git_provider="forgejo", selected_repository="me/x", pr_numbers=(7, 8)
        ),
    ]
    return [session.record(c, endpoint) for c in conversations]


def test_it_stays_a_list_of_handles(handles: list[ConversationHandle]) -> None:
    listed = ConversationList(handles, source="openhands.example · 3 shown of 3 read")
    assert isinstance(listed, list) and len(listed) == 3
    assert listed[0] is handles[0] and list(listed) == handles and listed[-1].id == "c" * 32
    assert [h.status for h in listed] == ["FINISHED", "RUNNING", "PAUSED"]
    assert listed.source == "openhands.example · 3 shown of 3 read"
    assert ConversationList([]) == [] and ConversationList().source == ""


def test_the_html_table_shows_each_column_escaped(handles: list[ConversationHandle]) -> None:
    markup = ConversationList(handles, source="openhands.example · 3 shown of 40 read")._repr_html_()
    assert "<img" not in markup and "o/<r>" not in markup
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in markup and "o/&lt;r&gt;" in markup
    assert re.search(r"<caption[^>]*>3 conversations · openhands\.example · 3 shown of 40 read</caption>", markup)
    rows = re.findall(r"<tr>(.*?)</tr>", markup.split("<tbody>")[1], re.S)
    assert len(rows) == 3
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    assert all(len(row) == 7 for row in cells)
    first = cells[0]
    assert ">FINISHED</span>" in first[0] and "background:#2f855a" in first[0]
    # The title is the link (the URL on hover); in a narrow output repository, PR and cost fold under it.
    url = f"{BASE}/conversations/{'a' * 32}"
    assert (
        first[1].startswith(f'<a href="{url}" title="{url}" target="_blank"') and ">Fix the flaky test</a>" in first[1]
    )
    assert '<div class="oh-fold"' in first[1] and "octo/hello" in first[1].split("oh-fold")[1]
    assert first[2] == "octo/hello"
    assert 'href="https://github.com/octo/hello/pull/12"' in first[3] and 'rel="noopener noreferrer"' in first[3]
    assert first[4] == "$0.12 · 1,234 tokens"
    # Created, in local time with its zone, the UTC time on hover.
    assert first[5] == f'<span title="2025-01-02 03:04:00 UTC">{_local(CREATED)}</span>'
    assert f'title="{"a" * 32}"' in first[6] and f">{'a' * 32}</code>" in first[6] and "max-width:9ch" in first[6]
    second, third = cells[1], cells[2]
    assert second[4] == ""  # a zero cost says nothing
    assert "open in OpenHands" in third[1] and third[3] == "#7, #8" and third[5] == ""  # no web page: numbers as text
    assert "@container (max-width:640px)" in markup and markup.count('class="oh-secondary"') == 3 * 4


def test_the_text_table_has_fixed_columns_and_no_control_characters(handles: list[ConversationHandle]) -> None:
    text = repr(ConversationList(handles, source="openhands.example · 3 shown"))
    lines = text.split("\n")
    assert len(lines) == 5 and lines[0] == "3 conversations · openhands.example · 3 shown"
    header = lines[1]
    assert header.split() == ["status", "title", "repository", "PR", "cost", "created", "id"]
    assert "\x1b" not in text and "\N{REPLACEMENT CHARACTER}[2J<img" in lines[3]
    assert '">\N{REPLACEMENT CHARACTER}forg' in lines[3]  # the title's line break did not make a line
    starts = [header.index(name) for name in ("title", "repository", "PR", "cost", "created", "id")]
    for line, ident in zip(lines[2:], ("a", "b", "c")):
        assert line.endswith(ident * 32) and line.index(ident * 32) == starts[-1]  # aligned
    assert lines[2][starts[0] :].startswith("Fix the flaky test")
    assert lines[2][starts[2] :].startswith("#12") and "$0.12 · 1,234 tokens" in lines[2]
    assert lines[4][starts[2] :].startswith("#7 #8") and lines[4][starts[0] :].startswith("untitled")
    title_cell = lines[3][starts[0] : starts[1]].rstrip()
    assert len(title_cell) == 40 and title_cell.endswith("…")


def test_an_empty_list_says_so(handles: list[ConversationHandle]) -> None:
    empty = ConversationList([], source="openhands.example · 0 shown of 0 read")
    assert repr(empty) == "No conversations."
    assert "No conversations." in empty._repr_html_() and "<table" not in empty._repr_html_()


def test_ipython_pretty_prints_the_text_table(handles: list[ConversationHandle]) -> None:
    from IPython.lib.pretty import pretty

    listed = ConversationList(handles)
    assert pretty(listed) == repr(listed) and pretty(listed).startswith("3 conversations\nstatus")


def test_to_dataframe(handles: list[ConversationHandle]) -> None:
    pytest.importorskip("pandas")
    frame = ConversationList(handles).to_dataframe()
    assert list(frame.columns) == [
        "id",
        "task_id",
        "status",
        "title",
        "repository",
        "pull_requests",
        "cost_usd",
        "tokens",
        "created_at",
        "updated_at",
        "url",
    ]
    assert list(frame["id"]) == ["a" * 32, "b" * 32, "c" * 32]
    assert frame["pull_requests"].tolist() == [["https://github.com/octo/hello/pull/12"], [], ["#7", "#8"]]
    assert frame.loc[0, "cost_usd"] == pytest.approx(0.1234) and frame.loc[0, "tokens"] == 1234
    assert frame.loc[0, "updated_at"] == UPDATED and frame.loc[0, "url"] == f"{BASE}/conversations/{'a' * 32}"
    assert frame.loc[1, "title"] == HOSTILE_TITLE  # data, as the server sent it
    assert len(ConversationList([]).to_dataframe().columns) == 11


def test_to_dataframe_without_pandas_says_how_to_get_it(
    handles: list[ConversationHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ConfigurationError, match=r"to_dataframe\(\) needs pandas: pip install pandas"):
        ConversationList(handles).to_dataframe()


def test_session_list_returns_one_from_a_local_server(server: LocalOpenHandsServer) -> None:
    with OpenHandsClient(SECRET, base_url=server.base_url, timeout=2.0) as client:
        for task in ("first task", "second task"):
            client.start_conversation(task, repository="octo/demo")
    time.sleep(0.5)  # the start tasks become conversations
    listed = Session().list(endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    assert isinstance(listed, ConversationList) and len(listed) == 2
    assert all(isinstance(h, ConversationHandle) and h.id for h in listed)
    assert server.base_url in listed.source and "<table" in listed._repr_html_()
    assert all(h.id in repr(listed) for h in listed)


def test_every_list_is_newest_first_and_a_placeholder_title_is_no_title(handles: list[ConversationHandle]) -> None:
    older, newer = handles[1], handles[2]  # (created: 2025-01-02; unknown, last)
    session, endpoint = Session(), Endpoint.resolve(BASE, api_key=SECRET)
    newest = session.record(
        Conversation("d" * 32, status="RUNNING", title="Conversation ddddd", created_at=UPDATED), endpoint
    )
    newest.task = "Count the rows of data.csv\nand say how many"
    listed = ConversationList.newest_first([older, newer, newest, handles[0]], source="here")
    assert [h.id for h in listed] == ["d" * 32, "b" * 32, "a" * 32, "c" * 32] and listed.source == "here"
    markup = listed._repr_html_()
    assert "Conversation ddddd" not in markup and ">Count the rows of data.csv</a>" in markup
    assert "Count the rows of data.csv" in repr(listed) and "Conversation ddddd" not in repr(listed)
