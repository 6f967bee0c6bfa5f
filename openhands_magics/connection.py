"""A connection per server: what a handle's verbs are carried out through.

One :class:`Connection` per :class:`~.session.Endpoint` owns the blocking client (for the caller's own thread: a
refresh, a pause, a follow-up), the async client (made and used only in the I/O thread's loop, :mod:`._io`), and
the server's one :class:`~.tracker.Tracker` of everything in flight there, fed by two sources: its
:class:`~.polling.PollingSource` and its :class:`~.stream.StreamSource` (the agent servers' live event streams,
one socket per conversation, opened when the tracker says a watched handle has a conversation id and closed when it
leaves). The clients hold the per-server facts (the detected API, the auth header that worked).

The agent's controls that only its agent server has (``interrupt``, ``respond_to_confirmation``, the final
response) are sent from the I/O loop by the stream source, with the conversation's session key, which never leaves
``_protocol.agent``. When a turn ends, the answer is the finish action's message the stream saw, else the agent
server's ``agent_final_response``, else the app server's events; the title and cost are read again a few times
after the end (the real title comes after the finish), so the final card's values are final ones.

Why a blocking wait goes through the tracker: a wait of its own would poll in the kernel's thread, and every other
panel would stand still until it returned. Here the handle is tracked like any other, and the waiting thread blocks
on an event its handle's changes set, so one source polls for everyone and ``on_change`` runs in the waiting thread.

Threads: the tracker lives in the I/O loop; the kernel's thread reaches it only through :meth:`IOThread.call`, in
order. ``handle.watching`` is set at once in the caller's thread, so a panel starts with its button.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ._io import IOThread, get_io
from ._transport import _closed
from .errors import ConcurrencyLimitError, ConflictError, OpenHandsError, TransportError, ValidationError, WaitTimeout
from .models import Change, Conversation, ConversationStatus, Outcome, real_title
from .polling import PollingSource, PollSchedule, outcome_due
from .start_queue import StartQueue
from .stream import StreamSource, _lower, live_events_enabled
from .tracker import Tracker
from .validation import printable, validate_seconds

if TYPE_CHECKING:
    from .client import AsyncOpenHandsClient, OpenHandsClient
    from .events import Trajectory
    from .handle import ConversationHandle, Diff, Listener
    from .session import Endpoint, Session
    from .start_options import StartOptions

__all__ = ["Connection"]

log = logging.getLogger("openhands_magics")
#: The longest a blocking wait sleeps between looks at its handle (a change wakes it at once; this only bounds it).
WAIT_SLICE = 1.0
#: After a turn ends, when (seconds from the end) the title, cost and a missing answer are read again: the real
#: title is made after the finish, and the app server's events and metrics arrive in batches up to 30 s late.
LATE_READS = (3.0, 10.0, 35.0)
#: A card of its own expands to the diff of at most this many changed files (read when its turn ends; more: the
#: files line alone, and ``conv.diff()``).
CARD_DIFF_FILES = 10
#: What the result file holds between a follow-up and the agent's new result (``--returns``): the last turn's is
#: overwritten with it, so a turn that writes none says so instead of giving the last one again.
STALE_RESULT = b'{"openhands_magics": "no result was written for this message yet"}\n'
#: ``--share`` and ``--title`` after a turn: how many times they are given back, and how long each is given to hold.
KEEP_ATTEMPTS, KEEP_SETTLE = 3, 2.0
#: How long a blocking agent control (interrupt, confirm) waits for its answer.
CONTROL_TIMEOUT = 30.0
#: How long a blocking download (or an upload) may take.
FILE_TIMEOUT = 600.0
#: How long a start with files waits for its sandbox to be ready, and how often it looks.
READY_TIMEOUT = 600.0
READY_POLL = 1.0


class _Waiter:
    """A blocking wait's view of one handle: woken by every change of it, told the error that ended its watch."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: OpenHandsError | None = None
        #: Set by the handle's change that settled it, once the views before the waiter took it in (so a panel's
        #: final card is out before the wait returns, and a saved notebook keeps it).
        self.settled = False

    def poke(self, handle: ConversationHandle | None = None) -> None:
        if handle is not None and handle.is_final and not handle.watching:
            self.settled = True
        self.event.set()


