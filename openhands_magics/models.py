"""One model of a conversation, whichever API the server speaks.

OpenHands has two APIs (see ``_protocol``): V1 describes a conversation with a start task's phase, a
``sandbox_status`` and an ``execution_status``; V0 with one ``status`` (plus the agent's state, read from its events).
Each dialect turns its answer into the same immutable :class:`Conversation`, whose ``status`` is one word a person
understands (:class:`ConversationStatus`) and whose raw fields stay beside it for whoever needs them.

The server's schema grows over time, so unknown fields are kept in ``extra`` rather than rejected, and a missing
optional field is ``None`` rather than an error. Secrets the server sends back (``session_api_key``) are dropped
before a model is built: they never reach ``extra``, a repr or a view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotFoundError, ProtocolError

__all__ = [
    "FINAL_STATUSES",
    "SECRET_FIELDS",
    "Change",
    "Conversation",
    "Cost",
    "ConversationStatus",
    "Extra",
    "FileDiff",
    "Outcome",
    "PullRequest",
    "is_final_status",
    "not_found",
    "parse_time",
]


class ConversationStatus:
    """The statuses shown to people. Plain strings, not an Enum: a value this version does not know is shown as it
    is (upper-cased), never a crash of the poller."""

    STARTING = "STARTING"  # the start task (V1) or the runtime (V0) is being set up; ``phase`` says which step
    RUNNING = "RUNNING"  # the agent works
    FINISHED = "FINISHED"  # the agent is done with the task
    WAITING_FOR_INPUT = "WAITING FOR INPUT"  # the agent's turn is over and it waits for a message (V0)
    WAITING_FOR_CONFIRMATION = "WAITING FOR CONFIRMATION"  # the agent asks to confirm an action
    IDLE = "IDLE"  # V1: ready, no run started yet
    PAUSED = "PAUSED"  # paused by the user, or its sandbox was paused (Cloud pauses old ones past 10 running)
    STUCK = "STUCK"  # the agent detected it loops
    ERROR = "ERROR"  # the start or the agent failed; ``phase`` holds the reason when the server gave one
    STOPPED = "STOPPED"  # V0: the server closed the conversation; V1: its sandbox is gone
    ARCHIVED = "ARCHIVED"  # V0
    DELETED = "DELETED"  # deleted from this notebook (the server no longer has it)


#: Final *for watching*: the agent is done or cannot go on without someone, so polling stops and ``--wait`` returns.
#: PAUSED and WAITING FOR CONFIRMATION are not final: the user can go on in the OpenHands app, and the panel shows it.
FINAL_STATUSES: frozenset[str] = frozenset(
    {
        ConversationStatus.FINISHED,
        ConversationStatus.WAITING_FOR_INPUT,
        ConversationStatus.STUCK,
        ConversationStatus.ERROR,
        ConversationStatus.STOPPED,
        ConversationStatus.ARCHIVED,
        ConversationStatus.DELETED,
    }
)

#: Fields of server answers that are secrets (the sandbox's key): dropped on arrival, never stored or shown.
SECRET_FIELDS: frozenset[str] = frozenset({"session_api_key"})


def is_final_status(status: str | None) -> bool:
    return status is not None and status.upper() in FINAL_STATUSES


def parse_time(value: Any, name: str) -> dt.datetime | None:
    """Parse OpenHands' ISO 8601 times; naive ones are UTC (start tasks read back carry no zone)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected an ISO 8601 string.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"The server sent an unreadable {name}: {value[:40]!r}.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ProtocolError(f"The server sent {name} as {type(value).__name__}, expected a string.")


class Extra(Mapping[str, Any]):
    """A read-only mapping of the server's other fields; unlike ``MappingProxyType`` it copies and pickles, so a
    snapshot works with ``copy``, ``dataclasses.asdict`` and ``%store``."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Extra({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Extra, (self._data,))


def shared_fields(body: Mapping[str, Any], *, updated: str) -> dict[str, Any]:
    """The fields both APIs send under the same names, and the last change under the name its API gives it."""
    return {
        "title": optional_str(body.get("title"), "title"),
        "created_at": parse_time(body.get("created_at"), "created_at"),
        "updated_at": parse_time(body.get(updated), updated),
        "selected_repository": optional_str(body.get("selected_repository"), "selected_repository"),
        "trigger": optional_str(body.get("trigger"), "trigger"),
        "git_provider": optional_str(body.get("git_provider"), "git_provider"),
        "pr_numbers": pr_numbers(body.get("pr_number")),
    }


#: The fields :func:`shared_fields` reads (besides the API's name for the last change).
SHARED_FIELDS = frozenset({"title", "created_at", "selected_repository", "trigger", "git_provider", "pr_number"})


def pr_numbers(value: Any) -> tuple[int, ...]:
    """``pr_number`` is a list of ints; anything else in it is ignored (it is a detail, not worth a failed poll)."""
    if not isinstance(value, list):
        return ()
    return tuple(n for n in value if isinstance(n, int) and not isinstance(n, bool) and n > 0)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def cost_from(metrics: Any) -> Cost | None:
    """V1's ``metrics`` (``accumulated_cost``, ``accumulated_token_usage``) as a :class:`Cost`; None when absent.
    Read leniently, like ``pr_number``: a malformed detail must not stop the status from being read."""
    if not isinstance(metrics, Mapping):
        return None
    usd = metrics.get("accumulated_cost")
    usage = metrics.get("accumulated_token_usage")
    usage = usage if isinstance(usage, Mapping) else {}
    return Cost(
        float(usd) if isinstance(usd, (int, float)) and not isinstance(usd, bool) and usd >= 0 else None,
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
    )


def public_fields(payload: Mapping[str, Any], known: frozenset[str] | set[str]) -> Extra:
    """What goes into ``extra``: the fields no dialect reads, minus the secrets."""
    return Extra({k: v for k, v in payload.items() if k not in known and k not in SECRET_FIELDS})


@dataclass(frozen=True)
class Cost:
    """What a conversation cost so far: the server's ``metrics`` (V1), read from every snapshot."""

    usd: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def __str__(self) -> str:
        parts = [] if self.usd is None else [f"${self.usd:,.2f}"]
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        return " · ".join(parts) or "unknown"


