"""Every secret this package knows, and the one function that blanks them in text: :func:`blank`.

The key is known in several places (``OPENHANDS_API_KEY``, ``%openhands --login``, an :class:`~.config.ApiKey`
passed to a client), and a notebook holds more: environment variables and notebook variables named like a
credential (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``). Whatever the package prints, saves with the
notebook or sends to the agent passes through :func:`blank` (the context sections and the whole message, the dry run,
every :class:`~.errors.OpenHandsError`'s text), so no single caller has to remember where keys come from.

Known keys are kept as the :class:`~.config.ApiKey` objects themselves, which refuse ``repr`` and ``pickle``; every
other value is read when text is blanked (a key set with ``%env`` or in a cell a moment ago counts at once) and held
only by :class:`Secrets`, which refuses to show itself too. A server's ``session_api_key`` never enters a model: it is
dropped on arrival (``models.SECRET_FIELDS``), and only the agent server's access (``_protocol.agent.Access``, which
refuses ``repr`` and ``pickle`` too) keeps it, in memory, for the live event stream's header.

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

from ._environ import stamp

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
    values.update(_environment_values())
    if namespace is not None:
        try:
            values.update(_named_values(list(namespace.items())))  # one copy: another thread may change them
        except Exception:  # noqa: BLE001 - changed meanwhile, or an odd mapping: skipped, the rest still counts
            pass
    return Secrets(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


_environment_read: tuple[int, frozenset[str]] = (0, frozenset())  # (the environment's stamp, its values then)


def _environment_values() -> frozenset[str]:
    """The credential-like environment values, read again whenever the environment changed (``%env``,
    ``os.environ[...] =``): :func:`._environ.stamp` tells, where reading decodes every name and value (a third of a
    start's own time in the client)."""
    global _environment_read
    now = stamp()  # (taken before reading: a change meanwhile makes the next call read again)
    read_at, found = _environment_read
    if read_at == now:
        return found
    found = _read_environment()
    _environment_read = (now, found)
    return found


def _read_environment() -> frozenset[str]:
    try:
        return frozenset(_named_values(list(os.environ.items())))
    except Exception:  # noqa: BLE001 - changed meanwhile: skipped, the rest still counts
        return frozenset()


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


#: Whether a name looks like a credential's, by name (a notebook's variables are looked at on every blanking).
_secret_name: dict[str, bool] = {}


def _named_values(items: Iterable[tuple[Any, Any]]) -> Iterable[str]:
    for name, value in items:
        if type(value) is not str:  # (not isinstance: a hostile ``__class__`` must not run here)
            continue
        if type(name) is str:
            named = _secret_name.get(name)
            if named is None:
                if len(_secret_name) > 10_000:
                    _secret_name.clear()
                named = _secret_name[name] = SECRET_NAME.search(name) is not None
        else:  # (a subclass's own hash must not run here either)
            named = isinstance(name, str) and SECRET_NAME.search(name) is not None
        if named:
            yield value


def _shell_namespace() -> Mapping[str, Any] | None:
    """The running IPython's variables, if IPython is loaded and a shell runs (never imported here for it)."""
    ipython = sys.modules.get("IPython.core.getipython")  # (IPython 9 imports ``IPython.get_ipython`` on each use)
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return None
    try:
        shell = get_ipython()
    except Exception:  # noqa: BLE001 - a half-imported IPython: no shell to read
        return None
    namespace = getattr(shell, "user_ns", None)
    return namespace if isinstance(namespace, Mapping) else None
