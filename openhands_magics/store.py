"""The on-disk record of the conversations started (or watched) from notebooks, so that after a kernel restart
``%openhands list --here`` can name them and live panels can be re-attached.

One small JSON Lines file in the user's Jupyter data directory, append-only: a line per ``add`` (a conversation is
added twice when its start task names it: the lines are merged on read) and a tombstone per ``forget``. Appends of one
line by one ``os.write`` to a file opened ``O_APPEND`` do not interleave between kernels, and a lock file serialises
writers with the occasional compaction that rewrites the file. Nothing secret is ever written: ids, the server's base
URL (refused if it carries credentials, a query or a fragment), the API name, the notebook's path, the repository and
times, each checked before it is written and again when it is read back. Still, the names of a user's notebooks and
repositories are theirs alone: the record and its lock are opened without following a symbolic link (one planted in
their place would have the record written wherever it points) and are made ``0600`` on every write, whatever mode an
older version or a copy left them with.

The record is a convenience, so the store never raises to its caller: a line it cannot read is skipped, a write that
fails is logged (a warning the first time) and dropped.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import stat
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; single-line appends still do not interleave
    fcntl = None  # type: ignore[assignment]

__all__ = ["DATA_DIR_ENV", "ConversationStore", "StoredConversation", "default_path", "get_store", "reset_store"]

log = logging.getLogger("openhands_magics")

#: Where the record lives instead of the Jupyter data directory (the tests point it at a temporary directory).
DATA_DIR_ENV = "OPENHANDS_MAGICS_DATA_DIR"
FILE_NAME = "conversations.jsonl"
VERSION = 1

#: Only the tail of the file is read, so a huge or hostile file costs bounded time and memory.
MAX_READ_BYTES = 8 * 1024 * 1024
#: Longer than any line this module writes (a 4096-character path of astral characters is ~49 KB as JSON escapes).
MAX_LINE_BYTES = 64 * 1024
MAX_NOTEBOOK_CHARS = 4096
MAX_REPOSITORY_CHARS = 200
MAX_BASE_URL_CHARS = 2048
#: How long a writer waits for another kernel's write or compaction before giving up on this record.
LOCK_TIMEOUT = 5.0

_ID = re.compile(r"[0-9a-f]{32}")
_API = re.compile(r"v[0-9]{1,3}")
_FIELDS = ("base_url", "conversation_id", "task_id", "api", "notebook", "repository")
_ADD_KEYS = frozenset({"v", "at", *_FIELDS})
_FORGET_KEYS = frozenset({"v", "at", "base_url", "forget"})
# Characters that could end or forge a line, or move a terminal's cursor when a value is shown: refused everywhere.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


@dataclass(frozen=True)
class StoredConversation:
    """One conversation as recorded: all its lines merged (later non-empty values win, the first line's time)."""

    base_url: str
    conversation_id: str | None  # None while only the start task is known
    task_id: str | None
    api: str | None  # "v1" / "v0"
    notebook: str | None  # absolute path of the notebook when known
    repository: str | None
    recorded_at: datetime  # aware, UTC; the first time it was recorded

    @property
    def reference(self) -> str:
        """What the server knows it by: its id, or its start task's until the task names it."""
        return self.conversation_id or self.task_id or ""


class _Invalid(ValueError):
    """A value this store refuses to write (or a line it refuses to read)."""


class ConversationStore:
    """The record in one file. Every public method swallows its own failures: see the module's docstring."""

    #: Compact when an ``add`` leaves the file larger than this ...
    max_bytes: int = 1024 * 1024
    #: ... or with more lines than this; compaction keeps the newest ``keep`` conversations.
    max_lines: int = 5000
    keep: int = 2000

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = _absolute(Path(path) if path is not None else default_path())
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        self._warned = False

    def __repr__(self) -> str:
        return f"ConversationStore({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------------------ writing
    def add(
        self,
        *,
        base_url: str,
        conversation_id: str | None = None,
        task_id: str | None = None,
        api: str | None = None,
        notebook: str | os.PathLike[str] | None = None,
        repository: str | None = None,
    ) -> None:
        """Record a conversation (again, once its id is known: ``entries`` merges the lines). A value that fails
        the checks means nothing is recorded: a half-checked record is not worth a secret on disk."""
        try:
            record = {
                "v": VERSION,
                "base_url": _base_url(base_url),
                "conversation_id": _optional_id(conversation_id),
                "task_id": _optional_id(task_id),
                "api": _api(api),
                "notebook": _notebook(notebook, resolve=True),
                "repository": _text(repository, MAX_REPOSITORY_CHARS),
                "at": _now(),
            }
            if record["conversation_id"] is None and record["task_id"] is None:
                raise _Invalid("neither a conversation id nor a start task id")
        except Exception as error:  # noqa: BLE001 - _Invalid, or a value nobody expected: never the caller's problem
            log.debug("not recording conversation on disk: %s", error)
            return
        self._append(record)

    def forget(self, base_url: str, reference: str) -> None:
        """The conversation was deleted (or the server no longer has it): hide it, whichever of its ids is given."""
        try:
            record = {"v": VERSION, "base_url": _base_url(base_url), "forget": _id(reference), "at": _now()}
        except Exception as error:  # noqa: BLE001 - as in add
            log.debug("not forgetting conversation on disk: %s", error)
            return
        self._append(record)

    def _append(self, record: dict[str, Any]) -> None:
        line = _encode(record)
        try:
            self._make_directory()
            with self._locked():
                fd = _open_private(self.path, os.O_RDWR | os.O_APPEND | getattr(os, "O_BINARY", 0))
                try:
                    if not _ends_whole(fd):
                        line = b"\n" + line  # a torn last line (a full disk, a crash) must not swallow this one
                    written = os.write(fd, line)  # one write of one line: O_APPEND keeps kernels' lines whole
                    if written != len(line):
                        raise OSError(errno.EIO, f"short write ({written} of {len(line)} bytes)")
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
                if self._needs_compaction(size):
                    self._compact()
        except Exception as error:  # noqa: BLE001 - a full disk, a read-only home, a lock timeout: logged, dropped
            self._write_failed(error)

    def _write_failed(self, error: BaseException) -> None:
        """A warning once per store (the user should know ``list --here`` will miss conversations), then quiet."""
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "could not record conversations in %s (%s); carrying on without", self.path, error)

    def _make_directory(self) -> None:
        directory = self.path.parent
        if directory.is_dir():
            return
        directory.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):  # another kernel was quicker
            os.mkdir(directory, 0o700)  # the names of a user's notebooks and repositories are theirs alone

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's threads, then other kernels (``flock`` on a lock file that compaction never replaces)."""
        if not self._thread_lock.acquire(timeout=LOCK_TIMEOUT):
            raise TimeoutError(f"another thread held the lock for more than {LOCK_TIMEOUT:g} s")
        try:
            if fcntl is None:
                yield
                return
            fd = _open_private(self._lock_path, os.O_RDWR)
            try:
                _flock(fd)
                yield
            finally:
                os.close(fd)  # releases the lock
        finally:
            self._thread_lock.release()

    # --------------------------------------------------------------------------------------------------- compaction
    def _needs_compaction(self, size: int) -> bool:
        if size > self.max_bytes:
            return True
        if size <= self.max_lines * 64:  # no line this module writes is that short: no need to count
            return False
        with open(self.path, "rb") as file:
            return file.read(self.max_bytes + 1).count(b"\n") > self.max_lines

    def _compact(self) -> None:
        """Rewrite the file merged, tombstones applied, newest ``keep`` conversations kept (and no more than three
        quarters of ``max_bytes``, so the next ``add`` does not compact again). Called under the lock."""
        budget = self.max_bytes * 3 // 4
        kept: list[bytes] = []
        total = 0
        for entry in reversed(_merge(self._read_records())):
            line = _encode({"v": VERSION, **{name: getattr(entry, name) for name in _FIELDS},
                            "at": entry.recorded_at.isoformat()})
            if len(kept) >= self.keep or total + len(line) > budget:
                break
            kept.append(line)
            total += len(line)
        data = b"".join(reversed(kept))
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except BaseException:
            with suppress(OSError):
                os.unlink(temporary)
            raise
        log.debug("compacted %s to %d conversations", self.path, len(kept))

    # ------------------------------------------------------------------------------------------------------ reading
    def entries(
        self, *, base_url: str | None = None, notebook: str | os.PathLike[str] | None = None
    ) -> list[StoredConversation]:
        """The recorded conversations, oldest first; ``base_url`` must match exactly, ``notebook`` as a resolved
        absolute path."""
        try:
            found = _merge(self._read_records())
            if base_url is not None:
                found = [entry for entry in found if entry.base_url == base_url]
            if notebook is not None:
                wanted = _notebook(notebook, resolve=True)
                resolved: dict[str, str | None] = {}

                def matches(stored: str | None) -> bool:
                    if stored is None:
                        return False
                    if stored not in resolved:
                        try:
                            resolved[stored] = _notebook(stored, resolve=True)
                        except (ValueError, OSError):
                            resolved[stored] = None
                    return stored == wanted or resolved[stored] == wanted

                found = [entry for entry in found if matches(entry.notebook)]
            return found
        except Exception as error:  # noqa: BLE001 - an unreadable record is an empty one
            log.debug("could not read the conversations recorded in %s: %s", self.path, error)
            return []

    def _read_records(self) -> list[dict[str, Any]]:
        """The valid lines of the file's last ``MAX_READ_BYTES``, in order; every other line is skipped."""
        try:
            # Non-blocking: a FIFO put in its place must not hang the kernel; only a regular file is read, and not
            # through a symbolic link (which writing refuses too: what it points at is not this record).
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | _NOFOLLOW)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise _not_followed(self.path, error) from None
        with open(fd, "rb") as file:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise _Invalid(f"{self.path} is not a regular file")
            start = max(0, status.st_size - MAX_READ_BYTES)
            file.seek(max(0, start - 1))  # one byte early, to tell a whole first line from a cut one
            data = file.read(MAX_READ_BYTES + 1)
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # up to the first newline: the cut line's end (or, if the byte was one, nothing)
        records = []
        for line in lines:
            if not line.strip() or len(line) > MAX_LINE_BYTES:
                continue
            record = _parse_or_none(line)
            if record is not None:
                records.append(record)
        return records


