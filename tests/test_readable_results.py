"""Issue 17, what the agent did as people read it: the answer's Markdown rendered safely, and a diff with one
coloured, collapsible section per file that still prints, saves and compares as the unified diff it is."""

from __future__ import annotations

import dataclasses
import pickle
import re

import pytest

from openhands_magics.diffs import SHOWN_LINES, Diff, diff_html
from openhands_magics.handle import ConversationHandle
from openhands_magics.markdown import render_markdown
from openhands_magics.models import FileDiff
from openhands_magics.polling import PollSchedule
from openhands_magics.session import Endpoint, Session
from openhands_magics.testing import LocalOpenHandsServer
from openhands_magics.views import html_card, text_summary

from .conftest import SECRET, wait_until


def _diff(*files: FileDiff) -> Diff:
    return Diff.join(f.unified() for f in files)


CHANGED = FileDiff(
    "data/load.py", "import csv\nrows = []\nprint(rows)\n", "import pandas\nrows = []\nprint(rows)\n# done\n"
)
ADDED = FileDiff("tests/test_load.py", None, "def test():\n    pass\n")
DELETED = FileDiff("old.csv", "a,b\n", None)


# ---------------------------------------------------------------------------------------------------- the diff


def test_a_diff_is_still_the_unified_text_it_was_and_knows_its_files() -> None:
    diff = _diff(CHANGED, ADDED, DELETED)
    assert str(diff) == CHANGED.unified() + ADDED.unified() + DELETED.unified()
    assert isinstance(diff, str) and diff.startswith("--- a/data/load.py\n+++ b/data/load.py\n@@")
    assert [(f.path, f.status, f.added, f.removed) for f in diff.files] == [
        ("data/load.py", "modified", 2, 1),
        ("tests/test_load.py", "added", 2, 0),
        ("old.csv", "deleted", 0, 1),
    ]
    assert diff.summary() == "3 files changed, +4 −2"
    assert pickle.loads(pickle.dumps(diff)) == diff and type(pickle.loads(pickle.dumps(diff))) is Diff


def test_the_notebook_view_has_one_section_per_file_with_added_lines_green_and_removed_red() -> None:
    page = _diff(CHANGED, ADDED, DELETED)._repr_html_()
    assert page.count("<details") == 3 and page.count(" open ") == 3  # few files: open
    assert re.search(r"<b[^>]*>M</b> data/load\.py <span[^>]*>\+2</span> <span[^>]*>−1</span>", page)
    assert '<b title="added">A</b> tests/test_load.py' in page and '<b title="deleted">D</b> old.csv' in page
    added = re.search(r'<div style="background:rgba\(46,160,67[^"]*">\+import pandas</div>', page)
    removed = re.search(r'<div style="background:rgba\(248,81,73[^"]*">-import csv</div>', page)
    assert added and removed
    assert "max-height:24em;overflow:auto" in page  # a height limit, with scrolling
    assert "+++ b/data/load.py" not in page  # the summary line says it instead


def test_many_files_start_closed_and_a_diff_of_nothing_says_so() -> None:
    many = _diff(*(FileDiff(f"f{i}.py", "a\n", "b\n") for i in range(5)))
    assert many._repr_html_().count("<details ") == 5 and " open " not in many._repr_html_()
    assert Diff("").files == () and "no changes" in Diff("")._repr_html_() and repr(Diff("")) == "(no changes)"


def test_a_large_diff_is_capped_in_the_view_saying_what_was_cut_and_str_keeps_all_of_it() -> None:
    big = FileDiff("big.csv", "".join(f"{i}\n" for i in range(3000)), "".join(f"{i},x\n" for i in range(3000)))
    diff = _diff(big, ADDED)
    page = diff._repr_html_()
    assert page.count("<div style=") < SHOWN_LINES + 10
    assert "more lines of this file not shown" in page
    assert re.search(r"Showing the first 2,000 lines: [\d,]+ more and 1 more file not shown", page)
    assert str(diff).count("\n+") - str(diff).count("\n+++ ") == 3002 == diff.added  # every line is in the text


