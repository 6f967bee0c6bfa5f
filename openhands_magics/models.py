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
import re
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

    QUEUED = "QUEUED"  # --queue: not sent yet, waiting for one of the account's running conversations to end
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

#: Fields of server answers that are secrets (the sandbox's key): never in a model, never shown (the V1 dialect hands
#: the key to ``_protocol.agent`` first, which keeps it in memory for the agent server's header only).
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
        """A unified diff (``git diff`` style) of the file, computed in bounded time whatever the files (see
        :func:`unified_diff`)."""
        before = (self.original or "").splitlines(keepends=True)
        after = (self.modified or "").splitlines(keepends=True)
        old = f"a/{self.path}" if self.original is not None else "/dev/null"
        new = f"b/{self.path}" if self.modified is not None else "/dev/null"
        lines = unified_diff(before, after, old, new)
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# ---------------------------------------------------------------------------------------------------- diffs
#: Up to this many lines in all, the diff is difflib's own (its output, hunk for hunk).
DIFFLIB_LINES = 2_000
#: A stretch between anchors this small (lines before x lines after) is refined with difflib.
GAP_CELLS = 40_000
#: Work allowed per line of input (anchor passes and gap refinements together) before what is left of the files
#: goes into the diff unrefined: whole replaced stretches, still a correct diff, only not the smallest one.
WORK_PER_LINE = 60


def unified_diff(a: list[str], b: list[str], fromfile: str, tofile: str, n: int = 3) -> Iterator[str]:
    """``difflib.unified_diff``'s output, in time bounded by the size of the files.

    difflib's matcher is quadratic on large files that differ in many places (a 30,000-line file with every 7th
    line removed took minutes), and a diff runs in the kernel, which it would freeze. Small files keep difflib's
    own answer. Larger ones are matched as ``git diff --patience`` does: the lines found exactly once on each side
    anchor the match (the longest run of them in the same order), the stretches between anchors are matched the same
    way, and small stretches are refined with difflib; past a budget of work in proportion to the files, what is
    left is shown replaced as a whole."""
    blocks = _matching_blocks(a, b)
    groups = _grouped_opcodes(_opcodes(blocks), n)
    for index, group in enumerate(groups):
        if index == 0:
            yield f"--- {fromfile}\n"
            yield f"+++ {tofile}\n"
        first, last = group[0], group[-1]
        yield f"@@ -{_unified_range(first[1], last[2])} +{_unified_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from (" " + line for line in a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from ("-" + line for line in a[i1:i2])
            if tag in ("replace", "insert"):
                yield from ("+" + line for line in b[j1:j2])


def _unified_range(start: int, stop: int) -> str:
    beginning, length = start + 1, stop - start
    if length == 1:
        return str(beginning)
    return f"{beginning - 1 if not length else beginning},{length}"


def _matching_blocks(a: list[str], b: list[str]) -> list[tuple[int, int, int]]:
    """``(i, j, size)`` runs of equal lines, in order, ending with ``(len(a), len(b), 0)`` as difflib's do."""
    import difflib

    if len(a) + len(b) <= DIFFLIB_LINES:
        matcher = difflib.SequenceMatcher(None, a, b)
        return [(i, j, size) for i, j, size in matcher.get_matching_blocks()]
    budget = WORK_PER_LINE * (len(a) + len(b))
    found: list[tuple[int, int, int]] = []
    regions = [(0, len(a), 0, len(b))]
    while regions:
        alo, ahi, blo, bhi = regions.pop()
        while alo < ahi and blo < bhi and a[alo] == b[blo]:  # the same first lines
            found.append((alo, blo, 1))
            alo, blo = alo + 1, blo + 1
        while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:  # the same last lines
            ahi, bhi = ahi - 1, bhi - 1
            found.append((ahi, bhi, 1))
        if alo == ahi or blo == bhi or budget <= 0:
            continue
        cells = (ahi - alo) * (bhi - blo)
        if cells <= GAP_CELLS:
            budget -= cells
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
            found += [(alo + i, blo + j, size) for i, j, size in matcher.get_matching_blocks() if size]
            continue
        budget -= (ahi - alo) + (bhi - blo)
        anchors = _unique_anchors(a, alo, ahi, b, blo, bhi)
        budget -= len(anchors) * 4
        previous_i, previous_j = alo, blo
        for i, j in anchors:  # the stretches between anchors, matched in their turn
            found.append((i, j, 1))
            regions.append((previous_i, i, previous_j, j))
            previous_i, previous_j = i + 1, j + 1
        if anchors:
            regions.append((previous_i, ahi, previous_j, bhi))
    return _merged(sorted(found)) + [(len(a), len(b), 0)]


