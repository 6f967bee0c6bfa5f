"""Every secret this package knows, and the one function that blanks them in text: :func:`blank`.

The key is known in several places (``OPENHANDS_API_KEY``, ``%openhands --login``, an :class:`~.config.ApiKey`
passed to a client), and a notebook holds more: environment variables and notebook variables named like a
credential (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``). Whatever the package prints, saves with the
notebook or sends to the agent passes through :func:`blank` (the context sections and the whole message, the dry run,
every :class:`~.errors.OpenHandsError`'s text), so no single caller has to remember where keys come from.

Known keys are kept as the :class:`~.config.ApiKey` objects themselves, which refuse ``repr`` and ``pickle``; every
other value is read when text is blanked (a key set with ``%env`` or in a cell a moment ago counts at once) and held
only by :class:`Secrets`, which refuses to show itself too. A server's ``session_api_key`` is never kept: it is
dropped on arrival (``models.SECRET_FIELDS``), so nothing of this package can print it.

This module imports nothing of the package, so :mod:`.errors` and :mod:`.config` can both use it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["BLANK", "Secrets", "blank", "remember", "secrets"]

#: What a secret is replaced with.
BLANK = "********"
#: Names of environment and notebook variables whose values are taken for credentials.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
#: Values shorter than this are not blanked: ``1``, ``true`` or ``en_US`` would blank ordinary text (keys are 30+).
MIN_SECRET = 9
#: A secret cut short by a "…" (a bounded error line) is blanked too, down to this many characters of it.
MIN_CUT = 4
#: How many keys handed to :class:`~.config.ApiKey` are kept (each distinct key once, the latest kept).
MAX_KEYS = 32
_CUT_MARK = "…"

_keys: OrderedDict[Any, None] = OrderedDict()  # ApiKey objects: hashable, masked repr, not picklable
_keys_lock = threading.Lock()


class Secrets(tuple[str, ...]):
    """The values to blank, longest first (so a key that contains another is hidden whole). Like ``ApiKey``, it
    never shows them: a verbose traceback's locals or a log line print only how many there are."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secrets({len(self)} hidden)"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("Secrets cannot be pickled; they are kept in memory only.")


def remember(key: Any) -> None:
    """Know ``key`` (an :class:`~.config.ApiKey`, which calls this itself) from now on, for the life of the process:
    a key typed into a cell once stays blanked in ``--cells`` after its client is gone."""
    with _keys_lock:
        _keys[key] = None
        _keys.move_to_end(key)
        while len(_keys) > MAX_KEYS:
            _keys.popitem(last=False)


def secrets(namespace: Mapping[str, Any] | None = None) -> Secrets:
    """Every value to blank now: the known keys, credential-like environment values and the string values of
    ``namespace``'s variables named like a credential (without ``namespace``: the running IPython's variables)."""
    values: set[str] = set()
    with _keys_lock:
        keys = list(_keys)
    for key in keys:
        values.add(key.reveal())
    if namespace is None:
        namespace = _shell_namespace()
    for variables in (os.environ, namespace):
        if variables is None:
            continue
        try:
            values.update(_named_values(list(variables.items())))  # one copy: another thread may change them
        except Exception:  # noqa: BLE001 - changed meanwhile, or an odd mapping: skipped, the rest still counts
            pass
    return Secrets(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


def blank(text: str, namespace: Mapping[str, Any] | None = None, *, known: Secrets | None = None) -> str:
    """``text`` with every secret (see :func:`secrets`; ``known`` to reuse a list already made) replaced by
    :data:`BLANK`, and any secret's beginning that a cut left before a "…" too. Never raises."""
    if not isinstance(text, str) or not text:
        return text
    for secret in secrets(namespace) if known is None else known:
        if secret in text:
            text = text.replace(secret, BLANK)
        if _CUT_MARK in text:
            for length in range(len(secret) - 1, MIN_CUT - 1, -1):
                cut = secret[:length] + _CUT_MARK
                if cut in text:
                    text = text.replace(cut, BLANK + _CUT_MARK)
    return text


def _named_values(items: Iterable[tuple[Any, Any]]) -> Iterable[str]:
    for name, value in items:
        if not isinstance(name, str) or not SECRET_NAME.search(name):
            continue
        if type(value) is str:  # (not isinstance: a hostile ``__class__`` must not run here)
            yield value


def _shell_namespace() -> Mapping[str, Any] | None:
    """The running IPython's variables, if IPython is loaded and a shell runs (never imported here for it)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return None
    try:
        shell = get_ipython()
    except Exception:  # noqa: BLE001 - a half-imported IPython: no shell to read
        return None
    namespace = getattr(shell, "user_ns", None)
    return namespace if isinstance(namespace, Mapping) else None
