"""What both API dialects share: the request value, auth, reading answers, mapping failures to typed errors, and
the retry policy. No I/O happens here: the clients move the bytes and sleep.

How the real server answers failures (recorded in ``shared/openhands-api.md``): a bad key is 401
(``{"error": "NoCredentialsError"}`` on Cloud, ``{"detail": "Unauthorized"}`` self-hosted); no access to a repository
is 401 with a bare JSON string, or 400 ``msg_id: STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR`` on older servers; a route
the server does not have is ``404 {"detail": "Not Found"}`` (FastAPI), ``405`` for the wrong method.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from .. import __version__
from ..config import ApiKey
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OpenHandsError,
    ProtocolError,
    RateLimitError,
    ConcurrencyLimitError,
    ServerError,
    TransportError,
    UnsupportedApiError,
)
from ..validation import is_id, printable

USER_AGENT = f"openhands-magics/{__version__}"
MAX_CONCURRENT_CONVERSATIONS = 10
_GIT_AUTH_MSG_ID = "STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR"

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One HTTP request an operation needs. ``route`` names what the path is for, so a 404 can say the right thing:
    on a ``read`` of one conversation (or an ``item`` route acting on one) it is an unknown id; on a ``sandbox`` route
    (pause, resume) the conversation's sandbox is gone; on an ``agent`` route (one the app server passes on to the
    sandbox's agent server: git changes and diffs) the sandbox is not running; on any other route the server lacks
    the API. ``since``: the OpenHands version that added the route, so that FastAPI's own 404 (no such route) on an
    older server says so, not "check the id". ``once``: set on a request that must not be repeated blindly (a
    follow-up message): what to check, said instead of "try again" whenever it failed after it may have been taken
    (its answer lost, timed out, unreadable, or a 5xx)."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = field(default=None, repr=False)  # (a start's body holds its secrets' values)
    route: str = "read"  # "read" | "item" | "sandbox" | "agent" | "batch" | "start" | "probe"
    api: str = "v1"
    since: str | None = None
    once: str | None = None

    def __post_init__(self) -> None:
        # The backstop of :func:`item_path`: whatever built this path, no segment of it is anything but a plain word
        # or id, so no id can climb out of its route ("..") or end the path early ("%2F", "?", "#").
        if not _PATH.fullmatch(self.path):
            raise ProtocolError(
                f"Refusing to send a request to {printable(self.path[:80])!r}: a part of that path is "
                "not a plain id (the server, a saved notebook or the record gave a malformed one)."
            )

    @property
    def idempotent(self) -> bool:
        return self.method == "GET"


#: What every path this client sends looks like: segments of letters, digits, '-' and '_' only.
_PATH = re.compile(r"(?:/[A-Za-z0-9_-]+)+")


def item_path(template: str, value: Any, what: str) -> str:
    """The one way an id enters a URL path: ``template`` (ours, one ``{}``) with ``value`` in it, refused unless it is
    a plain id (:func:`..validation.is_id`). Ids a person gives are checked where they give them (ValidationError);
    reads skip malformed ones from a notebook or the record; so a bad id that gets here came from the server."""
    if not is_id(value):
        raise ProtocolError(
            f"The server sent an invalid {what} {printable(repr(value)[:60])}; refusing to use it in a URL."
        )
    return template.format(value)


#: An operation: a generator that yields the calls it needs and receives their responses, then returns its value.
#: The sync and async clients each drive it (``client._drive``, through :func:`advance`); so every operation is
#: written once.
Operation = Generator[Call, httpx.Response, T]


@dataclass(frozen=True)
class Wait:
    """A pause an operation asks its driver for, between two calls (a follow-up waiting for a resumed sandbox to
    run): the sync client sleeps, the async one awaits, a test answers at once. The driver answers it with None.
    Operations never sleep or read a clock themselves, so both clients drive them and tests step through them."""

    seconds: float


#: An operation that may also ask for pauses (:class:`Wait`) between its calls; an :class:`Operation` is one too. It
#: receives an ``httpx.Response`` for a call and None for a pause: typed Any, which lets every Operation (which
#: only ever receives responses) be driven as Steps.
Steps = Generator["Call | Wait", Any, T]


def advance(operation: Steps[T], answer: httpx.Response | OpenHandsError | None) -> Call | Wait:
    """The operation's next step, given the last call's answer (None to begin, or after a :class:`Wait`);
    StopIteration carries its value.

    An error instead of an answer (the request got none: a transport failure, an answer past the size limit) is
    thrown into the operation where it waits, so that an operation made of parts can keep the parts that worked
    (:meth:`.Dialect.outcome`); one it does not catch comes out here. A RecursionError while it reads an answer (JSON
    nested past what Python can hold, wherever no decoder caught it first) is what it is, an answer this client
    cannot read: a ProtocolError, raised outside the except block so that nothing of the deep stack rides along."""
    try:
        if answer is None:
            return next(operation)
        if isinstance(answer, OpenHandsError):
            return operation.throw(answer)
        return operation.send(answer)
    except RecursionError:
        pass
    raise too_deep()


# ---------------------------------------------------------------------------------------------------- auth

_SESSION_HEADER = "X-Session-API-Key"
#: Per server: "bearer" (Cloud) or "session" (self-hosted with SESSION_API_KEY), once a successful answer showed
#: which one the server takes. Shared by every client of the process, so each server is learnt once.
_auth_styles: dict[str, str] = {}


def forget_auth_styles() -> None:
    _auth_styles.clear()


class KeyAuth(httpx.Auth):
    """Adds the key per request, so it never sits in a client's default headers or in a repr.

    OpenHands Cloud wants ``Authorization: Bearer KEY``; a self-hosted server started with ``SESSION_API_KEY`` wants
    ``X-Session-API-Key: KEY`` and refuses the Bearer header with 401. The first 401 with one header is retried once
    with the other (a 401 started nothing, so even a POST is safe to resend) and the one that works is remembered
    for that server once a request with it succeeds: users never need to know which kind of server they talk to.
    """

    requires_request_body = True

    def __init__(self, api_key: ApiKey, base_url: str) -> None:
        self._api_key = api_key
        self._base_url = base_url

    def __repr__(self) -> str:
        return "KeyAuth(ApiKey('********'))"

    def _apply(self, request: httpx.Request, style: str) -> None:
        if style == "session":
            request.headers[_SESSION_HEADER] = self._api_key.reveal()
        else:
            request.headers["Authorization"] = "Bearer " + self._api_key.reveal()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        known = _auth_styles.get(self._base_url)
        style = known or "bearer"
        self._apply(request, style)
        response = yield request
        switched = response.status_code == 401 and known is None
        if switched:
            del request.headers["Authorization"]  # (the request is sent again with the other header only)
            style = "session"
            self._apply(request, style)
            response = yield request
        # Proof of which header the server takes: a success, or a 401 that the other header turned into anything
        # else. A 404 alone proves nothing: a missing route answers it whatever the header.
        if response.is_success or (switched and response.status_code != 401):
            _auth_styles[self._base_url] = style


# ---------------------------------------------------------------------------------------------------- answers


_UNREADABLE = object()
_TOO_DEEP = object()


def _loads(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return _UNREADABLE
    except RecursionError:  # JSON nested deeper than Python goes
        return _TOO_DEEP


def too_deep() -> ProtocolError:
    return ProtocolError("The server's answer was nested too deeply to read: is the base URL an OpenHands server?")


def loads(response: httpx.Response) -> Any:
    """The decoded body, or None when it is not JSON; ProtocolError when it is nested too deep to read."""
    body = _loads(response.content)
    if body is _TOO_DEEP:
        raise too_deep()
    return None if body is _UNREADABLE else body


def decode_json(response: httpx.Response, once: str | None = None) -> Any:
    body = _loads(response.content)
    if body is _TOO_DEEP:
        raise too_deep()
    if body is _UNREADABLE:  # raised here, not in the except: no chained exception rides along with ours
        start = printable(response.content[:40].decode(errors="replace"))
        raise ProtocolError(
            f"The server's answer was not valid JSON (HTTP {response.status_code}, starts with {start!r}): "
            + (f"{once}." if once else "is the base URL an OpenHands server?")
        )
    return body


def server_said(response: httpx.Response) -> tuple[str, str | None]:
    """The server's own error text (one line, bounded) and its ``msg_id`` if any."""
    body: Any = _loads(response.content)
    if body is _UNREADABLE or body is _TOO_DEEP:
        body = response.content[:1000].decode(errors="replace")
    msg_id = None
    if isinstance(body, dict):
        msg_id = body.get("msg_id") if isinstance(body.get("msg_id"), str) else None
        body = body.get("message") or body.get("error") or body.get("detail") or ""
        if isinstance(body, list):  # FastAPI 422: [{"loc": ..., "msg": ...}, ...]
            body = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in body)
    text = printable(" ".join(str(body)[:1000].split()))
    return (text[:200] + "…" if len(text) > 200 else text), msg_id


