"""Where and how to talk to one server: the :class:`Endpoint` value (URL, key, API, timeout, TLS and proxy choices),
resolved from the arguments and the environment.

An endpoint is the key of everything per server (the session's connection, its clients and tracker), so it is a
frozen value that compares by what it says, and its key never shows (``repr=False``; the key is an
:class:`~.config.ApiKey`, which refuses to show itself too). Kept apart from :mod:`.session` because every layer
needs it (the connection, the handles, the commands) and none of them needs the session's registry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import config
from ._environ import stamp as environ_stamp
from .client import DEFAULT_TIMEOUT
from .config import (
    API_KEY_ENV,
    ApiKey,
    resolve_api,
    resolve_api_key,
    resolve_base_url,
    resolve_ca_bundle,
    resolve_env_proxy,
)
from .errors import ValidationError
from .validation import validate_org, validate_seconds

__all__ = ["Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to talk to a server: one connection (clients, tracker) per endpoint."""

    base_url: str
    api_key: ApiKey = field(repr=False)
    api: str = "auto"
    timeout: float = DEFAULT_TIMEOUT
    ca_bundle: str | None = None
    use_env_proxy: bool = False
    #: Cloud: the organisation the requests act in (``X-Org-Id``); None: the account's current one.
    org: str | None = None

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        *,
        api: str | None = None,
        api_key: str | ApiKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
        use_env_proxy: bool | None = None,
        org: str | None = None,
    ) -> Endpoint:
        """Fill in from the environment (``OPENHANDS_BASE_URL``, ``OPENHANDS_API_KEY`` or the ``--login`` key,
        ``OPENHANDS_API``, ``OPENHANDS_CA_BUNDLE``, ``OPENHANDS_USE_ENV_PROXY``); raises the one-line
        ConfigurationError when the key is missing, the URL unsafe or the CA bundle missing.

        The magic resolves its endpoint on every call, and nearly always to the same one: an answer is kept by what
        it was made from (the arguments and their types, the variables above), and given again only while the key
        it would read is still the one it holds. One with a CA bundle is always made again (the file is looked at).
        What is kept by holds no secret: the key is compared with the answer's own."""
        secret = api_key if api_key is not None else (config._session_key or os.environ.get(API_KEY_ENV))  # noqa: SLF001
        memo: tuple[Any, ...] | None = (
            *((type(v), v) for v in (base_url, api, timeout, ca_bundle, use_env_proxy, org)),
            type(api_key),
            config._session_key is None,  # noqa: SLF001
            environ_stamp(),  # (the variables above: while it stays, so do they)
        )
        try:
            found = _resolved.get(memo)  # type: ignore[arg-type]
        except TypeError:  # an unhashable argument: refused below, with its own line
            memo = found = None
        if found is not None and _holds(found.api_key, secret):
            return found
        seconds = validate_seconds(timeout, "timeout")
        if not seconds:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r:.40}.")
        endpoint = cls(
            resolve_base_url(base_url),
            resolve_api_key(api_key),
            resolve_api(api),
            seconds,
            resolve_ca_bundle(ca_bundle),
            resolve_env_proxy(use_env_proxy),
            validate_org(org) if org is not None else None,
        )
        if memo is not None and endpoint.ca_bundle is None:
            if len(_resolved) >= 32:
                _resolved.clear()
            _resolved[memo] = endpoint
        return endpoint

    def options(self) -> dict[str, Any]:
        """What a client for this endpoint is made with."""
        return {
            "base_url": self.base_url,
            "timeout": self.timeout,
            "api": self.api,
            "ca_bundle": self.ca_bundle,
            "use_env_proxy": self.use_env_proxy,
            "org": self.org,
        }


#: What :meth:`Endpoint.resolve` reads from the environment besides the key; while these and its arguments are
#: unchanged (and the key is the one the answer holds), so is its answer, kept in ``_resolved``.
_resolved: dict[tuple[Any, ...], Endpoint] = {}


def _holds(key: ApiKey, secret: object) -> bool:
    """Whether ``key`` is what resolving ``secret`` (an ApiKey, or text as given or in the environment) gives."""
    if isinstance(secret, ApiKey):
        return key == secret
    return isinstance(secret, str) and key.reveal() == secret.strip()
