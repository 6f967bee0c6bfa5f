"""The sans-IO half of the client: what to send and how to read the answers, for each OpenHands API.

Every operation (start, read a batch, find an id, detect the API, a follow-up) is a generator that yields
:class:`Call` values and receives responses (see :mod:`.common`), so the sync and the async client drive the same code
and differ only in how bytes move and how they sleep. An operation that must wait between calls (a follow-up to a
paused sandbox waits for it to run again) yields a :class:`Wait` and its driver sleeps: none of them sleeps itself.
The two APIs are two :class:`Dialect` classes behind one interface; which one a server speaks is found out once by
:func:`detect` and remembered per server by the clients.
"""

from __future__ import annotations

from ..config import API_CHOICES
from ..errors import UnsupportedApiError
from .common import (
    loads,
    NO_RETRIES,
    USER_AGENT,
    Call,
    KeyAuth,
    Operation,
    RetryPolicy,
    Steps,
    Wait,
    advance,
    error_for,
    forget_auth_styles,
    timed_out,
    translate_transport_error,
    warning_if_maybe_started,
)
from .dialect import RESUME_INTERVAL, RESUME_TIMEOUT, Dialect, EventsPage, Page
from .v0 import V0
from .v1 import V1

__all__ = [
    "API_CHOICES",
    "NO_RETRIES",
    "RESUME_INTERVAL",
    "RESUME_TIMEOUT",
    "USER_AGENT",
    "Call",
    "Dialect",
    "EventsPage",
    "KeyAuth",
    "Operation",
    "Page",
    "RetryPolicy",
    "V0",
    "V1",
    "Steps",
    "Wait",
    "advance",
    "detect",
    "dialect_for",
    "error_for",
    "forget_auth_styles",
    "timed_out",
    "translate_transport_error",
    "warning_if_maybe_started",
]

#: An id no server has: probing with it reads nothing and starts nothing.
_PROBE_ID = "00000000000040008000000000000000"


def dialect_for(api: str, base_url: str) -> Dialect:
    return {"v1": V1, "v0": V0}[api](base_url)


def detect(base_url: str) -> Operation[Dialect]:
    """Which API the server speaks, asked with reads only, so nothing can start by mistake.

    A server that still has V0 (1.6 and older, which also carry an early V1) is spoken to in V0, its main API
    there; one without it (1.7 and later, Cloud) in V1. An auth failure (or a proxy's 407) is raised as such, not
    taken for an answer; so is an answer nested too deep to read.
    """
    probes = (
        (V0(base_url), Call("GET", "/api/conversations", params=(("limit", "1"),), route="probe", api="v0"), dict),
        (V1(base_url), Call("GET", "/api/v1/app-conversations", params=(("ids", _PROBE_ID),), route="probe"), list),
    )
    for dialect, call, shape in probes:
        response = yield call
        if response.status_code in (401, 403, 407, 429) or response.status_code >= 500:
            raise error_for(response, call, base_url)
        if response.is_success and isinstance(loads(response), shape):
            return dialect
    raise UnsupportedApiError(
        f"The server at {base_url} speaks neither OpenHands API (no /api/v1/app-conversations, no "
        "/api/conversations): is the base URL an OpenHands server?"
    )
