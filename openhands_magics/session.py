"""The kernel-wide state, usable without IPython: a registry of connections (one per server, each with its clients
and its tracker of everything in flight there, :mod:`.connection`) and of handles (one per conversation), and the
record of every conversation started or watched in this process.

The magics are a thin front over one :class:`Session` (``get_session()``), as jupysql keeps its connections apart
from ``SqlMagic``; a script can use the same object::

    from openhands_magics.session import get_session, Endpoint
    conv = get_session().start("Fix the typo in README.md", repository="octo/demo")
    conv.wait()

A conversation is recorded the moment the server answers the start (with its start task's id), before anything is
displayed, so neither of its ids is ever lost.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

from .client import OpenHandsClient
from .config import (
    REMOTE_MIN_INTERVAL,
    is_loopback_url,
)
from .connection import Connection
from .display import show
from .endpoint import Endpoint
from .errors import ConcurrencyLimitError, OpenHandsError, ValidationError
from .files import Upload, prepare_uploads, upload_note
from .handle import ConversationHandle, validate_max_cost
from .models import Conversation, ConversationStatus
from .once import once_id
from .polling import PollingSource, PollSchedule
from .results import schema_of
from .start_options import StartOptions
from .store import get_store
from .validation import validate_message, validate_repository

__all__ = ["Endpoint", "Session", "get_session", "history", "last", "map"]

log = logging.getLogger("openhands_magics")
#: ``list`` reads at most this many pages (of 100) looking for matches: a filter with few matches stays bounded.
MAX_LIST_PAGES = 10


class PreparedStart(NamedTuple):
    """A start checked and made once, before anything is sent (:meth:`Session.prepare`): the task as it goes out
    (with the notes on its files and its result), where, with which settings, and the key the same-task rule and
    ``--once`` know it by. The magic asks :meth:`Session.same_task` with it, then :meth:`Session.launch` sends it:
    nothing is checked or hashed twice on the way."""

    task: Any
    repository: str | None
    endpoint: Endpoint
    options: StartOptions
    uploads: tuple[Any, ...]
    schema: Any
    budget: float | None
    key: str


class Session:
    """The registry of everything in flight in this process: endpoints to connections (each with its clients and
    its tracker), and one identity map of handles, so ``list``, ``--watch``, ``--reattach``, the commands and
    ``history()`` hand out the same handle for the same conversation; the settings (``schedule``, ``remember``,
    ``notify``, ``notebook``); and the entry points (``start``, ``attach``, ``find``, ``reattach``, ``list``, ``map``,
    ``show``, ``recorded``). The verbs are the handles' own (``handle.refresh()``, ``.wait()``, ``.send()``, ...),
    carried out through their connection: none is here."""

    def __init__(self, schedule: PollSchedule | None = None) -> None:
        #: How fast watching polls from now on (``%config OpenHandsMagics.poll_interval`` sets it).
        self.schedule = schedule or PollSchedule()
        self._connections: dict[Endpoint, Connection] = {}
        self._history: list[ConversationHandle] = []
        self._in_history: set[int] = set()
        #: Every handle this session gave out, by (server, conversation id or start task id): one per conversation.
        self._handles: weakref.WeakValueDictionary[tuple[str, str], ConversationHandle] = weakref.WeakValueDictionary()
        #: The latest handle started for each task (by its :func:`~.once.once_id`): a re-run while it runs shows it.
        self._same_task: weakref.WeakValueDictionary[str, ConversationHandle] = weakref.WeakValueDictionary()
        #: Those of them indexed while only their start task was known (looked through when an id is not found).
        self._unnamed: weakref.WeakSet[ConversationHandle] = weakref.WeakSet()
        #: The notebook this kernel runs, when known (the magic sets it): recorded on disk with each conversation.
        self.notebook: str | None = None
        #: Whether conversations started here are recorded on disk (``%openhands list --here`` after a restart).
        self.remember = True
        #: Whether the browser is told when a watched conversation ends (tab title, a permitted notification).
        self.notify = True

    # ------------------------------------------------------------------ connections
    def connection(self, endpoint: Endpoint) -> Connection:
        """The one connection of this endpoint (made on first use; kept, and usable again, after ``close``)."""
        connection = self._connections.get(endpoint)
        if connection is None:
            connection = self._connections.setdefault(endpoint, Connection(endpoint, self))
        return connection

    def client(self, endpoint: Endpoint) -> OpenHandsClient:
        """The shared blocking client for this endpoint: one connection pool across cells."""
        return self.connection(endpoint).client

    @property
    def connections(self) -> builtins.list[Connection]:
        return list(self._connections.values())

    @property
    def pollers(self) -> builtins.list[PollingSource]:
        """Each connection's polling source (``.running`` while it watches anything)."""
        return [c.source for c in self._connections.values()]

    @staticmethod
    def _endpoint(endpoint: Endpoint | None) -> Endpoint:
        """The endpoint given (checked: a URL string is not one), else the one the environment names."""
        if endpoint is None:
            return Endpoint.resolve()
        if not isinstance(endpoint, Endpoint):  # (the value is not echoed: a URL may carry a user and password)
            raise ValidationError(
                f'endpoint must be an Endpoint, e.g. Endpoint.resolve("https://..."), got {type(endpoint).__name__}.'
            )
        return endpoint

    # ------------------------------------------------------------------ the identity map
    def _index(self, handle: ConversationHandle) -> None:
        for reference in (handle.id, handle.task_id):
            if reference:
                self._handles[(handle.endpoint.base_url, reference)] = handle
        if handle.id is None:
            self._unnamed.add(handle)
        else:
            self._unnamed.discard(handle)

    def _known(self, conversation: Conversation, endpoint: Endpoint) -> ConversationHandle | None:
        """The handle already given out for this conversation on this server, if any (found by either id, without
        looking through every handle: a start costs the same after a thousand)."""
        base = endpoint.base_url
        for reference in (conversation.conversation_id, conversation.start_task_id):
            handle = self._handles.get((base, reference)) if reference else None
            if handle is not None and handle.is_same(conversation):
                return handle
        if conversation.conversation_id is None:
            return None
        for handle in list(self._unnamed):  # known by its task id, and it has named its conversation since
            if handle.endpoint.base_url == base and handle.is_same(conversation):
                self._index(handle)
                return handle
        return None

    def _handle(self, conversation: Conversation, endpoint: Endpoint) -> ConversationHandle:
        """The one handle of this conversation: the known one (given the fresher snapshot), else a new one."""
        handle = self._known(conversation, endpoint)
        if handle is None:
            handle = ConversationHandle(conversation, self, endpoint)
        else:  # (a snapshot read by conversation id does not name the start task: the handle keeps knowing it)
            if conversation.start_task_id is None and handle.task_id is not None:
                conversation = dataclasses.replace(conversation, start_task_id=handle.task_id)
            handle.update(conversation, handle.note)
        self._index(handle)
        return handle

    # ------------------------------------------------------------------ conversations
    def start(
        self,
        message: str,
        repository: str | None = None,
        *,
        endpoint: Endpoint | None = None,
        max_cost: float | None = None,
        once: bool = False,
        new: bool = False,
        branch: str | None = None,
        model: str | None = None,
        plan: bool = False,
        instructions: str | None = None,
        title: str | None = None,
        share: bool = False,
        secrets: Any = None,
        sandbox: str | None = None,
        queue: bool = False,
        upload: Any = None,
        returns: Any = None,
    ) -> ConversationHandle:
        """Start a conversation and record it; returns at once (watch it with ``watch`` or wait with ``.wait()``).
        ``max_cost``: interrupt the agent once its live cost passes this many dollars (``handle.max_cost``).

        ``upload`` (V1): DataFrames, bytes, text or file paths (a list; or a dict of names to values) put in the
        workspace's ``data/`` before the agent runs: the conversation starts idle, the files are uploaded once its
        sandbox is ready, then the task is sent with a note of where they are (this call waits for that). A failed
        upload is a line on the handle's card (``handle.note``); the conversation then waits idle, with its ids
        recorded. ``returns``: a schema (a dict of names to types, a dataclass, a JSON Schema); the agent is asked to
        write its result to ``.openhands/result.json``, read when its turn ends into ``handle.result``.

        ``once`` (V1): the new conversation's id is derived from the server, this notebook, the message and the
        repository (:mod:`.once`), and when a conversation with that id exists, its handle is given instead of a new
        run (its card says so); ``new=True`` starts another all the same.

        The start's settings (:class:`~.start_options.StartOptions`, checked before anything is sent): ``branch``,
        ``model``, ``plan`` (the planning agent), ``instructions`` (added to the system message), ``title``,
        ``share`` (public, with a share link), ``secrets`` (names of environment variables, or a mapping of name to
        value), ``sandbox`` (an existing sandbox's id). ``queue``: when the account already runs its most
        conversations (429), the handle is QUEUED and starts as soon as one ends (:mod:`.start_queue`)."""
        if not isinstance(once, bool) or not isinstance(new, bool) or not isinstance(queue, bool):
            raise ValidationError("once, new and queue must be True or False.")
        options = StartOptions.make(
            branch=branch,
            model=model,
            plan=plan,
            instructions=instructions,
            title=title,
            share=share,
            secrets=secrets,
            sandbox=sandbox,
        )
        ready = self.prepare(
            message, repository, endpoint=endpoint, max_cost=max_cost, upload=upload, returns=returns, options=options
        )
        return self.launch(ready, once=once, new=new, queue=queue)

    def prepare(
        self,
        message: str,
        repository: str | None = None,
        *,
        endpoint: Endpoint | None = None,
        max_cost: float | None = None,
        upload: Any = None,
        returns: Any = None,
        options: StartOptions | None = None,
    ) -> PreparedStart:
        """A start checked, before anything is sent (``options``: its settings, made by ``StartOptions.make``): what
        :meth:`launch` sends and :meth:`same_task` knows it by, made once."""
        budget = validate_max_cost(max_cost)
        if options is None:
            options = StartOptions()
        elif not isinstance(options, StartOptions):
            raise ValidationError(f"options must be made by StartOptions.make, got {type(options).__name__}.")
        uploads, schema = prepared_uploads(upload), schema_of(returns)
        task = with_extras(message, uploads, schema)
        where = self._endpoint(endpoint)
        key = self._task_key(task, repository, where, options)
        return PreparedStart(task, repository, where, options, uploads, schema, budget, key)

    def launch(
        self, ready: PreparedStart, *, once: bool = False, new: bool = False, queue: bool = False
    ) -> ConversationHandle:
        """Start what :meth:`prepare` made (see :meth:`start`, which is the two in one call)."""
        message, repository, endpoint, options, uploads, schema, budget, key = ready
        client = self.client(endpoint)
        if uploads and client.dialect().name != "v1":
            raise ValidationError("--upload needs OpenHands 1.7 or later (the V1 API); nothing was sent.")
        chosen = key if once and not new and client.dialect().name == "v1" else None
        if chosen is not None:
            if isinstance(message, str):  # (anything else is refused by the client, below, in its own words)
                validate_message(message)  # before the look-up: a message no request can carry sends nothing
            (found,) = client.read([Conversation(chosen)])
            if found is not None:
                handle = self.record(found, endpoint, remember=True)
                handle.task = handle.task or message
                when = found.created_at.astimezone().strftime("%H:%M") if found.created_at else "before"
                handle.set_note(f"already started at {when}: attached, not started again (--new starts another)")
                self._same_task[key] = handle
                return handle
        if uploads and isinstance(message, str):
            validate_message(message)  # (the task is sent after the start: it is checked before it)
        try:
            started = (
                client.start_idle_conversation(repository, conversation_id=chosen, options=options)
                if uploads
                else client.start_conversation(message, repository, conversation_id=chosen, options=options)
            )
        except ConcurrencyLimitError as error:
            if not queue or uploads:  # (a queued start sends its task at once: files cannot go in before it)
                raise
            for running in self.running(endpoint):  # (the tracker tells the queue when one of them ends)
                running.watch()
            handle = self.connection(endpoint).queue_start(message, repository, options, error, budget)
            handle.returns, handle.task = schema, message
            self._same_task[key] = handle
            return handle
        handle = self.record(started, endpoint, remember=True)
        handle.start_options = options or None
        self.connection(endpoint).report_ignored(handle, started)
        handle.max_cost, handle.returns, handle.task = budget, schema, message
        if uploads:  # (recorded above, the moment the server answered: a failed upload leaves it recoverable)
            problem = self.connection(endpoint).deliver(handle, uploads, message)
            if problem is not None:
                handle.set_note(problem, sticky=True)
        if once and not new and chosen is None:
            handle.set_note(
                "--once needs OpenHands 1.7 or later (the V1 API): started as a new conversation", sticky=True
            )
        self._same_task[key] = handle
        return handle

    def running(self, endpoint: Endpoint | None = None) -> builtins.list[ConversationHandle]:
        """The account's conversations running now (the newest 20 of them), as handles; none when they cannot be
        read (the line about a full account names them, and a queued start watches them, when it can)."""
        try:
            return builtins.list(self.list(endpoint=endpoint, running=True, limit=20))
        except OpenHandsError:
            return []

    def same_task(
        self,
        message: str | PreparedStart,
        repository: str | None = None,
        *,
        endpoint: Endpoint | None = None,
        options: StartOptions | None = None,
    ) -> ConversationHandle | None:
        """The conversation this session started for the same task (message, repository, server, notebook) and
        that is not over yet, if any: a notebook cell run again while its task runs shows it instead of paying for
        a second run (the magic asks, with what :meth:`prepare` made; a script that starts the same task twice gets
        two)."""
        key = (
            message.key
            if isinstance(message, PreparedStart)
            else self._task_key(message, repository, self._endpoint(endpoint), options)
        )
        handle = self._same_task.get(key)
        return handle if handle is not None and not handle.is_final else None

    def _task_key(
        self, message: object, repository: str | None, endpoint: Endpoint, options: StartOptions | None = None
    ) -> str:
        parts = [("repository", repository), *(options.once_parts() if options else ())]
        return once_id(endpoint.base_url, self.notebook, str(message), parts)

    def attach(self, reference: str, *, endpoint: Endpoint | None = None, remember: bool = False) -> ConversationHandle:
        """The handle of an existing conversation (the one this session has, else a new one): its id, its link,
        or (V1) its start task's id."""
        endpoint = self._endpoint(endpoint)
        return self.record(self.client(endpoint).get_conversation(reference), endpoint, remember=remember)

    def find(self, reference: str, *, endpoint: Endpoint | None = None) -> ConversationHandle:
        """The handle this session already has for that id (so ``conv`` in the notebook sees what a command did to
        it), refreshed; else a new one, as :meth:`attach`."""
        endpoint = self._endpoint(endpoint)
        client = self.client(endpoint)
        client._reference(reference)
        wanted = client.dialect().normalize_id(reference)
        handle = self._handles.get((endpoint.base_url, wanted))
        if handle is None:
            handle = next(
                (
                    h
                    for h in reversed(self._history)
                    if h.endpoint.base_url == endpoint.base_url and wanted in (h.id, h.task_id)
                ),
                None,
            )
        if handle is not None:
            handle.refresh()
            self._index(handle)
            self._keep(handle)
            return handle
        return self.attach(reference, endpoint=endpoint)

    def reattach(self, probes: builtins.list[Conversation], *, endpoint: Endpoint) -> builtins.list[ConversationHandle]:
        """Handles for conversations known by id (after a kernel restart), read in as few requests as the API
        allows; those the server no longer has are left out (and forgotten on disk)."""
        fresh = self.client(endpoint).read(probes) if probes else []
        handles = []
        for probe, conversation in zip(probes, fresh):
            if conversation is None:
                if self.remember:
                    get_store().forget_soon(endpoint.base_url, probe.conversation_id or probe.start_task_id or "")
                continue
            handles.append(self.record(conversation, endpoint))
        return handles

    def record(self, conversation: Conversation, endpoint: Endpoint, *, remember: bool = False) -> ConversationHandle:
        """Keep it in this process's record (and, ``remember``, on disk, with its conversation id once known); the
        handle this session already has for it, if any."""
        handle = self._handle(conversation, endpoint)
        if self._keep(handle):
            what = f"conversation {handle.id}" if handle.id else f"start task {handle.task_id}"
            log.info("recorded %s on %s", what, endpoint.base_url)
        if remember and self.remember:
            try:
                self._remember(handle)
            except Exception:  # the record on disk is a convenience: it must never cost a started conversation
                log.warning("could not record conversation %s on disk", handle.reference, exc_info=True)
        return handle

    def adopt(self, handle: ConversationHandle) -> None:
        """A handle made before its conversation existed (a queued start) now has its ids: found by them from now
        on, and recorded on disk as every start is."""
        self._index(handle)
        self._keep(handle)
        if self.remember:
            try:
                self._remember(handle)
            except Exception:  # (as in record: the record on disk never costs a started conversation)
                log.warning("could not record conversation %s on disk", handle.reference, exc_info=True)

    def _keep(self, handle: ConversationHandle) -> bool:
        """In ``history()`` from now on (once); whether it was new there."""
        if id(handle) in self._in_history:
            return False
        self._in_history.add(id(handle))
        self._history.append(handle)
        return True

    def _remember(self, handle: ConversationHandle) -> None:
        """On disk (queued now for the store's writer thread: written before anything reads the record, on
        ``close`` and at exit), and again once the start task names the conversation (the store merges the two)."""
        notebook, store = self.notebook, get_store()

        def add(h: ConversationHandle) -> None:
            c = h.conversation
            store.add_soon(
                base_url=h.endpoint.base_url,
                conversation_id=h.id,
                task_id=h.task_id,
                api=c.api,
                notebook=notebook,
                repository=c.selected_repository,
            )

        add(handle)
        if handle.id is None:

            def when_created(h: ConversationHandle) -> None:
                if h.id is not None:
                    h.unsubscribe(when_created)
                    self._index(h)
                    add(h)

            handle.subscribe(when_created)

    def forget(self, handle: ConversationHandle) -> None:
        """Deleted on the server: off the record on disk too (the handle stays, as DELETED)."""
        if self.remember:
            for reference in (handle.id, handle.task_id):
                if reference:
                    get_store().forget_soon(handle.endpoint.base_url, reference)

    def map(
        self,
        task: Any,
        items: Any,
        *,
        repository: str | None = None,
        max_running: int = 10,
        endpoint: Endpoint | None = None,
        max_cost: float | None = None,
        upload: Any = None,
        returns: Any = None,
        **options: Any,
    ) -> Any:
        """One conversation per item (``task`` a template with ``{item}``, or a function of the item), at most
        ``max_running`` at a time; returns the :class:`~openhands_magics.batch.Batch` at once (its queue runs in the
        I/O thread from the start, in a kernel or a script; ``.wait()`` only waits for it). Every argument is
        checked by the batch before anything is sent, the endpoint (default: from the environment) last.
        ``max_cost``: each conversation's budget guard, in dollars. ``options``: every start's settings, as
        :meth:`start` takes them (``branch``, ``model``, ``plan``, ``instructions``, ``title``, ``share``,
        ``secrets``, ``sandbox``). ``upload`` and ``returns`` as for :meth:`start`, for every conversation; with
        ``returns``, ``to_dataframe()`` has a column per field of the result."""
        from .batch import Batch

        return Batch(
            self,
            task,
            items,
            endpoint=endpoint,
            repository=repository,
            max_running=max_running,
            max_cost=max_cost,
            upload=upload,
            returns=returns,
            **options,
        ).start()

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
        handles = [self._handle(c, endpoint) for c in found]  # (the same handle as anywhere else)
        more = " · more on the server" if page_id is not None else ""
        return ConversationList(handles, source=f"{endpoint.base_url} · {len(handles)} shown of {scanned} read{more}")

    def watch(self, handle: ConversationHandle) -> bool:
        """Have its server's poller follow it (kept for :mod:`.display`, which calls it: ``handle.watch()``)."""
        return handle.watch()

    def recorded(self, endpoint: Endpoint, notebook: str | os.PathLike[str] | None) -> builtins.list[Any]:
        """The record on disk of this notebook's conversations on this server, oldest first (``StoredConversation``
        each), with what was just queued for the disk; none when the notebook is unknown or recording is off."""
        if notebook is None or not self.remember:
            return []
        return get_store().entries(base_url=endpoint.base_url, notebook=notebook)

    def schedule_for(self, endpoint: Endpoint) -> PollSchedule:
        """The schedule, with a floor for servers off this machine (they rate-limit; a local one need not)."""
        if is_loopback_url(endpoint.base_url) or self.schedule.interval >= REMOTE_MIN_INTERVAL:
            return self.schedule
        return PollSchedule(
            REMOTE_MIN_INTERVAL, max(REMOTE_MIN_INTERVAL, self.schedule.max_interval), self.schedule.growth
        )

    def show(self, handle: ConversationHandle, *, panel: bool = True) -> None:
        """Display it the best way the front end allows, watched live where a front end shows widgets."""
        show(self, handle, panel=panel)

    def history(self) -> builtins.list[ConversationHandle]:
        """Every conversation started or watched in this process, oldest first (a copy)."""
        return list(self._history)

    def last(self) -> ConversationHandle | None:
        return self._history[-1] if self._history else None

    # ------------------------------------------------------------------ shutting down
    def close(self) -> None:
        """Stop all watching, close every connection and stop the I/O thread (``%unload_ext``): no thread, task
        or socket is left. The record of conversations stays (what was queued for the disk is written now), and its
        handles keep working: clients are opened again on demand (and the I/O thread with the next watch)."""
        from ._io import get_io

        get_io().stop()  # (each connection's watches end and its async client closes, in the loop)
        for connection in self._connections.values():
            connection.close()
        if "openhands_magics.store" in sys.modules:  # (nothing was ever queued without it)
            from .store import stop_writer

            stop_writer()


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


