"""Logging in as OpenHands' own CLI does: its device-code flow, and the key it keeps.

``openhands login`` (OpenHands-CLI, ``openhands_cli/auth``) keeps the key in ``~/.openhands/cloud/api_key.txt``
(``$OPENHANDS_PERSISTENCE_DIR/cloud/api_key.txt`` when set), mode 0600. Without ``OPENHANDS_API_KEY`` (or a
``--login`` key), that file's key is used, when the file is readable by its owner only: a key others on the machine
could read is refused in one line (``chmod 600 PATH``), and the key is never printed. ``--login --save`` writes the
key there the same way (0600), so the CLI and the notebook share one login.

``%openhands --login`` first tries the CLI's device flow (``openhands_cli/auth/device_flow.py``, RFC 8628):
``POST /oauth/device/authorize`` (JSON ``{}``) answers ``device_code``, ``user_code``, ``verification_uri``,
``verification_uri_complete``, ``expires_in`` and ``interval``; the code and the link are shown in the notebook, and
``POST /oauth/device/token`` (form ``device_code=...``) is polled every ``interval`` seconds until it answers 200
``{"access_token": KEY}`` (or ``authorization_pending``, ``slow_down`` with a new ``interval``, ``expired_token``,
``access_denied``). The polling runs in the package's I/O thread, so the kernel is blocked only for the first POST
(at most :data:`AUTHORIZE_TIMEOUT` seconds): the cell returns at once and the shown code turns into "logged in" when
the key arrives. The key is kept in memory (as a pasted one), and written to the CLI's file only with ``--save``. A
server without the flow (a self-hosted OpenHands: 404) gets today's paste prompt.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import stat
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["DeviceCode", "cli_key_path", "read_cli_key", "save_cli_key", "start_device_login"]

log = logging.getLogger("openhands_magics")
#: How long the kernel waits for the first answer (``/oauth/device/authorize``) before it prompts for a key.
AUTHORIZE_TIMEOUT = 10.0
#: The longest pause between polls the server may ask for (``slow_down``), as the CLI caps it.
MAX_INTERVAL = 30

#: What OpenHands' CLI reads to find its directory (``openhands_cli.locations.get_persistence_dir``).
PERSISTENCE_ENV = "OPENHANDS_PERSISTENCE_DIR"


def cli_key_path() -> Path:
    """Where OpenHands' CLI keeps its key."""
    base = os.environ.get(PERSISTENCE_ENV) or os.path.expanduser("~/.openhands")
    return Path(base) / "cloud" / "api_key.txt"


