"""The start's options (--branch, --model, --plan, --instructions, --title, --share, --secret, --sandbox, --org):
what each sends, on V1 and V0, how each bad value is refused before anything is sent, and that a secret's value is
never shown anywhere but in the start's body."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from openhands_magics import Endpoint, ValidationError
from openhands_magics.session import Session
from openhands_magics.start_options import StartOptions, ignored
from openhands_magics.polling import PollSchedule
from openhands_magics.testing import LocalOpenHandsServer, Timeline
from openhands_magics.views import html_card, text_summary

from .conftest import SECRET, Output, wait_until

TOKEN_VALUE = "ghp_this-value-must-never-show-0123456789"


def _start_body(server: LocalOpenHandsServer) -> dict[str, Any]:
    (post,) = [r for r in server.posts() if r.path == "/api/v1/app-conversations"]
    body: dict[str, Any] = post.body
    return body


def test_every_option_of_the_magic_line_is_a_field_of_the_v1_start_request(
    ip: InteractiveShell,
    server_env: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DEPLOY_PASS", TOKEN_VALUE)
    notes = tmp_path / "house-rules.md"
    notes.write_text("Write tests first.\nNever push to main.\n", encoding="utf-8")
    handle = ip.run_line_magic(
        "openhands",
        f"--repo octo/demo --branch feature/login --model anthropic/claude-sonnet-4-5 --plan "
        f"--instructions @{notes} --title 'Login fix' --share --secret DEPLOY_PASS Fix the login form",
    )
    body = _start_body(server_env)
    assert body["selected_repository"] == "octo/demo" and body["selected_branch"] == "feature/login"
    assert body["llm_model"] == "anthropic/claude-sonnet-4-5" and body["agent_type"] == "plan"
    assert body["system_message_suffix"] == "Write tests first.\nNever push to main."
    assert (body["title"], body["public"]) == ("Login fix", True)
    assert body["secrets"] == {"DEPLOY_PASS": TOKEN_VALUE}  # the value, in the request body and nowhere else
    assert "sandbox_id" not in body
    assert body["initial_message"]["content"][0]["text"] == "Fix the login form"
    handle.wait(10)

    # 1.11.0 takes `public` and `title` without keeping them: it forgets a share at each status change of its agent,
    # and names the conversation itself after its first turn. The magic gives both back the web app's way (PATCH)
    # once the turn is over, and the card links the share
    def kept() -> bool:
        fresh = handle.refresh()
        return fresh.extra.get("public") is True and fresh.title == "Login fix"

    wait_until(kept, timeout=30)  # (PATCHed in the I/O thread)
    assert handle.share_url == f"{server_env.base_url}/shared/conversations/{handle.id}"
    patches = [r.body for r in server_env.requests if r.method == "PATCH"]
    assert patches[-1] == {"public": True, "title": "Login fix"} and all(set(p) <= {"public", "title"} for p in patches)
    card = html_card(handle)
    assert f'href="{handle.share_url}"' in card and "share link" in card
    assert f"shared: {handle.share_url}" in text_summary(handle)
    shown = "".join(output.read()) + repr(handle) + repr(handle.conversation) + card
    assert TOKEN_VALUE not in shown
    assert handle.note is None or "--title" not in handle.note  # (given back: nothing to say)


def test_a_conversation_already_over_at_its_first_read_still_has_its_options_checked_and_is_shared() -> None:
    timeline = Timeline(starting=0.2, running=0.05)  # (over before the first read of the conversation)
    with LocalOpenHandsServer(SECRET, timeline=timeline) as server:
        session = Session(PollSchedule(interval=1.0, max_interval=1.0))
        endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
        handle = session.start("Fix it", endpoint=endpoint, title="Login fix", share=True)
        handle.wait(10)
        wait_until(lambda: handle.refresh().extra.get("public") is True, timeout=15)
        wait_until(lambda: handle.refresh().title == "Login fix", timeout=15)
        session.close()


def test_the_python_api_and_map_take_the_same_options(server: LocalOpenHandsServer) -> None:
    session = Session()
    endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
    session.start("one", endpoint=endpoint, branch="dev", plan=True, secrets={"API_TOKEN": TOKEN_VALUE})
    batch = session.map("task {item}", ["a", "b"], endpoint=endpoint, model="openai/gpt-5", title="Batch run")
    batch.wait(20)
    bodies = [r.body for r in server.posts() if r.path == "/api/v1/app-conversations"]
    assert [b.get("selected_branch") for b in bodies] == ["dev", None, None]
    assert bodies[0]["agent_type"] == "plan" and bodies[0]["secrets"] == {"API_TOKEN": TOKEN_VALUE}
    assert [b.get("llm_model") for b in bodies[1:]] == ["openai/gpt-5"] * 2
    assert [b.get("title") for b in bodies[1:]] == ["Batch run"] * 2
    session.close()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("--branch 'has space'", "--branch takes a git branch name"),
        ("--branch ../etc", "--branch takes a git branch name"),
        ("--model 'gpt 5'", "--model takes a model name"),
        ("--title ''", "--title needs a value"),
        ("--instructions @/no/such/file.md", "--instructions @/no/such/file.md: no such file"),
        ("--secret NOT_SET_ANYWHERE", "--secret NOT_SET_ANYWHERE: no environment variable NOT_SET_ANYWHERE is set"),
        ("--secret 'A,1B'", "--secret takes names of environment variables"),
        ("--secret A,A", "--secret A was given twice"),
        ("--sandbox ../x", "--sandbox takes a sandbox id"),
        ("--org 'a b'", "--org takes an organisation id"),
        ("--queue --map items", "--queue is for one start"),
        ("--save", "--save goes with --login"),
    ],
)
def test_a_bad_start_option_is_one_line_and_nothing_is_sent(
    ip: InteractiveShell,
    server_env: LocalOpenHandsServer,
    output: Output,
    monkeypatch: pytest.MonkeyPatch,
    options: str,
    expected: str,
) -> None:
    monkeypatch.setenv("A", "value-of-a-1234567")
    ip.user_ns["items"] = ["x"]
    assert ip.run_line_magic("openhands", f"{options} Fix {{item}}") is None
    assert expected in output.one_error_line()
    assert server_env.posts() == []


def test_the_dry_run_shows_every_option_and_names_a_secret_without_its_value(
    ip: InteractiveShell, output: Output, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOY_PASS", TOKEN_VALUE)
    ip.run_line_magic(
        "openhands",
        "--dry-run --base-url http://127.0.0.1:9 --org team-42 --branch dev --model openai/gpt-5 --plan "
        "--instructions 'Be brief.' --title T --share --secret DEPLOY_PASS --sandbox sb-1 Fix it",
    )
    out, _ = output.read()
    for line in (
        "organisation: team-42 (X-Org-Id)",
        "branch: dev",
        "model: openai/gpt-5",
        "agent: plan",
        "instructions (9 characters",
        "  | Be brief.",
        "title: T",
        "shared: yes",
        "secrets: DEPLOY_PASS (values from the environment, not shown)",
        "sandbox: sb-1",
    ):
        assert line in out, line
    assert TOKEN_VALUE not in out


def test_on_v0_the_branch_and_instructions_are_sent_and_a_v1_only_option_is_refused_before_sending(
    ip: InteractiveShell, v0_env: LocalOpenHandsServer, output: Output
) -> None:
    ip.run_line_magic("openhands", "--branch dev --instructions 'Be brief.' Fix it")
    (post,) = [r for r in v0_env.posts() if r.path == "/api/conversations"]
    assert post.body["selected_branch"] == "dev" and post.body["conversation_instructions"] == "Be brief."
    output.read()
    assert ip.run_line_magic("openhands", "--model openai/gpt-5 --share Fix it") is None
    line = output.one_error_line()
    assert "--model, --share need OpenHands 1.7 or later" in line and "nothing was sent" in line
    assert len([r for r in v0_env.posts() if r.path == "/api/conversations"]) == 1


def test_org_goes_in_the_x_org_id_header_from_the_line_or_the_config(
    ip: InteractiveShell, server_env: LocalOpenHandsServer
) -> None:
    ip.run_line_magic("openhands", "--org team-42 Fix it")
    ip.run_line_magic("config", "OpenHandsMagics.org = 'personal-7'")
    ip.run_line_magic("openhands", "Fix it again")
    starts = [r for r in server_env.posts() if r.path == "/api/v1/app-conversations"]
    assert [r.headers.get("x-org-id") for r in starts] == ["team-42", "personal-7"]


def test_a_warm_sandbox_is_reused_and_an_unknown_one_fails_the_start_with_the_servers_reason(
    server: LocalOpenHandsServer,
) -> None:
    session = Session(PollSchedule(interval=0.1, max_interval=0.2))
    endpoint = Endpoint.resolve(server.base_url, api_key=SECRET)
    first = session.start("one", endpoint=endpoint)
    first.wait(10)
    sandbox = first.conversation.sandbox_id
    assert sandbox
    again = session.start("two", endpoint=endpoint, sandbox=sandbox)
    again.wait(10)
    assert again.conversation.sandbox_id == sandbox and again.status == "FINISHED"
    unknown = session.start("three", endpoint=endpoint, sandbox="no-such-sandbox")
    unknown.wait(10)
    assert unknown.status == "ERROR" and "Sandbox not found: no-such-sandbox" in (unknown.conversation.phase or "")
    session.close()


def test_an_option_the_server_drops_is_said_once_per_server() -> None:
    options = StartOptions.make(plan=True, branch="dev")
    echo = {"selected_branch": "dev", "initial_message": None}  # an older server: no agent_type field
    assert ignored(options, echo) == ["--plan"]
    assert ignored(options, None) == []  # no echo: nothing to tell by


def test_a_secret_never_shows_in_a_repr_an_error_or_a_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_PASS", TOKEN_VALUE)
    options = StartOptions.make(secrets="DEPLOY_PASS")
    assert TOKEN_VALUE not in repr(options) + repr(options.secrets) + str(options.secrets[0])
    assert TOKEN_VALUE not in "".join(options.described()) + str(options.once_parts())
    with pytest.raises(TypeError):
        pickle.dumps(options.secrets[0])
    with pytest.raises(ValidationError) as caught:
        StartOptions.make(secrets={"DEPLOY_PASS": TOKEN_VALUE}, branch=f"x {TOKEN_VALUE}")
    assert TOKEN_VALUE not in str(caught.value)
