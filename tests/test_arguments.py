"""parse_invocation: options off the front of the magic line, the message verbatim."""

from __future__ import annotations

import pytest

from openhands_magics.arguments import USAGE, Invocation, parse_invocation
from openhands_magics.errors import ValidationError


@pytest.mark.parametrize(
    "message",
    [
        'Fix "naïve" {parsing} of $HOME and ${PATH}',
        "keep  double   spaces\tinside",
        r"C:\Users\me\new \n not a newline",
        "it's 'single' quoted",
        "日本語のメッセージ — ✓ émoji 🚀",
        "ends with spaces   ",
    ],
)
def test_message_after_options_is_verbatim(message: str) -> None:
    invocation = parse_invocation(f"--repo owner/repo --no-panel {message}")
    assert invocation.message == message
    assert invocation.repo == "owner/repo"
    assert invocation.no_panel is True


def test_message_without_options_is_the_whole_line() -> None:
    line = '  Fix "this" {now}  '
    assert parse_invocation(line).message == 'Fix "this" {now}  '


def test_defaults() -> None:
    assert parse_invocation("hello") == Invocation(message="hello")


def test_empty_line_gives_empty_message() -> None:
    assert parse_invocation("").message == ""
    assert parse_invocation("--wait").message == ""


def test_options_after_the_message_start_are_part_of_the_message() -> None:
    invocation = parse_invocation("do this --repo owner/repo --wait")
    assert invocation.message == "do this --repo owner/repo --wait"
    assert invocation.repo is None
    assert invocation.wait is False


@pytest.mark.parametrize(
    "line",
    [
        "--repo owner/repo go",
        "--repo=owner/repo go",
        '--repo "owner/repo" go',
        "--repo 'owner/repo' go",
        '--repo="owner/repo" go',
        "--repo\towner/repo   go",
    ],
)
def test_repo_option_forms(line: str) -> None:
    invocation = parse_invocation(line)
    assert invocation.repo == "owner/repo"
    assert invocation.message == "go"


def test_base_url_option() -> None:
    invocation = parse_invocation("--base-url=http://127.0.0.1:3000 hi")
    assert invocation.base_url == "http://127.0.0.1:3000"
    assert invocation.message == "hi"


def test_double_dash_ends_options() -> None:
    invocation = parse_invocation("-- --repo is text")
    assert invocation.message == "--repo is text"
    assert invocation.repo is None


def test_double_dash_after_options() -> None:
    invocation = parse_invocation("--repo o/r --wait -- -1 is a negative number")
    assert invocation.repo == "o/r"
    assert invocation.wait is True
    assert invocation.message == "-1 is a negative number"


@pytest.mark.parametrize(
    ("flag", "attribute"),
    [("--wait", "wait"), ("--no-panel", "no_panel"), ("--login", "login"), ("--help", "help"), ("-h", "help")],
)
def test_flags(flag: str, attribute: str) -> None:
    invocation = parse_invocation(f"{flag} message here")
    assert getattr(invocation, attribute) is True
    assert invocation.message == "message here"
    others = {"wait", "no_panel", "login", "help"} - {attribute}
    assert all(getattr(invocation, other) is False for other in others)


def test_all_flags_together() -> None:
    invocation = parse_invocation("--wait --no-panel --login -h")
    assert (invocation.wait, invocation.no_panel, invocation.login, invocation.help) == (True, True, True, True)
    assert invocation.message == ""


@pytest.mark.parametrize("line", ["--wait --timeout 5 go", "--timeout 5 --wait go", "--wait --timeout=5 go"])
def test_timeout_with_wait(line: str) -> None:
    invocation = parse_invocation(line)
    assert invocation.timeout == 5.0
    assert isinstance(invocation.timeout, float)
    assert invocation.message == "go"


def test_fractional_timeout() -> None:
    assert parse_invocation("--wait --timeout 0.25 go").timeout == 0.25


