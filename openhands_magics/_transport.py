"""Sending one call: a hard deadline, a bounded answer, and nothing of the key left behind in an error.

httpx's timeouts are per phase and per read: a server that sends one byte every half second keeps a request with
``timeout=1`` alive as long as it likes, and a body is read whole whatever its size. Here each request has a total
deadline, connect to last byte: the sync client clamps every socket operation to the time left (a network backend
under httpx's own transport), the async one runs the whole exchange under ``asyncio.timeout`` (see
:func:`_within`). The body is streamed (decoded, so a compressed bomb counts at its real size) and cut off past a
size limit.

Three things httpx does on every request are done once, or only when they matter (see ``docs/benchmarks.md``): the
call's path is joined to the base URL once per path (:func:`_url`), an answer's cookies are read only when it sets
one (:class:`_Cookies`), and the detached answer keeps the body as read instead of decoding it again
(:func:`_detached`).

Failures are *returned* as typed errors for the caller to raise: no frame that raises one holds the httpx request
(whose headers carry the key), and no error chains to httpx's exception (whose request does).
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextvars import ContextVar
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpcore
import httpx

from ._protocol import Call, timed_out, translate_transport_error
from .errors import OpenHandsError, ProtocolError

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "deadline_transport", "exchange", "exchange_async", "lean"]

T = TypeVar("T")

#: Answers larger than this are refused: a batch of 99 conversations is about 200 KB.
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024

#: When the request being sent in this thread must be done (``time.monotonic()``), for :class:`_DeadlineBackend`.
_deadline: ContextVar[float | None] = ContextVar("openhands_deadline", default=None)


def _clamp(timeout: float | None) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _clamp(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every connect, read and write clamped to the request's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, _clamp(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        return _DeadlineStream(self._backend.connect_unix_socket(path, _clamp(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def deadline_transport(**options: Any) -> httpx.HTTPTransport:
    """httpx's transport, whose connection pool gets the deadline backend (httpx offers no argument for it)."""
    transport = httpx.HTTPTransport(**options)
    pool = transport._pool  # noqa: SLF001 - see the docstring; tests/test_hostile.py fails if this stops working
    pool._network_backend = _DeadlineBackend(pool._network_backend)  # noqa: SLF001
    return transport


class _Cookies(httpx.Cookies):
    """A client's cookies, read from an answer only when it sets one. httpx reads every answer through
    ``http.cookiejar``, which first copies all its headers into an ``email`` message and wraps its request: a sixth of
    a POST's own work on an answer that sets none (the app server's never do; a load balancer's sticky cookie is
    still kept, and sent back)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


C = TypeVar("C", httpx.Client, httpx.AsyncClient)


def lean(http: C) -> C:
    """``http`` with its cookies read only when an answer sets one (:class:`_Cookies`). httpx offers no argument for
    the jar's class (``cookies=`` is copied into its own); tests/test_network.py fails if this stops working."""
    http._cookies = _Cookies(http.cookies)  # noqa: SLF001
    return http


#: Each path joined to its client's base URL, as httpx joins them (a tenth of a POST's own work, done once per path):
#: by the base URL object's id and the path, with that object kept beside the URL (so its id is not reused meanwhile).
_urls: dict[tuple[int, str], tuple[httpx.URL, httpx.URL]] = {}
_MAX_URLS = 1024


def _url(http: httpx.Client | httpx.AsyncClient, path: str) -> httpx.URL:
    """``path`` on ``http``'s base URL, exactly as httpx's ``_merge_url`` makes it, remembered (ids in paths are
    many: the memory is emptied past :data:`_MAX_URLS`)."""
    base = http.base_url
    known = _urls.get((id(base), path))
    if known is not None and known[0] is base:
        return known[1]
    url = httpx.URL(path)
    if url.is_relative_url:
        url = base.copy_with(raw_path=base.raw_path + url.raw_path.lstrip(b"/"))
    if len(_urls) >= _MAX_URLS:
        _urls.clear()
    _urls[(id(base), path)] = (base, url)
    return url


def _closed() -> OpenHandsError:
    return OpenHandsError(
        "This connection was closed (%unload_ext or %reload_ext ran); the conversation goes on: "
        "call again (conv.refresh(), conv.wait()) and it opens a new one."
    )


