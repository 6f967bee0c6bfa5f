"""Whether the process's environment changed: what is read from it on every call can be kept until it does.

Every ``%openhands`` call looks at the environment three times: the server, key and settings it resolves to, the
directory of the record on disk, and the credential-like values to blank. Reading a variable from ``os.environ``
decodes its name and value, and those three read fifteen of them, a twentieth of a start's own time. Telling that
nothing changed is one comparison of ``os.environ``'s own mapping (CPython keeps the encoded names and values in
``os.environ._data``) with a copy taken when it was last read; ``%env``, ``os.environ[...] = ...`` and ``del`` all
go through that mapping, so each shows at once. (``os.putenv`` does not, for this check as for ``os.environ.get``.)
"""

from __future__ import annotations

import os
import threading

__all__ = ["stamp"]

_lock = threading.Lock()
_seen: object = None  # a copy of the environment's own mapping, as it was at the current stamp
_stamp = 0


def stamp() -> int:
    """A number that stays the same while the environment does, and is new after any change (always new where the
    mapping cannot be seen, outside CPython)."""
    global _seen, _stamp
    data = getattr(os.environ, "_data", None)
    with _lock:
        if isinstance(data, dict) and data == _seen:
            return _stamp
        _seen = dict(data) if isinstance(data, dict) else None
        _stamp += 1
        return _stamp
