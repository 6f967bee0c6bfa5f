"""The kernel-wide state, usable without IPython: clients per server, one poller per server, and the record of
every conversation started or watched in this process.

The magics are a thin front over one :class:`Session` (``get_session()``), as jupysql keeps its connections apart
from ``SqlMagic``; a script can use the same object::

    from openhands_magics.session import get_session, Endpoint
    conv = get_session().start("Fix the typo in README.md", repository="octo/demo")
    conv.wait()

A conversation is recorded the moment the server answers the start (with its start task's id), before anything is
displayed, so neither of its ids is ever lost.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .client import DEFAULT_TIMEOUT, AsyncOpenHandsClient, OpenHandsClient
from .config import (
    REMOTE_MIN_INTERVAL,
    ApiKey,
    is_loopback_url,
    resolve_api,
    resolve_api_key,
    resolve_base_url,
    resolve_ca_bundle,
    resolve_env_proxy,
)
from .errors import ConflictError, OpenHandsError, ValidationError
from .handle import ConversationHandle, Diff, Listener
from .models import Change, Conversation, ConversationStatus, Outcome
from .polling import Poller, PollSchedule, wait_until_final

__all__ = ["Endpoint", "Session", "get_session", "history", "last"]

log = logging.getLogger("openhands_magics")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to talk to a server: one client and one poller per endpoint."""

    base_url: str
    api_key: ApiKey = field(repr=False)
    api: str = "auto"
    timeout: float = DEFAULT_TIMEOUT
    ca_bundle: str | None = None
    use_env_proxy: bool = False

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        *,
        api: str | None = None,
        api_key: str | ApiKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
        use_env_proxy: bool | None = None,
    ) -> Endpoint:
        """Fill in from the environment (``OPENHANDS_BASE_URL``, ``OPENHANDS_API_KEY`` or the ``--login`` key,
        ``OPENHANDS_API``, ``OPENHANDS_CA_BUNDLE``, ``OPENHANDS_USE_ENV_PROXY``); raises the one-line
        ConfigurationError when the key is missing, the URL unsafe or the CA bundle missing."""
        return cls(resolve_base_url(base_url), resolve_api_key(api_key), resolve_api(api), float(timeout),
                   resolve_ca_bundle(ca_bundle), resolve_env_proxy(use_env_proxy))

    def options(self) -> dict[str, Any]:
        """What a client for this endpoint is made with."""
        return {"base_url": self.base_url, "timeout": self.timeout, "api": self.api, "ca_bundle": self.ca_bundle,
                "use_env_proxy": self.use_env_proxy}


