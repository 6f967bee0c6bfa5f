"""Where the base URL and the API key come from, and the rules that keep the key safe.

The key lives in an :class:`ApiKey` whose ``repr``/``str`` are masked, so it cannot leak through a log line, a repr, a
widget state or a verbose traceback's locals. It is read from ``OPENHANDS_API_KEY`` or from ``%openhands --login``
(memory only) and revealed for two purposes only: the ``Authorization`` header, added per request by
:class:`openhands_magics._protocol.KeyAuth`, and blanking it (:mod:`._secrets`: every key made here is known there,
so what the package prints or sends to the agent never shows it).
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from . import _secrets
from .errors import ConfigurationError

__all__ = [
    "API_ENV",
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "ApiKey",
    "clear_session_api_key",
    "resolve_api",
    "resolve_api_key",
    "resolve_base_url",
    "set_session_api_key",
]

DEFAULT_BASE_URL = "https://app.all-hands.dev"
API_KEY_ENV = "OPENHANDS_API_KEY"
BASE_URL_ENV = "OPENHANDS_BASE_URL"
API_ENV = "OPENHANDS_API"
CA_BUNDLE_ENV = "OPENHANDS_CA_BUNDLE"
ENV_PROXY_ENV = "OPENHANDS_USE_ENV_PROXY"
API_CHOICES = ("auto", "v1", "v0")
#: No interval (poll, timeout) below this: a typo like 0.0001 must not hammer a server.
MIN_INTERVAL = 0.05
#: Polls of a server off this machine come no faster than this: OpenHands Cloud allows about 100 requests a minute.
REMOTE_MIN_INTERVAL = 1.0

NO_KEY_MESSAGE = (
    f"No OpenHands API key: set {API_KEY_ENV} in the environment or run `%openhands --login` "
    "(get a key at https://app.all-hands.dev/settings/api-keys)."
)


class ApiKey:
    """A secret that refuses to show itself. Use :meth:`reveal` only to build the Authorization header."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ConfigurationError(NO_KEY_MESSAGE)
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ConfigurationError("The API key contains spaces or control characters; paste it again.")
        self.__value = value
        _secrets.remember(self)  # blanked from now on wherever it shows, even after this key is dropped

    def reveal(self) -> str:
        return self.__value

    def __repr__(self) -> str:
        return "ApiKey('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash(self.__value)

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("An ApiKey cannot be pickled; it is kept in memory only.")


_session_key: ApiKey | None = None


def set_session_api_key(key: str | ApiKey) -> ApiKey:
    """Keep a key for this process only (what ``%openhands --login`` does); it wins over the environment."""
    global _session_key
    _session_key = key if isinstance(key, ApiKey) else ApiKey(key)
    return _session_key


def clear_session_api_key() -> None:
    global _session_key
    _session_key = None


def resolve_api_key(explicit: str | ApiKey | None = None) -> ApiKey:
    """Explicit argument, then the ``--login`` key, then ``OPENHANDS_API_KEY``, then the key OpenHands' CLI keeps
    (``~/.openhands/cloud/api_key.txt``, mode 0600: :mod:`.login`); raise one clear line if none."""
    if isinstance(explicit, ApiKey):
        return explicit
    if explicit is not None:
        return ApiKey(explicit)
    if _session_key is not None:
        return _session_key
    from_env = os.environ.get(API_KEY_ENV, "").strip()
    if not from_env:
        from .login import read_cli_key

        from_cli = read_cli_key()  # the key OpenHands' CLI keeps (``openhands login``), when only its owner reads it
        if from_cli is None:
            raise ConfigurationError(NO_KEY_MESSAGE)
        return ApiKey(from_cli)
    return ApiKey(from_env)


def is_loopback_url(url: str) -> bool:
    return _is_loopback(urlsplit(url).hostname or "")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(explicit: str | None = None) -> str:
    """Explicit argument, then ``OPENHANDS_BASE_URL``, then the Cloud; refuse anything that would leak the key.

    A Bearer key over plain http can be read by anyone on the path, so http is allowed only to this machine
    (localhost, 127.0.0.0/8, ::1), which is what the local test server and a self-hosted dev instance use.
    """
    raw = (explicit or os.environ.get(BASE_URL_ENV, "") or DEFAULT_BASE_URL).strip()
    url = raw.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"The base URL must look like https://host[:port], got {raw[:80]!r}.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("The base URL must not contain a query, a fragment or credentials.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"Refusing to send the API key over plain http to {parts.hostname}: use https:// "
            "(http is allowed only for localhost)."
        )
    return url


def resolve_api(explicit: str | None = None) -> str:
    """Explicit argument, then ``OPENHANDS_API``, then ``auto`` (ask the server once which API it speaks)."""
    source = "api" if explicit is not None else API_ENV
    raw = explicit if explicit is not None else os.environ.get(API_ENV, "")
    if not isinstance(raw, str):
        raise ConfigurationError(f"api must be one of {', '.join(API_CHOICES)}, got {type(raw).__name__}.")
    value = raw.strip().lower() or "auto"
    if value not in API_CHOICES:
        raise ConfigurationError(f"{source} must be one of {', '.join(API_CHOICES)}, got {raw[:20]!r}.")
    return value


def resolve_ca_bundle(explicit: str | None = None) -> str | None:
    """A CA bundle (PEM) to trust instead of the system's: explicit argument, then ``OPENHANDS_CA_BUNDLE``."""
    path = explicit if explicit is not None else os.environ.get(CA_BUNDLE_ENV, "").strip() or None
    if path is None:
        return None
    if not isinstance(path, str) or not os.path.isfile(os.path.expanduser(path)):
        raise ConfigurationError(
            f"The CA bundle {str(path)[:120]!r} is not a readable file: give the path of a PEM file."
        )
    return os.path.expanduser(path)


def resolve_env_proxy(explicit: bool | None = None) -> bool:
    """Whether to use the environment's proxy settings (off unless asked: a proxy could read plain-http traffic)."""
    if explicit is not None:
        return bool(explicit)
    return os.environ.get(ENV_PROXY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def env_proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) names for ``url``, if any."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(parts.scheme) or proxies.get("all")
