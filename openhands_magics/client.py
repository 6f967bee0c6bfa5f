"""``OpenHandsClient`` (sync) and ``AsyncOpenHandsClient``: the two ways to call the API, each on one pooled httpx
client. What to send and how to read it lives in :mod:`._protocol` as operations (generators of calls); each client
is a driver that sends those calls, retries reads and sleeps its own way. Every public method is the same operation
for both clients.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from . import _protocol as protocol
from ._secrets import blank
from ._transport import DEFAULT_MAX_ANSWER_BYTES, deadline_transport, exchange, exchange_async, lean
from .config import (
    ApiKey,
    env_proxy_for,
    resolve_api,
    resolve_api_key,
    resolve_base_url,
    resolve_ca_bundle,
    resolve_env_proxy,
)
from .errors import ConfigurationError, OpenHandsError, ValidationError
from .models import Change, Conversation, FileDiff, Outcome, not_found
from .validation import (
    is_id,
    printable,
    validate_message,
    validate_org,
    validate_repository,
    validate_user_conversation_id,
)

if TYPE_CHECKING:
    from .start_options import StartOptions

__all__ = ["DEFAULT_TIMEOUT", "AsyncOpenHandsClient", "OpenHandsClient", "forget_detected_apis"]

DEFAULT_TIMEOUT = 30.0
#: The most one page of the account's conversations may hold (the server refuses more).
PAGE_LIMIT = 100
#: Idle connections are kept this long, past the slowest poll, so a poll never pays a new (TLS) handshake.
KEEPALIVE_SECONDS = 120.0
T = TypeVar("T")

#: base URL -> "v1" / "v0", once ``api="auto"`` found out which one a server speaks (see ``_protocol.detect``).
_detected: dict[str, str] = {}


def forget_detected_apis() -> None:
    """Ask every server again which API it speaks and which auth header it takes (after an upgrade, say)."""
    _detected.clear()
    protocol.forget_auth_styles()


def _trust(ca_bundle: str) -> ssl.SSLContext:
    """The TLS context that trusts this CA bundle; one line naming the file when it is not one (not PEM, no
    certificate in it, unreadable)."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
        reason = printable(" ".join(str(error).split())[:160]) or type(error).__name__
    raise ConfigurationError(
        f"The CA bundle {printable(ca_bundle[:200])!r} could not be loaded ({reason}): give a PEM file of "
        "certificates (-----BEGIN CERTIFICATE----- blocks) in `%config OpenHandsMagics.ca_bundle` or "
        "OPENHANDS_CA_BUNDLE."
    )