class Connection:
    """One server: its clients, its tracker, and every verb a handle has."""

    #: How long a follow-up waits for a paused sandbox to run again before it gives up.
    resume_timeout = 60.0

    def __init__(self, endpoint: Endpoint, session: Session, io: IOThread | None = None) -> None:
        self.endpoint = endpoint
        self._session = session  # (for its settings: the poll schedule, whether to record on disk)
        self._io = io or get_io()
        self._lock = threading.Lock()
        self._client: OpenHandsClient | None = None
        self._aclient: AsyncOpenHandsClient | None = None  # the I/O loop's, made there
        self._closer_registered = False
        self.tracker = Tracker(
            session.schedule_for(endpoint),
            read_outcome=self._read_outcome,
            gave_up=self._gave_up,
            on_started=self._stream_it,
            on_left=self._left,
        )
        self.source = PollingSource(self.tracker, self._async_client)
        self.stream = StreamSource(
            self.tracker,
            endpoint.base_url,
            self._async_client,
            ca_bundle=endpoint.ca_bundle,
            use_env_proxy=bool(endpoint.use_env_proxy),
            on_change=self._guard,
            wake=self.source.wake,
        )
        #: Whether handles are streamed at all (``False``: polling only, as before the stream).
        self.streaming = True
        #: ``--queue``: the starts waiting for a place, fed by the tracker (``_left``).
        self.queue = StartQueue(self)
        #: The start options this server was found to ignore, each said once (see :meth:`report_ignored`).
        self._ignored_said: set[str] = set()
        self._waiters: dict[int, list[_Waiter]] = {}
        self._late: dict[int, object] = {}  # handle id -> its late reads' task (in the loop)

    # ------------------------------------------------------------------ clients
    @property
    def client(self) -> OpenHandsClient:
        """The blocking client, for the caller's thread: one connection pool across cells (made again after close)."""
        with self._lock:
            if self._client is None:
                from .client import OpenHandsClient

                self._client = OpenHandsClient(self.endpoint.api_key, **self.endpoint.options())
            return self._client

    def _async_client(self) -> AsyncOpenHandsClient:
        """The I/O loop's client. It does not retry by itself: the tracker's backoff does, and shows it."""
        if self._aclient is None:
            from ._protocol import NO_RETRIES
            from .client import AsyncOpenHandsClient

            self._aclient = AsyncOpenHandsClient(self.endpoint.api_key, **self.endpoint.options(), retry=NO_RETRIES)
        return self._aclient

    # ------------------------------------------------------------------ watching (the tracker, in the I/O loop)
    def watch(self, handle: ConversationHandle) -> bool:
        """Track it until it is final and what it did is read; from any thread, with or without a kernel."""
        if handle.is_final:  # nothing will change it (what it did is read when first asked for)
            return True
        handle.set_watching(True)
        if handle.queued:  # nothing to read yet: the queue tracks it once its start went through
            return True
        self._io.call(self._track, handle, self._session.schedule_for(self.endpoint))
        return True

    def unwatch(self, handle: ConversationHandle) -> None:
        handle.set_watching(False)
        if self._io.running:  # (else nothing tracks anything)
            self._io.call(self.tracker.unwatched, handle)

    def _track(self, handle: ConversationHandle, schedule: PollSchedule) -> None:
        if not self._closer_registered:
            self._closer_registered = True
            self._io.on_stop(self._shut)
        self.tracker.watched(handle, time.monotonic(), schedule)
        if handle in self.tracker:
            self.source.wake()

    def read_outcome_soon(self, handle: ConversationHandle) -> None:
        """Have the tracker read what the agent did of a final handle nobody watches (its read broke, or watching
        stopped while it was on its way); from any thread. It says "watching" until the read is in, so its
        listeners hear when it is (a batch's row is over then)."""
        if not outcome_due(handle):
            return
        handle.set_watching(True)
        self._io.call(self._track, handle, self._session.schedule_for(self.endpoint))

    def _loop_client(self) -> AsyncOpenHandsClient:
        """The I/O loop's client, for a call of the session's own (not the tracker's): it is closed with the loop."""
        if not self._closer_registered:  # (the async client is closed when the I/O thread stops)
            self._closer_registered = True
            self._io.on_stop(self._shut)
        return self._async_client()

    async def start_in_loop(
        self, message: str | None, repository: str | None = None, options: StartOptions | None = None
    ) -> Conversation:
        """Start a conversation with the I/O loop's client (a batch's queue sends its starts this way, so no thread
        waits on a POST); in the loop only. Like every start, it is not retried once the request may have left."""
        import asyncio

        client, loop = self._loop_client(), asyncio.get_running_loop()
        detecting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = getattr(self, "_detecting", None)
        if detecting is None or detecting[0] is not loop:  # (a lock of this loop: the I/O thread may have restarted)
            detecting = self._detecting = (loop, asyncio.Lock())
        async with detecting[1]:  # starts sent together detect the server's API once, not once each
            await client.dialect()
        if message is None:  # (files go in before the task: it waits idle)
            return await client.start_idle_conversation(repository, options=options)
        return await client.start_conversation(message, repository, options=options)

    async def resume_in_loop(self, handle: ConversationHandle) -> None:
        """Resume its sandbox with the I/O loop's client (a batch's queue resumes a row the server paused), read it
        again and watch it; in the loop only."""
        client = self._loop_client()
        await client.resume(handle.conversation)
        (fresh,) = await client.read([handle.conversation])
        if fresh is not None:
            handle.update(fresh)
        self.watch(handle)

    # ------------------------------------------------------------------ starts past the account's limit (--queue)
    def queue_start(
        self,
        message: str,
        repository: str | None,
        options: StartOptions | None,
        refusal: ConcurrencyLimitError,
        budget: float | None = None,
    ) -> ConversationHandle:
        """A QUEUED handle for a start the server refused for too many running (:mod:`.start_queue`): it starts as
        soon as one of them ends. In this kernel's record from now on (``last()``); on disk once it started."""
        from .handle import ConversationHandle
        from .start_queue import queued_conversation

        api = self.client.api or "v1"
        handle = ConversationHandle(
            queued_conversation(len(self.queue) + 1, refusal.limit, api), self._session, self.endpoint
        )
        handle.max_cost = budget
        self._session._keep(handle)  # noqa: SLF001
        self.queue.add(handle, message, repository, options, refusal)
        return handle

    def begin_queued(
        self, handle: ConversationHandle, conversation: Conversation, options: StartOptions | None = None
    ) -> None:
        """A queued start went through (in the loop): the handle takes its ids, is recorded, and is tracked if
        anyone watches it."""
        handle.update(conversation)
        handle.start_options = options or None
        self._session.adopt(handle)
        self.report_ignored(handle, conversation)
        if handle.watching:
            self._track(handle, self._session.schedule_for(self.endpoint))

    def _check_options(self, handle: ConversationHandle) -> None:
        """Once the conversation exists (in the loop): check, once, what it shows of the start's options."""
        import asyncio

        options = handle.start_options
        if options is None or handle.id is None:
            return
        handle.start_options = None
        handle.shared, handle.title_wanted = options.share, options.title
        asyncio.get_running_loop().create_task(self._apply_options(handle, options), name="openhands-options")

    async def _apply_options(self, handle: ConversationHandle, options: StartOptions) -> None:
        """What the conversation shows of the start's options, from a fresh read (a streamed snapshot has none of
        the server's fields). ``--share`` is made true with the web app's PATCH while the agent works, where the server
        took ``public`` without applying it (1.11.0 does so; once a turn is over, :meth:`_keep_options` does it, and
        gives the ``--title`` that 1.11.0 replaces with its own); any other option the conversation does not show is
        said once per server."""
        import asyncio

        fresh: Conversation | None = None
        for _ in range(15):  # (a conversation whose task just turned READY may not be readable for a moment)
            try:
                (fresh,) = await self._async_client().read([handle.conversation])
            except OpenHandsError:
                fresh = None
            if fresh is not None and fresh.sandbox_status is not None:
                break
            await asyncio.sleep(2.0)
        if fresh is None or fresh.sandbox_status is None:
            return
        extra = fresh.extra
        given = {"--branch": options.branch, "--model": options.model, "--sandbox": options.sandbox}
        shown = {
            "--branch": extra.get("selected_branch"),
            "--model": extra.get("llm_model"),
            "--sandbox": fresh.sandbox_id,
        }
        missed = tuple(flag for flag, value in given.items() if value and shown[flag] != value)
        self.report_ignored(handle, dataclasses.replace(fresh, ignored=missed), "did not apply")
        if options.share and extra.get("public") is not True and not handle.is_final:  # (else: _keep_options)
            try:
                fresh = await self._async_client().update(handle.conversation, public=True)
            except OpenHandsError as error:
                handle.set_note(f"--share: the server did not make it public ({error})", sticky=True)
                return
        if handle.is_same(fresh):  # (its status stays the tracker's: only the server's other fields are taken)
            handle.update(dataclasses.replace(handle.conversation, extra=fresh.extra), note=handle.note)

    def report_ignored(self, handle: ConversationHandle, started: Conversation, how: str = "ignored") -> None:
        """Say on the card, once per server and option, which start options the server did not take."""
        new = [flag for flag in started.ignored if flag not in self._ignored_said]
        if new:
            self._ignored_said.update(new)
            why = (
                "it does not know the field: an older OpenHands?"
                if how == "ignored"
                else "its conversation shows another value"
            )
            handle.set_note(f"this server {how} {', '.join(new)} ({why})", sticky=True)

    def _read_outcome(self, handle: ConversationHandle) -> None:
        """The tracker asks: read what the agent did (in the loop), then tell it. A failure is a line in
        ``outcome.problems``; it never stops the source."""
        import asyncio

        async def read() -> None:
            outcome: Outcome | None = None
            try:
                outcome = await self._read_outcome_now(handle)
            except OpenHandsError as error:
                outcome = Outcome(problems=(str(error),))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not leave the panel watching for ever
                log.exception("reading the outcome of %s failed", handle.reference)
            self.tracker.concluded(handle, outcome)

        asyncio.get_running_loop().create_task(read(), name="openhands-outcome")
        if handle.start_options is not None:  # (its first read found it over already: never streamed)
            self._check_options(handle)
        if handle.shared or handle.title_wanted:
            asyncio.get_running_loop().create_task(self._keep_options(handle), name="openhands-keep-options")

    @staticmethod
    def _kept_wrong(handle: ConversationHandle, fresh: Conversation | None) -> dict[str, Any]:
        """What the conversation does not show of ``--share`` and ``--title``: the PATCH that gives it back."""
        fields: dict[str, Any] = {}
        if handle.shared and (fresh is None or fresh.extra.get("public") is not True):
            fields["public"] = True
        if handle.title_wanted and (fresh is None or fresh.title != handle.title_wanted):
            fields["title"] = handle.title_wanted
        return fields

    async def _keep_options(self, handle: ConversationHandle) -> None:
        """``--share`` and ``--title`` once a turn ended. 1.11.0 keeps neither: its webhook saves the conversation
        afresh, without ``public``, at each status change of its agent (a share made while it ran is lost when it
        finishes), and names the conversation itself after its first turn, over the title it was given. Both are
        PATCHed back, and read back a moment later (the finish's own save may land after the read that saw it); a
        title the server gives later still is put back by the late reads (:meth:`_refresh_final`)."""
        import asyncio

        client = self._async_client()
        for attempt in range(KEEP_ATTEMPTS + 1):
            try:
                (fresh,) = await client.read([handle.conversation])
                wrong = self._kept_wrong(handle, fresh)
                if not wrong and attempt:
                    return  # it held past the finish
                if attempt == KEEP_ATTEMPTS:
                    break
                if wrong:
                    fresh = await client.update(handle.conversation, **wrong)
            except OpenHandsError as error:
                handle.set_note(f"--share/--title: the server did not take them ({error})", sticky=True)
                return
            if fresh is not None and handle.is_same(fresh):
                handle.update(_with_facts(handle.conversation, fresh), note=handle.note)
            await asyncio.sleep(KEEP_SETTLE)
        lost = " and ".join(f"--{'share' if name == 'public' else name}" for name in wrong)
        handle.set_note(f"this server keeps undoing {lost}; set it in the web app", sticky=True)

    async def _read_outcome_now(self, handle: ConversationHandle) -> Outcome:
        """What the agent did, and the structured result when one was asked for (``--returns``)."""
        outcome = await self._read_outcome_parts(handle)
        if handle.returns is None:
            return outcome
        return with_result(outcome, await self.result_in_loop(handle))

    async def result_in_loop(self, handle: ConversationHandle) -> tuple[Any, str | None]:
        """(the result, None) or (None, why there is none: one line), read from the workspace and checked."""
        from ._protocol import agent
        from .errors import NotFoundError
        from .results import MAX_RESULT_BYTES, RESULT_PATH

        access = agent.access_for(self.endpoint.base_url, handle.id) if handle.conversation.api == "v1" else None
        if access is None:
            return None, "no result: its agent server is not reachable to read " + RESULT_PATH
        try:
            data = await self.download_in_loop(handle, access, RESULT_PATH, MAX_RESULT_BYTES)
        except NotFoundError:
            return None, f"no result: the agent did not write {RESULT_PATH}"
        except OpenHandsError as error:
            return None, f"no result: reading {RESULT_PATH} failed ({error})"
        if data == STALE_RESULT:
            return None, f"no new result: the agent did not write {RESULT_PATH} again for this message"
        try:
            return handle.returns.check(data), None
        except ValueError as error:
            return None, f"invalid result: {error}"
        except Exception as error:  # a dataclass's own __init__/__post_init__ may refuse the values
            return None, f"invalid result: {type(error).__name__}: {printable(str(error))[:200]}"

    async def _read_outcome_parts(self, handle: ConversationHandle) -> Outcome:
        """What the agent did (see :meth:`_read_what_it_did`) and, for a card of its own with a few files changed,
        their diff (one read per file, together), so the final card expands to it."""
        import asyncio

        from .diffs import Diff

        outcome = await self._read_what_it_did(handle)
        changes = outcome.changes or ()
        if not (handle.card_diff and 0 < len(changes) <= CARD_DIFF_FILES and handle.conversation.api == "v1"):
            return outcome
        client = self._async_client()
        parts = await asyncio.gather(
            *(client.diff(handle.conversation, c.path) for c in changes), return_exceptions=True
        )
        texts = []
        for part in parts:
            if isinstance(part, asyncio.CancelledError):
                raise part
            if isinstance(part, OpenHandsError):  # (the files line stays; conv.diff() may try again)
                return dataclasses.replace(outcome, problems=(*outcome.problems, f"diff: {part}"))
            if isinstance(part, BaseException):
                raise part
            texts.append(part.unified())
        return dataclasses.replace(outcome, diff=Diff.join(texts))

    async def _read_what_it_did(self, handle: ConversationHandle) -> Outcome:
        """The answer (the finish message the stream saw, else the agent server's final response, else the app
        server's events) and the changed files, read together."""
        import asyncio

        client = self._async_client()
        if handle.conversation.api != "v1" or not (self.streaming and live_events_enabled()):
            return await client.outcome(handle.conversation)  # (no agent server to ask: the dialect's own reading)
        streamed = handle.activity.answer if handle.activity.source == "stream" else None

        async def answer() -> str | None:
            if streamed:
                return streamed
            final = await self._final_response(handle)
            return final if final is not None else await client.answer(handle.conversation)

        async def facts() -> None:
            # The stream says when the agent is done, the app server what the conversation is: its title, its pull
            # requests, its cost. Read once now, so the final card has them at once (its status stays the
            # stream's: the app server may still say "running" for a moment).
            (fresh,) = await client.read([handle.conversation])
            if fresh is not None:
                kept = _with_facts(handle.conversation, fresh)
                if kept != handle.conversation:
                    handle.update(kept, note=handle.note)

        answered, changed, read = await asyncio.gather(
            answer(), client.changes(handle.conversation), facts(), return_exceptions=True
        )
        if isinstance(read, asyncio.CancelledError):
            raise read  # (a failed read of the facts is no problem of the outcome: the late reads try again)
        problems = []
        for name, part in (("answer", answered), ("changes", changed)):
            if isinstance(part, asyncio.CancelledError):
                raise part
            if isinstance(part, OpenHandsError):
                problems.append(f"{name}: {part}")
            elif isinstance(part, BaseException):
                raise part
        return Outcome(
            answered if isinstance(answered, str) else None,
            changed if isinstance(changed, tuple) else None,
            tuple(problems),
        )

    async def _final_response(self, handle: ConversationHandle) -> str | None:
        """The agent server's ``agent_final_response``; None when there is no agent server to ask or it failed."""
        from ._protocol import agent

        access = agent.access_for(self.endpoint.base_url, handle.id)
        if access is None:
            return None
        try:
            return agent.read_final_response(await self.stream.agent_call(agent.final_response(access), access))
        except OpenHandsError:
            return None

    # ------------------------------------------------------------------ the stream's side (in the loop)
    def _stream_it(self, handle: ConversationHandle) -> None:
        """The tracker says it has a conversation id: listen to its events (a no-op once listening)."""
        late = self._late.pop(id(handle), None)
        if late is not None:
            late.cancel()  # type: ignore[attr-defined]
        if handle.start_options is not None:
            self._check_options(handle)
        if self.streaming and live_events_enabled():
            self.stream.follow(handle)

    def _left(self, handle: ConversationHandle) -> None:
        """It is no longer watched: its socket closes (if no other handle of it listens); if its turn ended, the
        title, cost and a missing answer are read again a few times, and a queued start may have a place now."""
        self.stream.drop(handle)
        if handle.is_final:
            self.queue.slot_freed()
        if handle.is_final and handle.id is not None and handle.status != ConversationStatus.DELETED:
            import asyncio

            if id(handle) not in self._late:
                self._late[id(handle)] = asyncio.get_running_loop().create_task(
                    self._read_late(handle), name="openhands-late-reads"
                )

    async def _read_late(self, handle: ConversationHandle) -> None:
        import asyncio

        try:
            start = time.monotonic()
            for at in LATE_READS:
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                if not handle.is_final or handle in self.tracker:  # a follow-up: the tracker has it again
                    return
                await self._refresh_final(handle)
                if self._final_values_known(handle):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a late read is a nicety: it never stops anything
            log.debug("a late read of %s failed", handle.reference, exc_info=True)
        finally:
            if self._late.get(id(handle)) is asyncio.current_task():
                self._late.pop(id(handle), None)

    @staticmethod
    def _final_values_known(handle: ConversationHandle) -> bool:
        title = handle.title or ""
        return real_title(title) is not None and (handle.outcome is None or bool(handle.answer))

    async def _refresh_final(self, handle: ConversationHandle) -> None:
        """Read a final conversation again: its title, cost and PRs are taken (its status is the tracker's
        business), and a missing answer is asked for again."""
        try:
            (fresh,) = await self._async_client().read([handle.conversation])
        except OpenHandsError:
            return
        if fresh is None or not handle.is_final or handle in self.tracker:
            return
        wrong = self._kept_wrong(handle, fresh) if real_title(fresh.title) is not None else {}
        if wrong:  # (the server named it itself, late, over --title; or undid --share again)
            try:
                fresh = await self._async_client().update(handle.conversation, **wrong)
            except OpenHandsError:
                pass
        old = handle.conversation
        kept = _with_facts(old, fresh)
        if kept != old:
            handle.update(kept, note=handle.note)
        outcome = handle.outcome
        if outcome is not None and not outcome.answer:
            try:
                answer = await self._final_response(handle) or await self._async_client().answer(handle.conversation)
            except OpenHandsError:
                return
            if answer and handle.outcome is outcome:
                handle.set_outcome(dataclasses.replace(outcome, answer=answer))

    def _guard(self, handle: ConversationHandle) -> None:
        """The budget guard: once the live cost passes the handle's ``max_cost``, the agent is interrupted (once)
        and the card says why."""
        limit = handle.max_cost
        cost = handle.activity.cost
        if limit is None or cost is None or cost.usd is None or cost.usd <= limit or handle.budget_spent:
            return
        handle.budget_spent = True
        from ._protocol import agent

        note = f"Stopped the agent: its cost ${cost.usd:,.2f} passed --max-cost ${limit:,.2f}."
        handle.set_note(note, sticky=True)
        access = agent.access_for(self.endpoint.base_url, handle.id)
        if access is None:
            handle.set_note(f"Could not stop the agent: its cost ${cost.usd:,.2f} passed --max-cost.", sticky=True)
            return
        import asyncio

        async def stop() -> None:
            try:
                await self.stream.agent_call(agent.interrupt(access), access)
            except OpenHandsError as error:
                handle.set_note(f"Its cost passed --max-cost, but stopping the agent failed: {error}", sticky=True)

        asyncio.get_running_loop().create_task(stop(), name="openhands-budget")

    def _gave_up(self, handle: ConversationHandle, error: OpenHandsError) -> None:
        with self._lock:
            for waiter in self._waiters.get(id(handle), ()):
                waiter.error = error

    async def _shut(self) -> None:
        """In the loop, as it stops: every watch ends, the source stops, the async client closes."""
        self._closer_registered = False
        self.source.stop()
        await self.stream.aclose()
        with self._lock:  # a blocking wait ends with the line a closed client gives, not a wait for ever
            for waiter in [w for waiters in self._waiters.values() for w in waiters]:
                waiter.error = _closed()
                waiter.poke()
        self.tracker.close()
        for task in list(self._late.values()):  # (after the tracker: its last handles' _left may start some)
            task.cancel()  # type: ignore[attr-defined]
        self._late.clear()
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the blocking client (made again on demand) and every event stream of this server (a watched
        handle opens its own again with its next read); the rest of the I/O side closes when the I/O thread stops."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._io.running:
            self._io.call(self.stream.stop)

    # ------------------------------------------------------------------ a blocking wait
    def wait(
        self, handle: ConversationHandle, timeout: float | None = None, on_change: Listener | None = None
    ) -> Conversation:
        """Block until the tracker has settled it (final, and what it did read); WaitTimeout after ``timeout``."""
        timeout = validate_seconds(timeout, "timeout")
        if on_change is not None and not callable(on_change):
            raise ValidationError(f"on_change must be a function of the handle, got {type(on_change).__name__}.")
        if self._io.in_loop():
            raise ValidationError("wait() cannot be called from a view or a listener; use it in a cell.")
        if handle.is_final and not handle.watching:  # (nothing to watch: read what it did, if not yet)
            self._conclude_quietly(handle)
            return handle.conversation
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = _Waiter()
        with self._lock:
            self._waiters.setdefault(id(handle), []).append(waiter)
        handle.subscribe(waiter.poke)
        mine = not handle.watching  # the wait started the watch: it ends it if it gives up early
        seen = handle.conversation.status_line
        settled = quiet = False
        try:
            self.watch(handle)
            while True:
                waiter.event.clear()
                if handle.conversation.status_line != seen:
                    seen = handle.conversation.status_line
                    if on_change is not None:
                        on_change(handle)  # (in the waiting thread, never the I/O thread)
                if waiter.error is not None:
                    raise waiter.error
                if waiter.settled:
                    settled = True
                    break
                if not handle.watching:
                    if handle.is_final and quiet:  # final outside the tracker (a refresh after a stop), and no
                        self._conclude_quietly(handle)  # change is on its way to the views: nothing to watch
                        settled = True
                        break
                    if not handle.is_final:
                        mine = True  # someone stopped watching it; the wait still needs it
                        self.watch(handle)
                quiet = handle.is_final and not handle.watching  # (looked at again after one more slice)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    where = handle.url or f"start task {handle.task_id}"
                    raise WaitTimeout(
                        f"Still {printable(handle.conversation.status_line)} after {timeout:g} s; it goes on: {where}"
                    )
                waiter.event.wait(WAIT_SLICE if remaining is None else min(WAIT_SLICE, remaining))
        finally:
            handle.unsubscribe(waiter.poke)
            with self._lock:
                waiters = self._waiters.get(id(handle), [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(id(handle), None)
            if not settled and mine and handle.watching:
                self.unwatch(handle)
        return handle.conversation

    def _conclude_quietly(self, handle: ConversationHandle) -> None:
        if outcome_due(handle):  # (not for one deleted: nothing is left to read)
            try:
                self.conclude(handle)
            except OpenHandsError as error:  # the status is what was waited for; the details can be read later
                handle.set_outcome(Outcome(problems=(str(error),)))

    # ------------------------------------------------------------------ reading, in the caller's thread
    def refresh(self, handle: ConversationHandle) -> Conversation:
        handle.update(self.client.refresh(handle.conversation))
        return handle.conversation

    def conclude(self, handle: ConversationHandle) -> Outcome | None:
        """Read what the agent did in its latest turn (answer, changed files) and keep it on the handle; the
        tracker's owner does the same, in the I/O thread, when it sees a turn end. An answer the app server's events
        do not hold yet (they arrive in batches) is asked of the agent server."""
        outcome = self.client.outcome(handle.conversation)
        if not outcome.answer and handle.conversation.api == "v1" and handle.id and not self._io.in_loop():
            from ._protocol import agent

            access = agent.access_for(self.endpoint.base_url, handle.id)
            if access is not None and self.streaming and live_events_enabled():
                try:
                    answer = agent.read_final_response(self._control(agent.final_response(access), access))
                except OpenHandsError:
                    answer = None
                if answer:
                    outcome = dataclasses.replace(outcome, answer=answer)
        if handle.returns is not None and not self._io.in_loop():
            outcome = with_result(outcome, self._blocking(self.result_in_loop(handle), None, FILE_TIMEOUT))
        handle.set_outcome(outcome)
        return handle.outcome

    def changes(self, handle: ConversationHandle) -> tuple[Change, ...]:
        return self.client.changes(handle.conversation)

    def diff(self, handle: ConversationHandle, path: str | None = None) -> Diff:
        from .diffs import Diff

        paths = [path] if path is not None else [c.path for c in handle.changes()]
        return Diff.join(self.client.diff(handle.conversation, p).unified() for p in paths)

    # ------------------------------------------------------------------ steering
    def send(self, handle: ConversationHandle, text: str, uploads: tuple[Any, ...] = ()) -> None:
        """A follow-up (one protocol operation: a paused sandbox is resumed and waited for, the message is taken at
        most once); the agent works again from now, and the handle is watched again at once. While the conversation
        is still starting, the message is queued on the server for it instead (delivered once it is ready).
        ``uploads`` (:class:`~.files.Upload`): put in its workspace first (its sandbox resumed if paused); the
        message then says where they are, and nothing is sent if one fails."""
        if uploads:
            self._upload_first(handle, uploads)
        elif handle.id is None and handle.task_id is not None and not handle.is_final:
            self.client.queue_message(handle.conversation, text)
            handle.set_note("follow-up queued: it is sent once the conversation has started")
            self.watch(handle)
            return
        from .session import with_extras

        interval = min(1.0, self._session.schedule.interval)
        # Where the files are, and (asked again) where to write the result, as a start's message says them.
        said = with_extras(text.rstrip(), uploads, handle.returns) if uploads or handle.returns is not None else text
        if handle.returns is not None:  # (the last turn's result file is marked, never taken for this one's)
            self._mark_result_stale(handle)
        running = self.client.follow_up(
            handle.conversation, said, resume_timeout=self.resume_timeout, interval=interval
        )
        handle.begin_turn(running, text)
        self.watch(handle)

    def _upload_first(self, handle: ConversationHandle, uploads: tuple[Any, ...]) -> None:
        """A follow-up's files, in its workspace before the message is sent (each call waits here)."""
        if handle.conversation.api != "v1":
            raise ValidationError("--upload needs OpenHands 1.7 or later (the V1 API); nothing was sent.")
        if handle.id is None:
            raise ValidationError(
                f"{handle.reference} has no sandbox to put files in yet (it is still starting): nothing was sent."
            )
        if handle.conversation.sandbox_status == "PAUSED":  # (a paused sandbox's agent server takes no file)
            self.resume(handle)
        try:
            self._blocking(self._upload_when_ready(handle, uploads), None, READY_TIMEOUT + FILE_TIMEOUT)
        except OpenHandsError as error:
            raise type(error)(f"Uploading the files failed ({error}); nothing was sent.") from None

    async def _upload_when_ready(self, handle: ConversationHandle, uploads: tuple[Any, ...]) -> None:
        access = await self._ready_access(handle, self._loop_client(), until_final=False)
        await self.upload_in_loop(handle, access, uploads)

    async def _ready_access(
        self, handle: ConversationHandle, client: AsyncOpenHandsClient, *, until_final: bool
    ) -> Any:
        """Its agent server and key once its sandbox is ready (read again every :data:`READY_POLL` s, at most
        :data:`READY_TIMEOUT` s); ``until_final``: None if it ends first (a start task that failed: the card says
        why)."""
        import asyncio

        from ._protocol import agent

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if until_final and handle.is_final:
                return None
            if handle.conversation.sandbox_status in ("MISSING", "ERROR"):
                raise ConflictError(f"its sandbox is {handle.conversation.sandbox_status.lower()}")
            if handle.id is not None and handle.status != ConversationStatus.STARTING:
                access = agent.access_for(self.endpoint.base_url, handle.id)
                if access is not None and handle.conversation.sandbox_status in (None, "RUNNING"):
                    return access
            if time.monotonic() > deadline:
                raise TransportError(f"its sandbox was not ready after {READY_TIMEOUT:g} s")
            await asyncio.sleep(READY_POLL)
            try:
                (fresh,) = await client.read([handle.conversation])
            except (TransportError, ConflictError):
                continue  # (a read that failed is tried again until the deadline)
            if fresh is not None:
                handle.update(fresh)

    def _mark_result_stale(self, handle: ConversationHandle) -> None:
        """Overwrite the result file with :data:`STALE_RESULT` before a follow-up (at best: a paused sandbox has no
        agent server to take it, and its last turn's file may then be read again)."""
        from ._protocol import agent
        from .files import Upload
        from .results import RESULT_PATH

        access = agent.access_for(self.endpoint.base_url, handle.id) if handle.conversation.api == "v1" else None
        if access is None or handle.conversation.sandbox_status not in (None, "RUNNING"):
            return
        try:
            self._blocking(self.upload_in_loop(handle, access, [Upload(RESULT_PATH, STALE_RESULT, "")]), access)
        except OpenHandsError:
            log.info("could not mark the result of %s as the last turn's", handle.reference)

    def pause(self, handle: ConversationHandle) -> None:
        self.client.pause(handle.conversation)
        self.refresh(handle)

    def resume(self, handle: ConversationHandle) -> None:
        self.client.resume(handle.conversation)
        self.refresh(handle)
        self.watch(handle)

    def delete(self, handle: ConversationHandle) -> None:
        """Delete it on the server; the handle stays, as DELETED, and watching ends."""
        self.client.delete(handle.conversation)
        # DELETED first, then watching ends: a live panel turns into the final card showing DELETED.
        handle.update(dataclasses.replace(handle.conversation, status=ConversationStatus.DELETED, phase=None))
        self.unwatch(handle)
        self._session.forget(handle)

    # ------------------------------------------------------------------ the agent's controls
    def events(self, handle: ConversationHandle) -> Trajectory:
        """Every event so far, from the app server's events search, every page (oldest first)."""
        from ._secrets import Secrets, secrets
        from ._protocol import agent
        from .events import Trajectory, parse

        if handle.id is None:
            raise ValidationError(
                f"{handle.reference} has not created its conversation yet, so it has no events: try again soon."
            )
        known = Secrets(sorted({*secrets(), *agent.session_keys()}, key=len, reverse=True))
        events, seen, page_id = [], set(), None
        for _ in range(1000):  # (100 000 events at most)
            page = self.client.events(handle.conversation, None, page_id)
            for item in page.items:
                item_id = item.get("id")
                if isinstance(item_id, str):
                    if item_id in seen:
                        continue
                    seen.add(item_id)
                event = parse(item, known=known)
                if event is not None:
                    events.append(event)
            page_id = page.next_page_id
            if not page_id:
                break
        return Trajectory(events)

    def _access(self, handle: ConversationHandle, what: str) -> Any:
        """The conversation's agent server and key, read again from the app server if not known yet."""
        from ._protocol import agent

        if handle.id is None:
            raise ValidationError(f"{handle.reference} is still starting: there is no agent to {what} yet.")
        if handle.conversation.api != "v1":
            raise ValidationError(f"This server speaks the V0 API: it cannot {what}; do it in the OpenHands app.")
        access = agent.access_for(self.endpoint.base_url, handle.id)
        if access is None:
            self.refresh(handle)
            access = agent.access_for(self.endpoint.base_url, handle.id)
        if access is None:
            raise ConflictError(
                f"Conversation {handle.id} has no running agent server to {what} (its sandbox is not running)."
            )
        return access

    def _control(self, request: Any, access: Any) -> Any:
        return self._blocking(self.stream.agent_call(request, access), access)

    def _blocking(self, work: Any, access: Any, timeout: float = CONTROL_TIMEOUT) -> Any:
        """Run an agent-server coroutine in the I/O loop and wait here for its value (at most ``timeout`` s)."""
        if self._io.in_loop():
            work.close()
            raise ValidationError("The agent's controls cannot be used from a view or a listener; use them in a cell.")
        future = self._io.submit(work)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            where = f"The agent server at {access.base}" if access is not None else "The server"
            raise TransportError(f"{where} did not answer within {timeout:g} s.") from None

    # ------------------------------------------------------------------ the agent's workspace (agent server)
    async def workspace_in_loop(self, handle: ConversationHandle, access: Any) -> str:
        """The absolute path of the agent's workspace (asked once per handle: it does not move)."""
        from ._protocol import agent

        if handle.workspace_dir is None:
            handle.workspace_dir = await self.stream.run_agent(agent.workspace(access), access)
        return handle.workspace_dir

    async def files_in_loop(self, handle: ConversationHandle, access: Any) -> tuple[str, ...]:
        from ._protocol import agent

        root = await self.workspace_in_loop(handle, access)
        started = handle.conversation.created_at
        since = started.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if started else None
        return await self.stream.run_agent(agent.list_files(access, root, since), access)

    async def download_in_loop(self, handle: ConversationHandle, access: Any, path: str, max_bytes: int) -> bytes:
        """The bytes of a file in the workspace (``path`` relative to it, or absolute inside it: else refused)."""
        from ._protocol import agent
        from .errors import NotFoundError
        from .files import workspace_path

        target = workspace_path(await self.workspace_in_loop(handle, access), path)
        try:
            data: bytes = await self.stream.agent_call(agent.download(access, target, max_bytes), access)
        except NotFoundError:
            raise NotFoundError(
                f"There is no file {printable(path[:200])!r} in the agent's workspace (conv.files() lists its files)."
            ) from None
        return data

    async def upload_in_loop(self, handle: ConversationHandle, access: Any, uploads: Any) -> None:
        """Put each :class:`~.files.Upload` in the workspace, at its path there."""
        from ._protocol import agent
        from .files import workspace_path

        root = await self.workspace_in_loop(handle, access)
        for item in uploads:
            await self.stream.agent_call(agent.upload(access, workspace_path(root, item.path), item.data), access)

    async def deliver_in_loop(self, handle: ConversationHandle, uploads: Any, message: str) -> str | None:
        """The rest of a start with files (``--upload``), in the loop: once the idle conversation's sandbox is
        ready, upload the files into its workspace, then send the task (``run``), and the turn begins. None when
        the task was sent; else the line that says what failed, and how to go on (the conversation waits idle)."""
        client = self._loop_client()
        where = "`conv.send(TASK)` or `%openhands --continue {} TASK` sends the task"
        try:
            access = await self._ready_access(handle, client, until_final=True)
            if access is None:  # (the start task failed: the card says why)
                return None
            await self.upload_in_loop(handle, access, uploads)
        except OpenHandsError as error:
            return f"Uploading the files failed ({error}); nothing was sent and it waits idle: " + where.format(
                handle.id or handle.reference
            )
        try:
            running = await client.follow_up(handle.conversation, message, interval=READY_POLL)
        except OpenHandsError as error:
            return f"Sending the task failed ({error}); the files are in its workspace and it waits idle: " + (
                where.format(handle.id)
            )
        handle.begin_turn(running)
        return None

    def deliver(self, handle: ConversationHandle, uploads: Any, message: str) -> str | None:
        """:meth:`deliver_in_loop`, waited for here."""
        return self._blocking(self.deliver_in_loop(handle, uploads, message), None, READY_TIMEOUT + FILE_TIMEOUT)

    def files(self, handle: ConversationHandle) -> tuple[str, ...]:
        access = self._access(handle, "list its files")
        return self._blocking(self.files_in_loop(handle, access), access)

    def download(self, handle: ConversationHandle, path: str) -> bytes:
        from .files import MAX_DOWNLOAD_BYTES

        access = self._access(handle, "download its files")
        work = self.download_in_loop(handle, access, path, MAX_DOWNLOAD_BYTES)
        return self._blocking(work, access, FILE_TIMEOUT)

    def interrupt(self, handle: ConversationHandle) -> None:
        """Stop the agent at once (its agent server's ``interrupt``); the conversation stays."""
        from ._protocol import agent

        access = self._access(handle, "interrupt")
        self._control(agent.interrupt(access), access)
        if not handle.is_final:
            self.watch(handle)

    def respond_to_confirmation(self, handle: ConversationHandle, *, accept: bool, reason: str = "") -> None:
        from ._protocol import agent

        if not isinstance(reason, str):
            raise ValidationError(f"reject() takes the reason as text, got {type(reason).__name__}.")
        access = self._access(handle, "confirm" if accept else "reject")
        from ._secrets import blank

        self._control(agent.respond_to_confirmation(access, accept, blank(reason)[:2000]), access)
        self.watch(handle)

    def __repr__(self) -> str:
        return f"<Connection {self.endpoint.base_url} watching {len(self.tracker)}>"


def with_result(outcome: Outcome, read: tuple[Any, str | None]) -> Outcome:
    """The outcome with the structured result, or why there is none (also a problem line: the card shows it)."""
    result, error = read
    problems = outcome.problems + ((error,) if error else ())
    return dataclasses.replace(outcome, result=result, result_error=error, problems=problems)


def _with_facts(old: Conversation, fresh: Conversation) -> Conversation:
    """``old`` with what a fresh read knows better: the title (the real one is made late), the pull requests, and
    the cost (never a lower one: the app server's metrics arrive in batches, so a lower figure is an older one)."""
    cost = old.cost
    if fresh.cost is not None and not (old.cost is not None and _lower(fresh.cost, old.cost)):
        cost = fresh.cost
    title = old.title if fresh.title is None or (real_title(fresh.title) is None and old.title) else fresh.title
    return dataclasses.replace(
        old,
        title=title,
        cost=cost,
        pr_numbers=fresh.pr_numbers or old.pr_numbers,
        extra=fresh.extra or old.extra,  # (a streamed snapshot has none of the server's other fields: public, ...)
    )
