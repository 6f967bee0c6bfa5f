"""``OpenHandsClient`` (sync) and ``AsyncOpenHandsClient``: the two ways to call the API, each on one pooled httpx
client. Request building, answer reading and the retry policy live in :mod:`._protocol`, so the two classes only
differ in how they send and how they sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from . import _protocol as protocol
from .config import ApiKey, resolve_api_key, resolve_base_url
from .errors import OpenHandsError
from .models import Conversation
from .validation import validate_message, validate_repository, validate_user_conversation_id

__all__ = ["DEFAULT_TIMEOUT", "AsyncOpenHandsClient", "OpenHandsClient"]

DEFAULT_TIMEOUT = 30.0
T = TypeVar("T")


class _ClientSettings:
    """What both clients share: resolved base URL and key, timeout, retry policy, and the people-facing URL."""

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: protocol.RetryPolicy | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._api_key = resolve_api_key(api_key)
        self.timeout = float(timeout)
        self.retry = retry or protocol.RetryPolicy()
        self._http = self._open_http(self._httpx_options())

    def _open_http(self, options: dict[str, Any]) -> Any:
        """The one pooled httpx client (sync or async) this client sends everything through."""
        raise NotImplementedError

    def _httpx_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "auth": protocol.BearerAuth(self._api_key),
            "timeout": httpx.Timeout(self.timeout),
            "headers": {"User-Agent": protocol.USER_AGENT, "Accept": "application/json"},
            "follow_redirects": False,  # a redirect could carry the Authorization header somewhere else
            "trust_env": False,  # proxies from the environment must not see the key; also keeps tests local
        }

    def conversation_url(self, conversation_id: str) -> str:
        """The page a person opens: ``{base}/conversations/{id}``."""
        return f"{self.base_url}/conversations/{conversation_id}"

    def uses_key(self, api_key: ApiKey) -> bool:
        return self._api_key == api_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @staticmethod
    def _start_args(message: str, repository: str | None) -> tuple[str, str | None]:
        return validate_message(message), validate_repository(repository) if repository else None


class OpenHandsClient(_ClientSettings):
    """Blocking client: for scripts, ``--wait`` and ``handle.refresh()``.

    >>> with OpenHandsClient() as client:                 # doctest: +SKIP
    ...     conversation = client.start_conversation("Fix the typo in README.md", repository="octo/demo")
    """

    _http: httpx.Client

    def _open_http(self, options: dict[str, Any]) -> httpx.Client:
        return httpx.Client(**options)

    def _send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            return self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise protocol.translate_transport_error(exc, self.base_url, self.timeout) from None

    def _with_retries(self, call: Callable[[], T], *, idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except OpenHandsError as error:
                pause = self.retry.pause_before_retry(attempt, error, idempotent=idempotent)
                if pause is None:
                    raise
            time.sleep(pause)
            attempt += 1

    def start_conversation(self, message: str, repository: str | None = None) -> Conversation:
        """POST a new conversation. Never retried once the request may have reached the server."""
        message, repository = self._start_args(message, repository)
        payload = protocol.start_payload(message, repository)
        with protocol.warning_if_maybe_started(self.base_url):
            return self._with_retries(
                lambda: protocol.read_started(self._send("POST", protocol.CONVERSATIONS_PATH, payload), repository=repository),
                idempotent=False,
            )

    def get_conversation(self, conversation_id: str) -> Conversation:
        """GET one conversation, retrying transport errors, 429 and 5xx with backoff."""
        conversation_id = validate_user_conversation_id(conversation_id)
        path = protocol.conversation_path(conversation_id)
        return self._with_retries(
            lambda: protocol.read_conversation(self._send("GET", path), conversation_id), idempotent=True
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenHandsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncOpenHandsClient(_ClientSettings):
    """Non-blocking client, used by the panel's poller inside the kernel's event loop."""

    _http: httpx.AsyncClient

    def _open_http(self, options: dict[str, Any]) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def _send(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise protocol.translate_transport_error(exc, self.base_url, self.timeout) from None

    async def _with_retries(self, call: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return await call()
            except OpenHandsError as error:
                pause = self.retry.pause_before_retry(attempt, error, idempotent=idempotent)
                if pause is None:
                    raise
            await asyncio.sleep(pause)
            attempt += 1

    async def start_conversation(self, message: str, repository: str | None = None) -> Conversation:
        message, repository = self._start_args(message, repository)
        payload = protocol.start_payload(message, repository)

        async def once() -> Conversation:
            return protocol.read_started(await self._send("POST", protocol.CONVERSATIONS_PATH, payload), repository=repository)

        with protocol.warning_if_maybe_started(self.base_url):
            return await self._with_retries(once, idempotent=False)

    async def get_conversation(self, conversation_id: str) -> Conversation:
        conversation_id = validate_user_conversation_id(conversation_id)
        path = protocol.conversation_path(conversation_id)

        async def once() -> Conversation:
            return protocol.read_conversation(await self._send("GET", path), conversation_id)

        return await self._with_retries(once, idempotent=True)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpenHandsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
