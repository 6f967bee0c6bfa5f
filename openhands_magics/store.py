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

Why a writer thread: a line costs a lock file, ``flock`` and an append (and now and then a compaction), a third of a
``%openhands`` call's own cost when it ran on the caller's path. ``add_soon`` and ``forget_soon`` take the values at
once and queue the line for one small daemon thread (``openhands-store``), which gathers what comes within
:data:`WRITER_GATHER` seconds into one locked append and ends itself when it has had nothing to write for
:data:`WRITER_LINGER` seconds. Nothing queued is lost to a reader or an orderly end: every read
(:meth:`ConversationStore.entries`) has the queue written first, and :func:`flush` runs on ``Session.close()``
(``%unload_ext``) and at interpreter exit. ``add`` and ``forget`` still write at once, in the caller's thread.
"""

from __future__ import annotations

import atexit
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
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._environ import stamp

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; single-line appends still do not interleave
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DATA_DIR_ENV",
    "ConversationStore",
    "StoredConversation",
    "default_path",
    "flush",
    "get_store",
    "reset_store",
    "stop_writer",
]

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
#: How long the writer thread gathers lines before it writes them (a flush has them written at once).
WRITER_GATHER = 0.05
#: How long the writer thread waits for more lines before it ends (a burst of starts keeps one thread).
WRITER_LINGER = 0.5
#: How long a reader, ``close`` or the interpreter's exit waits for the queued lines to be written.
FLUSH_TIMEOUT = 2 * LOCK_TIMEOUT

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


def _add_record(
    *,
    base_url: str,
    conversation_id: str | None,
    task_id: str | None,
    api: str | None,
    notebook: str | os.PathLike[str] | None,
    repository: str | None,
    at: str,
) -> dict[str, Any]:
    record = {
        "v": VERSION,
        "base_url": _base_url(base_url),
        "conversation_id": _optional_id(conversation_id),
        "task_id": _optional_id(task_id),
        "api": _api(api),
        "notebook": _notebook(notebook, resolve=True),
        "repository": _text(repository, MAX_REPOSITORY_CHARS),
        "at": at,
    }
    if record["conversation_id"] is None and record["task_id"] is None:
        raise _Invalid("neither a conversation id nor a start task id")
    return record


def _forget_record(*, base_url: str, reference: str, at: str) -> dict[str, Any]:
    return {"v": VERSION, "base_url": _base_url(base_url), "forget": _id(reference), "at": at}


_ADD, _FORGET = _add_record, _forget_record


def _added(
    base_url: str,
    conversation_id: str | None,
    task_id: str | None,
    api: str | None,
    notebook: str | os.PathLike[str] | None,
    repository: str | None,
) -> _Line:
    """The line that records a conversation, stamped now (``add`` writes it at once, ``add_soon`` queues it)."""
    return _Line(
        _ADD,
        dict(
            base_url=base_url,
            conversation_id=conversation_id,
            task_id=task_id,
            api=api,
            notebook=notebook,
            repository=repository,
        ),
        _now(),
    )


@dataclass(frozen=True)
class _Line:
    """A line to write: the values as given (checked when written), and the time they were given."""

    kind: Callable[..., dict[str, Any]]
    fields: dict[str, Any]
    at: float


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
        self._write([_added(base_url, conversation_id, task_id, api, notebook, repository)])

    def forget(self, base_url: str, reference: str) -> None:
        """The conversation was deleted (or the server no longer has it): hide it, whichever of its ids is given."""
        self._write([_Line(_FORGET, dict(base_url=base_url, reference=reference), _now())])

    def add_soon(
        self,
        *,
        base_url: str,
        conversation_id: str | None = None,
        task_id: str | None = None,
        api: str | None = None,
        notebook: str | os.PathLike[str] | None = None,
        repository: str | None = None,
    ) -> None:
        """:meth:`add`, by the writer thread: returns at once (see the module's docstring). The values are taken
        now (a relative notebook path against today's working directory), checked and written there."""
        if isinstance(notebook, (str, os.PathLike)):
            with suppress(Exception):  # (a value the checks refuse is refused there, quietly, as by add)
                notebook = os.path.abspath(notebook)
        _writer.put(self, _added(base_url, conversation_id, task_id, api, notebook, repository))

    def forget_soon(self, base_url: str, reference: str) -> None:
        """:meth:`forget`, by the writer thread: returns at once."""
        _writer.put(self, _Line(_FORGET, dict(base_url=base_url, reference=reference), _now()))

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait until every line queued by ``add_soon``/``forget_soon`` (for any store) is written; whether it was."""
        return _writer.flush(timeout)

    def _write(self, lines: list[_Line]) -> None:
        """Check each line (one that fails is left out, alone) and append the rest in one write."""
        records = []
        for line in lines:
            try:
                records.append(line.kind(**line.fields, at=_written_at(line.at)))
            except Exception as error:  # noqa: BLE001 - _Invalid, or a value nobody expected: never the caller's
                log.debug("not writing a line of the record on disk: %s", error)
        if records:
            self._append(records)

    def _append(self, records: list[dict[str, Any]]) -> None:
        data = b"".join(_encode(record) for record in records)
        try:
            self._make_directory()
            with self._locked():
                fd = _open_private(self.path, os.O_RDWR | os.O_APPEND | getattr(os, "O_BINARY", 0))
                try:
                    if not _ends_whole(fd):
                        data = b"\n" + data  # a torn last line (a full disk, a crash) must not swallow these
                    written = os.write(fd, data)  # one write of whole lines: O_APPEND keeps kernels' lines whole
                    if written != len(data):
                        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")
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
            line = _encode(
                {"v": VERSION, **{name: getattr(entry, name) for name in _FIELDS}, "at": entry.recorded_at.isoformat()}
            )
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
                    view = view[os.write(fd, view) :]
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
        absolute path. The lines queued for the writer thread are written first, so a start is seen at once."""
        _writer.flush(FLUSH_TIMEOUT)
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


def _now() -> float:
    """When a line is given: written as its ``at`` (:func:`_written_at`) by whoever writes it, off the caller's path
    for ``add_soon``."""
    return time.time()


def _written_at(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="microseconds")


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


# ---------------------------------------------------------------------------------------------------- the writer
class _Writer:
    """One daemon thread that writes the lines queued by ``add_soon``/``forget_soon``, in order. It starts with the
    first line, gathers what comes within :data:`WRITER_GATHER` seconds (a burst of starts is one locked append, and
    the work falls after the caller's own), and ends after :data:`WRITER_LINGER` idle seconds, or when :meth:`stop`
    retires it. A :meth:`flush` has everything written at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[tuple[ConversationStore, _Line]] = deque()
        self._busy = False  # lines taken off the queue are being written
        self._idle = False  # the thread waits for lines (only then does a new line wake it)
        self._flushing = 0  # how many wait for the queue: then nothing is gathered
        self._thread: threading.Thread | None = None
        self._at_exit = False

    def put(self, store: ConversationStore, line: _Line) -> None:
        with self._cond:
            self._queue.append((store, line))
            if self._thread is None:
                self._start()
            elif self._idle:
                self._cond.notify_all()

    def _start(self) -> None:  # (under the condition's lock)
        if not self._at_exit:
            self._at_exit = True
            atexit.register(self.stop)  # registered after the I/O thread's: runs before it, at exit
        thread = threading.Thread(target=self._run, name="openhands-store", daemon=True)
        self._thread = thread
        thread.start()

    def _take(self, me: threading.Thread) -> list[tuple[ConversationStore, _Line]] | None:
        """The next lines to write (under the lock), or None when this thread is to end."""
        while not self._queue:
            if self._thread is not me:
                return None
            self._idle = True
            try:
                woken = self._cond.wait(WRITER_LINGER)
            finally:
                self._idle = False
            if not woken and not self._queue:
                if self._thread is me:
                    self._thread = None
                self._cond.notify_all()
                return None
        gathered_until = time.monotonic() + WRITER_GATHER
        while not self._flushing and self._thread is me:
            remaining = gathered_until - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)
        if self._thread is not me:  # retired while lines came: the next thread writes them, in order
            return None
        taken = list(self._queue)
        self._queue.clear()
        self._busy = True
        return taken

    def _run(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                taken = self._take(me)
                if taken is None:
                    return
            try:
                while taken:  # one append per run of lines for the same store
                    store = taken[0][0]
                    count = next((i for i, (other, _) in enumerate(taken) if other is not store), len(taken))
                    store._write([line for _, line in taken[:count]])
                    taken = taken[count:]
            except Exception:  # (the store swallows its own failures; this is a bug's last line)
                log.exception("openhands: writing the record of conversations failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Have the queue written now and wait for it (from any thread but the writer's); whether it was, in
        ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if threading.current_thread() is self._thread:
                return not self._queue
            if not self._queue and not self._busy:
                return True
            self._flushing += 1
            try:
                self._cond.notify_all()
                while self._queue or self._busy:
                    if self._thread is None:
                        self._start()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    def stop(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Write what is queued, then end the thread (``Session.close()``, interpreter exit): none is left."""
        if not self.flush(timeout):
            log.warning("openhands: the record of conversations could not be written within %g s", timeout)
        with self._cond:
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:  # (a line queued meanwhile has a thread of its own)
            if self._queue and self._thread is None:
                self._start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()


_writer = _Writer()


def flush(timeout: float = FLUSH_TIMEOUT) -> bool:
    """Wait until every queued line is written (a reader does this by itself); whether it was."""
    return _writer.flush(timeout)


def stop_writer(timeout: float = FLUSH_TIMEOUT) -> None:
    """Write what is queued and end the writer thread (``Session.close()``); the next line starts it again."""
    _writer.stop(timeout)


# ---------------------------------------------------------------------------------------------------------- the store
#: What the default path is made from: while these are unchanged, so is the path (no Jupyter lookup per start).
_PATH_ENV = (
    DATA_DIR_ENV,
    "JUPYTER_DATA_DIR",
    "JUPYTER_PLATFORM_DIRS",
    "JUPYTER_CONFIG_DIR",
    "XDG_DATA_HOME",
    "HOME",
    "APPDATA",
    "USERPROFILE",
)
_store: ConversationStore | None = None
_store_key: tuple[str | None, ...] | None = None
_store_stamp = 0  # the environment's stamp (:mod:`._environ`) when ``_store_key`` was last read
_store_lock = threading.Lock()


def get_store() -> ConversationStore:
    """The process-wide store, following ``OPENHANDS_MAGICS_DATA_DIR`` (and the Jupyter data directory) if it
    changes."""
    global _store, _store_key, _store_stamp
    now = stamp()
    with _store_lock:
        if _store is not None and now == _store_stamp:  # (nothing in the environment changed: nor did the path)
            return _store
    key = tuple(os.environ.get(name) for name in _PATH_ENV)
    with _store_lock:
        if _store is not None and key == _store_key:
            _store_stamp = now
            return _store
    path = default_path()
    with _store_lock:
        if _store is None or _store.path != path:
            _store = ConversationStore(path)
        _store_key, _store_stamp = key, now
        return _store


def reset_store() -> None:
    """Forget the process-wide store (tests point each one at its own directory); what was queued is written."""
    global _store, _store_key
    _writer.flush(FLUSH_TIMEOUT)
    with _store_lock:
        _store, _store_key = None, None
