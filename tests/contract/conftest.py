"""Contract tests: the public Python API and the magics against a live OpenHands server.

Skipped unless ``OPENHANDS_CONTRACT_BASE_URL`` names one (they are not part of CI, which has none). Run them against
the real server that ``shared/real-openhands/up`` starts::

    eval "$(sudo ../shared/real-openhands/up | sed 's/^OPENHANDS_/export OPENHANDS_CONTRACT_/')"
    .venv/bin/pytest tests/contract -v

Settings: ``OPENHANDS_CONTRACT_BASE_URL``, ``OPENHANDS_CONTRACT_API_KEY`` (default ``no-key-needed``: a self-hosted
server without ``SESSION_API_KEY`` takes anything), ``OPENHANDS_CONTRACT_EXPECT_API`` (``v1`` / ``v0``: what ``auto``
must pick), ``OPENHANDS_CONTRACT_LLM`` (the fake LLM's base URL, e.g. ``http://127.0.0.1:18300``: lets a test make the
agent work for a known time).
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from openhands_magics.session import Endpoint


@dataclass(frozen=True)
class Live:
    base_url: str
    api_key: str
    expect_api: str | None
    llm: str | None

    def endpoint(self, api: str | None = None) -> Endpoint:
        return Endpoint.resolve(self.base_url, api_key=self.api_key, api=api, timeout=60)

    def agent_delay(self, seconds: float) -> None:
        """Make each agent step of the fake LLM take ``seconds`` (needs ``OPENHANDS_CONTRACT_LLM``)."""
        self.fake_llm(delay=seconds)

    def agent_steps(self) -> int:
        """How many agent steps a turn takes: the fake LLM's shell steps (``up --llm-steps N``), then its finish."""
        if not self.llm:
            pytest.skip("OPENHANDS_CONTRACT_LLM is not set")
        with urllib.request.urlopen(f"{self.llm}/fake/config", timeout=10) as answer:  # noqa: S310 - loopback
            return len(json.loads(answer.read()).get("steps") or ()) + 1

    def fake_llm(self, **settings: object) -> None:
        """Reconfigure the fake LLM (``delay``, ``answer``: the agent's finish message); needs
        ``OPENHANDS_CONTRACT_LLM``."""
        if not self.llm:
            pytest.skip("OPENHANDS_CONTRACT_LLM is not set")
        request = urllib.request.Request(f"{self.llm}/fake/config", data=json.dumps(settings).encode(), method="POST")
        urllib.request.urlopen(request, timeout=10).read()  # noqa: S310 - a loopback URL the tester gave


@pytest.fixture
def live() -> Iterator[Live]:
    base_url = os.environ.get("OPENHANDS_CONTRACT_BASE_URL")
    if not base_url:
        pytest.skip("no live server: set OPENHANDS_CONTRACT_BASE_URL (see tests/contract/conftest.py)")
    server = Live(
        base_url,
        os.environ.get("OPENHANDS_CONTRACT_API_KEY", "no-key-needed"),
        os.environ.get("OPENHANDS_CONTRACT_EXPECT_API"),
        os.environ.get("OPENHANDS_CONTRACT_LLM"),
    )
    yield server
    if server.llm:
        server.fake_llm(delay=0, answer="Hello! Done.")
