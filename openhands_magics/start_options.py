"""What a start may ask for besides the message and the repository, as the web app offers it: a branch, a model,
the planning agent, instructions added to the agent's system message, a title, a share link, secrets, a warm
sandbox. One checked value (:class:`StartOptions`), made by :meth:`StartOptions.make` from the magic's options or
the Python API's keywords, so every way in is refused the same way (one line per bad value, before anything is
sent), and turned into request fields by each dialect (:meth:`v1_fields`, :meth:`v0_fields`).

Unknown fields are silently dropped by the server (pydantic ignores them), so a setting an older server does not
know is lost without a word: the V1 start task echoes the request it understood, and :func:`ignored` names the
options missing from that echo (the session says so once per server).

A secret's value is read from the environment variable it is named after (``--secret GITHUB_TOKEN``) when the
start is made, held by a :class:`Secret` (which, like the API key, refuses ``repr``, ``str`` and ``pickle``, and is
blanked wherever text is shown), and revealed only into the request body. Its name is all anything else shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import _secrets
from .errors import ValidationError
from .validation import validate_message

__all__ = ["Secret", "StartOptions", "check_secret_names", "ignored", "read_instructions"]

#: A git branch name: what ``git check-ref-format --branch`` takes, minus the rare corners (no spaces, no ``..``,
#: none of ``~^:?*[\``, not starting with ``-`` or ending with ``/``, ``.`` or ``.lock``).
_BRANCH = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]{1,250}(?<![/.])(?<!\.lock)")
#: A model as the server names it (``anthropic/claude-sonnet-4-5``, ``litellm_proxy/gpt-5@2025``).
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}")
#: A sandbox or organisation id: the server's ids are UUIDs or short words of these characters.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_TITLE = 200
MAX_INSTRUCTIONS = 50_000
#: The real server's field of each option (V1), in the order the dry run shows them.
V1_FIELDS = {
    "branch": "selected_branch",
    "model": "llm_model",
    "plan": "agent_type",
    "instructions": "system_message_suffix",
    "title": "title",
    "share": "public",
    "secrets": "secrets",
    "sandbox": "sandbox_id",
}
#: The option each field comes from, as the magic spells it (for the lines that name one).
FLAGS = {
    "branch": "--branch",
    "model": "--model",
    "plan": "--plan",
    "instructions": "--instructions",
    "title": "--title",
    "share": "--share",
    "secrets": "--secret",
    "sandbox": "--sandbox",
}


class Secret:
    """One start secret: its name, and its value that never shows (``reveal()`` only for the request body)."""

    __slots__ = ("__value", "name")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.__value = value
        _secrets.remember(self)  # blanked from now on wherever text is shown (an echo, an error, the feed)

    def reveal(self) -> str:
        return self.__value

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, '********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and (other.name, other.__value) == (self.name, self.__value)

    def __hash__(self) -> int:
        return hash((self.name, self.__value))

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("A Secret cannot be pickled; it is kept in memory only.")


@dataclass(frozen=True)
class StartOptions:
    """The start's settings beyond the message and repository; the defaults ask for nothing (the server's own)."""

    branch: str | None = None
    model: str | None = None
    plan: bool = False
    instructions: str | None = None
    title: str | None = None
    share: bool = False
    secrets: tuple[Secret, ...] = field(default=(), repr=False)
    sandbox: str | None = None

    @classmethod
    def make(
        cls,
        *,
        branch: Any = None,
        model: Any = None,
        plan: Any = False,
        instructions: Any = None,
        title: Any = None,
        share: Any = False,
        secrets: Any = None,
        sandbox: Any = None,
    ) -> StartOptions:
        """Check every value (one :class:`ValidationError` line naming the first bad one); ``secrets``: names of
        environment variables (``["GITHUB_TOKEN"]``, or ``"A,B"``), or a mapping of name to value."""
        for name, value in (("plan", plan), ("share", share)):
            if not isinstance(value, bool):
                raise ValidationError(f"{name} must be True or False, got {type(value).__name__}.")
        return cls(
            branch=_checked(branch, "--branch", _BRANCH, "a git branch name (e.g. main, feature/login)"),
            model=_checked(model, "--model", _MODEL, "a model name as the server lists it (e.g. anthropic/claude)"),
            plan=plan,
            instructions=_instructions(instructions),
            title=_title(title),
            share=share,
            secrets=_read_secrets(secrets),
            sandbox=_checked(sandbox, "--sandbox", _PLAIN_ID, "a sandbox id (letters, digits, - and _)"),
        )

    def __bool__(self) -> bool:
        return self != _NOTHING_ASKED

    def given(self) -> list[str]:
        """The options set, by their attribute names, in the table's order."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, False, ())]

    def v1_fields(self) -> dict[str, Any]:
        """The start request's fields (V1, OpenHands 1.7 and later, Cloud): the secrets' values revealed here only."""
        body: dict[str, Any] = {}
        for name in self.given():
            value = getattr(self, name)
            if name == "plan":
                value = "plan"
            elif name == "secrets":
                value = {secret.name: secret.reveal() for secret in self.secrets}
            body[V1_FIELDS[name]] = value
        return body

    def v0_fields(self) -> dict[str, Any]:
        """The fields a V0 server (OpenHands 1.6) takes: the branch and the instructions
        (``conversation_instructions``). It refuses any other field (422), so those are refused here, in one line."""
        others = [FLAGS[name] for name in self.given() if name not in ("branch", "instructions")]
        if others:
            raise ValidationError(
                f"{', '.join(others)} need{'s' if len(others) == 1 else ''} OpenHands 1.7 or later (the V1 API); this "
                "server speaks V0 (it takes --branch and --instructions only); nothing was sent."
            )
        body: dict[str, Any] = {}
        if self.branch:
            body["selected_branch"] = self.branch
        if self.instructions:
            body["conversation_instructions"] = self.instructions
        return body

    def described(self) -> list[str]:
        """What the dry run shows, one line each: every value but the secrets', which are named only."""
        lines = []
        for name in self.given():
            value = getattr(self, name)
            if name == "plan":
                lines.append("agent: plan (a planning agent that writes a plan first)")
            elif name == "share":
                lines.append("shared: yes (public, with a share link /shared/conversations/ID)")
            elif name == "secrets":
                names = ", ".join(secret.name for secret in value)
                lines.append(f"secrets: {names} (values from the environment, not shown)")
            elif name == "instructions":
                lines.append(f"instructions ({len(value):,} characters, added to the system message):")
                lines += [f"  | {line}" for line in value.splitlines()[:20]]
                if len(value.splitlines()) > 20:
                    lines.append(f"  | … {len(value.splitlines()) - 20} more lines")
            else:
                lines.append(f"{name}: {value}")
        return lines

    def once_parts(self) -> list[tuple[str, str | None]]:
        """What makes a task another task for ``--once`` (never a secret's value: a re-run with a new token is
        the same task)."""
        parts: list[tuple[str, str | None]] = []
        for name in self.given():
            value = getattr(self, name)
            if name == "secrets":
                value = ",".join(secret.name for secret in value)
            parts.append((name, str(value)))
        return parts