# ---------------------------------------------------------------------------------------------------------- merging
def _merge(records: list[dict[str, Any]]) -> list[StoredConversation]:
    """Lines sharing a start task id or a conversation id on the same server are one conversation (even through a
    chain: task, then id, then both); later non-empty values win, the first line's time stays. A conversation any of
    whose ids has a tombstone on its server is left out. Oldest first, by first line."""
    adds = [record for record in records if "forget" not in record]
    forgotten = {(record["base_url"], record["forget"]) for record in records if "forget" in record}
    parent = list(range(len(adds)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_line: dict[tuple[str, str], int] = {}
    for index, record in enumerate(adds):
        for reference in (record["conversation_id"], record["task_id"]):
            if reference is not None:
                other = first_line.setdefault((record["base_url"], reference), index)
                a, b = root(index), root(other)
                parent[max(a, b)] = min(a, b)  # the root is always the group's first line
    groups: dict[int, list[dict[str, Any]]] = {}
    for index, record in enumerate(adds):
        groups.setdefault(root(index), []).append(record)
    merged = []
    for lines in groups.values():
        fields: dict[str, Any] = dict.fromkeys(_FIELDS)
        for record in lines:
            fields.update({name: record[name] for name in _FIELDS if record[name] is not None})
        base_url = fields["base_url"]
        if any((base_url, record[name]) in forgotten for record in lines for name in ("conversation_id", "task_id")):
            continue
        merged.append(StoredConversation(**fields, recorded_at=lines[0]["at"]))
    return merged


# ------------------------------------------------------------------------------------------------ lines and values
def _encode(record: dict[str, Any]) -> bytes:
    """One line, ASCII only (so no character can be read as a line break by anything)."""
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def _parse_or_none(line: bytes) -> dict[str, Any] | None:
    """Not JSON, not ours, a value that fails the checks: not a conversation (``None``)."""
    try:
        return _parse(line)
    except (ValueError, RecursionError):  # _Invalid, JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _parse(line: bytes) -> dict[str, Any]:
    """A line as a record with every value checked as on writing; ``_Invalid`` (or a JSON error) otherwise."""
    data = json.loads(line.decode("utf-8"))
    if not isinstance(data, dict) or type(data.get("v")) is not int or data["v"] != VERSION:
        raise _Invalid("not a version 1 record")
    keys = set(data)
    record: dict[str, Any] = {"base_url": _base_url(data.get("base_url")), "at": _time(data.get("at"))}
    if "forget" in data:
        if not keys <= _FORGET_KEYS:
            raise _Invalid("unknown keys")
        record["forget"] = _id(data["forget"])
        return record
    if not keys <= _ADD_KEYS:
        raise _Invalid("unknown keys")
    record.update(
        conversation_id=_optional_id(data.get("conversation_id")),
        task_id=_optional_id(data.get("task_id")),
        api=_api(data.get("api")),
        notebook=_notebook(data.get("notebook"), resolve=False),
        repository=_text(data.get("repository"), MAX_REPOSITORY_CHARS),
    )
    if record["conversation_id"] is None and record["task_id"] is None:
        raise _Invalid("no id")
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _time(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid("bad time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _Invalid("a time without its zone")
    return parsed.astimezone(timezone.utc)


def _text(value: Any, limit: int) -> str | None:
    """An optional string: empty is None; too long, or holding a line break or control character, is refused."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(f"expected text, got {type(value).__name__}")
    if len(value) > limit:
        raise _Invalid(f"longer than {limit} characters")
    if any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in value):
        raise _Invalid("a line break or control character")
    return value


def _id(value: Any) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise _Invalid("an id is 32 lowercase hex digits")
    return value


def _optional_id(value: Any) -> str | None:
    return None if value is None or value == "" else _id(value)


def _api(value: Any) -> str | None:
    text = _text(value, 4)
    if text is not None and not _API.fullmatch(text):
        raise _Invalid("an API name is like v1")
    return text


def _base_url(value: Any) -> str:
    """http(s) with a host and nothing that can carry a secret: no user or password, no query, no fragment."""
    text = _text(value, MAX_BASE_URL_CHARS)
    if text is None:
        raise _Invalid("no base URL")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(char.isspace() for char in text):
        raise _Invalid("a base URL is http(s)://host")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in text or "#" in text:
        raise _Invalid("a base URL with credentials, a query or a fragment")
    parts.port  # noqa: B018 -- raises ValueError for a port that is not one
    return text


def _notebook(value: Any, *, resolve: bool) -> str | None:
    """The notebook's path, absolute and resolved (symlinks, ``..``) when ``resolve``, so two spellings of one file
    compare equal as strings."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _text(value, MAX_NOTEBOOK_CHARS)
    if text is None or not resolve:
        return text
    try:
        resolved = str(Path(text).resolve())
    except (OSError, RuntimeError):  # a symlink loop; an unreadable directory on the way
        resolved = os.path.abspath(text)
    return _text(resolved, MAX_NOTEBOOK_CHARS)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # (Windows has none: there the path is checked just before opening)
_A_LINK = "it is a symbolic link, which is not followed: remove it to record conversations again"


def _open_private(path: Path, flags: int) -> int:
    """Open (or create) one of this store's files for writing: never through a symbolic link, only a regular file,
    and mode 0600 even if it existed with another (an older version, a copy, a restored backup)."""
    if not _NOFOLLOW and os.path.islink(path):
        raise _Invalid(_A_LINK)
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the kernel before it is refused (no effect on a file).
        flags |= os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        raise _not_followed(path, error) from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise _Invalid("it is not a regular file: move it away to record conversations again")
        if stat.S_IMODE(status.st_mode) != 0o600 and hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # on the open file: the path cannot be swapped meanwhile
    except BaseException:
        os.close(fd)
        raise
    return fd


def _not_followed(path: Path, error: OSError) -> OSError | _Invalid:
    """O_NOFOLLOW on a symbolic link fails with ELOOP (EMLINK on some BSDs): say so, instead of "too many levels"."""
    if error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
        return _Invalid(_A_LINK)
    return error


def _ends_whole(fd: int) -> bool:
    """Whether the file is empty or ends with a line break (the lock keeps other writers out meanwhile)."""
    size = os.fstat(fd).st_size
    if not size:
        return True
    os.lseek(fd, size - 1, os.SEEK_SET)
    return os.read(fd, 1) == b"\n"


def _flock(fd: int) -> None:
    """Take the lock, waiting at most ``LOCK_TIMEOUT``; where the file system has no locks (some NFS), go on."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"another kernel held the lock for more than {LOCK_TIMEOUT:g} s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
        except OSError as error:
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.debug("no file locks here (%s); appending without", error)
                return
            raise


# ---------------------------------------------------------------------------------------------------------- places
def default_path() -> Path:
    """``$OPENHANDS_MAGICS_DATA_DIR/conversations.jsonl``, else ``openhands_magics/conversations.jsonl`` in the
    Jupyter data directory (where Jupyter keeps per-user state such as kernel specs and the Lab workspaces)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return _absolute(Path(os.path.expanduser(override))) / FILE_NAME
    return _absolute(_jupyter_data_dir() / "openhands_magics" / FILE_NAME)


def _jupyter_data_dir() -> Path:
    """``jupyter_core``'s answer when it is installed (it always is next to a kernel, but is not a dependency),
    else the same rules by hand."""
    try:
        from jupyter_core.paths import jupyter_data_dir

        return Path(jupyter_data_dir())
    except Exception as error:  # noqa: BLE001 - not installed, or broken: the rules below are jupyter_core's
        log.debug("jupyter_core gave no data directory (%s); using the default rules", error)
    if os.environ.get("JUPYTER_DATA_DIR"):
        return Path(os.path.expanduser(os.environ["JUPYTER_DATA_DIR"]))
    home = Path(os.path.expanduser("~"))
    if sys.platform == "darwin":
        return home / "Library" / "Jupyter"
    if os.name == "nt":
        appdata = os.environ.get("APPDATA")
        return Path(appdata) / "jupyter" if appdata else home / ".jupyter" / "data"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else home / ".local" / "share") / "jupyter"


def _absolute(path: Path) -> Path:
    """Absolute now, so a ``%cd`` in the notebook does not move the record (as given if the cwd is gone)."""
    try:
        return Path(os.path.abspath(path))
    except OSError:
        return path


_store: ConversationStore | None = None
_store_lock = threading.Lock()


def get_store() -> ConversationStore:
    """The process-wide store, following ``OPENHANDS_MAGICS_DATA_DIR`` if it changes."""
    global _store
    path = default_path()
    with _store_lock:
        if _store is None or _store.path != path:
            _store = ConversationStore(path)
        return _store


def reset_store() -> None:
    """Forget the process-wide store (tests point each one at its own directory)."""
    global _store
    with _store_lock:
        _store = None