def _unique_anchors(a: list[str], alo: int, ahi: int, b: list[str], blo: int, bhi: int) -> list[tuple[int, int]]:
    """The lines found exactly once in ``a[alo:ahi]`` and once in ``b[blo:bhi]``, as ``(i, j)``: the longest chain
    of them in the same order on both sides (patience sorting, n log n)."""
    import bisect

    seen_a: dict[str, int] = {}
    for i in range(alo, ahi):
        seen_a[a[i]] = -1 if a[i] in seen_a else i
    seen_b: dict[str, int] = {}
    for j in range(blo, bhi):
        line = b[j]
        if seen_a.get(line, -1) >= 0:
            seen_b[line] = -1 if line in seen_b else j
    pairs = sorted((seen_a[line], j) for line, j in seen_b.items() if j >= 0)
    tops: list[int] = []  # the smallest j ending a chain of each length
    ends: list[int] = []  # the pair at that end
    back: list[int] = []  # each pair's predecessor in its chain
    for index, (_, j) in enumerate(pairs):
        length = bisect.bisect_left(tops, j)
        if length == len(tops):
            tops.append(j)
            ends.append(index)
        else:
            tops[length], ends[length] = j, index
        back.append(ends[length - 1] if length else -1)
    chain: list[tuple[int, int]] = []
    index = ends[-1] if ends else -1
    while index >= 0:
        chain.append(pairs[index])
        index = back[index]
    return chain[::-1]


def _merged(blocks: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    merged: list[tuple[int, int, int]] = []
    for i, j, size in blocks:
        if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + size)
        else:
            merged.append((i, j, size))
    return merged


def _opcodes(blocks: list[tuple[int, int, int]]) -> list[tuple[str, int, int, int, int]]:
    """difflib's ``get_opcodes``, from matching blocks."""
    i = j = 0
    codes = []
    for ai, bj, size in blocks:
        tag = "replace" if i < ai and j < bj else "delete" if i < ai else "insert" if j < bj else ""
        if tag:
            codes.append((tag, i, ai, j, bj))
        i, j = ai + size, bj + size
        if size:
            codes.append(("equal", ai, i, bj, j))
    return codes


def _grouped_opcodes(codes: list[tuple[str, int, int, int, int]], n: int) -> list[list[tuple[str, int, int, int, int]]]:
    """difflib's ``get_grouped_opcodes``: the changes with ``n`` lines of context, in hunks."""
    codes = codes or [("equal", 0, 1, 0, 1)]
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    groups, group = [], []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > n + n:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


@dataclass(frozen=True)
class Outcome:
    """What the agent did in its latest turn, read once it is over: its last message and the files it changed.
    A part the server could not give is None, and ``problems`` says why in one line each."""

    answer: str | None = None
    changes: tuple[Change, ...] | None = None
    problems: tuple[str, ...] = ()
    #: The structured result (``--returns``), checked; None when none was asked for, or it is missing or invalid.
    result: Any = None
    #: Why the result asked for is not there, in one line (also among ``problems``, so the card shows it).
    result_error: str | None = None
    #: The diff of the changed files (a :class:`~.diffs.Diff`), read with the rest for a conversation shown as a
    #: card of its own with a few files changed, so its final card expands to it; None otherwise.
    diff: Any = None


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


#: The title a V1 conversation has until its real one is made ("Conversation 3c356"): no title, for a person.
PLACEHOLDER_TITLE = re.compile(r"Conversation [0-9a-f]{5}")


def real_title(title: str | None) -> str | None:
    """The server's title, or None while it is only the placeholder the server names every new conversation by."""
    return None if not title or PLACEHOLDER_TITLE.fullmatch(title.strip()) else title


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
    #: The start's options the server did not take (missing from its start task's echo: ``--plan``), right after
    #: the start only (see :func:`~.start_options.ignored`).
    ignored: tuple[str, ...] = field(default=(), compare=False, repr=False)

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
