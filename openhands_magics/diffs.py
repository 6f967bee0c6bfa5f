"""What the agent changed, as a value people can read: :class:`Diff` is the unified diff (``str(diff)``, what a
terminal, a file or ``git apply`` wants) and, in a notebook, one collapsible section per file with its status, its
path and its counts, added lines green and removed ones red, in a box of bounded height.

Why a ``str`` subclass: ``conv.diff()`` returned the text before it returned this, and code that writes it to a file,
searches it or prints it keeps working; the sections are parsed from that same text, so the two never disagree.

Why a cap: a notebook output is kept in the saved file and drawn by the browser, and an agent that rewrote a data
file can produce a diff of millions of lines. The view draws at most :data:`SHOWN_LINES` lines and says what it left
out; ``str(diff)`` always holds all of it. Everything from the server (paths, lines) is escaped where it is written
into HTML, and its control and format characters are written out (:func:`~.validation.written_out`), so a diff
cannot draw markup, move the cursor, reorder text or ring the bell.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .validation import written_out

__all__ = ["SHOWN_LINES", "Diff", "FilePatch"]

#: The notebook view draws at most this many diff lines in all (``str(diff)`` keeps every line).
SHOWN_LINES = 2_000
#: Sections start open when there are at most this many files (more: a list of closed sections to open one by one).
OPEN_FILES = 3
_HEADER = re.compile(r"^--- (?P<old>.*)\n\+\+\+ (?P<new>.*)$(?=\n@@|\n?\Z)", re.M)
#: How each status reads, and its mark (git's letters).
_STATUS = {"added": "A", "deleted": "D", "modified": "M", "renamed": "R"}
_BOX = (
    "font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,12px);"
    "border:1px solid var(--jp-border-color2,#ccc);border-radius:4px;margin:2px 0;"
)
_LINE_STYLE = {
    "+": "background:rgba(46,160,67,0.22);",
    "-": "background:rgba(248,81,73,0.22);",
    "@": "background:rgba(56,139,253,0.15);opacity:0.85;",
    "\\": "opacity:0.6;",
}


@dataclass(frozen=True)
class FilePatch:
    """One file's part of a diff: its path (the new one; the old one for a deletion), what happened to it, how many
    lines were added and removed, and its lines of the unified diff (headers included)."""

    path: str
    status: str
    added: int
    removed: int
    text: str

    @property
    def letter(self) -> str:
        return _STATUS.get(self.status, "M")


def _path_of(header: str) -> str | None:
    """``a/data/load.py`` → ``data/load.py``; ``/dev/null`` → None (a tab and a time stamp after it are dropped)."""
    name = header.split("\t", 1)[0].strip()
    if name == "/dev/null":
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def parse_patches(text: str) -> tuple[FilePatch, ...]:
    """The files of a unified diff, in order (text before the first ``---``/``+++`` pair is left out)."""
    starts = [m.start() for m in _HEADER.finditer(text)]
    patches = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(text)
        part = text[start:end]
        match = _HEADER.match(part)
        assert match is not None
        old, new = _path_of(match["old"]), _path_of(match["new"])
        body = part[match.end() :].splitlines()
        added = sum(1 for line in body if line.startswith("+"))
        removed = sum(1 for line in body if line.startswith("-"))
        if old is None:
            status = "added"
        elif new is None:
            status = "deleted"
        elif old != new:
            status = "renamed"
        else:
            status = "modified"
        patches.append(FilePatch(new or old or "?", status, added, removed, part))
    return tuple(patches)


class Diff(str):
    """A unified diff: prints as itself; a notebook shows one section per file (status, path, +added −removed),
    coloured, capped at :data:`SHOWN_LINES` lines. ``.files`` lists the :class:`FilePatch` of each file."""

    _files: tuple[FilePatch, ...] | None  # (parsed on first use; a str subclass cannot have slots)

    def __new__(cls, text: str = "") -> Diff:
        made = super().__new__(cls, text)
        made._files = None
        return made

    @classmethod
    def join(cls, parts: Iterable[str]) -> Diff:
        """One diff of the files' diffs, in the order given."""
        return cls("".join(parts))

    @property
    def files(self) -> tuple[FilePatch, ...]:
        if self._files is None:
            self._files = parse_patches(str(self))
        return self._files

    @property
    def added(self) -> int:
        return sum(patch.added for patch in self.files)

    @property
    def removed(self) -> int:
        return sum(patch.removed for patch in self.files)

    def summary(self) -> str:
        """``2 files changed, +12 −3`` (or ``no changes``)."""
        if not self.files:
            return "no changes"
        count = len(self.files)
        return f"{count} file{'s' if count != 1 else ''} changed, +{self.added} −{self.removed}"

    def __repr__(self) -> str:
        return written_out(str(self)) or "(no changes)"

    def _repr_html_(self) -> str:
        return diff_html(self)

    def __reduce__(self) -> tuple[type[Diff], tuple[str]]:
        return (Diff, (str(self),))


def diff_html(
    diff: Diff, shown_lines: int = SHOWN_LINES, statuses: Mapping[str, str] | None = None, *, head: bool = True
) -> str:
    """The notebook view of a diff (see :class:`Diff`); ``statuses`` may name a file's status as the server gave it;
    ``head=False`` leaves out its summary line (a card's files line says it already)."""
    if not diff.files:
        return '<div style="opacity:0.7"><em>no changes</em></div>'
    left = shown_lines
    sections, cut_lines, cut_files = [], 0, 0
    opened = len(diff.files) <= OPEN_FILES
    for patch in diff.files:
        lines = patch.text.splitlines()[2:]  # (the --- / +++ pair: the summary says it better)
        if left <= 0:
            cut_lines += len(lines)
            cut_files += 1
            continue
        shown, rest = lines[:left], lines[left:]
        left -= len(shown)
        cut_lines += len(rest)
        status = (statuses or {}).get(patch.path, patch.status)
        body = "".join(_line_html(line) for line in shown)
        if rest:
            body += f'<div style="opacity:0.7;padding:2px 6px">… {len(rest):,} more lines of this file not shown</div>'
        sections.append(
            f'<details{" open" if opened else ""} style="{_BOX}">'
            f'<summary style="cursor:pointer;padding:3px 6px">'
            f'<b title="{html.escape(status)}">{_STATUS.get(status, "M")}</b> {html.escape(written_out(patch.path))} '
            f'<span style="color:rgb(46,160,67)">+{patch.added}</span> '
            f'<span style="color:rgb(248,81,73)">−{patch.removed}</span></summary>'
            f'<div style="max-height:24em;overflow:auto;white-space:pre;padding:2px 0">{body}</div></details>'
        )
    note = ""
    if cut_lines or cut_files:
        files = f" and {cut_files} more file{'s' if cut_files != 1 else ''}" if cut_files else ""
        note = (
            f'<div style="opacity:0.7;padding:2px 0">Showing the first {shown_lines:,} lines: {cut_lines:,} more'
            f"{files} not shown (<code>str(diff)</code> has all of it).</div>"
        )
    top = f'<div style="padding:2px 0"><b>{html.escape(diff.summary())}</b></div>' if head else ""
    return f'<div class="openhands-diff">{top}{"".join(sections)}{note}</div>'


def _line_html(line: str) -> str:
    style = _LINE_STYLE.get(line[:1], "")
    return f'<div style="{style}padding:0 6px">{html.escape(written_out(line)) or " "}</div>'
