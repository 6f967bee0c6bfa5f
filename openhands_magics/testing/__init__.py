"""Offline stand-in for OpenHands (Cloud or self-hosted): ``LocalOpenHandsServer`` (see :mod:`.server`).

``python -m openhands_magics.testing`` runs one and prints its base URL and demo key.
"""

from ._http import Fault, RecordedRequest
from .server import DEFAULT_TIMELINE, DEMO_API_KEY, PLANTED_SESSION_KEY, LocalOpenHandsServer, ManualClock, Timeline

__all__ = [
    "DEFAULT_TIMELINE",
    "DEMO_API_KEY",
    "PLANTED_SESSION_KEY",
    "Fault",
    "LocalOpenHandsServer",
    "ManualClock",
    "RecordedRequest",
    "Timeline",
    "serve",
]


def serve(*, set_environ: bool = True, **options: object) -> LocalOpenHandsServer:
    """Start a server for this process; with ``set_environ`` point ``%openhands`` at it (what the notebooks do)."""
    import os

    server = LocalOpenHandsServer(**options).start()  # type: ignore[arg-type]
    if set_environ:
        os.environ.update(server.environ())
    return server
