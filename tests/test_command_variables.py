"""Issue 14: a command's id argument written the IPython way, ``{expr}`` or ``$name``, is that command (expanded
there and only there, from the notebook's namespace, never evaluated); a sentence stays a task, and a variable that
is missing or not an id is one line with nothing sent. In-process IPython, real HTTP to the local server."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics.arguments import parse_invocation, resolve_references
from openhands_magics.errors import ValidationError
from openhands_magics.handle import ConversationHandle
from openhands_magics.testing import LocalOpenHandsServer

from .conftest import finished as _finished, Output, sent_messages as _sent_messages

HEX = "0123456789abcdef0123456789abcdef"


def _starts(server: LocalOpenHandsServer) -> list[Any]:
    return [r for r in server.posts() if r.path == "/api/v1/app-conversations"]


# ---------------------------------------------------------------------------------------------------- the grammar
@pytest.mark.parametrize(
    ("line", "field", "token"),
    [
        ("pause {conv.id}", "target", "{conv.id}"),
        ("resume {ids[0]}", "target", "{ids[0]}"),
        ("delete $cid --yes", "target", "$cid"),
        ("delete --yes {rows['id']}", "target", "{rows['id']}"),
        ("pause $conv.id", "target", "$conv.id"),
        ("--continue {conv.id} now add tests", "continue_id", "{conv.id}"),
        ("--continue=$cid go on", "continue_id", "$cid"),
        ("--watch $cid", "watch", "$cid"),
        ("--watch {conv}", "watch", "{conv}"),
    ],
)
def test_an_id_argument_written_as_a_variable_is_marked_for_the_magic_to_resolve(
    line: str, field: str, token: str
) -> None:
    invocation = parse_invocation(line)

    assert invocation.references == {field: token}
    assert getattr(invocation, field) == token
    assert invocation.message in ("", "now add tests", "go on")


@pytest.mark.parametrize(
    "line",
    [
        "pause the nightly job",
        "cost $5 per run",
        "pause $5",
        "pause {a}{b}",
        "pause {{conv.id}}",
        "pause {conv.id()}",
        "pause {conv.id + 1}",
        "delete {x} and the rest",
        "make {x} faster for $user",
    ],
)
def test_a_sentence_with_braces_or_dollars_stays_a_task_verbatim(line: str) -> None:
    invocation = parse_invocation(line)

    assert (invocation.command, invocation.references, invocation.message) == (None, {}, line)


def test_a_follow_up_text_that_starts_with_a_dollar_amount_stays_text() -> None:
    invocation = parse_invocation("--continue $5 is the budget")
    assert (invocation.continue_id, invocation.references, invocation.message) == (None, {}, "$5 is the budget")


def test_two_ids_are_refused_instead_of_becoming_a_task() -> None:
    with pytest.raises(ValidationError, match="takes one conversation id, got 2"):
        parse_invocation(f"pause {{a}} {HEX}")


class _Row:
    def __init__(self, value: Any) -> None:
        self.conversation = value


@pytest.mark.parametrize(
    ("token", "namespace"),
    [
        ("$cid", {"cid": f" {HEX}\n"}),
        ("{ids[-1]}", {"ids": ["x", HEX]}),
        ("{cfg['run']['id']}", {"cfg": {"run": {"id": HEX}}}),
        ("{row.conversation}", {"row": _Row(HEX)}),
        ("$link", {"link": f"https://app.all-hands.dev/conversations/{HEX}"}),
    ],
)
def test_a_reference_resolves_to_the_id_it_names(token: str, namespace: dict[str, Any]) -> None:
    invocation = resolve_references(parse_invocation(f"pause {token}"), namespace)

    assert invocation.target == namespace.get("link", HEX) and invocation.references == {}


@pytest.mark.parametrize(
    ("token", "namespace", "match"),
    [
        (
            "{conv.id}",
            {},
            r"\{conv.id\}: no variable 'conv' in the notebook \(to send the line as a task, write "
            r"`%openhands -- pause \{conv.id\}`\); nothing was sent\.",
        ),
        ("$cid", {"cid": "the nightly job"}, r"\$cid is not a conversation id \(text of 15 characters\)"),
        ("$cid", {"cid": 42}, r"not a conversation id \(a int\)"),
        ("{ids[3]}", {"ids": [HEX]}, r"\{ids\[3\]\}: IndexError: list index out of range; nothing was sent"),
        ("{conv.idd}", {"conv": _Row(HEX)}, r"\{conv.idd\}: AttributeError"),
    ],
)
def test_a_reference_that_names_no_id_is_one_line(token: str, namespace: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        resolve_references(parse_invocation(f"pause {token}"), namespace)


# ---------------------------------------------------------------------------------------------------- the magic
def test_pause_resume_and_delete_take_a_variable_and_start_nothing(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    conv = _finished(ip)
    ip.user_ns.update(conv=conv, cid=conv.id, ids=[conv.id])
    output.read()

    ip.run_line_magic("openhands", "pause {conv.id}")
    assert quick.state_of(conv.id)["sandbox_status"] == "PAUSED"
    assert f"paused {conv.id}" in output.read()[0]
    ip.run_line_magic("openhands", "resume {ids[0]}")
    assert quick.state_of(conv.id)["sandbox_status"] == "RUNNING"
    assert f"resumed {conv.id}" in output.read()[0]
    ip.run_line_magic("openhands", "pause $conv")  # the handle itself stands for its id
    assert quick.state_of(conv.id)["sandbox_status"] == "PAUSED"
    output.read()
    ip.run_line_magic("openhands", "delete $cid --yes")
    assert conv.id not in quick.conversation_ids() and conv.status == "DELETED"
    assert f"deleted {conv.id}" in output.read()[0]

    assert len(_starts(quick)) == 1  # only the first task: no line became a billed task


def test_continue_and_watch_take_a_variable(ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output) -> None:
    older = _finished(ip, "first")
    _finished(ip, "second")
    ip.user_ns.update(conv=older, cid=older.id)
    output.read()

    again = ip.run_line_magic("openhands", "--continue {conv.id} --wait and docs")
    assert again is older and _sent_messages(quick) == ["and docs"]
    ip.run_cell_magic("openhands", "--continue $cid --wait", "and tests\n")
    assert _sent_messages(quick) == ["and docs", "and tests"]
    watched = ip.run_line_magic("openhands", "--watch $cid --no-panel")
    assert isinstance(watched, ConversationHandle) and watched.id == older.id
    output.read()
    assert len(_starts(quick)) == 2


@pytest.mark.parametrize(
    "line", ["pause {conv.id}", "delete $cid --yes", "--continue {conv.id} go on", "--watch $cid", "resume {ids[0]}"]
)
def test_a_missing_variable_is_one_line_and_nothing_is_sent(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output, line: str
) -> None:
    for name in ("conv", "cid", "ids"):
        ip.user_ns.pop(name, None)

    assert ip.run_line_magic("openhands", line) is None

    assert "no variable" in output.one_error_line()
    assert quick.requests == []


def test_a_variable_that_is_not_an_id_is_one_line_and_nothing_is_sent(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["cid"] = "../../../api/settings"

    assert ip.run_line_magic("openhands", "delete $cid --yes") is None

    assert "$cid is not a conversation id" in output.one_error_line()
    assert quick.requests == []


def test_a_task_with_dollars_and_braces_is_still_sent_verbatim(
    ip: InteractiveShell, quick: LocalOpenHandsServer, output: Output
) -> None:
    ip.user_ns["conv"] = "not used"
    ip.run_line_magic("openhands", "pause the nightly job, it costs $5 per {conv} run")

    [start] = _starts(quick)
    assert start.body["initial_message"]["content"][0]["text"] == "pause the nightly job, it costs $5 per {conv} run"
    output.read()
