"""The sans-IO half of the client: building requests, reading answers, mapping failures to typed errors.

Both :class:`~openhands_magics.client.OpenHandsClient` and :class:`~openhands_magics.client.AsyncOpenHandsClient`
call these functions, so sync and async differ only in how bytes move and how they sleep. What the real server
answers was read from OpenHands' source (``openhands/server/routes/manage_conversations.py``, ``enterprise/server``):

* ``POST /api/conversations`` -> ``{"status": "ok", "conversation_id": ..., "conversation_status"?: ...}``
* ``GET /api/conversations/{id}`` -> a ConversationInfo object, or ``null`` (with 200!) for an unknown id
* bad key -> 401 ``{"error": "NoCredentialsError"}``; no access to the repository -> 401 with a bare JSON string
  (newer servers) or 400 with ``msg_id: STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR`` (older ones)
* 429 ``{"error": "Rate limit exceeded: ..."}`` or ``{"message": "Too many requests"}`` with ``Retry-After``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from . import __version__
from .config import ApiKey
from .errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OpenHandsError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .models import Conversation, ConversationStatus
from .validation import validate_conversation_id

CONVERSATIONS_PATH = "/api/conversations"
USER_AGENT = f"openhands-magics/{__version__}"
MAX_CONCURRENT_CONVERSATIONS = 10
_GIT_AUTH_MSG_ID = "STATUS$GIT_PROVIDER_AUTHENTICATION_ERROR"


class BearerAuth(httpx.Auth):
    """Adds the key per request, so it never sits in a client's default headers or in a repr."""

    def __init__(self, api_key: ApiKey) -> None:
        self._api_key = api_key

    def __repr__(self) -> str:
        return "BearerAuth(ApiKey('********'))"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._api_key.reveal()
        yield request


def conversation_path(conversation_id: str) -> str:
    return f"{CONVERSATIONS_PATH}/{conversation_id}"


def start_payload(message: str, repository: str | None) -> dict[str, str]:
    payload = {"initial_user_msg": message}
    if repository:
        payload["repository"] = repository
    return payload


# ---------------------------------------------------------------------------------------------------- answers


def _decode_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        start = response.text[:40].replace("\n", " ")
        raise ProtocolError(
            f"The server's answer was not valid JSON (HTTP {response.status_code}, starts with {start!r}): "
            "is the base URL an OpenHands server?"
        ) from None


def _server_said(response: httpx.Response) -> tuple[str, str | None]:
    """The server's own error text (one line, bounded) and its ``msg_id`` if any."""
    try:
        body: Any = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        body = response.text
    msg_id = None
    if isinstance(body, dict):
        msg_id = body.get("msg_id") if isinstance(body.get("msg_id"), str) else None
        body = body.get("message") or body.get("error") or body.get("detail") or ""
        if isinstance(body, list):  # FastAPI 422: [{"loc": ..., "msg": ...}, ...]
            body = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in body)
    text = " ".join(str(body).split())
    return (text[:200] + "…" if len(text) > 200 else text), msg_id


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date is legal but nobody sends one here; treat as unknown
    return max(0.0, min(seconds, 3600.0))


def error_for(response: httpx.Response, *, repository: str | None = None) -> OpenHandsError:
    """Map a non-2xx answer to the typed error whose message tells the user what to do next."""
    status = response.status_code
    said, msg_id = _server_said(response)
    suffix = f" (server said: {said})" if said else ""
    repo_problem = msg_id == _GIT_AUTH_MSG_ID or (status in (401, 403) and response.text.lstrip().startswith('"'))
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
    if status == 404:
        return NotFoundError(
            f"Not found (HTTP 404) at {response.request.url.path}: check the conversation id and the base URL{suffix}.",
            status_code=status,
        )
    if status == 429:
        retry_after = _retry_after(response)
        when = f"; the server asks to retry in {retry_after:g} s" if retry_after is not None else ""
        return RateLimitError(
            f"Too many requests (HTTP 429): an account may run {MAX_CONCURRENT_CONVERSATIONS} conversations at once "
            f"and polls are rate-limited; wait for one to stop, then try again{when}{suffix}.",
            retry_after=retry_after,
        )
    if status >= 500:
        return ServerError(
            f"The OpenHands server failed (HTTP {status}); try again in a minute{suffix}.", status_code=status
        )
    if status in (400, 422):
        return BadRequestError(f"The server refused the request (HTTP {status}){suffix}.", status_code=status)
    return OpenHandsError(f"Unexpected answer from the server (HTTP {status}){suffix}.", status_code=status)