@pytest.mark.parametrize(
    "line",
    [
        "--timeout 5 go",
        "--wait --timeout five go",
        "--wait --timeout 0 go",
        "--wait --timeout -3 go",
        "--wait --timeout=-0.5 go",
        "--wait --timeout nan go",
    ],
)
def test_bad_timeout(line: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_invocation(line)
    assert "--timeout" in str(raised.value)


@pytest.mark.parametrize("line", ["--frobnicate go", "-x go", "--wait=yes go", "- list item"])
def test_unknown_option_mentions_double_dash(line: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_invocation(line)
    assert "`--`" in str(raised.value)


@pytest.mark.parametrize("line", ["--repo", "--wait --repo   ", "--timeout", "--watch", "--base-url"])
def test_value_option_at_end_of_line(line: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_invocation(line)
    assert "needs a value" in str(raised.value)


def test_cell_mode_message_is_the_cell_body_exactly() -> None:
    cell = '\n  First line with {braces} and "quotes"\n\tsecond\\n line\n\n'
    invocation = parse_invocation("--repo owner/repo --wait", cell)
    assert invocation.message == cell
    assert invocation.repo == "owner/repo"
    assert invocation.wait is True


def test_cell_mode_with_empty_line() -> None:
    assert parse_invocation("", "body").message == "body"
    assert parse_invocation("   ", "body").message == "body"


def test_cell_mode_rejects_text_on_the_magic_line() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_invocation("--repo owner/repo stray words", "the real message")
    assert "stray words" in str(raised.value)


def test_cell_mode_rejects_text_after_double_dash() -> None:
    with pytest.raises(ValidationError):
        parse_invocation("-- stray", "body")


def test_watch_with_message_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_invocation("--watch abc123 do something")
    assert "--watch" in str(raised.value)


def test_watch_with_cell_body_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_invocation("--watch abc123", "a message")


@pytest.mark.parametrize("line", ["--watch abc123", "--watch=abc123", "--no-panel --watch abc123  "])
def test_watch_alone(line: str) -> None:
    invocation = parse_invocation(line)
    assert invocation.watch == "abc123"
    assert invocation.message.strip() == ""


def test_watch_keeps_a_pasted_url_as_is() -> None:
    url = "https://app.all-hands.dev/conversations/abc123"
    assert parse_invocation(f"--watch {url}").watch == url


def test_usage_lists_every_option() -> None:
    for option in ("--repo", "--base-url", "--wait", "--timeout", "--no-panel", "--watch", "--login", "--help", "--"):
        assert option in USAGE


@pytest.mark.parametrize("line", ["--repo= fix it", "--repo --wait fix it", "--watch --wait", "--base-url=''"])
def test_an_option_missing_its_value_is_refused_not_ignored(line: str) -> None:
    with pytest.raises(ValidationError, match="needs a value"):
        parse_invocation(line)


# ---------------------------------------------------------------------------------------------------- commands
HEX = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "line",
    [
        "list the TODOs in src/",
        "list all the CSV files and explain them",
        "pause the nightly job",
        "resume the refactoring you started",
        "delete the dead code in utils.py",
        "delete nightly",  # one word that is not an id: a task
        f"pause {HEX} and then summarise it",
        "list --running jobs in the scheduler",  # "jobs" is not a list option
        "Delete the cache",  # commands are lower case, as typed
    ],
)
def test_a_sentence_that_starts_with_a_command_word_stays_a_task(line: str) -> None:
    invocation = parse_invocation(line)

    assert invocation.command is None
    assert invocation.message == line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("list", {"command": "list"}),
        ("list --running --limit 5", {"command": "list", "running": True, "limit": 5}),
        ("list --repo octo/demo --limit=3", {"command": "list", "repo": "octo/demo", "limit": 3}),
        ("--repo octo/demo list", {"command": "list", "repo": "octo/demo"}),
        ("list --here", {"command": "list", "here": True}),
        (f"pause {HEX}", {"command": "pause", "target": HEX}),
        (f"resume {HEX}", {"command": "resume", "target": HEX}),
        (f"delete {HEX}", {"command": "delete", "target": HEX, "yes": False}),
        (f"delete {HEX} --yes", {"command": "delete", "target": HEX, "yes": True}),
        (f"delete --yes {HEX}", {"command": "delete", "target": HEX, "yes": True}),
        (f"pause https://app.all-hands.dev/conversations/{HEX}", {"command": "pause"}),
        ("pause 01234567-89ab-cdef-0123-456789abcdef", {"command": "pause"}),
    ],
)
def test_a_line_that_is_a_whole_command_is_that_command(line: str, expected: dict[str, object]) -> None:
    invocation = parse_invocation(line)

    assert {key: getattr(invocation, key) for key in expected} == expected
    assert invocation.message == ""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("list --base-url http://127.0.0.1:9", {"command": "list", "base_url": "http://127.0.0.1:9"}),
        ("list --running --base-url=http://h:1 --api v1", {"command": "list", "running": True, "api": "v1"}),
        (f"pause {HEX} --base-url http://h:1", {"command": "pause", "target": HEX, "base_url": "http://h:1"}),
        (f"delete --api v0 {HEX} --yes", {"command": "delete", "target": HEX, "api": "v0", "yes": True}),
        ("fix --base-url http://h:2", {"command": "fix", "base_url": "http://h:2"}),
    ],
)
def test_the_server_options_after_a_command_word_belong_to_the_command_not_to_a_billed_task(
    line: str, expected: dict[str, object]
) -> None:
    invocation = parse_invocation(line)

    assert {key: getattr(invocation, key) for key in expected} == expected
    assert invocation.message == ""


