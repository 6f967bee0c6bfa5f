"""Re-runs that never pay twice: the conversation's id, derived from what was asked where.

"Run All", a papermill re-run, a kernel restart followed by re-running cells: each would start every ``%%openhands``
cell again, a new agent run billed again. With ``--once`` (``%config OpenHandsMagics.once = True``; the default
under papermill and nbconvert) the client chooses the new conversation's id itself, as a hash of the server, the
notebook, the task as sent and its options, and looks that id up before starting: a conversation that exists is
attached to ("already started at 10:42"), and only an unknown one is started, with that id. The real server honours
a client-chosen id and does not deduplicate a second start with it (the second start task ends ERROR), so the look-up
comes first (recorded in the API notes).

The id is a UUID (version 5 layout, from SHA-256): the same inputs give the same id in any process, on any machine,
and a changed task, option or notebook gives another. Nothing secret goes into it (the key is not an input), and
the hash cannot be turned back into the task.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["once_id"]

#: Bumped if what goes into the id changes, so old ids are never matched by a new meaning.
SCHEME = "openhands-magics/once/1"


def once_id(base_url: str, notebook: str | None, message: str, options: Iterable[tuple[str, str | None]] = ()) -> str:
    """The conversation id (32 hex) for this task on this server from this notebook, with these options."""
    parts = [SCHEME, base_url.rstrip("/"), notebook or "", message]
    parts += [f"{name}={value}" for name, value in sorted(options) if value is not None]
    digest = bytearray(hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()[:16])
    # A version-5 UUID's bits, as ``uuid.UUID(bytes=digest, version=5)`` sets them (tests/test_once.py checks it)
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    return digest.hex()