#: The ``error`` of Cloud's 429 on a start past the account's concurrency limit (OpenHands PR 14168, April 2026):
#: ``{"detail": {"error": "CONCURRENCY_LIMIT_REACHED", "message": "...", "limit": 3, "current": 3}}``.
CONCURRENCY_LIMIT_REACHED = "CONCURRENCY_LIMIT_REACHED"


def concurrency_limit(response: httpx.Response) -> ConcurrencyLimitError | None:
    """A start's 429 read as "too many running" when its body says so (Cloud's shape, above); else None (a rate
    limit: too many requests, whatever runs)."""
    body = _loads(response.content)
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, dict) or detail.get("error") != CONCURRENCY_LIMIT_REACHED:
        return None

    def count(name: str) -> int | None:
        value = detail.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100_000 else None

    limit, running = count("limit"), count("current")
    most = f"at most {limit}" if limit is not None else "no more"
    now = f" and {running} run now" if running is not None else ""
    return ConcurrencyLimitError(
        f"Too many conversations running (HTTP 429): this account runs {most} at once{now}; nothing was started.",
        limit=limit,
        running=running,
        retry_after=retry_after(response),
    )


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date is legal but nobody sends one here; treat as unknown
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None  # "nan" or "inf" parse as floats but say nothing: unknown, so the caller's default applies
    return max(0.0, min(seconds, 3600.0))


