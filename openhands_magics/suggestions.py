"""Values for ``--repo``, ``--branch`` and ``--model`` from the server's own lists, for tab completion.

The V1 app server (1.11.0, Cloud) can list the user's repositories (``GET /api/v1/git/repositories/search
?provider=github``: ``items[].full_name``), a repository's branches (``/api/v1/git/branches/search?provider=github
&repository=R&query=``: ``items[].name``; ``query`` is required, empty lists them all) and the models it offers
(``/api/v1/config/models/search?verified__eq=true``: ``items[].provider`` and ``.name``, given as
``provider/name`` as ``llm_model`` takes them). A server without a git provider token answers the git routes 403.

Completion runs on the kernel's thread while a person waits at the prompt, so it never waits on the network for
more than :data:`PATIENCE` seconds: it answers from a cache kept per server (and per repository for branches), and
a value that is missing or older than :data:`FRESH_FOR` is fetched by the connection's I/O thread (its async client:
no thread or loop of its own), for this completion if it arrives within the moment, else for the next. A failure
(offline, 403, an old server) is silent, and the same list is not asked for again before :data:`RETRY_AFTER`.
Only servers this kernel already talks to are asked (a connection of the session): completion never makes one.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ROUTES", "suggest", "values_of"]

#: The longest completion waits for a list it does not have yet.
PATIENCE = 0.3
#: How long a list is used before it is fetched again (in the background: the old one answers meanwhile).
FRESH_FOR = 300.0
#: After a failed fetch, how long before the same list is asked for again.
RETRY_AFTER = 60.0
#: At most this many values are kept of a list (one page of the server's).
MOST = 100
#: kind -> (path, fixed query parameters); ``branch`` adds ``repository``.
ROUTES: Mapping[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "repo": ("/api/v1/git/repositories/search", (("provider", "github"), ("limit", str(MOST)))),
    "branch": ("/api/v1/git/branches/search", (("provider", "github"), ("query", ""), ("limit", str(MOST)))),
    "model": ("/api/v1/config/models/search", (("verified__eq", "true"), ("limit", str(MOST)))),
}

_lock = threading.Lock()
#: (server, kind, repository) -> (when fetched, values); a failure is kept as an empty list.
_cache: dict[tuple[str, str, str], tuple[float, list[str]]] = {}
_fetching: dict[tuple[str, str, str], concurrent.futures.Future[list[str]]] = {}


def values_of(kind: str, body: Any) -> list[str]:
    """The values a list route answered (``items`` of its page), as the option takes them; [] for any other shape."""
    items = body.get("items") if isinstance(body, Mapping) else None
    found: list[str] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        if kind == "repo":
            value = item.get("full_name")
        elif kind == "branch":
            value = item.get("name")
        else:
            name, provider = item.get("name"), item.get("provider")
            if item.get("hidden") is True or not isinstance(name, str):
                continue
            value = f"{provider}/{name}" if isinstance(provider, str) and provider and "/" not in name else name
        if isinstance(value, str) and value and value.isprintable() and " " not in value and len(value) < 300:
            found.append(value)
    return list(dict.fromkeys(found))[:MOST]


def _connection() -> Connection | None:
    """The connection this kernel used last (completion asks only a server it already talks to)."""
    from . import session

    current = session._session  # noqa: SLF001 - completion must not create a session
    if current is None:
        return None
    connections = current.connections
    if not connections:
        return None
    history = current.history()
    if history:
        latest = history[-1].endpoint
        return next((c for c in connections if c.endpoint == latest), connections[-1])
    return connections[-1]


def suggest(kind: str, repository: str | None = None, *, patience: float = PATIENCE) -> list[str]:
    """The server's values for ``--repo``, ``--branch`` (of ``repository``) or ``--model``: from the cache, or
    fetched in the I/O thread within ``patience`` seconds; [] when there is no server to ask or it failed."""
    connection = _connection()
    if connection is None or kind not in ROUTES or (kind == "branch" and not repository):
        return []
    key = (connection.endpoint.base_url, kind, repository or "")
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        fetching = _fetching.get(key)
        due = cached is None or now - cached[0] >= (FRESH_FOR if cached[1] else RETRY_AFTER)
        if due and fetching is None:
            fetching = _fetching[key] = connection._io.submit(_fetch(connection, key, kind, repository))  # noqa: SLF001
    if cached is not None or fetching is None:
        return list(cached[1]) if cached is not None else []
    try:
        return list(fetching.result(timeout=patience))
    except Exception:  # noqa: BLE001 - not in time, or failed: the next completion has it (or nothing)
        return []


async def _fetch(connection: Connection, key: tuple[str, str, str], kind: str, repository: str | None) -> list[str]:
    path, params = ROUTES[kind]
    if repository:
        params = (*params, ("repository", repository))
    values: list[str] = []
    try:
        values = values_of(kind, await connection._async_client().get_json(path, params))  # noqa: SLF001
    except Exception:  # noqa: BLE001 - offline, 403 (no git token), an older server: nothing, silently
        values = []
    finally:
        with _lock:
            _cache[key] = (time.monotonic(), values)
            _fetching.pop(key, None)
    return values


def forget() -> None:
    """Drop every list (tests; a kernel that changed its login)."""
    with _lock:
        _cache.clear()
        _fetching.clear()