def test_server_text_in_a_diff_is_escaped_and_its_control_characters_written_out() -> None:
    hostile = FileDiff('x"><script>alert(1)</script>.py', "a\n", "<img src=x onerror=alert(1)>\x1b[2J\x07\n")
    diff = _diff(hostile)
    page = diff._repr_html_()
    assert "<script>" not in page and "<img" not in page and "\x1b" not in page and "\x07" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;\\x1b[2J\\x07" in page
    assert "\x1b" not in repr(diff) and "\\x1b[2J" in repr(diff)
    assert "\x1b" in str(diff)  # the text itself is the server's, unchanged


def test_a_removed_line_that_looks_like_a_header_does_not_split_a_file() -> None:
    tricky = FileDiff("notes.md", "-- a\nkeep\n", "++ b\nkeep\n")
    assert [f.path for f in _diff(tricky).files] == ["notes.md"]


def test_the_view_takes_the_servers_status_when_given() -> None:
    page = diff_html(_diff(CHANGED), statuses={"data/load.py": "renamed"})
    assert '<b title="renamed">R</b> data/load.py' in page


# ---------------------------------------------------------------------------------------------------- the answer


def test_an_answer_in_markdown_renders_headings_lists_code_and_tables() -> None:
    page = render_markdown("## Done\n\n- cleaned `load.py`\n- added a test\n\n| rows | kept |\n|---|---|\n| 10 | 9 |")
    assert "<h2>Done</h2>" in page and "<li>cleaned <code>load.py</code></li>" in page
    assert "<table>" in page and "<td>10</td>" in page
    assert "##" not in page and "`" not in page


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        "<iframe src=https://evil.example></iframe>",
        '<a href="javascript:alert(1)">x</a>',
    ],
)
def test_raw_html_in_an_answer_shows_as_text_never_as_markup(hostile: str) -> None:
    page = render_markdown(f"Look: {hostile}")
    assert "<script" not in page and "<img" not in page and "<iframe" not in page and '<a href="javascript' not in page
    assert "&lt;" in page


def test_links_open_in_a_new_tab_without_an_opener_and_only_safe_schemes_become_links() -> None:
    page = render_markdown("[PR](https://github.com/o/r/pull/1) [x](javascript:alert(1)) [y](data:text/html,hi)")
    assert '<a href="https://github.com/o/r/pull/1" target="_blank" rel="noopener noreferrer">PR</a>' in page
    assert page.count("<a ") == 1 and "javascript:" in page  # shown as the text it was, not as a link


def test_an_image_is_a_link_the_browser_does_not_fetch_when_the_card_draws() -> None:
    page = render_markdown("![plot](https://tracker.example/p.png)")
    assert "<img" not in page
    assert '<a href="https://tracker.example/p.png" target="_blank" rel="noopener noreferrer">[image: plot]</a>' in page


def test_control_characters_in_an_answer_are_written_out() -> None:
    page = render_markdown("done \x1b[31mred\x07")
    assert "\x1b" not in page and "\x07" not in page and "\\x1b[31mred\\x07" in page


def test_a_right_to_left_override_in_a_diff_or_an_answer_is_written_out_like_any_control_character() -> None:
    tricky = FileDiff("invoice\u202efdp.exe", "a\n", "b\u202ec\n")
    page, text = _diff(tricky)._repr_html_(), repr(_diff(tricky))
    assert "\u202e" not in page and "\u202e" not in text and "invoice\\u202efdp.exe" in page
    assert "\u202e" not in render_markdown("paid \u202eevil") and "\\u202e" in render_markdown("paid \u202eevil")
    assert render_markdown("one\r\ntwo") == render_markdown("one\ntwo")  # (a CRLF answer reads as its lines)


def _finished(server: LocalOpenHandsServer, card: bool) -> ConversationHandle:
    session = Session(PollSchedule(interval=0.1, max_interval=0.2))
    handle = session.start("Clean up the loader", endpoint=Endpoint.resolve(server.base_url, api_key=SECRET))
    handle.card_diff = card
    handle.watch()
    wait_until(lambda: handle.outcome is not None and not handle.watching, timeout=15)
    session.close()
    return handle


def test_a_final_card_of_its_own_expands_to_the_coloured_diff_of_its_files(server: LocalOpenHandsServer) -> None:
    server.timeline = dataclasses.replace(server.timeline, changes=(("UPDATED", "data/load.py"),))
    handle = _finished(server, card=True)

    card = html_card(handle)
    fold = re.search(r'<details class="openhands-files"><summary[^>]*>(.*?)</summary>(.*)</details>', card, re.S)
    assert fold is not None, card
    assert "1 file changed" in fold[1] and "+1" in fold[1] and "−1" in fold[1] and "show the diff" in fold[1]
    assert re.search(r"rgba\(46,160,67,0\.22\).*>\+new line<", fold[2]) and re.search(
        r"rgba\(248,81,73.*>-old line<", fold[2]
    )
    assert str(handle.outcome.diff) == str(handle.diff())  # (what conv.diff() gives, read once)
    assert "· 1 file changed (+1 −1) ·" in text_summary(handle)


def test_a_fan_outs_row_reads_no_diff_and_its_card_keeps_the_files_line(server: LocalOpenHandsServer) -> None:
    server.timeline = dataclasses.replace(server.timeline, changes=(("UPDATED", "data/load.py"),))
    handle = _finished(server, card=False)

    assert not [r for r in server.requests if r.path.endswith("/git/diff")]
    assert handle.outcome.diff is None and "openhands-files" not in html_card(handle)
    assert "1 file changed: <code>M\N{NO-BREAK SPACE}data/load.py</code>" in html_card(handle)
    assert "· 1 file changed ·" in text_summary(handle)
