"""Tab completion for ``%openhands`` and ``%%openhands``: options, command words, conversation ids and values.

What is offered comes from the same tables the parser reads (:data:`~.arguments.OPTIONS`,
:data:`~.arguments.COMMANDS`), so completion cannot offer what the magic would refuse: after ``%openhands`` the
command words and the magic's options; after a command word its own options (``list --here``); after a word or an
option that takes a conversation id (``pause``, ``--continue``, ``--watch``), the ids of this kernel's
conversations, newest first; after ``--repo``, the repositories this kernel used and the user's repositories on
the server; after ``--branch``, the branches of the line's ``--repo``; after ``--model``, the server's models; after
``--api``, its values.

Completion runs on the kernel's thread while a person waits at the keyboard: the history is in memory, and the
server's lists come from :mod:`.suggestions`, which answers from a cache per server and waits for the network a
moment at most (the I/O thread fetches; offline, nothing is offered and nothing is said).
"""

from __future__ import annotations

from typing import Any

__all__ = ["complete", "register"]

#: At most this many ids are offered (the newest).
MAX_IDS = 20


def _history() -> list[Any]:
    from . import session

    current = session._session  # noqa: SLF001 - completion must not create a session (and its I/O thread)
    return list(current.history()) if current is not None else []


def _newest(values: Any, most: int | None = None) -> list[str]:
    """The distinct non-empty values, newest first (the history is oldest first), at most ``most``."""
    seen = list(dict.fromkeys(v for v in reversed(list(values)) if v))
    return seen[:most] if most is not None else seen


def _takes_id(word: str) -> bool:
    """Whether a conversation id comes after ``word``: an ``id`` command (``pause``) or an option whose value is an
    id (``--continue``, ``--watch``), as the tables say."""
    from .arguments import COMMANDS, OPTIONS

    return any(c.takes == "id" and c.name == word for c in COMMANDS) or any(
        row.reference and word in row.flags for row in OPTIONS
    )


def _repository_of(words: list[str]) -> str | None:
    """The ``--repo`` value written on the line so far, if any (``--repo R`` or ``--repo=R``)."""
    for i, word in enumerate(words):
        if word == "--repo" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--repo="):
            return word.partition("=")[2] or None
    return None


def complete(line: str, symbol: str) -> list[str]:
    """What may come at ``symbol`` (the word being typed, possibly empty) in the magic ``line`` typed so far."""
    from .arguments import API_VALUES, COMMANDS, OPTIONS
    from .suggestions import suggest

    words = line.split()
    if words and words[0].lstrip("%") == "openhands":
        words = words[1:]
    before = words[:-1] if symbol and words and words[-1] == symbol else words
    previous = before[-1] if before else ""
    command = before[0] if before and any(c.word and c.name == before[0] for c in COMMANDS) else None

    dashed = symbol.startswith("-")
    if not dashed and _takes_id(previous):
        candidates = _newest((h.id or h.task_id for h in _history()), MAX_IDS)
    elif not dashed and previous == "--repo":
        candidates = _newest(h.conversation.selected_repository for h in _history()) + suggest("repo")
    elif not dashed and previous == "--branch":
        candidates = suggest("branch", _repository_of(before))
    elif not dashed and previous == "--model":
        candidates = suggest("model")
    elif not dashed and previous == "--api":
        candidates = list(API_VALUES)
    elif command is not None:
        candidates = [flag for row in OPTIONS if command in row.applies for flag in row.flags]
        if command == "fix":
            candidates += [flag for row in OPTIONS if not row.applies for flag in row.flags]
    else:
        candidates = [flag for row in OPTIONS if not row.applies for flag in row.flags if flag != "--"]
        if not before:
            candidates = [c.name for c in COMMANDS if c.word and c.name != "dry-run"] + candidates
    return [c for c in dict.fromkeys(candidates) if c.startswith(symbol)]


def _line(text: str) -> str | None:
    """The magic line being typed (the text before the cursor on its line), or None when it is no magic line."""
    line = text.splitlines()[-1] if text else ""
    return line if line.lstrip().startswith(("%openhands", "%%openhands")) else None


def _matcher(context: Any) -> dict[str, Any]:
    """IPython's completion API (a "context matcher"): ours alone on a magic line, nothing elsewhere."""
    line = _line(context.line_with_cursor)
    if line is None:
        return {"completions": [], "suppress": False}
    from IPython.core.completer import SimpleCompletion

    symbol = "" if line.endswith((" ", "\t")) else line.split()[-1]
    try:
        offered = complete(line, symbol)
    except Exception:  # noqa: BLE001 - a completion must never show a traceback at the prompt
        offered = []
    return {
        "completions": [SimpleCompletion(text=text, type="openhands") for text in offered],
        "matched_fragment": symbol,
        "suppress": bool(offered),  # (nothing to offer: let IPython offer what it would)
    }


_matcher.matcher_api_version = 2  # type: ignore[attr-defined]  # (what IPython's @context_matcher() sets)
_matcher.matcher_priority = 0  # type: ignore[attr-defined]
_matcher.matcher_identifier = "openhands_magics"  # type: ignore[attr-defined]


def register(shell: Any) -> None:
    """Offer these completions for ``%openhands`` and ``%%openhands`` in ``shell`` (once, however often loaded)."""
    unregister(shell)
    completer = getattr(shell, "Completer", None)
    if completer is not None and hasattr(completer, "custom_matchers"):
        completer.custom_matchers.append(_matcher)


def unregister(shell: Any) -> None:
    """Take them back (``%unload_ext``)."""
    matchers = getattr(getattr(shell, "Completer", None), "custom_matchers", None)
    if matchers is not None:
        matchers[:] = [m for m in matchers if m is not _matcher]
