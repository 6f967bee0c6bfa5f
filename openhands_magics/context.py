"""Notebook context for a task: ``{{ expr }}`` placeholders, variable descriptions, the cells above, the last error.

Everything here is a pure function of the shell or namespace it is given, so the magic can call it and tests can call
it without a kernel. Nothing heavy is imported at module level: pandas and numpy are recognised by the names of the
classes an object is made of, and numpy is imported only to print an array that already exists (so it is loaded).

Two promises hold for every text this module returns:

* errors a user can cause are one line (:class:`~openhands_magics.errors.ValidationError`) that says what to do;
* every secret the package knows is replaced by ``********`` (:func:`_redact`, which is :func:`._secrets.blank`):
  the API key, credential-like environment values (in case a user hands over ``os.environ`` or a traceback that
  shows a key) and the values of notebook variables named like a credential (``api_key``, ``GITHUB_TOKEN``). The
  list is made once per call of the functions below, from the namespace they are given.
"""

from __future__ import annotations

import functools
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeVar

from ._secrets import Secrets, blank, secrets
from .errors import ValidationError

__all__ = ["CellError", "ErrorLog", "cells_above", "compose", "describe", "expand", "last_error_task"]

#: One ``{{ }}`` expansion longer than this is refused: big values belong in ``--context``, which summarises them.
MAX_EXPANSION = 10_000
#: A generic object's ``repr`` is cut here: an agent needs the shape of a value, not all of it.
MAX_REPR = 500
#: The sample printed for a numpy array.
MAX_ARRAY_SAMPLE = 400
#: DataFrames wider than this show their first columns and a count of the rest.
MAX_COLUMNS = 20
#: Table cells are cut here so one long string cannot crowd out the rest of a frame.
MAX_CELL = 40
#: The error under a cell in :func:`cells_above` is context, so only its end (where the message is) is kept.
CELL_ERROR_LINES = 20
#: The traceback in :func:`last_error_task` is the task itself, so more of it is kept.
FIX_TRACEBACK_LINES = 60
#: How much of a bad placeholder an error message shows, so the message stays one readable line.
SHOWN_PLACEHOLDER = 60

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_NAME = re.compile(r"[^\W\d]\w*")
_INT = re.compile(r"-?\d+")
_SPACES = re.compile(r"[ \t]*")
_FENCE = re.compile(r"^(`{3,})", re.MULTILINE)


# --------------------------------------------------------------------------------------------------------------------
# Safety and text helpers


#: The secrets of the public call under way (:func:`_blanking`), so a frame's hundred table cells share one list.
_known: ContextVar[Secrets | None] = ContextVar("openhands_magics_context_secrets", default=None)
F = TypeVar("F", bound=Callable[..., Any])


