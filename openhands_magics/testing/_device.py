"""OpenHands Cloud's device-code login (``/oauth/device/authorize``, ``/oauth/device/token``), as OpenHands' CLI
expects it (``openhands_cli/auth/device_flow.py``, RFC 8628). The real 1.11.0 (self-hosted) has no such route (404),
so it is off unless the server is made with ``device_flow=True``.

``authorize`` (JSON ``{}``) answers a device code, a user code ``ABCD-1234``, ``verification_uri`` (this server's
``/oauth/device/verify``) and its ``?user_code=`` form, ``expires_in`` and ``interval``. ``token`` (form
``device_code=...``) answers 400 ``authorization_pending`` until the user code is confirmed (``GET`` on the
verification link, or :meth:`DeviceFlow.confirm`), then 200 ``{"access_token": KEY, "token_type": "Bearer"}`` once;
``access_denied`` after :meth:`DeviceFlow.deny`, ``expired_token`` past ``expires_in``, ``slow_down`` with a new
``interval`` when polled faster than asked.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from ._http import RecordedRequest, Reply

__all__ = ["DeviceFlow"]


@dataclass
class _Grant:
    device_code: str
    user_code: str
    expires_at: float
    state: str = "pending"  # pending, confirmed, denied, used
    polls: list[float] = field(default_factory=list)


class DeviceFlow:
    """The device codes a server handed out, and the answers to their polls."""

    def __init__(self, base_url: str, key: str, *, interval: float = 1.0, expires_in: float = 600.0) -> None:
        self.base_url, self._key = base_url, key
        self.interval, self.expires_in = interval, expires_in
        self._grants: list[_Grant] = []
        self._lock = threading.Lock()

    @property
    def user_codes(self) -> list[str]:
        with self._lock:
            return [g.user_code for g in self._grants]

    def confirm(self, user_code: str | None = None) -> None:
        """The user confirms the code in the browser (default: the latest one)."""
        self._set(user_code, "confirmed")

    def deny(self, user_code: str | None = None) -> None:
        self._set(user_code, "denied")

    def _set(self, user_code: str | None, state: str) -> None:
        with self._lock:
            grant = next((g for g in reversed(self._grants) if user_code in (None, g.user_code)), None)
            if grant is None:
                raise KeyError(user_code)
            grant.state = state

    def answer(self, request: RecordedRequest) -> Reply:
        if request.method == "POST" and request.path == "/oauth/device/authorize":
            return self._authorize()
        if request.method == "POST" and request.path == "/oauth/device/token":
            return self._token(request)
        if request.method == "GET" and request.path == "/oauth/device/verify":
            code = (request.query.get("user_code") or [""])[0]
            try:
                self.confirm(code)
            except KeyError:
                return Reply(404, "unknown code", content_type="text/plain; charset=utf-8")
            return Reply(200, "<!doctype html><p>Device confirmed.</p>", content_type="text/html; charset=utf-8")
        return Reply(404, {"detail": "Not Found"})

    def _authorize(self) -> Reply:
        letters = string.ascii_uppercase
        user_code = "".join(secrets.choice(letters) for _ in range(4)) + "-" + str(secrets.randbelow(9000) + 1000)
        grant = _Grant(secrets.token_urlsafe(24), user_code, time.monotonic() + self.expires_in)
        with self._lock:
            self._grants.append(grant)
        verify = f"{self.base_url}/oauth/device/verify"
        return Reply(
            200,
            {
                "device_code": grant.device_code,
                "user_code": user_code,
                "verification_uri": verify,
                "verification_uri_complete": f"{verify}?user_code={user_code}",
                "expires_in": int(self.expires_in),
                "interval": self.interval,
            },
        )

    def _token(self, request: RecordedRequest) -> Reply:
        form = urllib.parse.parse_qs(str(request.body or ""))
        device_code = (form.get("device_code") or [""])[0]
        now = time.monotonic()
        with self._lock:
            grant = next((g for g in self._grants if g.device_code == device_code), None)
            if grant is None or grant.state == "used":
                return Reply(400, {"error": "invalid_grant", "error_description": "unknown device code"})
            if now > grant.expires_at:
                return Reply(400, {"error": "expired_token"})
            if grant.state == "denied":
                return Reply(400, {"error": "access_denied"})
            too_soon = bool(grant.polls) and now - grant.polls[-1] < self.interval * 0.5
            grant.polls.append(now)
            if too_soon:
                return Reply(400, {"error": "slow_down", "interval": self.interval})
            if grant.state != "confirmed":
                return Reply(400, {"error": "authorization_pending"})
            grant.state = "used"
        return Reply(200, {"access_token": self._key, "token_type": "Bearer", "expires_in": None})
