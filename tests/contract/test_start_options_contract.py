"""Issue 18 against the real 1.11.0: which start options it takes (its start task echoes them), which it applies
(its conversation shows them), and what the magic does about the rest (V1 only)."""

from __future__ import annotations

import time

import httpx
import pytest

from openhands_magics.polling import PollSchedule
from openhands_magics.session import Session

from ..conftest import wait_until
from .conftest import Live
from .test_contract import FINISH_WITHIN

SECRET_VALUE = "contract-secret-value-0123456789"


@pytest.fixture
def session(live: Live) -> Session:
    session = Session(PollSchedule(interval=1.0, max_interval=2.0))
    if session.client(live.endpoint()).dialect().name != "v1":
        pytest.skip("start options are V1's")
    return session


def _task_request(live: Live, task_id: str) -> dict[str, object]:
    answer = httpx.get(
        f"{live.base_url}/api/v1/app-conversations/start-tasks",
        params={"ids": task_id},
        headers={"Authorization": f"Bearer {live.api_key}"},
        timeout=30,
    )
    (task,) = answer.json()
    request: dict[str, object] = task["request"]
    return request


def _running_sandbox(live: Live) -> str | None:
    """A RUNNING sandbox of the server, if it has one (None: the first start makes one)."""
    answer = httpx.get(
        f"{live.base_url}/api/v1/sandboxes/search",
        params={"limit": "20"},
        headers={"Authorization": f"Bearer {live.api_key}"},
        timeout=30,
    )
    running = [s["id"] for s in answer.json().get("items", []) if s.get("status") == "RUNNING"]
    return running[0] if running else None


def test_the_real_server_takes_every_start_option_and_applies_the_model_instructions_and_a_warm_sandbox(
    live: Live, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTRACT_TOKEN", SECRET_VALUE)
    endpoint = live.endpoint()
    warm = _running_sandbox(live)  # (a warm one: starting an agent server takes the real one up to 30 s)
    first = session.start("say hello", endpoint=endpoint, sandbox=warm)
    first.wait(FINISH_WITHIN)
    assert first.status == "FINISHED", first.conversation.status_line
    model = session.client(endpoint).refresh(first.conversation).extra.get("llm_model")
    assert isinstance(model, str) and model  # (the model the server runs: the fake LLM's)
    handle = session.start(
        "say hello",
        endpoint=endpoint,
        model=model,
        instructions="Answer in one word.",
        title="Contract title",
        share=True,
        secrets="CONTRACT_TOKEN",
        sandbox=first.conversation.sandbox_id,
    )
    assert handle.conversation.ignored == ()  # 1.11.0 knows every field
    request = _task_request(live, handle.task_id or "")
    assert (request["llm_model"], request["agent_type"]) == (model, "default")
    assert request["system_message_suffix"] == "Answer in one word."
    assert (request["title"], request["public"], request["sandbox_id"]) == (
        "Contract title",
        True,
        first.conversation.sandbox_id,
    )
    assert request["secrets"] == {"CONTRACT_TOKEN": "**********"}  # (SecretStr: the value never comes back)
    handle.wait(FINISH_WITHIN)
    assert handle.status == "FINISHED", handle.conversation.status_line
    assert handle.conversation.sandbox_id == first.conversation.sandbox_id  # the warm sandbox was reused
    assert handle.conversation.extra.get("llm_model") == model

    # 1.11.0 takes `public` and `title` without keeping them: its webhook saves the conversation afresh, without
    # `public`, at each status change of the agent, and its title callback names it after the first turn. The
    # magic's PATCH gives both back once the turn is over, and they hold
    def kept() -> bool:
        fresh = session.client(endpoint).refresh(handle.conversation)
        return fresh.extra.get("public") is True and fresh.title == "Contract title"

    wait_until(kept, timeout=30)
    time.sleep(3)
    assert kept()
    assert handle.share_url == f"{live.base_url}/shared/conversations/{handle.id}"
    assert handle.note is None or "--title" not in handle.note  # (given back: nothing to say)
    session.close()


def test_the_planning_agent_is_taken_but_fails_in_the_agent_server_of_a_self_hosted_1_11(
    live: Live, session: Session
) -> None:
    """1.11.0 with process sandboxes: ``agent_type: plan`` is echoed, then the agent server answers its conversation
    500, so the start task ends ERROR with that reason (and the sandbox it ran in is left in ERROR: a fresh one)."""
    handle = session.start("say hello", endpoint=live.endpoint(), plan=True)
    assert _task_request(live, handle.task_id or "")["agent_type"] == "plan"
    handle.wait(FINISH_WITHIN)
    assert handle.status == "ERROR" and "500" in (handle.conversation.phase or ""), handle.conversation.status_line
    session.close()


def test_an_unknown_sandbox_fails_the_start_with_the_servers_reason(live: Live, session: Session) -> None:
    handle = session.start("say hello", endpoint=live.endpoint(), sandbox="no-such-sandbox")
    handle.wait(FINISH_WITHIN)
    assert handle.status == "ERROR" and "Sandbox not found" in (handle.conversation.phase or "")
    session.close()


def test_the_real_servers_model_list_completes_model_and_its_git_lists_say_nothing_without_a_token(
    live: Live, session: Session
) -> None:
    from openhands_magics import session as sessions
    from openhands_magics import suggestions

    session.client(live.endpoint())  # (a connection: completion asks only a server this kernel talks to)
    previous, sessions._session = sessions._session, session
    suggestions.forget()
    try:
        models = suggestions.suggest("model", patience=30)
        assert "anthropic/claude-sonnet-4-5" in models and all("/" in m for m in models)
        assert suggestions.suggest("repo", patience=30) == []  # 1.11.0 without a git token: 403, silently
        assert suggestions.suggest("branch", "octo/demo", patience=30) == []
    finally:
        sessions._session = previous
        suggestions.forget()