def read_cli_key() -> str | None:
    """The CLI's key, or None when there is no such file (or it is empty). A file others may read is refused."""
    path = cli_key_path()
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(
            f"OpenHands' CLI key file {path} may be read by others (mode {stat.S_IMODE(mode):04o}): run "
            f"`chmod 600 {path}`, or set OPENHANDS_API_KEY."
        )
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def save_cli_key(key: str) -> Path:
    """Write ``key`` where the CLI keeps it, readable by its owner only (created 0600, never wider for a moment)."""
    path = cli_key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key)
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------------------------------- device flow
@dataclass(frozen=True)
class DeviceCode:
    """What ``/oauth/device/authorize`` answered: the code to confirm, where, and how to poll."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: float
    interval: float

    def __repr__(self) -> str:  # (the device code lets whoever holds it fetch the key: never shown)
        return f"DeviceCode(user_code={self.user_code!r}, verification_uri={self.verification_uri!r})"


def _code_from(body: Any) -> DeviceCode | None:
    from .validation import printable

    if not isinstance(body, dict):
        return None
    texts = [body.get(name) for name in ("device_code", "user_code", "verification_uri")]
    if not all(isinstance(t, str) and t and len(t) < 2000 for t in texts):
        return None
    uri = str(texts[2])
    complete = body.get("verification_uri_complete")
    complete = complete if isinstance(complete, str) and complete.startswith(("https://", "http://")) else uri
    if not uri.startswith(("https://", "http://")):
        return None

    def number(name: str, default: float, low: float, high: float) -> float:
        value = body.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high:
            return float(value)
        return default

    return DeviceCode(
        str(texts[0]),
        printable(str(texts[1]))[:40],
        printable(uri),
        printable(complete),
        number("expires_in", 600.0, 1.0, 3600.0),
        number("interval", 5.0, 0.05, MAX_INTERVAL),
    )


def _http_options(base_url: str, ca_bundle: str | None, use_env_proxy: bool | None) -> dict[str, Any]:
    from .client import _trust
    from .config import env_proxy_for, resolve_env_proxy

    return {
        "base_url": base_url,
        "verify": _trust(ca_bundle) if ca_bundle else True,
        "proxy": env_proxy_for(base_url) if resolve_env_proxy(use_env_proxy) else None,
        "trust_env": False,
        "follow_redirects": False,  # (the key must come from this server)
        "headers": {"Accept": "application/json"},
    }


def authorize(base_url: str, *, ca_bundle: str | None = None, use_env_proxy: bool | None = None) -> DeviceCode | None:
    """``POST /oauth/device/authorize``; None when the server has no device flow (or cannot be asked): then the
    caller prompts for a key, as before."""
    import httpx

    try:
        with httpx.Client(**_http_options(base_url, ca_bundle, use_env_proxy), timeout=AUTHORIZE_TIMEOUT) as http:
            answer = http.post("/oauth/device/authorize", json={})
    except httpx.HTTPError as error:
        log.debug("no device flow at %s: %s", base_url, type(error).__name__)
        return None
    if answer.status_code != 200:
        return None
    try:
        return _code_from(answer.json())
    except ValueError:
        return None


async def poll_for_key(
    base_url: str, code: DeviceCode, *, ca_bundle: str | None = None, use_env_proxy: bool | None = None
) -> str:
    """Poll ``/oauth/device/token`` until the user confirmed (the key) or it failed (:class:`ConfigurationError`
    with the line to show), as the CLI's ``poll_for_token`` does."""
    import time

    import httpx

    interval, deadline = code.interval, time.monotonic() + code.expires_in
    async with httpx.AsyncClient(**_http_options(base_url, ca_bundle, use_env_proxy), timeout=30.0) as http:
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            try:
                answer = await http.post("/oauth/device/token", data={"device_code": code.device_code})
            except httpx.HTTPError as failure:
                raise ConfigurationError(
                    f"Login failed: the server could not be reached ({type(failure).__name__})."
                ) from None
            try:
                body = answer.json()
            except ValueError:
                body = None
            if answer.status_code == 200:
                key = body.get("access_token") if isinstance(body, dict) else None
                if not isinstance(key, str) or not key.strip():
                    raise ConfigurationError("Login failed: the server's answer holds no key.")
                return key.strip()
            error = body.get("error") if isinstance(body, dict) else None
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                asked = body.get("interval") if isinstance(body, dict) else None
                if isinstance(asked, (int, float)) and not isinstance(asked, bool) and 0 < asked <= MAX_INTERVAL:
                    interval = float(asked)
                else:
                    interval = min(interval * 2, MAX_INTERVAL)
                continue
            if error == "expired_token":
                raise ConfigurationError("Login failed: the code expired; run `%openhands --login` again.")
            if error == "access_denied":
                raise ConfigurationError("Login failed: the request was denied in the browser.")
            raise ConfigurationError(
                f"Login failed: the server answered HTTP {answer.status_code} ({error or 'no reason'})."
            )
    raise ConfigurationError("Login failed: the code was not confirmed in time; run `%openhands --login` again.")


_running: Future[Any] | None = None


def start_device_login(
    base_url: str,
    code: DeviceCode,
    *,
    save: bool = False,
    ca_bundle: str | None = None,
    use_env_proxy: bool | None = None,
    tell: Callable[[str, str], None],
) -> Future[Any]:
    """Poll for the key in the I/O thread (a login started before is given up); ``tell(text, html)`` is called
    there with the outcome. The key is kept in memory, and saved only with ``save``."""
    global _running
    from ._io import get_io
    from .config import set_session_api_key

    async def run() -> None:
        try:
            key = await poll_for_key(base_url, code, ca_bundle=ca_bundle, use_env_proxy=use_env_proxy)
        except ConfigurationError as error:
            tell(f"openhands: {error}", f"<b>OpenHands</b>: {html.escape(str(error))}")
            return
        set_session_api_key(key)
        where = " and saved to the CLI's key file (mode 0600)" if save else " (in memory only)"
        if save:
            save_cli_key(key)
        line = f"Logged in to {base_url}: the key is kept for this session{where}."
        tell(f"openhands: {line}", f"<b>OpenHands</b>: {html.escape(line)}")

    if _running is not None:
        _running.cancel()
    _running = get_io().submit(run())
    return _running


def code_lines(code: DeviceCode) -> tuple[str, str]:
    """The code and the link, as text and as HTML (server text escaped)."""
    text = (
        f"openhands: to log in, open {code.verification_uri_complete} and confirm the code {code.user_code} "
        f"(it expires in {int(code.expires_in // 60) or 1} min); this cell returns now, and says when you are in."
    )
    link = html.escape(code.verification_uri_complete, quote=True)
    markup = (
        f'<b>OpenHands login</b>: open <a href="{link}" target="_blank" rel="noopener noreferrer">{link}</a> and '
        f'confirm the code <code style="font-size:120%">{html.escape(code.user_code)}</code> '
        f"(it expires in {int(code.expires_in // 60) or 1} min). You can go on working meanwhile."
    )
    return text, markup