class Session:
    """Everything in flight in this process, with one owner."""

    def __init__(self, schedule: PollSchedule | None = None) -> None:
        #: How fast pollers made from now on poll (``%config OpenHandsMagics.poll_interval`` sets it).
        self.schedule = schedule or PollSchedule()
        self._clients: dict[Endpoint, OpenHandsClient] = {}
        self._pollers: dict[Endpoint, Poller] = {}
        self._history: list[ConversationHandle] = []

    # ------------------------------------------------------------------ clients and pollers
    def client(self, endpoint: Endpoint) -> OpenHandsClient:
        """The shared blocking client for this endpoint: one connection pool across cells."""
        if endpoint not in self._clients:
            self._clients[endpoint] = OpenHandsClient(endpoint.api_key, **endpoint.options())
        return self._clients[endpoint]

    def poller(self, endpoint: Endpoint) -> Poller:
        """The one poller of this endpoint. Its async client does not retry by itself: the poller's backoff does,
        and shows it."""
        if endpoint not in self._pollers:
            from ._protocol import NO_RETRIES

            client = AsyncOpenHandsClient(endpoint.api_key, **endpoint.options(), retry=NO_RETRIES)
            self._pollers[endpoint] = Poller(client, self.schedule)
        return self._pollers[endpoint]

    @property
    def pollers(self) -> list[Poller]:
        return list(self._pollers.values())

    # ------------------------------------------------------------------ conversations
    def start(
        self, message: str, repository: str | None = None, *, endpoint: Endpoint | None = None
    ) -> ConversationHandle:
        """Start a conversation and record it; returns at once (watch it with ``watch`` or wait with ``.wait()``)."""
        endpoint = endpoint or Endpoint.resolve()
        return self.record(self.client(endpoint).start_conversation(message, repository), endpoint)

    def attach(self, reference: str, *, endpoint: Endpoint | None = None) -> ConversationHandle:
        """A handle for an existing conversation: its id, its link, or (V1) its start task's id."""
        endpoint = endpoint or Endpoint.resolve()
        return self.record(self.client(endpoint).get_conversation(reference), endpoint)

    def record(self, conversation: Conversation, endpoint: Endpoint) -> ConversationHandle:
        handle = ConversationHandle(conversation, self, endpoint)
        self._history.append(handle)
        what = f"conversation {handle.id}" if handle.id else f"start task {handle.task_id}"
        log.info("recorded %s on %s", what, endpoint.base_url)
        return handle

    def watch(self, handle: ConversationHandle) -> bool:
        """Poll it from the running event loop (a kernel's); False where there is none (terminal IPython)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        poller = self.poller(handle.endpoint)
        poller.schedule = self.schedule_for(handle.endpoint)
        poller.track(handle)
        return True

    def schedule_for(self, endpoint: Endpoint) -> PollSchedule:
        """The schedule, with a floor for servers off this machine (they rate-limit; a local one need not)."""
        if is_loopback_url(endpoint.base_url) or self.schedule.interval >= REMOTE_MIN_INTERVAL:
            return self.schedule
        return PollSchedule(REMOTE_MIN_INTERVAL, max(REMOTE_MIN_INTERVAL, self.schedule.max_interval),
                            self.schedule.growth)

    def unwatch(self, handle: ConversationHandle) -> None:
        poller = self._pollers.get(handle.endpoint)
        if poller is not None:
            poller.untrack(handle)

    def refresh(self, handle: ConversationHandle) -> Conversation:
        handle.update(self.client(handle.endpoint).refresh(handle.conversation))
        return handle.conversation

    def wait(
        self, handle: ConversationHandle, *, timeout: float | None = None, on_change: Listener | None = None
    ) -> Conversation:
        final = wait_until_final(handle, self.client(handle.endpoint), self.schedule_for(handle.endpoint),
                                 timeout=timeout, on_change=on_change)
        if handle.outcome is None and handle.id is not None:
            try:
                self.conclude(handle)
            except OpenHandsError as error:  # the status is what was waited for; the details can be read later
                handle.set_outcome(Outcome(problems=(str(error),)))
        self.unwatch(handle)  # at once, within the waiting cell: its panel gives way to the final card there
        return final

    # ------------------------------------------------------------------ what the agent did
    def conclude(self, handle: ConversationHandle) -> Outcome | None:
        """Read what the agent did in its latest turn (answer, changed files) and keep it on the handle; the
        poller does the same, without blocking, when it sees a turn end."""
        handle.set_outcome(self.client(handle.endpoint).outcome(handle.conversation))
        return handle.outcome

    def changes(self, handle: ConversationHandle) -> tuple[Change, ...]:
        return self.client(handle.endpoint).changes(handle.conversation)

    def diff(self, handle: ConversationHandle, path: str | None = None) -> Diff:
        client = self.client(handle.endpoint)
        paths = [path] if path is not None else [c.path for c in handle.changes()]
        return Diff("".join(client.diff(handle.conversation, p).unified() for p in paths))

    # ------------------------------------------------------------------ steering
    #: How long a follow-up waits for a paused sandbox to run again before it gives up.
    resume_timeout = 60.0

    def send(self, handle: ConversationHandle, text: str) -> None:
        """Send a follow-up; a paused sandbox is resumed first. Watched again (from the running loop) at once."""
        client = self.client(handle.endpoint)
        if not isinstance(text, str):
            raise ValidationError(f"The message must be text, got {type(text).__name__}.")
        try:
            client.send_message(handle.conversation, text)
        except ConflictError as error:
            if error.status_code != 409:
                raise
            self._resume_and_wait(handle)
            client.send_message(handle.conversation, text)
        # The server answered 200 with ``run``: the agent works (it reads "running" at once on the real server).
        running = dataclasses.replace(handle.conversation, status=ConversationStatus.RUNNING, phase=None,
                                      execution_status="running", sandbox_status="RUNNING")
        handle.begin_turn(running)
        self.watch(handle)

    def _resume_and_wait(self, handle: ConversationHandle) -> None:
        client = self.client(handle.endpoint)
        client.resume(handle.conversation)
        deadline = time.monotonic() + self.resume_timeout
        while True:
            handle.update(client.refresh(handle.conversation))
            if (handle.conversation.sandbox_status or "").upper() == "RUNNING":
                return
            if time.monotonic() >= deadline:
                raise ConflictError(f"Conversation {handle.id} did not resume within {self.resume_timeout:g} s "
                                    f"(its sandbox is {handle.conversation.sandbox_status}); try again later.")
            time.sleep(min(1.0, self.schedule.interval))

    def pause(self, handle: ConversationHandle) -> None:
        self.client(handle.endpoint).pause(handle.conversation)
        self.refresh(handle)

    def resume(self, handle: ConversationHandle) -> None:
        self.client(handle.endpoint).resume(handle.conversation)
        self.refresh(handle)
        self.watch(handle)

    def delete(self, handle: ConversationHandle) -> None:
        """Delete it on the server; the handle stays, as DELETED, and watching ends."""
        self.client(handle.endpoint).delete(handle.conversation)
        self.unwatch(handle)
        handle.update(dataclasses.replace(handle.conversation, status=ConversationStatus.DELETED, phase=None))

    def show(self, handle: ConversationHandle, *, panel: bool = True) -> None:
        """Display it the best way the front end allows, watched live where a loop runs."""
        from .display import show

        show(self, handle, panel=panel)

    def history(self) -> list[ConversationHandle]:
        """Every conversation started or watched in this process, oldest first (a copy)."""
        return list(self._history)

    def last(self) -> ConversationHandle | None:
        return self._history[-1] if self._history else None

    # ------------------------------------------------------------------ shutting down
    def close(self) -> None:
        """Stop every poller and close every connection (``%unload_ext``). The record of conversations stays, and
        its handles keep working: clients are opened again on demand."""
        for poller in self._pollers.values():
            poller.close()
            _close_async(poller.client)
        self._pollers.clear()
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _close_async(client: AsyncOpenHandsClient) -> None:
    try:
        asyncio.get_running_loop().create_task(client.aclose())
    except RuntimeError:  # no loop runs: nothing is in flight, close it on a loop of its own
        asyncio.run(client.aclose())


_session: Session | None = None


def get_session() -> Session:
    """The process's session (made on first use)."""
    global _session
    if _session is None:
        _session = Session()
    return _session


def history() -> list[ConversationHandle]:
    """Every conversation started or watched in this process, oldest first."""
    return get_session().history()


def last() -> ConversationHandle | None:
    """The most recent conversation started or watched in this process (None before the first)."""
    return get_session().last()