def missing_route(call: Call, base_url: str, status: int | None = None) -> UnsupportedApiError:
    other = "v0" if call.api == "v1" else "v1"
    return UnsupportedApiError(
        f"The server at {base_url} does not speak the OpenHands {call.api.upper()} API ({call.method} {call.path} "
        f"answered {status or 'nothing usable'}): set the API to auto or {other} (`--api`, "
        "`%config OpenHandsMagics.api`, OPENHANDS_API), or check the base URL.",
        status_code=status,
    )


def proxy_refused(reason: str) -> ConfigurationError:
    return ConfigurationError(
        f"The proxy refused the request ({reason}): put its user and password in the proxy URL "
        "(HTTPS_PROXY=http://user:password@proxy:port), or do not use the environment's proxy.",
        status_code=407,
    )


def _no_such_route(response: httpx.Response) -> bool:
    """FastAPI's own 404, for a path no route matches: ``{"detail": "Not Found"}`` and nothing else."""
    body = _loads(response.content)
    return isinstance(body, dict) and body == {"detail": "Not Found"}


def _route_error(status: int, said: str, call: Call) -> OpenHandsError | None:
    """A 404 that is about the route's subject, not about the id: a sandbox gone, a sandbox not running, a route the
    server is too old to have. (None: the usual meaning of a 404 on that route.)"""
    where = f"{call.method} {call.path}"
    suffix = f" (server said: {said})" if said else ""
    if said.lower().startswith("sandbox not found") or call.route == "sandbox":
        return ConflictError(
            f"The conversation's sandbox is gone (HTTP 404 at {where}): it was stopped or removed, so it can no "
            "longer be paused, resumed or sent messages; its history stays in the OpenHands app, and going on "
            f"needs a new conversation{suffix}.",
            status_code=status,
        )
    if call.route == "agent":
        return ConflictError(
            f"The conversation's sandbox is not running (HTTP 404 at {where}): it is gone, still starting or failed "
            "(or the conversation was deleted), so its workspace cannot be read now; if it is starting, try again "
            f"in a minute, else see the agent's work in the OpenHands app{suffix}.",
            status_code=status,
        )
    return None


