"""openhands-magics: start and watch OpenHands conversations from Jupyter.

``%load_ext openhands_magics`` registers ``%openhands``/``%%openhands``. The Python API (``OpenHandsClient``,
``AsyncOpenHandsClient``, ``Conversation``, the errors) is importable from here; it is loaded lazily so that loading
the extension stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .client import AsyncOpenHandsClient, OpenHandsClient
    from .errors import (
        AuthenticationError,
        BadRequestError,
        ConcurrencyLimitError,
        ConfigurationError,
        ConflictError,
        NotFoundError,
        OpenHandsError,
        ProtocolError,
        RateLimitError,
        ServerError,
        TransportError,
        UnsupportedApiError,
        ValidationError,
        WaitTimeout,
    )
    from .handle import ConversationHandle
    from .listing import ConversationList
    from .models import Change, Conversation, ConversationStatus, Cost, FileDiff, Outcome, PullRequest
    from .session import Endpoint, Session, get_session, history, last, map

_LAZY = {
    "OpenHandsClient": "client",
    "AsyncOpenHandsClient": "client",
    "Conversation": "models",
    "ConversationStatus": "models",
    "Change": "models",
    "Cost": "models",
    "FileDiff": "models",
    "Outcome": "models",
    "PullRequest": "models",
    "ConversationList": "listing",
    "ConversationHandle": "handle",
    "Endpoint": "session",
    "Session": "session",
    "get_session": "session",
    "last": "session",
    "map": "session",
    "history": "session",
    **{
        name: "errors"
        for name in (
            "OpenHandsError",
            "ConfigurationError",
            "ValidationError",
            "AuthenticationError",
            "BadRequestError",
            "NotFoundError",
            "RateLimitError",
            "ConcurrencyLimitError",
            "ServerError",
            "TransportError",
            "ProtocolError",
            "WaitTimeout",
            "UnsupportedApiError",
            "ConflictError",
        )
    },
}

__all__ = [
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
    "OpenHandsClient",
    "AsyncOpenHandsClient",
    "Conversation",
    "ConversationStatus",
    "ConversationHandle",
    "ConversationList",
    "Change",
    "Cost",
    "FileDiff",
    "Outcome",
    "PullRequest",
    "Endpoint",
    "Session",
    "get_session",
    "last",
    "history",
    "map",
    "OpenHandsError",
    "ConfigurationError",
    "ValidationError",
    "AuthenticationError",
    "BadRequestError",
    "NotFoundError",
    "RateLimitError",
    "ConcurrencyLimitError",
    "ServerError",
    "TransportError",
    "ProtocolError",
    "UnsupportedApiError",
    "ConflictError",
    "WaitTimeout",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'openhands_magics' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


_magics: Any = None


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext openhands_magics``."""
    global _magics
    from traitlets import TraitError

    from .magics import OpenHandsMagics

    if _magics is not None:  # loaded twice without an unload: the first one's pollers and connections go
        _magics.close()
    try:
        _magics = OpenHandsMagics(ipython)
    except TraitError as error:  # a bad value from a config file; refusing it took it out of the config
        print(f"openhands: {error}", file=sys.stderr)
        _magics = OpenHandsMagics(ipython)
    ipython.register_magics(_magics)
    from .completion import register

    register(ipython)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext openhands_magics``: stop all polling, close connections, remove the magics."""
    global _magics
    if _magics is None:
        return
    _magics.close()
    from .completion import unregister

    unregister(ipython)
    ipython.magics_manager.magics["line"].pop("openhands", None)
    ipython.magics_manager.magics["cell"].pop("openhands", None)
    ipython.magics_manager.registry.pop("OpenHandsMagics", None)
    _magics = None
