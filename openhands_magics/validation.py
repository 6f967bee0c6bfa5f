"""Checks on user input and server ids, done before anything goes on the wire or into a URL path."""

from __future__ import annotations

import re

from .errors import ProtocolError, ValidationError

__all__ = [
    "is_id",
    "validate_seconds",
    "printable",
    "validate_conversation_id",
    "validate_message",
    "validate_org",
    "validate_repository",
    "validate_user_conversation_id",
]

# GitHub's rules: owner is alphanumerics and single hyphens; repo names also allow '.', '_' (but not '.' / '..').
_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_GITHUB_URL = re.compile(r"^(?:https?://)?(?:www\.)?github\.com/([^/]+/[^/]+?)(?:\.git)?/?$", re.IGNORECASE)
# Blank lines at the ends: whitespace up to (and including) the last line break before the text, and from the first
# line break after it. Line breaks inside the text are not touched.
_LEADING_BLANK_LINES = re.compile(r"\A\s*(?:\r\n|\n|\r)")
_TRAILING_BLANK_LINES = re.compile(r"(?:\r\n|\n|\r)\s*\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
# OpenHands ids are uuid4().hex; V1 ids are hyphenated UUIDs. Anything else must not reach a URL path.
_CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_CONVERSATION_URL = re.compile(r"^https?://[^/\s]+(?:/[^\s]*)?/conversations/([A-Za-z0-9_-]{1,128})/?$")


def validate_message(message: str) -> str:
    """Drop only leading and trailing blank lines; every other character (indentation, CRLF, form feeds) is kept.
    A surrogate code point (half of a UTF-16 pair, from text decoded with ``surrogateescape`` or cut mid-emoji) has
    no UTF-8 form, so no request could carry it: refused here, saying where, rather than failing in the encoder."""
    stripped = _TRAILING_BLANK_LINES.sub("", _LEADING_BLANK_LINES.sub("", message))
    if not stripped.strip():
        raise ValidationError(
            "The message is empty: write the task after the options, e.g. `%openhands Fix the typo in README.md`."
        )
    surrogate = _SURROGATE.search(stripped)
    if surrogate:
        raise ValidationError(
            f"The message cannot be sent: it holds a lone surrogate (U+{ord(surrogate.group()):04X}) at character "
            f"{surrogate.start()}, which has no UTF-8 form (text decoded with errors='surrogateescape', or an emoji "
            "cut in half); remove or replace it."
        )
    return stripped


def validate_repository(repository: str) -> str:
    if not isinstance(repository, str):
        raise ValidationError(f"--repo must be text like owner/repo, got {type(repository).__name__}.")
    repository = repository.strip()
    pasted_url = _GITHUB_URL.fullmatch(repository)
    if pasted_url:
        repository = pasted_url.group(1)
    if not _REPOSITORY.fullmatch(repository) or repository.split("/")[1] in {".", ".."}:
        raise ValidationError(f"--repo must look like owner/repo (e.g. octocat/hello-world), got {repository!r}.")
    return repository


_ORG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_org(org: object) -> bool:
    return isinstance(org, str) and bool(_ORG.fullmatch(org.strip()))


def validate_org(org: object) -> str:
    """An organisation id for ``X-Org-Id`` (``--org``, ``%config OpenHandsMagics.org``): it goes into a header, so
    only letters, digits, ``-`` and ``_``."""
    if not isinstance(org, str) or not is_org(org):
        shown = repr(org)[:60] if isinstance(org, str) else type(org).__name__
        raise ValidationError(f"--org takes an organisation id (letters, digits, - and _), got {shown}.")
    return org.strip()


def validate_seconds(value: object, name: str) -> float | None:
    """A wait's time limit: None (no limit) or a number of seconds from 0 on (``inf`` too); never text, a bool or
    NaN, which would make it wait for ever or fail later, mid-wait, with a TypeError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValidationError(f"{name} must be a number of seconds (0 or more) or None, got {value!r:.40}.")
    return float(value)


def is_id(value: object) -> bool:
    """Whether ``value`` can stand as one segment of a URL path: what OpenHands ids are made of (letters, digits,
    '-', '_'), so never '.', '..', '/', '%', '?' or anything else a path or a query would read."""
    return isinstance(value, str) and _CONVERSATION_ID.fullmatch(value) is not None


def validate_conversation_id(conversation_id: str) -> str:
    """For ids that came from the server: a bad one is the server's fault, so it is a ProtocolError."""
    if not isinstance(conversation_id, str) or not _CONVERSATION_ID.fullmatch(conversation_id):
        shown = repr(conversation_id)[:60]
        raise ProtocolError(f"The server sent an invalid conversation id {shown}; refusing to use it in a URL.")
    return conversation_id


def validate_user_conversation_id(conversation_id: str) -> str:
    """For ids a person typed (``--watch ID``, ``client.get_conversation(ID)``): their mistake, so ValidationError."""
    if not isinstance(conversation_id, str):
        raise ValidationError(f"A conversation id must be text, got {type(conversation_id).__name__}.")
    candidate = conversation_id.strip()
    pasted_url = _CONVERSATION_URL.fullmatch(candidate)  # a link copied from the panel or the browser works too
    if pasted_url:
        candidate = pasted_url.group(1)
    if not _CONVERSATION_ID.fullmatch(candidate):
        raise ValidationError(
            f"{conversation_id[:60]!r} is not a conversation id (expected letters, digits, '-' or '_')."
        )
    return candidate


def written_out(text: str) -> str:
    """Server text that keeps its line breaks and tabs, every other control or format character written out as its
    code (ESC as ``\\x1b``, a right-to-left override as ``\\u202e``): nothing in it can steer a terminal, hide or
    reorder text, and a reader still sees what was there. (Line by line: most lines are printable, one C call.)"""
    return "\n".join(line if line.isprintable() else _write_out(line) for line in text.split("\n"))


def _write_out(line: str) -> str:
    return "".join(
        c if c == "\t" or c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        for c in line
    )


def printable(text: str) -> str:
    """Server text made safe for one line of a terminal: control characters (line breaks, escape sequences) become
    visible marks, so a title cannot forge a line or move the cursor. (Most text is printable already: checking that
    is one C call, where marking walks every character.)"""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)