def error_for(response: httpx.Response, call: Call, base_url: str, *, repository: str | None = None) -> OpenHandsError:
    """Map a non-2xx answer to the typed error whose message tells the user what to do next."""
    status = response.status_code
    said, msg_id = server_said(response)
    suffix = f" (server said: {said})" if said else ""
    if status == 404 and call.since and _no_such_route(response):
        route = "/".join(call.path.rsplit("/", 2)[-2:])
        return UnsupportedApiError(
            f"The server at {base_url} is older than OpenHands {call.since}: it has no {route} route yet "
            f"({call.method} answered 404 Not Found); upgrade it to {call.since} or later, or see the agent's work in "
            "the OpenHands app.",
            status_code=status,
        )
    if status == 404:
        about_the_route = _route_error(status, said, call)
        if about_the_route is not None:
            return about_the_route
    repo_problem = msg_id == _GIT_AUTH_MSG_ID or (status in (401, 403) and response.content.lstrip()[:1] == b'"')
    if repo_problem or (status == 403 and repository):
        where = f"repository {repository}" if repository else "the repository"
        return AuthenticationError(
            f"OpenHands cannot access {where} with this account (HTTP {status}): check the owner/repo spelling "
            f"and that your git provider is connected in OpenHands settings{suffix}.",
            status_code=status,
        )
    if status in (401, 403):
        return AuthenticationError(
            f"The API key was rejected (HTTP {status}): check OPENHANDS_API_KEY or run `%openhands --login`{suffix}.",
            status_code=status,
        )
    if status in (404, 405):
        if call.route in ("read", "item") and status == 404:
            return NotFoundError(
                f"Not found (HTTP 404) at {call.path}: check the conversation id and the base URL{suffix}.",
                status_code=status,
            )
        return missing_route(call, base_url, status)
    if status == 407:
        return proxy_refused(f"HTTP 407{suffix}")
    if status in (409, 410):
        what = (
            "The conversation cannot do that now (HTTP 409): resume it first"
            if status == 409
            else "The conversation is archived (HTTP 410): its sandbox no longer exists; start a new one"
        )
        return ConflictError(f"{what}{suffix}.", status_code=status)
    if status == 429 and call.route == "start":
        limited = concurrency_limit(response)
        if limited is not None:
            return limited
    if status == 429:
        wait = retry_after(response)
        when = f"; the server asks to retry in {wait:g} s" if wait is not None else ""
        return RateLimitError(
            f"Too many requests (HTTP 429): an account may run {MAX_CONCURRENT_CONVERSATIONS} conversations at once "
            f"and polls are rate-limited; wait for one to stop, then try again{when}{suffix}.",
            retry_after=wait,
        )
    if status >= 500:
        if call.once and status != 503:  # 503: the sandbox cannot take it (failed, no agent server): not taken
            return ServerError(f"The OpenHands server failed (HTTP {status}){suffix}: {call.once}.", status_code=status)
        return ServerError(
            f"The OpenHands server failed (HTTP {status}); try again in a minute{suffix}.", status_code=status
        )
    if status in (400, 422):
        return BadRequestError(f"The server refused the request (HTTP {status}){suffix}.", status_code=status)
    return OpenHandsError(f"Unexpected answer from the server (HTTP {status}){suffix}.", status_code=status)


def expect_json(response: httpx.Response, call: Call, base_url: str, *, repository: str | None = None) -> Any:
    """The decoded body of a 2xx answer; the typed error for anything else."""
    if not response.is_success:
        raise error_for(response, call, base_url, repository=repository)
    return decode_json(response, call.once)