def _too_large(max_bytes: int, call: Call) -> ProtocolError:
    advice = call.once or "is the base URL an OpenHands server?"  # (a request not to repeat blindly was taken)
    return ProtocolError(f"The server's answer was larger than {max_bytes / 1e6:.3g} MB; refused: {advice}")


def _declared_too_large(response: httpx.Response, max_bytes: int) -> bool:
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > max_bytes


#: The headers that describe the body as it came over the wire, not as it was read (decoded): see :func:`_detached`.
_WIRE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


def _detached(response: httpx.Response, body: bytes) -> httpx.Response:
    """The answer without its request: what operations read carries no header of ours. ``body`` is decoded already
    (a proxy in front of the server may gzip it: nginx, a CDN), so when it was, the headers that described it on the
    wire go: kept, they would say a length and an encoding the body no longer has. The body is set as read (as
    httpx's own ``read`` sets it): passed as ``content=``, httpx would run it through its decoders once more, a
    tenth of a POST's own work (and, with the encoding kept, fail)."""
    headers: Any = response.headers
    if "content-encoding" in headers or "transfer-encoding" in headers:
        headers = [(name, value) for name, value in headers.raw if name.lower() not in _WIRE_HEADERS]
    answer = httpx.Response(response.status_code, headers=headers, stream=httpx.ByteStream(body))
    answer._content = body  # noqa: SLF001 - see the docstring; every operation's test reads .content
    return answer


def exchange(
    http: httpx.Client, call: Call, *, deadline: float, max_bytes: int, base_url: str, timeout: float
) -> httpx.Response | OpenHandsError:
    """Send ``call`` on the sync client; the answer, or the error to raise."""
    if http.is_closed:
        return _closed()
    token = _deadline.set(deadline)
    try:
        # (no params: None, not (): httpx parses the URL once more to merge even an empty set, a tenth of a POST)
        with http.stream(call.method, _url(http, call.path), params=call.params or None, json=call.json) as response:
            if _declared_too_large(response, max_bytes):
                return _too_large(max_bytes, call)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    return _too_large(max_bytes, call)
            return _detached(response, bytes(body))
    except httpx.HTTPError as exc:
        return translate_transport_error(exc, base_url, timeout, call.once)
    finally:
        _deadline.reset(token)


async def _within(seconds: float, answer: Coroutine[Any, Any, T]) -> T:
    """``answer`` within ``seconds``, else :class:`asyncio.TimeoutError`; never losing a cancellation from outside.
    Before Python 3.12, ``wait_for`` swallows a cancellation that lands as the awaited call completes: the poller,
    cancelled by a stopping I/O thread just as its read came back, went on to wait for its next read, and the stop
    waited out its timeout. ``asyncio.timeout`` (3.11+) tells its own cancellation from another's; on 3.10 the call
    runs as a task of its own, waited for with ``asyncio.wait`` (which never swallows one)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await answer
    call = asyncio.ensure_future(answer)  # pragma: no cover - Python 3.10
    try:
        done, _ = await asyncio.wait({call}, timeout=seconds)
    except asyncio.CancelledError:
        call.cancel()
        raise
    if not done:
        call.cancel()
        await asyncio.wait({call})  # (its end; a cancellation from outside meanwhile goes on up from here)
        if not call.cancelled():
            call.exception()  # (retrieved: an error it ended with instead is the timeout's, not a log line)
        raise asyncio.TimeoutError
    return call.result()


async def exchange_async(
    http: httpx.AsyncClient, call: Call, *, deadline: float, max_bytes: int, base_url: str, timeout: float
) -> httpx.Response | OpenHandsError:
    """Send ``call`` on the async client; the answer, or the error to raise."""

    async def whole() -> httpx.Response | OpenHandsError:
        async with http.stream(
            call.method, _url(http, call.path), params=call.params or None, json=call.json
        ) as response:
            if _declared_too_large(response, max_bytes):
                return _too_large(max_bytes, call)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    return _too_large(max_bytes, call)
            return _detached(response, bytes(body))

    if http.is_closed:
        return _closed()
    try:
        return await _within(max(0.0, deadline - time.monotonic()), whole())
    except asyncio.TimeoutError:
        return timed_out(base_url, timeout, call.once)
    except httpx.HTTPError as exc:
        return translate_transport_error(exc, base_url, timeout, call.once)
