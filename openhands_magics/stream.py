"""The live event stream: a second *source of updates* beside polling, fed by the agent server's WebSocket.

Why: polling sees a finish up to 30 s late (the pace slows while nothing changes) and never sees what the agent
does. The agent server sends every event within milliseconds (``/sockets/events/{id}``, recorded in
``shared/openhands-api.md``): actions, observations, ``execution_status`` (the done signal) and ``stats`` (live
cost). This module keeps **one socket per conversation for the whole kernel**, however many panels show it (a
:class:`_Subscription` per conversation id, holding every handle of it), in the I/O thread's loop, and feeds what it
hears into the same :class:`~.tracker.Tracker` polling feeds: a status change is a snapshot handed to
``Tracker.apply``, so the tracker stays the one owner of what a handle is (final, concluded, watched). Events are
folded into ``handle.activity`` (:mod:`.events`).

What polling still does: it finds the conversation's id (the start task), reads the snapshot the socket does not
carry (title, sandbox, PRs), and checks a streamed conversation rarely (``Tracker.streamed``). Where the socket
cannot be had (V0; a proxy refusing the upgrade; close codes 4001/4004/1013; the agent server unreachable), the
conversation is polled as before and its activity comes from the app server's events search instead
(``timestamp__gte``, paged), said once in ``activity.notice``. A dropped socket is opened again with backoff, asking
only for what came after the last event (``resend_mode=since``).

Replays: on connect the server first sends a ``full_state`` (stamped *now*), then, with ``resend_mode=all``, every
past event oldest first. A past ``execution_status: finished`` (of an earlier turn) must not settle a handle that
runs a follow-up: statuses stamped before the connect's ``full_state`` are history (folded into the activity,
not applied); the ``full_state`` itself says what is true now.

The session key (``_protocol.agent.Access``) goes into the upgrade's header and nowhere else; ``websockets``' own
log lines (which print request headers at DEBUG) go to a logger that drops them.

``websockets`` is imported when the first socket opens, so ``%load_ext`` does not pay for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import _secrets
from ._protocol import agent
from ._protocol.v1 import derive_status
from .errors import OpenHandsError, ProtocolError, TransportError
from .events import EMPTY_ACTIVITY, Activity, Event, fold, parse
from .models import Cost, is_final_status

if TYPE_CHECKING:
    import httpx

    from .client import AsyncOpenHandsClient
    from .handle import ConversationHandle
    from .tracker import Tracker

__all__ = ["LIVE_EVENTS_ENV", "StreamSource", "live_events_enabled"]

#: ``OPENHANDS_LIVE_EVENTS=0`` turns the stream off: every conversation is polled, as before it existed.
LIVE_EVENTS_ENV = "OPENHANDS_LIVE_EVENTS"


def live_events_enabled() -> bool:
    import os

    return os.environ.get(LIVE_EVENTS_ENV, "").strip().lower() not in ("0", "false", "no", "off")


log = logging.getLogger("openhands_magics")
T = TypeVar("T")
#: websockets' own logger: it prints the upgrade's headers (the session key) at DEBUG, so only errors pass, blanked.
_ws_log = logging.getLogger("openhands_magics.websocket")
_ws_log.setLevel(logging.ERROR)
_ws_log.propagate = False

#: Seconds to open a socket (TCP, TLS, upgrade) before the try counts as failed.
OPEN_TIMEOUT = 10.0
#: The largest frame taken (a ``full_state`` of a long conversation is big; a 16 MiB one is not an event).
MAX_FRAME = 16 * 2**20
#: Failed opens in a row (never connected) before the conversation falls back to events search.
MAX_OPEN_FAILURES = 3
#: Reconnect backoff: first pause, growth, longest pause (seconds).
BACKOFF = (0.5, 2.0, 30.0)
#: How many event ids a subscription remembers to drop the ones a reconnect sends again.
MAX_SEEN = 50_000


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = _secrets.blank(str(record.getMessage()), known=_known())
            record.args = ()
        except Exception:  # noqa: BLE001 - a log line that cannot be blanked is not written
            return False
        return True


_ws_log.addFilter(_Drop())


#: How long the list of secrets to blank is reused (a burst of frames must not read the notebook's variables for
#: each one; a key typed into a cell counts within this long).
KNOWN_TTL = 1.0
_known_cache: tuple[float, _secrets.Secrets] | None = None


def _known() -> _secrets.Secrets:
    """What to blank in server text: every secret the package knows, and every session key."""
    global _known_cache
    now = time.monotonic()
    if _known_cache is not None and now - _known_cache[0] < KNOWN_TTL:
        return _known_cache[1]
    known = _secrets.Secrets(sorted({*_secrets.secrets(), *agent.session_keys()}, key=len, reverse=True))
    _known_cache = (now, known)
    return known


def _lower(cost: Cost, than: Cost | None) -> bool:
    """Whether ``cost`` is below ``than``: accumulated cost and tokens only grow, so a lower one is older."""
    if than is None:
        return False
    return (cost.usd or 0.0) < (than.usd or 0.0) or (cost.tokens or 0) < (than.tokens or 0)


#: A turn that began less than this many seconds ago is not taken for over on a connect's snapshot alone.
FRESH_TURN = 10.0


def _turn_just_began(handle: ConversationHandle) -> bool:
    import datetime as dt

    began = handle.turn_started_at
    return began is not None and (dt.datetime.now(dt.timezone.utc) - began).total_seconds() < FRESH_TURN


class _Fallback(Exception):
    """The socket cannot be had for this conversation: poll, and read events from the app server instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _close(socket: Any) -> None:
    """Close the socket (the closing handshake, within its ``close_timeout``); cancelled meanwhile (dropped twice, or
    the I/O thread stopping), cut it instead: an interrupted close left the connection open, to the server and to
    the garbage collector, after its loop was gone."""
    try:
        await socket.close()
    except BaseException:
        socket.transport.abort()
        raise