def prepared_uploads(upload: Any) -> tuple[Any, ...]:
    """``upload=`` as the :class:`~.files.Upload` list to send: a list of values and paths, a dict of names to
    values, or what ``prepare_uploads`` made (the magic's ``--upload``, read from the notebook)."""
    if upload is None or (isinstance(upload, (list, tuple)) and not upload):
        return ()
    if isinstance(upload, tuple) and all(isinstance(u, Upload) for u in upload):
        return upload
    if isinstance(upload, Mapping):
        return prepare_uploads(list(upload), dict(upload))
    if isinstance(upload, (str, os.PathLike)) or not isinstance(upload, (list, tuple)):
        upload = [upload]
    return prepare_uploads(upload)


def with_extras(message: Any, uploads: tuple[Any, ...], schema: Any) -> Any:
    """The task with what it needs to say about its files (where they are) and its result (where to write it)."""
    if not isinstance(message, str):
        return message  # (the client refuses it in its own words)
    parts = [message.rstrip("\r\n")]
    if uploads:
        parts.append(upload_note(uploads))
    if schema is not None:
        parts.append(schema.instruction())
    return "\n\n".join(parts) if len(parts) > 1 else message


def map(
    task: Any,
    items: Any,
    *,
    repository: str | None = None,
    max_running: int = 10,  # noqa: A001
    endpoint: Endpoint | None = None,
    max_cost: float | None = None,
    upload: Any = None,
    returns: Any = None,
    **options: Any,
) -> Any:
    """One conversation per item, at most ``max_running`` at once: see :meth:`Session.map` (``branch=``,
    ``model=``, ``plan=``, ... as :meth:`Session.start` takes them)."""
    return get_session().map(
        task,
        items,
        repository=repository,
        max_running=max_running,
        endpoint=endpoint,
        max_cost=max_cost,
        upload=upload,
        returns=returns,
        **options,
    )