class _ClientSettings:
    """What both clients share: resolved base URL, key and API, timeout, retry policy, the dialect in use."""

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: protocol.RetryPolicy | None = None,
        api: str | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        ca_bundle: str | None = None,
        use_env_proxy: bool | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        org: str | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._api_key = resolve_api_key(api_key)
        #: What was asked for: "auto", "v1" or "v0".
        self.api_setting = resolve_api(api)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        #: Seconds one blocking call may take in all, retries included (each request: connect to last byte).
        self.timeout = float(timeout)
        self.max_answer_bytes = int(max_answer_bytes)
        self.retry = retry or protocol.RetryPolicy()
        #: A company CA bundle (``ca_bundle=`` or ``OPENHANDS_CA_BUNDLE``) and the environment's proxy, both opt-in.
        self.ca_bundle = resolve_ca_bundle(ca_bundle)
        self.proxy = env_proxy_for(self.base_url) if resolve_env_proxy(use_env_proxy) else None
        known = self.api_setting if self.api_setting != "auto" else _detected.get(self.base_url)
        self._dialect: protocol.Dialect | None = protocol.dialect_for(known, self.base_url) if known else None
        self._http = self._open_http(
            {
                "base_url": self.base_url,
                "auth": protocol.KeyAuth(self._api_key, self.base_url),
                "timeout": httpx.Timeout(self.timeout),
                "limits": httpx.Limits(
                    max_connections=20, max_keepalive_connections=10, keepalive_expiry=KEEPALIVE_SECONDS
                ),
                "headers": {
                    "User-Agent": protocol.USER_AGENT,
                    "Accept": "application/json",
                    **({"X-Org-Id": validate_org(org)} if org else {}),  # (Cloud: which of the user's organisations)
                },
                "follow_redirects": False,  # a redirect could carry the key somewhere else
                "trust_env": False,  # the environment's proxies only when asked for (self.proxy)
                "verify": _trust(self.ca_bundle) if self.ca_bundle else True,
                "proxy": self.proxy,
            },
            transport,
        )

    def _deadline(self, deadline: float | None, longer: float = 0.0) -> float:
        """A blocking call's deadline: its own ``timeout`` (and the ``longer`` seconds of pauses an operation may
        ask for) from now, or sooner if the caller's (a wait) is sooner."""
        own = time.monotonic() + self.timeout + longer
        return own if deadline is None else min(own, deadline)

    def _open_http(self, options: dict[str, Any], transport: Any) -> Any:
        """The one pooled httpx client (sync or async) this client sends everything through. ``transport`` (an
        httpx transport, e.g. ``httpx.MockTransport`` in tests) replaces the network: then ``limits``, ``verify``
        and ``proxy`` are the transport's business."""
        raise NotImplementedError

    @property
    def api(self) -> str | None:
        """The API in use ("v1" / "v0"), or None while ``auto`` has not asked the server yet."""
        return self._dialect.name if self._dialect else None

    @property
    def batch_size(self) -> int:
        return self._dialect.batch_size if self._dialect else 1

    def _remember(self, dialect: protocol.Dialect) -> protocol.Dialect:
        _detected[self.base_url] = dialect.name
        self._dialect = dialect
        return dialect

    def conversation_url(self, conversation_id: str) -> str:
        """The page a person opens: ``{base}/conversations/{id}``."""
        return f"{self.base_url}/conversations/{conversation_id}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api={self.api or self.api_setting!r})"

    @staticmethod
    def _start_args(message: str, repository: str | None) -> tuple[str, str | None]:
        given = repository is not None and repository != ""  # "" (an empty --repo) is no repository, like None
        return (
            validate_message(_ClientSettings._text(message)),
            validate_repository(repository) if repository is not None and given else None,
        )

    @staticmethod
    def _text(text: str) -> str:
        if not isinstance(text, str):
            raise ValidationError(f"The message must be text, got {type(text).__name__}.")
        return blank(text)  # what the agent gets (a start or a follow-up) never holds a key the package knows

    @staticmethod
    def _follow_up_args(text: str, resume_timeout: float, interval: float) -> tuple[str, float, float]:
        text = validate_message(_ClientSettings._text(text))
        for name, value in (("resume_timeout", resume_timeout), ("interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValidationError(f"{name} must be a positive number of seconds, got {value!r:.40}.")
        return text, float(resume_timeout), float(interval)

    @staticmethod
    def _path(path: str) -> str:
        if not isinstance(path, str) or not path.strip() or len(path) > 4096 or not path.isprintable():
            raise ValidationError("path must be a file path as conv.changes() lists it, e.g. 'repo/data/load.py'.")
        return path

    def _reference(self, reference: str) -> None:
        """Refuse what no API takes as an id before the server is asked anything, even which API it speaks (once
        that is known, the API's own check runs before any request)."""
        if self._dialect is None:
            validate_user_conversation_id(reference)
        elif not isinstance(reference, str):
            raise ValidationError(f"A conversation id must be text, got {type(reference).__name__}.")

    @staticmethod
    def _chunks(snapshots: Sequence[Conversation], size: int) -> list[Sequence[Conversation]]:
        return [snapshots[i : i + size] for i in range(0, len(snapshots), size)]

    @staticmethod
    def _snapshots(snapshots: Sequence[Conversation]) -> Sequence[Conversation]:
        if isinstance(snapshots, (str, bytes)) or not all(isinstance(s, Conversation) for s in snapshots):
            raise ValidationError("read() takes a list of Conversation snapshots (from start_conversation or read).")
        return snapshots

    @staticmethod
    def _one(snapshot: Conversation) -> Conversation:
        """A snapshot to act on. Those the server gave always hold good ids; one made by hand (or from a saved
        notebook) whose id is none is refused here, before it could reach a URL."""
        if not isinstance(snapshot, Conversation):
            raise ValidationError(f"Expected a Conversation snapshot, got {type(snapshot).__name__}.")
        for what, value in (("conversation id", snapshot.conversation_id), ("start task id", snapshot.start_task_id)):
            if value is not None and not is_id(value):
                raise ValidationError(
                    f"The snapshot's {what} {str(value)[:60]!r} is not an id (letters, digits, '-' or '_'): use a "
                    "snapshot from start_conversation, read or get_conversation."
                )
        return snapshot

    @staticmethod
    def _page_args(limit: int, page_id: str | None) -> tuple[int, str | None]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= PAGE_LIMIT:
            raise ValidationError(f"limit must be a whole number from 1 to {PAGE_LIMIT}, got {limit!r}.")
        if page_id is not None and (not isinstance(page_id, str) or not page_id.isprintable() or len(page_id) > 1000):
            raise ValidationError("page_id must be the text the previous page gave (its .next_page_id).")
        return limit, page_id

    @staticmethod
    def _found(snapshot: Conversation | None, previous: Conversation) -> Conversation:
        if snapshot is None:
            raise not_found(previous)
        return snapshot


class OpenHandsClient(_ClientSettings):
    """Blocking client: for scripts, ``--wait`` and ``handle.refresh()``.

    >>> with OpenHandsClient() as client:                 # doctest: +SKIP
    ...     conversation = client.start_conversation("Fix the typo in README.md", repository="octo/demo")
    """

    _http: httpx.Client

    def _open_http(self, options: dict[str, Any], transport: Any) -> httpx.Client:
        network = {name: options.pop(name) for name in ("limits", "verify", "proxy")}
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ValidationError(
                f"transport must be an httpx transport (httpx.MockTransport, httpx.HTTPTransport), "
                f"got {type(transport).__name__}."
            )
        return lean(httpx.Client(**options, transport=transport or deadline_transport(**network)))

    def _send(self, call: protocol.Call, deadline: float) -> httpx.Response | OpenHandsError:
        deadline = min(deadline, time.monotonic() + self.timeout)  # each request within ``timeout``, too
        return exchange(
            self._http,
            call,
            deadline=deadline,
            max_bytes=self.max_answer_bytes,
            base_url=self.base_url,
            timeout=self.timeout,
        )

    def _drive(self, make: Callable[[], protocol.Steps[T]], deadline: float | None = None, *, longer: float = 0.0) -> T:
        """Run an operation, retrying as the policy says (one budget of attempts and one deadline for the whole);
        a :class:`~._protocol.Wait` it asks for is slept here (within the deadline), and answered with None.

        A request that got no usable answer (transport error, an answer too large) is sent again by itself when the
        policy allows (a read; a post that provably never left); if it still fails, its error is thrown into the
        operation where it waits, so an operation of parts (the outcome) keeps the parts that worked. An error the
        operation raises (429, 5xx, an unreadable answer) runs the whole operation again, if it only reads."""
        deadline = self._deadline(deadline, longer)
        attempt = 0
        while True:
            operation, idempotent = make(), True
            answer: httpx.Response | OpenHandsError | None = None
            try:
                while True:
                    call = protocol.advance(operation, answer)
                    if isinstance(call, protocol.Wait):
                        time.sleep(max(0.0, min(call.seconds, deadline - time.monotonic())))
                        answer = None
                        continue
                    idempotent = idempotent and call.idempotent
                    answer = self._send(call, deadline)
                    while isinstance(answer, OpenHandsError):
                        pause = self.retry.pause_before_retry(
                            attempt, answer, idempotent=call.idempotent, remaining=deadline - time.monotonic()
                        )
                        if pause is None:
                            break
                        time.sleep(pause)
                        attempt += 1
                        answer = self._send(call, deadline)
            except StopIteration as done:
                return done.value
            except OpenHandsError as error:
                pause = self.retry.pause_before_retry(
                    attempt, error, idempotent=idempotent, remaining=deadline - time.monotonic()
                )
                if pause is None:
                    raise
            time.sleep(pause)
            attempt += 1

    def dialect(self) -> protocol.Dialect:
        """The API dialect for this server: the one set, or (``auto``) asked once and remembered."""
        return self._dialect or self._remember(self._drive(lambda: protocol.detect(self.base_url)))

    def start_conversation(
        self,
        message: str,
        repository: str | None = None,
        *,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Conversation:
        """Start a conversation; returns at once with its first snapshot (V1: the start task, STARTING).
        ``conversation_id`` (V1): the id it is to have (see :mod:`.once`); ``options``: the branch, model, ...

        Never retried once the request may have reached the server, so a flaky network cannot start it twice.
        """
        message, repository = self._start_args(message, repository)
        dialect = self.dialect()  # asked with reads before anything is posted
        with protocol.warning_if_maybe_started(self.base_url):
            return self._drive(lambda: dialect.start(message, repository, conversation_id, options))

    def start_idle_conversation(
        self,
        repository: str | None = None,
        *,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Conversation:
        """Start a conversation with no message (V1): once ready it waits ``idle``, so files can be put in its
        workspace before ``send_message`` gives it its task. Never retried once the request may have left."""
        repository = validate_repository(repository) if repository else None
        dialect = self.dialect()
        with protocol.warning_if_maybe_started(self.base_url):
            return self._drive(lambda: dialect.start(None, repository, conversation_id, options))

    def get_conversation(self, reference: str) -> Conversation:
        """A conversation by id or link (on V1 a start task id works too)."""
        self._reference(reference)
        return self._drive(partial(self.dialect().find, reference))

    def read(self, snapshots: Sequence[Conversation], *, deadline: float | None = None) -> list[Conversation | None]:
        """Fresh snapshots of these, in as few requests as the API allows; None for any the server lost.
        ``deadline`` (``time.monotonic()``) ends it sooner than its own ``timeout`` would."""
        dialect = self.dialect()
        results: list[Conversation | None] = []
        for chunk in self._chunks(self._snapshots(snapshots), dialect.batch_size):
            results.extend(self._drive(partial(dialect.read, chunk), deadline))
        return results

    def refresh(self, snapshot: Conversation, *, deadline: float | None = None) -> Conversation:
        """A fresh snapshot of one conversation (following its start task until the conversation exists)."""
        (fresh,) = self.read([self._one(snapshot)], deadline=deadline)
        return self._found(fresh, snapshot)

    # ------------------------------------------------------------------ after the start (V1; V0 says it cannot)
    def _act(self, operation: str, *args: Any) -> Any:
        dialect = self.dialect()
        return self._drive(partial(getattr(dialect, operation), *args))

    def search(self, limit: int = PAGE_LIMIT, page_id: str | None = None) -> protocol.Page:
        """One page of the account's conversations, newest first; ``.next_page_id`` asks for the next."""
        return self._act("search", *self._page_args(limit, page_id))

    def send_message(self, snapshot: Conversation, text: str) -> None:
        """A follow-up message; the agent runs again (ConflictError while its sandbox is paused)."""
        return self._act("send", self._one(snapshot), validate_message(self._text(text)))

    def follow_up(
        self,
        snapshot: Conversation,
        text: str,
        *,
        resume_timeout: float = protocol.RESUME_TIMEOUT,
        interval: float = protocol.RESUME_INTERVAL,
    ) -> Conversation:
        """A follow-up message, whatever the sandbox's state: a paused sandbox (known from the snapshot, or the
        409 that says so) is resumed and waited for (at most ``resume_timeout`` s, reading every ``interval`` s),
        then the message is sent. It is taken at most once (see :meth:`._protocol.Dialect.follow_up`). Returns
        the snapshot the accepted message makes: the agent RUNNING."""
        snapshot, (text, resume_timeout, interval) = (
            self._one(snapshot),
            self._follow_up_args(text, resume_timeout, interval),
        )
        dialect = self.dialect()
        return self._drive(
            partial(dialect.follow_up, snapshot, text, resume_timeout=resume_timeout, interval=interval),
            longer=resume_timeout,
        )

    def pause(self, snapshot: Conversation) -> None:
        """Pause its sandbox (the agent stops; resume to go on)."""
        return self._act("pause", self._one(snapshot))

    def resume(self, snapshot: Conversation) -> None:
        return self._act("resume", self._one(snapshot))

    def delete(self, snapshot: Conversation) -> None:
        """Delete it for good (and its sandbox)."""
        return self._act("delete", self._one(snapshot))

    def answer(self, snapshot: Conversation) -> str | None:
        """The agent's last message of the latest turn, or None."""
        return self._act("answer", self._one(snapshot))

    def changes(self, snapshot: Conversation) -> tuple[Change, ...]:
        """The files the agent changed in its workspace."""
        return self._act("changes", self._one(snapshot))

    def diff(self, snapshot: Conversation, path: str) -> FileDiff:
        """One changed file, before and after (``.unified()`` for a diff)."""
        return self._act("diff", self._one(snapshot), self._path(path))

    def events(
        self, snapshot: Conversation, since: str | None = None, page_id: str | None = None
    ) -> protocol.EventsPage:
        """One page (oldest first, at most 100) of the conversation's events as the server sent them, from the
        time stamp ``since``; ``.next_page_id`` asks for the next."""
        return self._act("events", self._one(snapshot), since, page_id)

    def queue_message(self, snapshot: Conversation, text: str) -> None:
        """A follow-up queued on the server while the conversation is still starting (delivered once it is)."""
        return self._act("queue_message", self._one(snapshot), validate_message(self._text(text)))

    def outcome(self, snapshot: Conversation) -> Outcome:
        """The answer and the changed files at once."""
        return self._act("outcome", self._one(snapshot))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenHandsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncOpenHandsClient(_ClientSettings):
    """Non-blocking client, used by the poller inside the kernel's event loop."""

    _http: httpx.AsyncClient

    def _open_http(self, options: dict[str, Any], transport: Any) -> httpx.AsyncClient:
        if transport is not None:
            if not isinstance(transport, httpx.AsyncBaseTransport):
                raise ValidationError(
                    f"transport must be an async httpx transport (httpx.MockTransport, "
                    f"httpx.AsyncHTTPTransport), got {type(transport).__name__}."
                )
            for name in ("limits", "verify", "proxy"):
                options.pop(name)
            options["transport"] = transport
        return lean(httpx.AsyncClient(**options))

    async def _send(self, call: protocol.Call, deadline: float) -> httpx.Response | OpenHandsError:
        deadline = min(deadline, time.monotonic() + self.timeout)
        return await exchange_async(
            self._http,
            call,
            deadline=deadline,
            max_bytes=self.max_answer_bytes,
            base_url=self.base_url,
            timeout=self.timeout,
        )

    async def _drive(
        self, make: Callable[[], protocol.Steps[T]], deadline: float | None = None, *, longer: float = 0.0
    ) -> T:
        """As :meth:`OpenHandsClient._drive`, sleeping without blocking the loop."""
        deadline = self._deadline(deadline, longer)
        attempt = 0
        while True:
            operation, idempotent = make(), True
            answer: httpx.Response | OpenHandsError | None = None
            try:
                while True:
                    call = protocol.advance(operation, answer)
                    if isinstance(call, protocol.Wait):
                        await asyncio.sleep(max(0.0, min(call.seconds, deadline - time.monotonic())))
                        answer = None
                        continue
                    idempotent = idempotent and call.idempotent
                    answer = await self._send(call, deadline)
                    while isinstance(answer, OpenHandsError):
                        pause = self.retry.pause_before_retry(
                            attempt, answer, idempotent=call.idempotent, remaining=deadline - time.monotonic()
                        )
                        if pause is None:
                            break
                        await asyncio.sleep(pause)
                        attempt += 1
                        answer = await self._send(call, deadline)
            except StopIteration as done:
                return done.value
            except OpenHandsError as error:
                pause = self.retry.pause_before_retry(
                    attempt, error, idempotent=idempotent, remaining=deadline - time.monotonic()
                )
                if pause is None:
                    raise
            await asyncio.sleep(pause)
            attempt += 1

    async def dialect(self) -> protocol.Dialect:
        return self._dialect or self._remember(await self._drive(lambda: protocol.detect(self.base_url)))

    async def start_conversation(
        self,
        message: str,
        repository: str | None = None,
        *,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Conversation:
        message, repository = self._start_args(message, repository)
        dialect = await self.dialect()
        with protocol.warning_if_maybe_started(self.base_url):
            return await self._drive(lambda: dialect.start(message, repository, conversation_id, options))

    async def start_idle_conversation(
        self,
        repository: str | None = None,
        *,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Conversation:
        repository = validate_repository(repository) if repository else None
        dialect = await self.dialect()
        with protocol.warning_if_maybe_started(self.base_url):
            return await self._drive(lambda: dialect.start(None, repository, conversation_id, options))

    async def get_conversation(self, reference: str) -> Conversation:
        self._reference(reference)
        return await self._drive(partial((await self.dialect()).find, reference))

    async def read(self, snapshots: Sequence[Conversation]) -> list[Conversation | None]:
        dialect = await self.dialect()
        results: list[Conversation | None] = []
        for chunk in self._chunks(self._snapshots(snapshots), dialect.batch_size):
            results.extend(await self._drive(partial(dialect.read, chunk)))
        return results

    async def refresh(self, snapshot: Conversation) -> Conversation:
        (fresh,) = await self.read([self._one(snapshot)])
        return self._found(fresh, snapshot)

    async def _act(self, operation: str, *args: Any) -> Any:
        dialect = await self.dialect()
        return await self._drive(partial(getattr(dialect, operation), *args))

    async def search(self, limit: int = PAGE_LIMIT, page_id: str | None = None) -> protocol.Page:
        return await self._act("search", *self._page_args(limit, page_id))

    async def send_message(self, snapshot: Conversation, text: str) -> None:
        return await self._act("send", self._one(snapshot), validate_message(self._text(text)))

    async def follow_up(
        self,
        snapshot: Conversation,
        text: str,
        *,
        resume_timeout: float = protocol.RESUME_TIMEOUT,
        interval: float = protocol.RESUME_INTERVAL,
    ) -> Conversation:
        """As :meth:`OpenHandsClient.follow_up`, waiting without blocking the loop."""
        snapshot, (text, resume_timeout, interval) = (
            self._one(snapshot),
            self._follow_up_args(text, resume_timeout, interval),
        )
        dialect = await self.dialect()
        return await self._drive(
            partial(dialect.follow_up, snapshot, text, resume_timeout=resume_timeout, interval=interval),
            longer=resume_timeout,
        )

    async def pause(self, snapshot: Conversation) -> None:
        return await self._act("pause", self._one(snapshot))

    async def resume(self, snapshot: Conversation) -> None:
        return await self._act("resume", self._one(snapshot))

    async def delete(self, snapshot: Conversation) -> None:
        return await self._act("delete", self._one(snapshot))

    async def get_json(self, path: str, params: tuple[tuple[str, str], ...] = ()) -> Any:
        """V1: one of the app server's lists (``/api/v1/git/...``, ``/api/v1/config/...``), decoded."""
        return await self._act("lookup", path, params)

    async def update(self, snapshot: Conversation, **fields: Any) -> Conversation:
        """V1: ``public=True`` (its share link ``/shared/conversations/ID``), ``title=...``; the fresh snapshot."""
        return await self._act("update", self._one(snapshot), fields)

    async def answer(self, snapshot: Conversation) -> str | None:
        return await self._act("answer", self._one(snapshot))

    async def changes(self, snapshot: Conversation) -> tuple[Change, ...]:
        return await self._act("changes", self._one(snapshot))

    async def diff(self, snapshot: Conversation, path: str) -> FileDiff:
        return await self._act("diff", self._one(snapshot), self._path(path))

    async def events(
        self, snapshot: Conversation, since: str | None = None, page_id: str | None = None
    ) -> protocol.EventsPage:
        return await self._act("events", self._one(snapshot), since, page_id)

    async def queue_message(self, snapshot: Conversation, text: str) -> None:
        return await self._act("queue_message", self._one(snapshot), validate_message(self._text(text)))

    async def outcome(self, snapshot: Conversation) -> Outcome:
        return await self._act("outcome", self._one(snapshot))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpenHandsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
