"""What the agent did, on the card and in the text line: its answer (escaped, trimmed, the rest folded), PR links,
changed files, cost, what could not be read; a final card that looks final; the panel's Pause and Resume buttons."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import pytest

from openhands_magics.display import static_card
from openhands_magics.handle import ConversationHandle
from openhands_magics.models import Change, Conversation, Cost, Outcome, PullRequest
from openhands_magics.panel import ConversationPanel
from openhands_magics.saved import _LINE
from openhands_magics.session import Endpoint, Session
from openhands_magics.views import BADGE_COLORS, Card, html_card, pr_links, status_change_line, text_summary

from .conftest import SECRET

BASE = "https://openhands.example"
TASK, CONV = "1" * 32, "2" * 32
HOSTILE_ANSWER = 'Done <script>alert("x")</script> & "quoted"\x1b[31m red\x00\u202e'


@pytest.fixture
def session() -> Session:
    return Session()


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
def handle(session: Session) -> ConversationHandle:
    return session.record(_conversation(), Endpoint.resolve(BASE, api_key=SECRET))


def _finish(handle: ConversationHandle, outcome: Outcome | None = None, **fields: object) -> None:
    handle.update(_conversation(status="FINISHED", **fields))
    if outcome is not None:
        handle.set_outcome(outcome)


def _results(markup: str) -> str:
    """The results block of a card (everything after the details line)."""
    start = markup.find('<div class="openhands-results"')
    return markup[start:] if start >= 0 else ""


# ---------------------------------------------------------------------------------------------- the answer
def test_the_answer_is_escaped_in_the_card_and_neutralised_in_the_text(handle: ConversationHandle) -> None:
    _finish(handle, Outcome(answer=HOSTILE_ANSWER, changes=()))
    panel = ConversationPanel(handle)
    for markup in (html_card(handle), panel.children[0].value, static_card(handle, saved_for=panel.scope)["text/html"]):
        results = _results(markup)
        assert "<script>" not in results and "\x1b" not in results and "\x00" not in results and "\u202e" not in results
        assert "Done &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quoted&quot;" in results
    text = text_summary(handle)
    first, second = text.split("\n")
    assert second.startswith("answer: Done <script>") and "\x1b" not in second and "\x00" not in second
    assert "\u202e" not in second and "\N{REPLACEMENT CHARACTER}[31m" in second
    assert static_card(handle)["text/plain"] == text


def test_a_short_answer_is_shown_whole_and_a_long_one_folds_the_rest_under_show_more(
    handle: ConversationHandle,
) -> None:
    _finish(handle, Outcome(answer="All tests pass.\nNothing else to do."))
    card = html_card(handle)
    assert "<p>All tests pass.\nNothing else to do.</p>\n</div>" in card
    assert "<details>" not in card and "show more" not in card

    long_answer = "\n".join(f"line {i}: " + "word " * 10 for i in range(12)) + "\nTHE END"  # one long paragraph
    handle.set_outcome(Outcome(answer=long_answer))
    card = html_card(handle)
    visible = re.search(r'<div class="openhands-answer" style="[^"]*">(.*?)<details>', card, re.S)
    assert visible is not None
    assert visible.group(1).count("\n") == 6 and visible.group(1).endswith("</p>\n")  # six lines, one paragraph
    assert "THE END" not in visible.group(1) and "line 6:" not in visible.group(1)
    folded = re.search(r"<details><summary[^>]*>(.*?)</summary>(.*?)</details>", card, re.S)
    assert folded is not None and "THE END" in folded.group(2) and folded.group(2).count("line 11:") == 1
    assert '<span class="openhands-more">show more (7 more lines)</span>' in folded.group(1)
    assert '<span class="openhands-less">show less</span>' in folded.group(1)  # what the switch reads once open
    assert "details[open] .openhands-more{display:none}" in card.replace(",.openhands-answer ", " ")
    assert "line 5:" not in folded.group(2)  # the rest only: opened, the card reads as one text, nothing twice
    assert "<script" not in card  # the fold needs no script

    one_long_line = "x" * 390 + " " + "y" * 100
    handle.set_outcome(Outcome(answer=one_long_line))
    card = html_card(handle)
    visible = re.search(r'<div class="openhands-answer" style="[^"]*">(.*?)<details>', card, re.S)
    assert visible is not None and visible.group(1) == "<p>" + "x" * 390 + "</p>\n"  # cut at the space before 400
    assert "<p>" + "y" * 100 + "</p>\n</div></details>" in card  # and the rest goes on from there


def test_an_answer_in_markdown_folds_between_blocks_never_inside_a_list_or_code(handle: ConversationHandle) -> None:
    answer = "## Done\n\nI cleaned the loader:\n\n- one\n- two\n- three\n\n```python\nx = 1\ny = 2\n```\n\nThat is all."
    _finish(handle, Outcome(answer=answer))
    card = html_card(handle)
    visible = re.search(r'<div class="openhands-answer" style="[^"]*">(.*?)<details>', card, re.S)
    assert visible is not None and "<h2>Done</h2>" in visible.group(1) and "<li>" not in visible.group(1)
    fold = card.split("<details>")[1]
    assert fold.count("<li>") == 3 and "<pre><code" in fold  # the list and the code block whole, in the fold
    assert "##" not in card and "```" not in card


def test_the_text_summary_keeps_its_first_line_and_adds_the_answer_on_a_second(handle: ConversationHandle) -> None:
    _finish(handle)
    before = text_summary(handle)
    assert "\n" not in before
    handle.set_outcome(Outcome(answer="First line\r\nsecond line\n\n" + "z" * 400, changes=()))
    first, second, *rest = text_summary(handle).split("\n")
    assert rest == [] and first == before
    assert second.startswith("answer: First line ⏎ second line ⏎ zzz") and second.endswith("…")
    assert len(second) == len("answer: ") + 200
    match = _LINE.search(first)  # saved.py still reads both ids from the first line
    assert match and match.group("id") == CONV and match.group("task") == TASK
    assert "\n" not in status_change_line(handle)  # --wait prints the answer itself


# ---------------------------------------------------------------------------------------------- PRs, files, cost
def test_pull_requests_link_to_github_and_only_web_urls_become_links(session: Session) -> None:
    endpoint = Endpoint.resolve(BASE, api_key=SECRET)
    github = session.record(_conversation(selected_repository="octo/hello", pr_numbers=(12, 13)), endpoint)
    card = html_card(github)
    assert (
        (
            '<a href="https://github.com/octo/hello/pull/12" title="https://github.com/octo/hello/pull/12" '
            'target="_blank"' in card
        )
        and ">PR #12</a>" in card
        and ">PR #13</a>" in card
    )
    line = text_summary(github)
    assert " · PR https://github.com/octo/hello/pull/12 · PR https://github.com/octo/hello/pull/13 · start task" in line

    self_hosted = session.record(
        _conversation(
            conversation_id="3" * 32,
            start_task_id="4" * 32,
            selected_repository="me/x",
            git_provider="forgejo",
            pr_numbers=(7,),
        ),
        endpoint,
    )
    card = _results(html_card(self_hosted))
    assert "PR #7" in card and "<a" not in card
    assert " · PR #7 · start task" in text_summary(self_hosted)

    hostile = session.record(
        _conversation(
            conversation_id="5" * 32, start_task_id="6" * 32, selected_repository='o/"><b>x', pr_numbers=(1,)
        ),
        endpoint,
    )
    card = _results(html_card(hostile))
    assert "<b>x" not in card and 'href="https://github.com/o/&quot;&gt;&lt;b&gt;x/pull/1"' in card

    assert pr_links([PullRequest(5, "o/r", "javascript:alert(1)"), PullRequest(6, "o/r", "HTTPS://git.example/6")]) == (
        'PR #5, <a href="HTTPS://git.example/6" title="HTTPS://git.example/6" target="_blank" '
        'rel="noopener noreferrer" '
        'style="color:var(--jp-content-link-color,#1a73e8);text-decoration:underline">PR #6</a>'
    )


def test_changed_files_show_eight_paths_with_their_letter_then_a_count(handle: ConversationHandle) -> None:
    statuses = ["ADDED", "UPDATED", "DELETED", "MOVED"]
    changes = tuple(Change(statuses[i % 4], f"src/file_{i}.py") for i in range(11))
    _finish(handle, Outcome(answer="ok", changes=changes))
    results = _results(html_card(handle))
    assert "11 files changed" in results
    assert [m for m in re.findall(r"<code>([ADMR])\xa0src/file_(\d+)\.py</code>", results)] == [
        ("A", "0"),
        ("M", "1"),
        ("D", "2"),
        ("R", "3"),
        ("A", "4"),
        ("M", "5"),
        ("D", "6"),
        ("R", "7"),
    ]
    assert "file_8.py" not in results and "and 3 more" in results
    assert " · 11 files changed" in text_summary(handle).split("\n")[0]

    handle.set_outcome(Outcome(answer="ok", changes=(Change("ADDED", "<img src=x>\n.py"),)))
    results = _results(html_card(handle))
    assert "1 file changed" in results and "and " not in results and "<img" not in results
    assert "<code>A\xa0&lt;img src=x&gt;\N{REPLACEMENT CHARACTER}.py</code>" in results


def test_cost_is_shown_once_final_and_only_when_it_says_something(session: Session) -> None:
    endpoint = Endpoint.resolve(BASE, api_key=SECRET)
    running = session.record(_conversation(cost=Cost(0.5, 1000, 234)), endpoint)
    assert _results(html_card(running)) == "" and "$" not in text_summary(running)  # grows every poll: not yet

    running.update(_conversation(status="FINISHED", cost=Cost(0.5, 1000, 234)))
    assert "$0.50 · 1,234 tokens" in _results(html_card(running))
    assert text_summary(running).endswith("· $0.50 · 1,234 tokens · start task " + TASK)

    for nothing in (Cost(0.0, 0, 0), Cost(None, None, None), None):
        done = session.record(
            _conversation(conversation_id="7" * 32, start_task_id="8" * 32, status="FINISHED", cost=nothing), endpoint
        )
        assert "$" not in html_card(done) and "tokens" not in html_card(done) and "$" not in text_summary(done)


def test_problems_show_as_one_muted_line(handle: ConversationHandle) -> None:
    problems = ("the events could not be read <HTTP 500>\n" + "p" * 300, "second problem")
    _finish(handle, Outcome(answer=None, changes=None, problems=problems))
    results = _results(html_card(handle))
    problem = re.search(r"details unavailable: ([^<]*)</div>", results)
    assert problem is not None
    assert problem.group(1).startswith("the events could not be read &lt;HTTP 500&gt; ⏎ ppp")
    assert len(problem.group(1).replace("&lt;", "<").replace("&gt;", ">")) == 160
    assert "second problem" not in results and "files changed" not in results and "openhands-answer" not in results


# ------------------------------------------------------------------------------------------ a final card looks final
def test_a_final_card_has_a_bar_in_its_status_colour_and_a_running_one_has_none(handle: ConversationHandle) -> None:
    bar = "border-left:4px solid"
    assert bar not in html_card(handle) and bar not in html_card(handle, live=True)
    _finish(handle)
    assert f"{bar} {BADGE_COLORS['FINISHED']};padding-left:8px" in html_card(handle)
    handle.update(_conversation(status="ERROR", phase="no access"))
    assert f"{bar} {BADGE_COLORS['ERROR']}" in html_card(handle, live=True)
    handle.update(_conversation(status="DELETED"))
    assert f"{bar} #4a5568" in html_card(handle) and ">DELETED</span>" in html_card(handle)


def test_the_outcome_arriving_redraws_a_live_panel_exactly_once(handle: ConversationHandle) -> None:
    handle.update(_conversation(status="FINISHED", selected_repository="octo/hello"))
    panel = ConversationPanel(handle)
    sent: list[str] = []
    panel.children[0].observe(lambda change: sent.append(change["new"]), "value")
    before = Card.of(handle)

    handle.set_outcome(Outcome(answer="Opened the PR.", changes=(Change("UPDATED", "a.py"),)))

    assert Card.of(handle) != before
    assert len(sent) == 1 and "Opened the PR." in sent[0] and "<code>M\xa0a.py</code>" in sent[0]
    handle.update(handle.conversation)  # a poll that brings nothing new
    handle.set_note(None)
    assert len(sent) == 1
    handle.update(_conversation(status="FINISHED", selected_repository="octo/hello", pr_numbers=(3,)))
    assert len(sent) == 2 and "/pull/3" in sent[1]


# ---------------------------------------------------------------------------------------------- Pause and Resume
def _buttons(panel: ConversationPanel) -> dict[str, Any]:
    return panel.buttons


def _shown(panel: ConversationPanel) -> set[str]:
    return set(panel.shown_buttons)


#: "Stop agent" shows while the agent may work.
AGENT = {"Stop agent"}


def test_the_buttons_follow_the_status_and_the_box_changes_only_when_a_control_is_made(session: Session) -> None:
    endpoint = Endpoint.resolve(BASE, api_key=SECRET)
    starting = session.record(Conversation(None, status="STARTING", start_task_id=TASK), endpoint)
    panel = ConversationPanel(starting)
    assert set(_buttons(panel)) == {"Stop agent", "Stop watching", "Pause", "Resume"}
    assert _shown(panel) == set()  # not watched here (no loop), no id yet: nothing to pause
    changes: list[object] = []
    panel.observe(lambda change: changes.append(change["new"]), "children")

    starting.update(_conversation(status="RUNNING"))
    assert _shown(panel) == {"Pause"} | AGENT
    starting.update(_conversation(status="PAUSED"))
    assert _shown(panel) == {"Resume"}  # Pause out, Resume in: the card's style rule, not the box's children
    starting.update(_conversation(status="WAITING FOR CONFIRMATION"))
    assert _shown(panel) == {"Pause"} | AGENT
    assert changes == []
    starting.update(_conversation(status="FINISHED"))
    assert _shown(panel) == {"Send"} and len(changes) == 1  # the reply box, made when a turn first ended
    assert panel.reply is not None and panel.reply in panel.children

    panel.close()
    assert all(button.comm is None for button in _buttons(panel).values()) and panel.reply.comm is None
    assert all(button.layout.comm is None and button.style.comm is None for button in _buttons(panel).values())


def test_clicking_pause_and_resume_calls_the_handle(
    handle: ConversationHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(handle, "pause", lambda: calls.append("pause") or handle.update(_conversation(status="PAUSED")))
    monkeypatch.setattr(handle, "resume", lambda: calls.append("resume") or handle.update(_conversation()))
    panel = ConversationPanel(handle)
    buttons = _buttons(panel)

    buttons["Pause"].click()
    assert calls == ["pause"] and _shown(panel) == {"Resume"}
    buttons["Resume"].click()
    assert calls == ["pause", "resume"] and _shown(panel) == {"Pause"} | AGENT
    assert handle.note is None


def test_a_failing_pause_becomes_the_note_and_never_an_exception(
    handle: ConversationHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openhands_magics.errors import ConflictError

    def refuse() -> None:
        raise ConflictError("The sandbox cannot be paused now <409>: try again in a minute.", status_code=409)

    monkeypatch.setattr(handle, "pause", refuse)
    panel = ConversationPanel(handle)
    _buttons(panel)["Pause"].click()
    assert handle.note == "The sandbox cannot be paused now <409>: try again in a minute."
    card = panel.children[0].value
    assert "cannot be paused now &lt;409&gt;" in card and "<409>" not in card

    monkeypatch.setattr(handle, "resume", lambda: 1 / 0)
    handle.update(_conversation(status="PAUSED"))
    _buttons(panel)["Resume"].click()
    assert handle.note == "division by zero"


def test_the_panel_state_holds_no_key_with_results_and_buttons(session: Session, handle: ConversationHandle) -> None:
    async def scenario() -> None:
        assert session.watch(handle)
        panel = ConversationPanel(handle)
        assert _shown(panel) == {"Stop watching", "Pause"} | AGENT
        _finish(handle, Outcome(answer=HOSTILE_ANSWER, changes=(Change("ADDED", "new.py"),)), cost=Cost(0.01, 5, 5))
        state = json.dumps([panel.get_state(), *(child.get_state() for child in panel.children)], default=str)
        assert SECRET not in state and "<script>" not in state and "new.py" in state
        panel.close()
        session.close()

    asyncio.run(scenario())
