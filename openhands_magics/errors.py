"""Typed errors, each carrying one line a person can act on.

The magics print ``str(error)`` and nothing else, so every message here is a complete sentence that says what went
wrong *and what to do*. None of them ever includes the API key: errors are built from status codes, the server's
own error text and our own words, never from request headers, and every message is blanked as the error is made
(:func:`._secrets.blank`), because a server may echo what it was sent (``Bearer KEY``) in its error text, and the
printed line is saved with the notebook.

The tree::

    OpenHandsError                  .status_code, .maybe_started_at (a POST that may have started a conversation)
      ConfigurationError            nothing was sent: no key, unsafe URL
        UnsupportedApiError         the server does not speak the API asked for (or neither)
      ValidationError               the user's input, refused before sending
      AuthenticationError           401/403, no access to the repository
      BadRequestError               400/422
      NotFoundError                 no such conversation
      ConflictError                 409/410: not now (a paused sandbox) or not any more (archived)
      RateLimitError                429, .retry_after
        ConcurrencyLimitError       429 on a start: the account runs its most conversations (.limit, .running)
      ServerError                   5xx
      TransportError                no usable answer, .request_sent
      ProtocolError                 an answer this client cannot read
      WaitTimeout                   a blocking wait ran out (also a TimeoutError)
"""

from __future__ import annotations

from typing import ClassVar

from ._secrets import blank

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConcurrencyLimitError",
    "ConfigurationError",
    "ConflictError",
    "NotFoundError",
    "OpenHandsError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "UnsupportedApiError",
    "ValidationError",
    "WaitTimeout",
]


class OpenHandsError(Exception):
    """Base of every error this package raises on purpose."""

    #: HTTP status code when the error came from a response.
    status_code: int | None = None

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(blank(message))  # every subclass comes through here: no error's text shows a key
        self.status_code = status_code
        #: Set on a failed POST that may still have started a conversation: where to look before trying again.
        self.maybe_started_at: str | None = None

    def __str__(self) -> str:
        message = super().__str__()
        if self.maybe_started_at:
            message += f" The conversation may have been started anyway: check {self.maybe_started_at} before retrying."
        return message

    #: Whether trying the same read again later may succeed (drives the poller's "retrying…").
    retryable: ClassVar[bool] = False


class ConfigurationError(OpenHandsError):
    """Local set-up is missing or unsafe (no key, bad base URL, key over plain http). Nothing was sent."""


class UnsupportedApiError(ConfigurationError):
    """The server answered, but not with the OpenHands API asked for (``api`` = v1 / v0), or with neither."""


class ValidationError(OpenHandsError):
    """The user's input (message, repository, id, option) was refused before anything was sent."""


class AuthenticationError(OpenHandsError):
    """401/403, or OpenHands' git-provider error: the key is wrong, or it cannot reach the repository."""


class BadRequestError(OpenHandsError):
    """400/422 that is not about authentication, e.g. the account has no LLM settings yet."""


class NotFoundError(OpenHandsError):
    """The conversation does not exist (404, or the ``null`` body OpenHands answers for unknown ids)."""


class ConflictError(OpenHandsError):
    """409/410: the conversation cannot do this in its state (its sandbox is paused or gone)."""


class RateLimitError(OpenHandsError):
    """429. ``retry_after`` holds the server's ``Retry-After`` in seconds when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, status_code: int | None = 429) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after

    retryable = True


class ConcurrencyLimitError(RateLimitError):
    """429 on a start from Cloud (since April 2026): the account (its organisation) already runs as many
    conversations as it may (``limit``: 3 for a personal one, 10 for a team; ``running``: how many now, as the
    server counted). Nothing was started; a start goes through once one of them ends."""

    def __init__(
        self, message: str, *, limit: int | None = None, running: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit, self.running = limit, running


class ServerError(OpenHandsError):
    """5xx: the server failed; reads are retried, conversation creation is not."""

    retryable = True


class TransportError(OpenHandsError):
    """No usable answer: connection refused, DNS failure, timeout, broken connection."""

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        #: False only when the request provably never reached the server (so even a POST may be retried).
        self.request_sent = request_sent

    retryable = True


class ProtocolError(OpenHandsError):
    """The server answered 2xx with a body this client cannot understand (malformed JSON, missing id)."""

    retryable = True


class WaitTimeout(OpenHandsError, TimeoutError):
    """A blocking wait ran out of time; the conversation itself goes on."""