@dataclass(frozen=True)
class PullRequest:
    """A pull request the agent opened: its number (from ``pr_number``) and, when the provider is known, its page."""

    number: int
    repository: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        return self.url or f"#{self.number}"


@dataclass(frozen=True)
class Change:
    """One file the agent changed, as the workspace's git sees it: ADDED, UPDATED, DELETED or MOVED."""

    status: str
    path: str


@dataclass(frozen=True)
class FileDiff:
    """One changed file as the server gives it: its text before and after (None: did not exist)."""

    path: str
    original: str | None
    modified: str | None

    def unified(self) -> str:
        """A unified diff (``git diff`` style) of the file."""
        import difflib

        before = (self.original or "").splitlines(keepends=True)
        after = (self.modified or "").splitlines(keepends=True)
        old = f"a/{self.path}" if self.original is not None else "/dev/null"
        new = f"b/{self.path}" if self.modified is not None else "/dev/null"
        lines = difflib.unified_diff(before, after, old, new)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


@dataclass(frozen=True)
class Outcome:
    """What the agent did in its latest turn, read once it is over: its last message and the files it changed.
    A part the server could not give is None, and ``problems`` says why in one line each."""

    answer: str | None = None
    changes: tuple[Change, ...] | None = None
    problems: tuple[str, ...] = ()


_PR_PAGES = {
    "github": "https://github.com/{repo}/pull/{n}",
    "gitlab": "https://gitlab.com/{repo}/-/merge_requests/{n}",
    "bitbucket": "https://bitbucket.org/{repo}/pull-requests/{n}",
}


def pull_requests(numbers: tuple[int, ...], repository: str | None, provider: str | None) -> tuple[PullRequest, ...]:
    """Links built as the OpenHands app builds them: the provider's page for the number in the repository (GitHub
    when the server names none but a repository is set). Self-hosted providers get the number alone."""
    page = _PR_PAGES.get((provider or ("github" if repository else "")).lower())
    return tuple(
        PullRequest(n, repository, page.format(repo=repository, n=n) if page and repository else None) for n in numbers
    )


@dataclass(frozen=True)
class Conversation:
    """One snapshot of a conversation, as the server described it.

    ``conversation_id`` is None while a V1 start task is still preparing it; ``start_task_id`` is None on V0.
    ``status`` is the derived status (:class:`ConversationStatus`); ``phase`` adds the start step ("waiting for
    sandbox") or the reason for an ERROR. The raw status fields of each API are kept as the server sent them.
    """

    conversation_id: str | None
    status: str | None = None
    phase: str | None = None
    title: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    selected_repository: str | None = None
    trigger: str | None = None
    api: str = "v1"
    start_task_id: str | None = None
    #: When the start was asked for (the start task's creation): where the elapsed time begins.
    requested_at: dt.datetime | None = None
    # raw fields, V1
    start_task_status: str | None = None
    sandbox_status: str | None = None
    execution_status: str | None = None
    # raw fields, V0
    server_status: str | None = None
    agent_state: str | None = None
    #: V1: the sandbox it runs in (what pause and resume act on).
    sandbox_id: str | None = None
    git_provider: str | None = None
    #: Numbers of the pull requests the agent opened, in ``selected_repository``.
    pr_numbers: tuple[int, ...] = ()
    cost: Cost | None = None
    extra: Mapping[str, Any] = field(default_factory=Extra, compare=False, repr=False)

    @property
    def id(self) -> str | None:
        return self.conversation_id

    @property
    def is_final(self) -> bool:
        return is_final_status(self.status)

    @property
    def is_started(self) -> bool:
        """Whether the conversation itself exists (its id is known), not just its start task."""
        return self.conversation_id is not None

    @property
    def started_at(self) -> dt.datetime | None:
        """When it began, as far as anyone waiting for it is concerned."""
        return self.requested_at or self.created_at

    @property
    def pull_requests(self) -> tuple[PullRequest, ...]:
        return pull_requests(self.pr_numbers, self.selected_repository, self.git_provider)

    @property
    def status_line(self) -> str:
        """``STARTING · waiting for sandbox``, ``ERROR · no access to the repository``, ``RUNNING``."""
        status = self.status or "?"
        return f"{status} · {self.phase}" if self.phase else status


def not_found(previous: Conversation) -> NotFoundError:
    """The server answered ``null`` for a conversation (or start task) it knew before, or never knew."""
    which = previous.conversation_id or f"start task {previous.start_task_id}"
    return NotFoundError(f"Conversation {which} was not found: check the id and the base URL.")