def expect_list(response: httpx.Response, call: Call, base_url: str, length: int) -> list[Any]:
    """A batched read's answer: one entry (or ``null``) per id asked, in order."""
    body = expect_json(response, call, base_url)
    if not isinstance(body, list) or len(body) != length:
        raise ProtocolError(
            f"The server answered {call.path} with {type(body).__name__} of the wrong shape; expected a list of "
            f"{length}: is the base URL an OpenHands server?"
        )
    return body


def translate_transport_error(
    exc: httpx.HTTPError, base_url: str, timeout: float, once: str | None = None
) -> OpenHandsError:
    """Turn httpx's exception into one line; the original is dropped so its frames (and headers) never print.
    ``once`` (see :class:`Call`) replaces "try again" when the request may have reached the server."""
    reason = printable(" ".join(str(exc).split())[:160]) or type(exc).__name__
    if isinstance(exc, httpx.ProxyError):
        if "407" in reason:
            return proxy_refused(reason)
        return TransportError(
            f"The proxy failed to reach {base_url} ({reason}): check HTTPS_PROXY / HTTP_PROXY.", request_sent=False
        )
    if isinstance(exc, httpx.ConnectError) and ("CERTIFICATE" in reason or "SSL" in reason):
        return TransportError(
            f"TLS verification of {base_url} failed ({reason}): if your company inspects HTTPS, give its CA bundle "
            "(`%config OpenHandsMagics.ca_bundle = '/path/ca.pem'` or OPENHANDS_CA_BUNDLE).",
            request_sent=False,
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportError(
            f"Could not connect to {base_url} within {timeout:g} s: is it reachable?", request_sent=False
        )
    if isinstance(exc, httpx.PoolTimeout):  # no connection was free in time: nothing was sent
        return TransportError(
            f"No connection to {base_url} was free within {timeout:g} s; try again.", request_sent=False
        )
    if isinstance(exc, httpx.TimeoutException):
        return timed_out(base_url, timeout, once)
    if isinstance(exc, httpx.ConnectError):
        return TransportError(
            f"Could not connect to {base_url} ({reason}): is the server up and the base URL right?", request_sent=False
        )
    if once:
        return TransportError(f"The connection to {base_url} failed after the request was sent ({reason}): {once}.")
    return TransportError(f"The connection to {base_url} failed ({reason}); try again.")


def timed_out(base_url: str, timeout: float, once: str | None = None) -> TransportError:
    """No (whole) answer within the deadline, once the request was on its way."""
    if once:
        return TransportError(f"{base_url} did not answer within {timeout:g} s after the request was sent: {once}.")
    return TransportError(f"{base_url} did not answer within {timeout:g} s; try again, or raise the timeout.")


@contextmanager
def warning_if_maybe_started(where: str) -> Iterator[None]:
    """Around a start: one that failed *after* reaching the server may still have started the conversation; mark the
    error, so the user looks before re-running the cell (which would start a second one)."""
    try:
        yield
    except OpenHandsError as error:
        uncertain = isinstance(error, (ServerError, ProtocolError)) or (
            isinstance(error, TransportError) and error.request_sent
        )
        if uncertain:
            error.maybe_started_at = where
        raise


# ---------------------------------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried: exponential backoff with jitter; ``Retry-After`` wins when the server sends one.

    Creating a conversation is retried only when the request provably never left (connection refused), because a
    POST that reached the server may have started a conversation, and a blind retry would start a second one.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 30.0

    def pause_before_retry(
        self, attempt: int, error: OpenHandsError, *, idempotent: bool, remaining: float | None = None
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``: also when the
        pause (a ``Retry-After`` included) would not leave the next attempt any of the ``remaining`` seconds."""
        pause = self._pause(attempt, error, idempotent=idempotent)
        if pause is not None and remaining is not None and pause >= remaining:
            return None
        return pause

    def _pause(self, attempt: int, error: OpenHandsError, *, idempotent: bool) -> float | None:
        if attempt + 1 >= self.attempts:
            return None
        if idempotent:
            if not error.retryable:
                return None
        elif not (isinstance(error, TransportError) and not error.request_sent):
            return None
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        delay = min(self.max_delay, self.base_delay * 2**attempt)
        return delay * random.uniform(0.75, 1.25)


NO_RETRIES = RetryPolicy(attempts=1)