def _blanking(namespace_of: Callable[..., Mapping[str, Any] | None]) -> Callable[[F], F]:
    """Make the secrets once per call of the decorated function, with the notebook variables of the namespace that
    ``namespace_of`` (given the function's arguments) picks out."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def blanking(*args: Any, **kwargs: Any) -> Any:
            token = _known.set(secrets(namespace_of(*args, **kwargs)))
            try:
                return function(*args, **kwargs)
            finally:
                _known.reset(token)

        return blanking  # type: ignore[return-value]

    return decorate


def _user_ns(shell: Any, *_: Any, **__: Any) -> Mapping[str, Any] | None:
    namespace = getattr(shell, "user_ns", None)
    return namespace if isinstance(namespace, Mapping) else None


def _redact(text: str) -> str:
    """Blank every secret in ``text`` (outside a call of this module's functions: the secrets known right now).

    Always applied *before* any text is cut, so a cut can never leave half a key visible.
    """
    return blank(text, known=_known.get())


def _strip_ansi(text: str) -> str:
    """Tracebacks printed by IPython carry colour codes; an agent (and a markdown view) needs plain text."""
    return _ANSI.sub("", text)


def _one_line(text: str, limit: int = 200) -> str:
    """Error messages print as one line, so Python's multi-line messages are folded and shortened."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fence(body: str, lang: str = "") -> str:
    """A fenced block whose fence is longer than any run of backticks in ``body``, so a repr cannot close it early."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{body}\n{fence}"


def _open_fence(text: str) -> str | None:
    """The fence still open at the end of ``text`` (after a cut), which must be closed to keep the markdown sane."""
    fence: str | None = None
    for line in text.split("\n"):
        if fence is None:
            match = _FENCE.match(line)
            if match:
                fence = match.group(1)
        elif line.strip() == fence:
            fence = None
    return fence


def _cut(text: str, limit: int, note: Callable[[int], str] | None = None) -> tuple[str, int]:
    """Shorten ``text`` to at most ``limit`` characters, saying what was left out; returns (text, characters left out).

    The cut falls on a line break when that keeps at least half of the room, and a code block left open is closed, so
    what is kept still reads as markdown. ``note(n)`` says what was cut; without it a bare "…" marks the cut.
    """
    if len(text) <= limit:
        return text, 0
    limit = max(limit, 0)
    tail = note(len(text)) if note else "…"  # the longest the note can be: nothing kept
    fences = [len(run) for run in _FENCE.findall(text)]
    reserve = len(tail) + 1 + (max(fences) + 1 if fences else 0)
    keep = limit - reserve
    if keep <= 0:
        return tail[:limit], len(text)
    kept = text[:keep]
    line_break = kept.rfind("\n")
    if line_break >= keep // 2:
        kept = kept[:line_break]
    kept = kept.rstrip("\n")
    left_out = len(text) - len(kept)
    pieces = [kept] if kept else []
    open_fence = _open_fence(kept)
    if open_fence:
        pieces.append(open_fence)
    pieces.append(note(left_out) if note else "…")
    return "\n".join(pieces), left_out


def _shares(lengths: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` so that short parts stay whole and the long ones share what is left equally."""
    shares = [0] * len(lengths)
    remaining = max(budget, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for done, index in enumerate(order):
        shares[index] = min(lengths[index], remaining // (len(order) - done))
        remaining -= shares[index]
    return shares


def _fit(parts: Sequence[str], notes: Sequence[Callable[[int], str]], max_chars: int, separator: str = "\n\n") -> str:
    """Join ``parts`` within ``max_chars``, cutting the longest first and noting each cut in place."""
    joined = separator.join(parts)
    if len(joined) <= max_chars:
        return joined
    budget = max_chars - len(separator) * (len(parts) - 1)
    shares = _shares([len(part) for part in parts], budget)
    fitted = [_cut(part, share, note)[0] for part, share, note in zip(parts, shares, notes)]
    return separator.join(part for part in fitted if part)[:max_chars]


def _type_name(obj: Any) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if module == "builtins" else f"{module}.{name}"


def _is_kind(obj: Any, module: str, name: str) -> bool:
    """Whether ``obj`` is (a subclass of) ``module.name``, decided without importing ``module``."""
    for cls in type(obj).__mro__:
        cls_module = getattr(cls, "__module__", "") or ""
        if cls.__name__ == name and (cls_module == module or cls_module.startswith(module + ".")):
            return True
    return False


def _unknown_name(shown: str, name: str) -> ValidationError:
    return ValidationError(f"{shown}: no variable {name!r} in the notebook; nothing was sent.")


def _lookup(namespace: Mapping[str, Any], name: str, shown: str) -> Any:
    try:
        return namespace[name]
    except KeyError:
        raise _unknown_name(shown, name) from None


# --------------------------------------------------------------------------------------------------------------------
# {{ expr }} placeholders


@_blanking(lambda text, namespace: namespace)
def expand(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace each ``{{ expr }}`` in ``text`` by ``str()`` of its value in ``namespace``.

    ``expr`` is a variable name followed by ``.attribute`` and ``[index]`` steps (int or quoted string keys) and
    nothing else: it is parsed here, never evaluated, so a message cannot call functions or run code. ``\\{{`` stands
    for a literal ``{{``; single braces are left alone. Every failure is a one-line :class:`ValidationError`.
    """
    out: list[str] = []
    position = 0
    while True:
        start = text.find("{{", position)
        if start < 0:
            out.append(text[position:])
            break
        if start > 0 and text[start - 1] == "\\":
            out.append(text[position : start - 1] + "{{")
            position = start + 2
            continue
        out.append(text[position:start])
        name, steps, end = _parse_placeholder(text, start)
        out.append(_render(name, steps, text[start + 2 : end - 2], namespace))
        position = end
    return "".join(out)


def _bad_placeholder(text: str, start: int) -> ValidationError:
    close = text.find("}}", start + 2)
    shown = _one_line(_redact(text[start : (close + 2 if close >= 0 else len(text))]), SHOWN_PLACEHOLDER)
    if close < 0:
        return ValidationError(
            f"Cannot expand {shown}: there is no closing }}}} (write \\{{{{ for literal braces); nothing was sent."
        )
    return ValidationError(
        f"Cannot expand {shown}: a placeholder takes a variable name with .attribute and [index] access only, "
        "no calls or operators (write \\{{ for literal braces); nothing was sent."
    )


def _parse_placeholder(text: str, start: int) -> tuple[str, list[tuple[str, str | int]], int]:
    """Parse the placeholder at ``text[start]`` (``{{``): its name, its steps and where it ends (after ``}}``)."""

    def spaces(at: int) -> int:
        match = _SPACES.match(text, at)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    position = spaces(start + 2)
    name = _NAME.match(text, position)
    if name is None:
        raise _bad_placeholder(text, start)
    position = name.end()
    steps: list[tuple[str, str | int]] = []
    while position < len(text):
        char = text[position]
        if char == ".":
            attribute = _NAME.match(text, position + 1)
            if attribute is None:
                raise _bad_placeholder(text, start)
            steps.append(("attr", attribute.group()))
            position = attribute.end()
        elif char == "[":
            position = spaces(position + 1)
            key: str | int
            if position < len(text) and text[position] in "'\"":
                quote = text[position]
                close = text.find(quote, position + 1)
                if close < 0:
                    raise _bad_placeholder(text, start)
                key, position = text[position + 1 : close], close + 1
            else:
                number = _INT.match(text, position)
                if number is None:
                    raise _bad_placeholder(text, start)
                key, position = int(number.group()), number.end()
            position = spaces(position)
            if not text.startswith("]", position):
                raise _bad_placeholder(text, start)
            steps.append(("index", key))
            position += 1
        else:
            break
    position = spaces(position)
    if not text.startswith("}}", position):
        raise _bad_placeholder(text, start)
    return name.group(), steps, position + 2


def _render(name: str, steps: list[tuple[str, str | int]], inner: str, namespace: Mapping[str, Any]) -> str:
    shown = _one_line(_redact("{{" + inner.strip() + "}}"), SHOWN_PLACEHOLDER)
    value = _lookup(namespace, name, shown)
    try:
        for kind, key in steps:
            value = getattr(value, str(key)) if kind == "attr" else value[key]
        rendered = str(value)
    except Exception as error:  # whatever the object raises, the user gets one line naming it
        detail = _one_line(_redact(str(error)), 120)
        raise ValidationError(
            f"{shown}: {type(error).__name__}{': ' + detail if detail else ''}; nothing was sent."
        ) from None
    rendered = _redact(rendered)
    if len(rendered) > MAX_EXPANSION:
        raise ValidationError(
            f"{shown} is {len(rendered):,} characters long (the limit is {MAX_EXPANSION:,}): pass big values with "
            f"--context {name} instead, which sends a summary; nothing was sent."
        )
    return rendered


# --------------------------------------------------------------------------------------------------------------------
# Variables


@_blanking(lambda names, namespace, **_: namespace)
def describe(names: Sequence[str], namespace: Mapping[str, Any], *, max_chars: int = 4000) -> str:
    """A markdown section per variable: what an agent needs to write code against it, within ``max_chars``.

    DataFrames show their dtypes and first rows, Series and arrays a sample, anything else a shortened ``repr``. Only
    ``repr``/``str``/``len``/``shape``/``dtype(s)``/``head`` (and ``name`` of a Series) are used on the objects, since
    anything more could have side effects in the user's kernel.
    """
    unique = list(dict.fromkeys(names))
    for name in unique:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValidationError(
                f"{name!r} is not a variable name: list plain names like df or model (for an expression write "
                "{{ df.shape }} in the message); nothing was sent."
            )
    values = [_lookup(namespace, name, name) for name in unique]
    sections = [_redact(_describe_one(name, value)) for name, value in zip(unique, values)]
    notes = [_description_note(name) for name in unique]
    return _fit(sections, notes, max_chars)


def _description_note(name: str) -> Callable[[int], str]:
    return lambda left_out: f"… cut: {left_out:,} characters of {name}'s description"


def _describe_one(name: str, value: Any) -> str:
    try:
        if _is_kind(value, "pandas", "DataFrame"):
            return _describe_frame(name, value)
        if _is_kind(value, "pandas", "Series"):
            return _describe_series(name, value)
        if _is_kind(value, "numpy", "ndarray"):
            return _describe_array(name, value)
    except Exception:  # an odd subclass: its repr still says something
        pass
    return _describe_object(name, value)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _cell(value: Any) -> str:
    """One table cell: ``str`` of the value on one line, pipes escaped, at most :data:`MAX_CELL` characters."""
    try:
        text = str(value)
    except Exception as error:
        text = f"(str failed: {type(error).__name__})"
    text = " ".join(_redact(text).split())  # redacted before the cut, which could otherwise leave half a key
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _table(header: Sequence[Any], rows: Iterator[Sequence[Any]] | Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _has_tabulate() -> bool:
    """``DataFrame.to_markdown`` needs tabulate, which is optional; without it a plain pipe table is built here."""
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None


def _describe_frame(name: str, frame: Any) -> str:
    rows, columns = frame.shape
    more = columns - MAX_COLUMNS
    more_note = f"\n\n… {_plural(more, 'more column')}" if more > 0 else ""
    dtypes = list(frame.dtypes.items())[:MAX_COLUMNS]
    head = frame.head(5)
    if _has_tabulate():
        shown = head.iloc[:, :MAX_COLUMNS] if more > 0 else head
        head_table = shown.to_markdown()
    else:
        head_table = _table(
            ["", *(column for column, _ in dtypes)],
            (row[: MAX_COLUMNS + 1] for row in head.itertuples(index=True, name=None)),
        )
    return (
        f"### {name} (pandas DataFrame, {_plural(rows, 'row')} × {_plural(columns, 'column')})\n\n"
        f"{_table(['column', 'dtype'], dtypes)}{more_note}\n\n"
        f"First rows:\n\n{head_table}{more_note}"
    )


def _describe_series(name: str, series: Any) -> str:
    label = f" {series.name!r}" if series.name is not None else ""
    head = series.head(5)
    return (
        f"### {name} (pandas Series{label}, {_plural(len(series), 'value')}, dtype {series.dtype})\n\n"
        f"{_table(['index', 'value'], list(head.items()))}"
    )


def _describe_array(name: str, array: Any) -> str:
    import numpy

    shape = tuple(array.shape)
    try:
        sample = numpy.array2string(array, threshold=40, edgeitems=3, max_line_width=100)
    except Exception as error:
        sample = f"(sample failed: {type(error).__name__})"
    sample = _redact(sample)
    if len(sample) > MAX_ARRAY_SAMPLE:
        sample = sample[: MAX_ARRAY_SAMPLE - 1] + "…"
    return f"### {name} (numpy ndarray, shape {shape}, dtype {array.dtype})\n\n{_fence(sample)}"


def _describe_object(name: str, value: Any) -> str:
    heading = f"### {name} ({_type_name(value)})"
    try:
        text = repr(value)
    except Exception as error:
        return f"{heading}\n\n(repr failed: {type(error).__name__})"
    text = _redact(text)
    if len(text) <= MAX_REPR:
        return f"{heading}\n\n{_fence(text)}"
    return f"{heading}\n\n{_fence(text[:MAX_REPR])}\n… (truncated: the repr is {len(text):,} characters long)"


# --------------------------------------------------------------------------------------------------------------------
# Errors and cells


class CellError(NamedTuple):
    """An error as a notebook cell raised it, kept as text so no frame (and none of its locals) stays alive."""

    execution_count: int | None  # None: the cell was not stored in the history, so it has no In [n]
    error_type: str
    message: str
    traceback: str  # plain text, no colours
    source: str


class ErrorLog:
    """The last errors raised by cells, with the cell each came from.

    IPython keeps only the very last exception (``sys.last_value``) and not which cell raised it; to put an error
    under the right cell in :func:`cells_above`, errors are recorded as they happen by a ``post_run_cell`` hook.
    """

    def __init__(self, keep: int = 20) -> None:
        self.entries: deque[CellError] = deque(maxlen=keep)

    def install(self, shell: Any) -> None:
        """Start recording; installing twice records once."""
        if self._after not in shell.events.callbacks["post_run_cell"]:
            shell.events.register("post_run_cell", self._after)

    def uninstall(self, shell: Any) -> None:
        try:
            shell.events.unregister("post_run_cell", self._after)
        except ValueError:  # not installed: nothing to undo
            pass

    @property
    def last(self) -> CellError | None:
        return self.entries[-1] if self.entries else None

    def for_cell(self, execution_count: int, source: str | None = None) -> CellError | None:
        """The latest error of cell ``execution_count``; with ``source``, only if the cell text matches too (a
        counter reset must not pin an old error on a new cell)."""
        for entry in reversed(self.entries):
            if entry.execution_count == execution_count:
                if source is None or entry.source.strip() == source.strip():
                    return entry
                return None
        return None

    def _after(self, result: Any) -> None:
        # A hook that raises makes IPython print a traceback after every cell: recording is best effort.
        try:
            self._record(result)
        except Exception:
            pass

    def _record(self, result: Any) -> None:
        if result is None:
            return
        error = result.error_in_exec or result.error_before_exec
        if error is None:
            return
        info = getattr(result, "info", None)
        stored = bool(getattr(info, "store_history", True))
        source = getattr(info, "raw_cell", None) or ""
        if isinstance(error, SyntaxError) and result.error_in_exec is None:
            text = _format_exception(error, None, only=True)
        else:
            text = _format_exception(error, error.__traceback__)
        self.entries.append(
            CellError(
                execution_count=result.execution_count if stored else None,
                error_type=_public_name(type(error)),
                message=_one_line(_redact(str(error)), 500),
                traceback=text,
                source=source.rstrip("\n"),
            )
        )


def _public_name(cls: type) -> str:
    """The exception's name as a person knows it: its first public class (Python 3.13 raises the private
    ``_IncompleteInputError``, a SyntaxError, for an unclosed bracket)."""
    return next((c.__name__ for c in cls.__mro__ if not c.__name__.startswith("_")), cls.__name__)


def _format_exception(error: BaseException, tb: Any, *, only: bool = False) -> str:
    """The traceback as Python prints it, without IPython's own frames in front of the cell's."""
    import traceback

    if only:
        return _strip_ansi("".join(traceback.format_exception_only(type(error), error))).rstrip("\n")
    while tb is not None and tb.tb_next is not None and _is_ipython_frame(tb.tb_frame):
        tb = tb.tb_next
    return _strip_ansi("".join(traceback.format_exception(type(error), error, tb))).rstrip("\n")


def _is_ipython_frame(frame: Any) -> bool:
    return str(frame.f_globals.get("__name__", "")).startswith("IPython.")


def _history(shell: Any) -> tuple[list[str], list[str]]:
    """(raw sources, parsed sources) indexed by execution count, as IPython's ``In`` is.

    The raw sources are what the user typed (``%timeit x`` rather than ``get_ipython().run_line_magic(...)``), so
    they are what an agent is shown; ``In`` is the fallback for shells without a history manager.
    """
    parsed = list(shell.user_ns.get("In") or [])
    manager = getattr(shell, "history_manager", None)
    raw = list(getattr(manager, "input_hist_raw", None) or parsed)
    if manager is not None and getattr(manager, "input_hist_parsed", None):
        parsed = list(manager.input_hist_parsed)
    return raw, parsed


def _history_end(shell: Any, raw: list[str]) -> int:
    """Where the cells *above* end: the running cell is the last history entry, unless it was not stored.

    Called from a cell (the magic), IPython has already stored that cell as the last entry, which is excluded. Called
    outside any cell (a script, a test), every stored cell is above. ``displayhook.exec_result`` is IPython's record
    of the cell being run; a shell without one is taken to be running a stored cell.
    """
    displayhook = getattr(shell, "displayhook", None)
    if not hasattr(displayhook, "exec_result"):
        return max(len(raw) - 1, 0)
    running = getattr(displayhook, "exec_result", None)
    if running is None:
        return len(raw)
    source = getattr(getattr(running, "info", None), "raw_cell", None)
    if source is None or (len(raw) > 1 and raw[-1] == source.rstrip("\n")):
        return max(len(raw) - 1, 0)
    return len(raw)


def _tail(text: str, lines: int) -> str:
    all_lines = text.split("\n")
    if len(all_lines) <= lines:
        return text
    return f"… ({len(all_lines) - lines:,} earlier lines left out)\n" + "\n".join(all_lines[-lines:])


@_blanking(_user_ns)
def cells_above(shell: Any, count: int, *, errors: ErrorLog | None = None, max_chars: int = 6000) -> str:
    """The sources of the ``count`` non-empty cells run before the current one, oldest first, as markdown.

    With an :class:`ErrorLog`, a cell that raised carries its error. Within ``max_chars``, long cells are cut first and
    each cut is noted.
    """
    if not isinstance(count, int) or count < 0:
        raise ValidationError(f"The number of cells above must be 0 or more, got {count!r}.")
    raw, _ = _history(shell)
    chosen: list[int] = []
    for number in range(_history_end(shell, raw) - 1, 0, -1):
        if len(chosen) == count:
            break
        if raw[number].strip():
            chosen.append(number)
    parts = []
    for number in reversed(chosen):
        part = f"### In [{number}]\n\n{_fence(raw[number], 'python')}"
        error = errors.for_cell(number, raw[number]) if errors is not None else None
        if error is not None:
            part += f"\n\nError:\n\n{_fence(_tail(_redact(error.traceback), CELL_ERROR_LINES), 'text')}"
        parts.append(_redact(part))
    notes = [_cell_note(number) for number in reversed(chosen)]
    return _fit(parts, notes, max_chars)


def _cell_note(number: int) -> Callable[[int], str]:
    return lambda left_out: f"… cut: {left_out:,} characters of In [{number}]"


@_blanking(_user_ns)
def last_error_task(shell: Any, errors: ErrorLog | None) -> str:
    """The task for ``%openhands fix``: the cell that failed and its traceback.

    The :class:`ErrorLog` knows exactly which cell failed. Without one (or before it saw an error), IPython's
    ``sys.last_*`` holds the last exception; its cell is found by matching the traceback's code to ``In``, else
    taken to be the last cell run.
    """
    entry = errors.last if errors is not None else None
    if entry is not None:
        number, source, text = entry.execution_count, entry.source, entry.traceback
    else:
        value = getattr(sys, "last_value", None)
        if value is None:
            raise ValidationError("No error to fix yet: run the cell that fails first, then `%openhands fix`.")
        tb = getattr(sys, "last_traceback", None)
        if isinstance(value, SyntaxError) and tb is None:
            text = _format_exception(value, None, only=True)
        else:
            text = _format_exception(value, tb)
        number, source = _cell_of_error(shell, value, tb)
    parts = ["Fix the error raised by this notebook cell."]
    if source:
        heading = f"### The cell (In [{number}])" if number is not None else "### The cell"
        parts.append(f"{heading}\n{_fence(source, 'python')}")
    parts.append(f"### The error\n{_fence(_tail(_redact(text), FIX_TRACEBACK_LINES), 'text')}")
    return _redact("\n\n".join(parts))


def _cell_of_error(shell: Any, value: BaseException, tb: Any) -> tuple[int | None, str]:
    """The cell an exception came from: the one whose code its traceback ran, else the last cell run."""
    import linecache

    raw, parsed = _history(shell)
    end = min(_history_end(shell, raw), len(parsed))
    filenames = []
    while tb is not None:
        filenames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    if isinstance(value, SyntaxError) and value.filename:
        filenames.append(value.filename)
    for filename in filenames:
        code = "".join(linecache.getlines(filename)).rstrip("\n")
        if not code:
            continue
        for number in range(end - 1, 0, -1):
            if parsed[number].rstrip("\n") == code:
                return number, raw[number]
    for number in range(end - 1, 0, -1):
        if raw[number].strip():
            return number, raw[number]
    return None, ""


# --------------------------------------------------------------------------------------------------------------------
# The whole task


def compose(message: str, sections: Sequence[tuple[str, str]], *, max_chars: int = 12_000) -> str:
    """The message followed by the non-empty context sections, within ``max_chars``.

    The message is the user's task and is never cut; when the whole is too long the sections are shortened (the
    longest first) and the end says how much was left out, so neither the user nor the agent is misled.
    """
    kept = [(title, body) for title, body in sections if body and body.strip()]
    headers = [f"\n\n---\n## {title}\n\n" for title, _ in kept]
    full = message + "".join(header + body for header, (_, body) in zip(headers, kept))
    if len(full) <= max_chars:
        return full
    total = sum(len(body) for _, body in kept)
    note_room = len(f"\n\n(Context cut: {total:,} characters left out.)")
    budget = max_chars - len(message) - sum(len(header) for header in headers) - note_room
    shares = _shares([len(body) for _, body in kept], budget)
    out = [message]
    left_out = 0
    for header, (_, body), share in zip(headers, kept, shares):
        cut, lost = _cut(body, share)
        if lost == len(body):  # nothing of it fits: drop its heading too
            left_out += lost
            continue
        out.append(header + cut)
        left_out += lost
    out.append(f"\n\n(Context cut: {left_out:,} characters left out.)")
    return "".join(out)