def test_a_task_keeps_its_words_even_when_they_look_like_a_server_option() -> None:
    invocation = parse_invocation("list the TODOs --base-url http://h")

    assert (invocation.command, invocation.base_url) == (None, None)
    assert invocation.message == "list the TODOs --base-url http://h"


def test_a_server_given_before_and_after_a_command_word_with_two_values_is_refused() -> None:
    with pytest.raises(ValidationError, match="given twice"):
        parse_invocation("--base-url http://a:1 list --base-url http://b:2")


@pytest.mark.parametrize("line", ["-- list", f"-- pause {HEX}", "--wait list"])
def test_dashes_or_a_message_option_make_a_command_word_a_task(line: str) -> None:
    invocation = parse_invocation(line)

    assert invocation.command is None
    assert invocation.message.strip() in ("list", f"pause {HEX}")


@pytest.mark.parametrize("word", ["pause", "resume", "delete"])
def test_a_bare_action_word_is_refused_with_how_to_send_it_as_a_task(word: str) -> None:
    with pytest.raises(ValidationError, match=rf"`%openhands -- {word}`"):
        parse_invocation(word)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("list --limit many", "whole number"),
        ("list --limit 0", "from 1 to 1000"),
        ("list --repo", "needs a value"),
        ("list --here --running", "takes no --repo or --running"),
        (f"pause {HEX} --yes", None),  # --yes belongs to delete only: the line is a task then
    ],
)
def test_command_options_are_checked(line: str, match: str | None) -> None:
    if match is None:
        assert parse_invocation(line).command is None
        return
    with pytest.raises(ValidationError, match=match):
        parse_invocation(line)


def test_a_cell_magic_line_is_never_a_command() -> None:
    with pytest.raises(ValidationError, match="goes in the cell body"):
        parse_invocation("list", "do the thing")


@pytest.mark.parametrize(
    ("line", "cell", "target", "message"),
    [
        ("--continue now add tests", None, None, "now add tests"),
        (f"--continue {HEX} now add tests", None, HEX, "now add tests"),
        ("--continue", "now add tests\n", None, "now add tests\n"),
        (f"--continue {HEX}", "and docs", HEX, "and docs"),
        (f"--continue={HEX} go on", None, HEX, "go on"),
        ("--continue list", None, None, "list"),  # a follow-up whose text is "list"
    ],
)
def test_continue_takes_an_optional_id_then_the_message(
    line: str, cell: str | None, target: str | None, message: str
) -> None:
    invocation = parse_invocation(line, cell)

    assert (invocation.follow_up, invocation.continue_id, invocation.message) == (True, target, message)
    assert invocation.command is None