#: The options of a start that asks for nothing (what ``bool()`` compares with).
_NOTHING_ASKED = StartOptions()


def ignored(options: StartOptions, echoed: Any) -> list[str]:
    """The options the server did not take: their field is missing from the request its start task echoes (the
    server drops fields it does not know). Nothing when there is no echo to tell by."""
    if not isinstance(echoed, Mapping):
        return []
    return [FLAGS[name] for name in options.given() if V1_FIELDS[name] not in echoed]


def read_instructions(value: str) -> str:
    """``--instructions TEXT`` or ``--instructions @FILE`` (UTF-8 text, relative to the working directory)."""
    if not value.startswith("@"):
        return value
    path = os.path.expanduser(value[1:])
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_INSTRUCTIONS + 1)
    except FileNotFoundError:
        raise ValidationError(f"--instructions @{value[1:]}: no such file; give a path to a text file.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = (
            type(error).__name__ if isinstance(error, UnicodeDecodeError) else error.strerror or type(error).__name__
        )
        raise ValidationError(f"--instructions @{value[1:]}: cannot read it as UTF-8 text ({reason}).") from None
    return text


# ---------------------------------------------------------------------------------------------------- checks
def _checked(value: Any, flag: str, pattern: re.Pattern[str], what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value.strip()):
        shown = _secrets.blank(repr(value)[:60]) if isinstance(value, str) else type(value).__name__
        raise ValidationError(f"{flag} takes {what}, got {shown}.")
    return value.strip()


def _title(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("--title takes a non-empty line of text.")
    value = value.strip()
    if any(not c.isprintable() for c in value):
        raise ValidationError("--title takes one line of text (no line breaks or control characters).")
    if len(value) > MAX_TITLE:
        raise ValidationError(f"--title takes at most {MAX_TITLE} characters, got {len(value)}.")
    return value


def _instructions(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"instructions must be text, got {type(value).__name__}.")
    if len(value) > MAX_INSTRUCTIONS:
        raise ValidationError(f"--instructions takes at most {MAX_INSTRUCTIONS:,} characters, got {len(value):,}.")
    try:
        return validate_message(value)
    except ValidationError as error:
        raise ValidationError(f"--instructions: {str(error).replace('The message', 'the text')}") from None


def check_secret_names(value: Any) -> tuple[str, ...]:
    """Names of environment variables: ``"A,B"`` or a list of them, each once."""
    listed: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    try:
        names = [n.strip() if isinstance(n, str) else n for n in listed]
    except TypeError:
        raise ValidationError(f"secrets takes names of environment variables, got {type(value).__name__}.") from None
    for number, name in enumerate(names):
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            shown = repr(name)[:40] if isinstance(name, str) else type(name).__name__
            raise ValidationError(f"--secret takes names of environment variables (e.g. GITHUB_TOKEN), got {shown}.")
        if name in names[:number]:
            raise ValidationError(f"--secret {name} was given twice.")
    return tuple(names)


def _read_secrets(value: Any) -> tuple[Secret, ...]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        pairs = list(value.items())
        for name, secret in pairs:
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                raise ValidationError(
                    f"A secret's name must look like GITHUB_TOKEN, got {_secrets.blank(repr(name))[:40]}."
                )
            if not isinstance(secret, str) or not secret:
                raise ValidationError(f"The secret {name} has no value (it must be non-empty text).")
        return tuple(Secret(name, secret) for name, secret in pairs)
    found: list[Secret] = []
    for name in check_secret_names(value):
        secret = os.environ.get(name)
        if not secret:
            raise ValidationError(
                f"--secret {name}: no environment variable {name} is set (set it with %env {name}=... or in the "
                "shell that started Jupyter); nothing was sent."
            )
        found.append(Secret(name, secret))
    return tuple(found)