def read_started(response: httpx.Response, *, repository: str | None) -> Conversation:
    """Read the POST answer. The id is validated here, before it can reach a URL path."""
    if not response.is_success:
        raise error_for(response, repository=repository)
    body = _decode_json(response)
    if not isinstance(body, dict) or not isinstance(body.get("conversation_id"), str):
        raise ProtocolError("The server's answer to the new conversation has no conversation_id.")
    conversation_id = validate_conversation_id(body["conversation_id"])
    if body.get("status", "ok") != "ok":
        said, _ = _server_said(response)
        raise BadRequestError(
            f"The server did not start the conversation: {said or body.get('status')} (it named id {conversation_id})."
        )
    minimal = {"conversation_id": conversation_id, "status": ConversationStatus.STARTING, "selected_repository": repository}
    try:
        return Conversation.from_json(
            {
                **minimal,
                **{k: v for k, v in body.items() if k not in ("conversation_id", "conversation_status", "status")},
                "status": body.get("conversation_status") or ConversationStatus.STARTING,
            }
        )
    except ProtocolError:  # an odd extra field must not lose a conversation that exists: the id is what matters
        return Conversation.from_json(minimal)


def read_conversation(response: httpx.Response, conversation_id: str) -> Conversation:
    if not response.is_success:
        raise error_for(response)
    body = _decode_json(response)
    if body is None:  # what OpenHands answers (HTTP 200) for an id it does not know
        raise NotFoundError(f"Conversation {conversation_id} was not found: check the id and the base URL.")
    conversation = Conversation.from_json(body)
    if conversation.conversation_id != conversation_id:
        raise ProtocolError(
            f"Asked for conversation {conversation_id} but the server answered about {conversation.conversation_id}."
        )
    return conversation


def translate_transport_error(exc: httpx.HTTPError, base_url: str, timeout: float) -> TransportError:
    """Turn httpx's exception into one line; the original is dropped so its frames (and headers) never print."""
    if isinstance(exc, httpx.ConnectTimeout):
        return TransportError(f"Could not connect to {base_url} within {timeout:g} s: is it reachable?", request_sent=False)
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"{base_url} did not answer within {timeout:g} s; try again, or raise the timeout.")
    if isinstance(exc, httpx.ConnectError):
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        return TransportError(
            f"Could not connect to {base_url} ({reason}): is the server up and the base URL right?", request_sent=False
        )
    reason = " ".join(str(exc).split())[:120] or type(exc).__name__
    return TransportError(f"The connection to {base_url} failed ({reason}); try again.")


@contextmanager
def warning_if_maybe_started(base_url: str) -> Iterator[None]:
    """Around a POST: one that failed *after* reaching the server may still have started the conversation; say so,
    so the user looks before re-running the cell (which would start a second one). Serves sync and async callers."""
    try:
        yield
    except OpenHandsError as error:
        uncertain = isinstance(error, (ServerError, ProtocolError)) or (
            isinstance(error, TransportError) and error.request_sent
        )
        if uncertain and error.args:
            error.args = (
                f"{error.args[0]} The conversation may have been started anyway: check {base_url} before retrying.",
            )
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

    def pause_before_retry(self, attempt: int, error: OpenHandsError, *, idempotent: bool) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``."""
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