class _Subscription:
    """One conversation's socket (or its fallback), for every handle of it in this kernel."""

    def __init__(self, source: StreamSource, conversation_id: str) -> None:
        self.source = source
        self.conversation_id = conversation_id
        self.handles: list[ConversationHandle] = []
        self.activity: Activity = EMPTY_ACTIVITY
        self.seen: set[str] = set()
        #: The latest event's time stamp as the server wrote it (``after_timestamp`` / ``timestamp__gte``).
        self.last_stamp: str | None = None
        #: Statuses stamped before this (the connect's ``full_state``) are history.
        self.replay_until: str | None = None
        self.live = False
        self.task: asyncio.Task[None] | None = None
        #: Dropped (:meth:`StreamSource.stop`): its task was cancelled, and should that cancellation be lost (Python
        #: 3.10's timeouts can swallow one that lands as a connect completes), the socket still closes.
        self.stopped = False

    # ------------------------------------------------------------------ taking frames in
    def take(self, frame: Any, *, history: bool = False) -> None:
        """One frame (a socket message decoded, or an events-search item); in the loop."""
        if not isinstance(frame, Mapping):
            return
        frame_id = frame.get("id")
        is_state = frame.get("kind") == "ConversationStateUpdateEvent" and frame.get("key") == "full_state"
        if isinstance(frame_id, str) and not is_state:
            if frame_id in self.seen:
                return
            if len(self.seen) >= MAX_SEEN:
                self.seen.clear()
            self.seen.add(frame_id)
        stamp = frame.get("timestamp") if isinstance(frame.get("timestamp"), str) else None
        if is_state:
            self.replay_until = stamp  # (what comes stamped before it is the past, replayed)
        elif stamp is not None and (self.last_stamp is None or stamp > self.last_stamp):
            self.last_stamp = stamp
        event = parse(frame, known=_known())
        if event is None:
            return
        past = history or (
            not is_state and stamp is not None and self.replay_until is not None and stamp < self.replay_until
        )
        if event.cost is not None and _lower(event.cost, self.activity.cost):
            event = dataclasses.replace(event, cost=None)  # (a replayed one, older than the connect's snapshot)
        activity = fold(self.activity, event)
        if is_state and activity.last_time != self.activity.last_time:  # (a snapshot is stamped now, not an event)
            activity = dataclasses.replace(activity, last_time=self.activity.last_time)
        self.publish(activity)
        if event.status is not None and not past:
            self.source._status(self, event, snapshot=is_state)

    def publish(self, activity: Activity) -> None:
        self.activity = activity
        for handle in list(self.handles):
            handle.set_activity(activity)
            self.source._changed(handle)

    def say(self, source: str, notice: str | None = None) -> None:
        self.publish(self.activity.with_source(source, notice))

    # ------------------------------------------------------------------ the socket
    async def run(self) -> None:
        try:
            await self._socket()
        except _Fallback as fallback:
            self.live = False
            self.source._live(self, False)
            self.say("polling", f"live events unavailable ({fallback.reason}): polling")
            await self._search()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug must not end as "Task exception was never retrieved"
            log.exception("the event stream of %s failed", self.conversation_id)
            self.source._live(self, False)
            self.say("polling", f"live events stopped ({type(error).__name__}): polling")
        finally:
            self.live = False

    async def _socket(self) -> None:
        try:
            from websockets.asyncio.client import connect
            from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
        except ImportError:
            raise _Fallback("the websockets package is not installed") from None
        failures, connected_once = 0, False
        pause = BACKOFF[0]
        while not self.stopped:
            access = agent.access_for(self.source.base_url, self.conversation_id)
            if access is None:
                raise _Fallback("no agent server address")
            url = access.socket_url(self.last_stamp if connected_once or self.last_stamp else None)
            headers = access.headers() if access.reveal() else {}
            try:
                socket = await connect(
                    url,
                    additional_headers=headers,
                    open_timeout=OPEN_TIMEOUT,
                    close_timeout=2.0,
                    max_size=MAX_FRAME,
                    logger=_ws_log,
                    user_agent_header=self.source.user_agent,
                    **self.source.socket_options(url),
                )
            except InvalidStatus as refused:
                answered = getattr(getattr(refused, "response", None), "status_code", "?")
                raise _Fallback(f"the server answered {answered} to the WebSocket upgrade") from None
            except (InvalidHandshake, InvalidURI) as refused:
                raise _Fallback(f"a proxy refused the WebSocket ({type(refused).__name__})") from None
            except (OSError, asyncio.TimeoutError, TimeoutError) as error:
                failures += 1
                if failures >= MAX_OPEN_FAILURES and not connected_once:
                    raise _Fallback(f"cannot reach the agent server: {type(error).__name__}") from None
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause = min(BACKOFF[2], pause * BACKOFF[1])
                continue
            if self.stopped:
                await _close(socket)
                return
            connected_once, failures, pause = True, 0, BACKOFF[0]
            self.live = True
            self.source._live(self, True)
            if self.activity.source != "stream":
                self.say("stream", None)
            code: int | None = None
            try:
                async for message in socket:
                    if self.stopped:
                        break
                    try:
                        frame = json.loads(message)
                    except (ValueError, RecursionError):
                        continue
                    self.take(frame)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
            finally:
                self.live = False
                await _close(socket)
            if code is None:
                code = getattr(socket, "close_code", None)
            if code in agent.REFUSED_CODES:
                raise _Fallback(f"{agent.REFUSED_CODES[code]}, close code {code}")
            self.source._live(self, False)
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))
            pause = min(BACKOFF[2], pause * BACKOFF[1])

    # ------------------------------------------------------------------ the fallback: events search
    async def _search(self) -> None:
        """Read the events the app server has, from the latest one seen, at the polling pace (slower while none
        come); forever, until the subscription is dropped (the conversation is final and concluded, or unwatched)."""
        schedule = self.source.schedule()
        pause = schedule.interval
        while self.handles:
            handle = self.handles[0]
            before = len(self.seen)
            try:
                await self.source.search(self, handle)
            except OpenHandsError as error:
                if not error.retryable:
                    self.say("polling", f"live events unavailable ({error}): polling")
                    return
            grew = len(self.seen) > before
            pause = schedule.interval if grew else min(schedule.max_interval, pause * schedule.growth)
            await asyncio.sleep(pause)


