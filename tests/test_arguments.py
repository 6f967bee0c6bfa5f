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
    cell = "\n  First line with {braces} and \"quotes\"\n\tsecond\\n line\n\n"
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
