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
from .polling import Poller, PollSchedule, outcome_due, wait_until_final
from .validation import validate_message, validate_repository, validate_seconds

__all__ = ["Endpoint", "Session", "get_session", "history", "last", "map"]

log = logging.getLogger("openhands_magics")
#: ``list`` reads at most this many pages (of 100) looking for matches: a filter with few matches stays bounded.
MAX_LIST_PAGES = 10


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
        seconds = validate_seconds(timeout, "timeout")
        if not seconds:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r:.40}.")
        return cls(resolve_base_url(base_url), resolve_api_key(api_key), resolve_api(api), seconds,
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
        #: The notebook this kernel runs, when known (the magic sets it): recorded on disk with each conversation.
        self.notebook: str | None = None
        #: Whether conversations started here are recorded on disk (``%openhands list --here`` after a restart).
        self.remember = True
        #: Whether the browser is told when a watched conversation ends (tab title, a permitted notification).
        self.notify = True

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

    @staticmethod
    def _endpoint(endpoint: Endpoint | None) -> Endpoint:
        """The endpoint given (checked: a URL string is not one), else the one the environment names."""
        if endpoint is None:
            return Endpoint.resolve()
        if not isinstance(endpoint, Endpoint):  # (the value is not echoed: a URL may carry a user and password)
            raise ValidationError(
                f"endpoint must be an Endpoint, e.g. Endpoint.resolve(\"https://...\"), got {type(endpoint).__name__}."
            )
        return endpoint

    # ------------------------------------------------------------------ conversations
    def start(
        self, message: str, repository: str | None = None, *, endpoint: Endpoint | None = None
    ) -> ConversationHandle:
        """Start a conversation and record it; returns at once (watch it with ``watch`` or wait with ``.wait()``)."""
        endpoint = self._endpoint(endpoint)
        return self.record(self.client(endpoint).start_conversation(message, repository), endpoint, remember=True)

    def attach(
        self, reference: str, *, endpoint: Endpoint | None = None, remember: bool = False
    ) -> ConversationHandle:
        """A new handle for an existing conversation: its id, its link, or (V1) its start task's id."""
        endpoint = self._endpoint(endpoint)
        return self.record(self.client(endpoint).get_conversation(reference), endpoint, remember=remember)

    def find(self, reference: str, *, endpoint: Endpoint | None = None) -> ConversationHandle:
        """The handle this session already has for that id (so ``conv`` in the notebook sees what a command did to
        it), refreshed; else a new one, as :meth:`attach`."""
        endpoint = self._endpoint(endpoint)
        client = self.client(endpoint)
        client._reference(reference)
        wanted = client.dialect().normalize_id(reference)
        for handle in reversed(self._history):
            if handle.endpoint.base_url == endpoint.base_url and wanted in (handle.id, handle.task_id):
                handle.refresh()
                return handle
        return self.attach(reference, endpoint=endpoint)

    def reattach(self, probes: list[Conversation], *, endpoint: Endpoint) -> list[ConversationHandle]:
        """Handles for conversations known by id (after a kernel restart), read in as few requests as the API
        allows; those the server no longer has are left out (and forgotten on disk)."""
        fresh = self.client(endpoint).read(probes) if probes else []
        handles = []
        for probe, conversation in zip(probes, fresh):
            if conversation is None:
                if self.remember:
                    self._store().forget(endpoint.base_url, probe.conversation_id or probe.start_task_id or "")
                continue
            handles.append(self._known(conversation, endpoint) or self.record(conversation, endpoint))
        return handles

    def record(self, conversation: Conversation, endpoint: Endpoint, *, remember: bool = False) -> ConversationHandle:
        """Keep it in this process's record (and, ``remember``, on disk, with its conversation id once known)."""
        handle = ConversationHandle(conversation, self, endpoint)
        self._history.append(handle)
        what = f"conversation {handle.id}" if handle.id else f"start task {handle.task_id}"
        log.info("recorded %s on %s", what, endpoint.base_url)
        if remember and self.remember:
            try:
                self._remember(handle)
            except Exception:  # the record on disk is a convenience: it must never cost a started conversation
                log.warning("could not record conversation %s on disk", handle.reference, exc_info=True)
        return handle

    def _known(self, conversation: Conversation, endpoint: Endpoint) -> ConversationHandle | None:
        for handle in self._history:
            if handle.endpoint.base_url == endpoint.base_url and handle.is_same(conversation):
                return handle
        return None

    @staticmethod
    def _store() -> Any:
        from .store import get_store

        return get_store()

    def _remember(self, handle: ConversationHandle) -> None:
        """On disk now, and again once the start task names the conversation (the store merges the two)."""
        notebook, store = self.notebook, self._store()

        def add(h: ConversationHandle) -> None:
            c = h.conversation
            store.add(base_url=h.endpoint.base_url, conversation_id=h.id, task_id=h.task_id, api=c.api,
                      notebook=notebook, repository=c.selected_repository)

        add(handle)
        if handle.id is None:
            def when_created(h: ConversationHandle) -> None:
                if h.id is not None:
                    h.unsubscribe(when_created)
                    add(h)

            handle.subscribe(when_created)

    def map(
        self,
        task: Any,
        items: Any,
        *,
        repository: str | None = None,
        max_running: int = 10,
        endpoint: Endpoint | None = None,
    ) -> Any:
        """One conversation per item (``task`` a template with ``{item}``, or a function of the item), at most
        ``max_running`` at a time; returns the :class:`~openhands_magics.batch.Batch` at once (its queue runs in the
        event loop where one runs; ``.wait()`` runs it anywhere). Every argument is checked by the batch before
        anything is sent, the endpoint (default: from the environment) last."""
        from .batch import Batch

        return Batch(self, task, items, endpoint=endpoint, repository=repository, max_running=max_running).start()

    def list(
        self,
        *,
        endpoint: Endpoint | None = None,
        running: bool = False,
        repository: str | None = None,
        limit: int = 20,
    ) -> Any:
        """The account's conversations, newest first, as a table of handles (``ConversationList``). The server
        filters nothing but time and title, so ``running`` (not over, not paused) and ``repository`` (``owner/repo``
        or its link, as ``--repo`` takes it everywhere) are applied here, reading pages until ``limit`` match or
        :data:`MAX_LIST_PAGES` pages were read. Every argument is checked before anything is sent."""
        from .listing import ConversationList

        if not isinstance(running, bool):
            raise ValidationError(f"running must be True or False, got {running!r:.40}.")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_PAGES * 100:
            raise ValidationError(f"limit must be a whole number from 1 to {MAX_LIST_PAGES * 100}, got {limit!r:.40}.")
        wanted = validate_repository(repository).lower() if repository is not None else None
        endpoint = self._endpoint(endpoint)
        client = self.client(endpoint)
        found: list[Conversation] = []
        page_id: str | None = None
        pages = scanned = 0
        filtered = running or wanted is not None  # then a page holds fewer matches than it holds items
        while len(found) < limit and pages < MAX_LIST_PAGES:
            page = client.search(100 if filtered else min(100, limit - len(found)), page_id)
            pages, scanned = pages + 1, scanned + len(page.items)
            for conversation in page.items:
                if running and (conversation.is_final or conversation.status == ConversationStatus.PAUSED):
                    continue
                if wanted is not None and (conversation.selected_repository or "").lower() != wanted:
                    continue
                found.append(conversation)
            page_id = page.next_page_id
            if page_id is None:
                break
        found = found[:limit]
        handles = [self._known(c, endpoint) or ConversationHandle(c, self, endpoint) for c in found]
        more = " · more on the server" if page_id is not None else ""
        return ConversationList(handles, source=f"{endpoint.base_url} · {len(handles)} shown of {scanned} read{more}")

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
        timeout = validate_seconds(timeout, "timeout")
        if on_change is not None and not callable(on_change):
            raise ValidationError(f"on_change must be a function of the handle, got {type(on_change).__name__}.")
        final = wait_until_final(handle, self.client(handle.endpoint), self.schedule_for(handle.endpoint),
                                 timeout=timeout, on_change=on_change)
        if outcome_due(handle):  # (not for a conversation deleted while it was waited for: nothing is left to read)
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
        text = validate_message(client._text(text))  # the client's own check, before a paused sandbox is resumed
        if (handle.conversation.sandbox_status or "").upper() == "PAUSED":  # known paused: no 409 needed to learn it
            self._resume_and_wait(handle)
        try:
            client.send_message(handle.conversation, text)
        except ConflictError as error:  # paused since the last read (Cloud pauses old ones past 10 running)
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
        self.client(handle.endpoint).resume(handle.conversation)
        deadline = time.monotonic() + self.resume_timeout
        while True:
            self.refresh(handle)
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
        # DELETED first, then watching ends: a live panel turns into the final card showing DELETED.
        handle.update(dataclasses.replace(handle.conversation, status=ConversationStatus.DELETED, phase=None))
        self.unwatch(handle)
        if self.remember:
            for reference in (handle.id, handle.task_id):
                if reference:
                    self._store().forget(handle.endpoint.base_url, reference)

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


def map(task: Any, items: Any, *, repository: str | None = None, max_running: int = 10,  # noqa: A001
        endpoint: Endpoint | None = None) -> Any:
    """One conversation per item, at most ``max_running`` at once: see :meth:`Session.map`."""
    return get_session().map(task, items, repository=repository, max_running=max_running, endpoint=endpoint)