class StreamSource:
    """The stream side of one server: its subscriptions (one per conversation), and the agent servers' REST for
    the agent's controls. Every method runs in the I/O loop (the connection marshals calls there)."""

    def __init__(
        self,
        tracker: Tracker,
        base_url: str,
        client: Callable[[], AsyncOpenHandsClient],
        *,
        ca_bundle: str | None = None,
        use_env_proxy: bool = False,
        on_change: Callable[[ConversationHandle], None] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self._wake = wake
        self.base_url = base_url
        self._client = client
        self._ca_bundle = ca_bundle
        self._use_env_proxy = use_env_proxy
        self._on_change = on_change
        self._subscriptions: dict[str, _Subscription] = {}
        self._http: httpx.AsyncClient | None = None
        self._notified: set[str] = set()
        from ._protocol import USER_AGENT

        self.user_agent = USER_AGENT

    def __len__(self) -> int:
        return len(self._subscriptions)

    def subscription(self, conversation_id: str) -> _Subscription | None:
        return self._subscriptions.get(conversation_id)

    @property
    def live_count(self) -> int:
        return sum(s.live for s in self._subscriptions.values())

    def schedule(self) -> Any:
        return self.tracker.schedule

    def socket_options(self, url: str) -> dict[str, Any]:
        options: dict[str, Any] = {}
        import websockets

        if int(websockets.__version__.split(".")[0]) >= 15:
            options["proxy"] = True if self._use_env_proxy else None
        if url.startswith("wss://") and self._ca_bundle:
            options["ssl"] = ssl.create_default_context(cafile=self._ca_bundle)
        return options

    # ------------------------------------------------------------------ the tracker's owner's side
    def follow(self, handle: ConversationHandle) -> None:
        """Listen to ``handle``'s conversation (idempotent): a socket when it is V1, started and its agent server
        known; else nothing yet (called again with the next snapshot). V0 says once that it has no stream."""
        conversation = handle.conversation
        if conversation.api != "v1":
            if conversation.conversation_id and conversation.conversation_id not in self._notified:
                self._notified.add(conversation.conversation_id)
                handle.set_activity(
                    handle.activity.with_source("polling", "live events unavailable (V0 server): polling")
                )
            return
        conversation_id = conversation.conversation_id
        if conversation_id is None:
            return
        existing = self._subscriptions.get(conversation_id)
        if existing is not None:
            if handle not in existing.handles:
                existing.handles.append(handle)
                handle.set_activity(existing.activity)
                if existing.live:
                    self.tracker.streamed(handle, True, time.monotonic())
            return
        if agent.access_for(self.base_url, conversation_id) is None:
            return
        subscription = _Subscription(self, conversation_id)
        subscription.handles.append(handle)
        subscription.activity = handle.activity if handle.activity.steps else EMPTY_ACTIVITY
        self._subscriptions[conversation_id] = subscription
        subscription.task = asyncio.get_running_loop().create_task(
            subscription.run(), name=f"openhands-stream-{conversation_id[:8]}"
        )

    def drop(self, handle: ConversationHandle) -> None:
        """``handle`` no longer needs listening to (final and concluded, or unwatched); the socket closes when no
        handle of its conversation is left."""
        for conversation_id, subscription in list(self._subscriptions.items()):
            if handle in subscription.handles:
                subscription.handles.remove(handle)
                if not subscription.handles:
                    del self._subscriptions[conversation_id]
                    subscription.stopped = True
                    if subscription.task is not None:
                        subscription.task.cancel()

    def stop(self) -> None:
        """Close every socket; what the tracker still watches is polled at its own pace again."""
        subscriptions, self._subscriptions = list(self._subscriptions.values()), {}
        for subscription in subscriptions:
            subscription.stopped = True
            if subscription.task is not None:
                subscription.task.cancel()
            if subscription.live:
                subscription.live = False
                self._live(subscription, False)

    async def aclose(self) -> None:
        self.stop()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    # ------------------------------------------------------------------ what subscriptions tell
    def _status(self, subscription: _Subscription, event: Event, *, snapshot: bool = False) -> None:
        now = time.monotonic()
        for handle in list(subscription.handles):
            if handle not in self.tracker or handle.id != subscription.conversation_id:
                continue
            if snapshot and is_final_status(derive_status(None, event.status)[0]) and _turn_just_began(handle):
                # The connect's snapshot says the turn is over, but a follow-up was just accepted: it may be the
                # previous turn's end, read before the agent took the message. The app server says which, now.
                self.tracker.poll_soon(handle, now)
                if self._wake is not None:
                    self._wake()
                continue
            old = handle.conversation
            status, phase = derive_status(old.sandbox_status, event.status)
            fresh = dataclasses.replace(
                old,
                execution_status=event.status,
                status=status,
                phase=phase,
                cost=event.cost if event.cost is not None else old.cost,
            )
            self.tracker.apply(handle, fresh, now)

    def _live(self, subscription: _Subscription, live: bool) -> None:
        now = time.monotonic()
        for handle in list(subscription.handles):
            self.tracker.streamed(handle, live, now)
        if not live and self._wake is not None:  # (polling takes over now, not at the rare check it slept until)
            self._wake()

    def _changed(self, handle: ConversationHandle) -> None:
        if self._on_change is not None:
            try:
                self._on_change(handle)
            except Exception:  # noqa: BLE001 - the guard is the owner's; the stream goes on
                log.exception("a stream listener of %s failed", handle.reference)

    # ------------------------------------------------------------------ events search (fallback, and conv.events())
    async def search(self, subscription: _Subscription, handle: ConversationHandle) -> None:
        """The app server's events from the subscription's latest one on, every page, folded in."""
        client = self._client()
        page_id: str | None = None
        since = subscription.last_stamp
        for _ in range(100):
            page = await client.events(handle.conversation, since, page_id)
            for item in page.items:
                subscription.take(item, history=True)
            page_id = page.next_page_id
            if not page_id:
                return

    # ------------------------------------------------------------------ the agent server's REST
    def _agent_http(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            verify: Any = ssl.create_default_context(cafile=self._ca_bundle) if self._ca_bundle else True
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(30.0),
                follow_redirects=False,  # a redirect could carry the session key elsewhere
                trust_env=self._use_env_proxy,
                verify=verify,
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            )
        return self._http

    async def agent_call(self, request: agent.AgentRequest, access: agent.Access) -> Any:
        """Send one agent-server request with the conversation's key; its JSON answer (a file's bytes for a
        download, at most ``request.max_bytes``), or the typed error."""
        import httpx

        headers = access.headers() if access.reveal() else None
        files = {"file": request.upload} if request.upload is not None else None
        # (an upload or a download of a large file takes longer than a control: the read may take minutes)
        timeout: Any = (
            httpx.Timeout(30.0, read=600.0, write=600.0) if files or request.max_bytes else httpx.USE_CLIENT_DEFAULT
        )
        try:
            if request.max_bytes:
                return await self._download(request, access, headers, timeout)
            response = await self._agent_http().request(
                request.method,
                request.url,
                json=request.json,
                params=request.params or None,
                files=files,
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise TransportError(
                f"Could not {request.what}: the agent server at {access.base} did not answer ({type(error).__name__})."
            ) from None
        if not response.is_success:
            raise agent.error_for(response, request.what, access.base)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise ProtocolError(f"The agent server's answer to {request.what} is not JSON.") from None

    async def _download(self, request: agent.AgentRequest, access: agent.Access, headers: Any, timeout: Any) -> bytes:
        """A file's bytes, read in chunks and refused (one line) once past ``request.max_bytes``."""
        from .errors import ValidationError

        async with self._agent_http().stream(
            request.method, request.url, params=request.params or None, headers=headers, timeout=timeout
        ) as response:
            if not response.is_success:
                await response.aread()
                raise agent.error_for(response, request.what, access.base)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > request.max_bytes:
                    raise ValidationError(
                        f"Could not {request.what}: it is larger than {request.max_bytes / 1e6:.0f} MB, the most "
                        "conv.download() reads."
                    )
            return bytes(body)

    async def run_agent(self, operation: agent.AgentOperation[T], access: agent.Access) -> T:
        """Drive an agent-server operation (:mod:`._protocol.agent`): each request it yields is sent with the
        conversation's key, and its answer sent back in."""
        answer: Any = None
        try:
            while True:
                request = operation.send(answer)
                answer = await self.agent_call(request, access)
        except StopIteration as done:
            return done.value
