"""What the agent did, as a person reads it: :class:`Event` (one step) and :class:`Activity` (what a panel shows live).

The agent server describes its work as events (the SDK's ``ActionEvent``, ``ObservationEvent``, ``MessageEvent``,
``ConversationStateUpdateEvent``…), sent on its WebSocket as they happen and kept by the app server's events search.
Both carry the same JSON, so one sans-IO :func:`parse` turns a frame or a search item into an :class:`Event` (None
for what nobody reads: the system prompt, streaming deltas, token logs), and :func:`fold` adds it to an
:class:`Activity`. Neither does I/O: the stream source (:mod:`.stream`) and the events-search fallback feed them.

Server text is hostile until proven otherwise: terminal output holds raw escape sequences (``\\u001b[?2004l``), a
command can print anything, an observation can echo a key. So every text here is *neutral* when it is built: escape
sequences removed, other control characters made visible marks (only ``text`` keeps its line breaks and tabs), every
known secret blanked (:func:`._secrets.blank`, plus the conversation's own session key, which the caller passes in
``known``), and bounded in length. A view escapes it once more where it goes into HTML.

An ``Activity`` is a frozen value, replaced whole on every change: a view compares two of them, and a reader in
another thread never sees half of one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _secrets
from .models import Cost, cost_from

if TYPE_CHECKING:
    import pandas

__all__ = [
    "EMPTY_ACTIVITY",
    "KINDS",
    "Activity",
    "Event",
    "Trajectory",
    "cost_of_stats",
    "fold",
    "neutral_text",
    "parse",
]

#: Every ``Event.kind``.
KINDS = ("command", "edit", "thought", "message", "observation", "error", "status", "finish", "other")
#: How many events ``Activity.recent`` keeps.
RECENT = 5
#: A summary is one line of at most this many characters.
SUMMARY_CHARS = 160
#: ``Event.text`` is cut at this many characters (a 10 MB build log is not a step's text).
TEXT_CHARS = 20_000
#: Execution statuses shown in the feed (the others are the status line's business).
_SHOWN_STATUSES = frozenset({"error", "stuck", "waiting_for_confirmation"})

# ANSI/VT escape sequences: CSI (``ESC [ … final``), OSC (``ESC ] … BEL`` or ``ESC \\``), and two-character ones.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_MARK = "\N{REPLACEMENT CHARACTER}"


@dataclass(frozen=True)
class Event:
    """One thing the agent (or its environment) did, as a person reads it.

    ``summary`` is one neutral line (``$ pytest -q``, ``edited data/load.py``, ``thinking: …``); ``text`` the whole
    text it carried (a command's output, a message, a thought), neutral too but with its line breaks.
    """

    time: dt.datetime | None
    kind: str
    summary: str
    tool: str | None = None
    command: str | None = None
    path: str | None = None
    text: str | None = None
    is_error: bool = False
    id: str | None = None
    #: The server's event kind (``ActionEvent``, ``ObservationEvent``…) and, for an action, its kind
    #: (``TerminalAction``); for an observation, the id of the action it answers.
    source_kind: str | None = None
    action_id: str | None = None
    #: A state update's ``execution_status`` (lower case, as the server spells it), when it carried one.
    status: str | None = None
    #: A state update's live cost and tokens, when it carried them.
    cost: Cost | None = None

    @property
    def is_action(self) -> bool:
        """Whether it is one of the agent's steps (what ``Activity.steps`` counts)."""
        return self.source_kind == "ActionEvent"

    def __str__(self) -> str:
        return self.summary


@dataclass(frozen=True)
class Activity:
    """What the agent is doing, for a live panel: a step count, the last few steps, the live cost, where it comes
    from, one quiet notice (said once), and the action waiting for confirmation, if any."""

    steps: int = 0
    recent: tuple[Event, ...] = ()
    cost: Cost | None = None
    source: str = "polling"
    notice: str | None = None
    pending: Event | None = None
    #: The latest ``execution_status`` an event reported (lower case), and the latest action not yet answered.
    status: str | None = None
    last_action: Event | None = dataclasses.field(default=None, repr=False)
    #: The time of the latest event taken in (a reconnect asks for what came after it).
    last_time: dt.datetime | None = dataclasses.field(default=None, repr=False)
    #: The finish action's message, once it came (the turn's answer, before any other read).
    answer: str | None = None

    def with_source(self, source: str, notice: str | None = None) -> Activity:
        return dataclasses.replace(self, source=source, notice=notice if notice is not None else self.notice)


#: Nothing seen yet.
EMPTY_ACTIVITY = Activity()


# ---------------------------------------------------------------------------------------------------- neutral text
def neutral_text(text: Any, *, known: _secrets.Secrets | None = None, limit: int = TEXT_CHARS) -> str | None:
    """Server text with escape sequences removed, carriage returns and control characters other than line breaks
    and tabs made marks, secrets blanked, cut at ``limit``. None for anything but a string."""
    if not isinstance(text, str):
        return None
    text = _ESCAPES.sub("", text[: limit * 2]).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(c if c in "\n\t" or c.isprintable() else _MARK for c in text)
    text = _secrets.blank(text, known=known) if known is not None else _secrets.blank(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(text: str | None, limit: int = SUMMARY_CHARS) -> str:
    """One line of neutral text: line breaks shown as ⏎, tabs as spaces, runs of spaces squeezed, cut at ``limit``."""
    if not text:
        return ""
    flat = " ⏎ ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    flat = re.sub(r"[ \t]+", " ", flat)
    flat = "".join(c if c.isprintable() else _MARK for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _contents_text(content: Any) -> str | None:
    """The text of a list of content parts (``[{"type": "text", "text": …}]``), or of a plain string."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        return None
    parts = [str(p["text"]) for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)]
    return "\n".join(parts) if parts else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def cost_of_stats(stats: Any) -> Cost | None:
    """The live cost of a ``stats`` state update (``usage_to_metrics``: one set of metrics per LLM the conversation
    used, the agent's and any other's such as the title's), added up; None when it holds none."""
    if not isinstance(stats, Mapping):
        return None
    usage = stats.get("usage_to_metrics")
    if not isinstance(usage, Mapping):
        return None
    costs = [c for c in (cost_from(m) for m in usage.values()) if c is not None]
    if not costs:
        return None

    def total(values: Iterable[float | int | None]) -> Any:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    usd = total(c.usd for c in costs)
    return Cost(
        float(usd) if usd is not None else None,
        total(c.prompt_tokens for c in costs),
        total(c.completion_tokens for c in costs),
    )


# ---------------------------------------------------------------------------------------------------- parse
def parse(frame: Mapping[str, Any], *, known: _secrets.Secrets | None = None) -> Event | None:
    """One WebSocket frame or events-search item as an :class:`Event`; None for what nobody reads (the system
    prompt, streaming deltas, token logs, bookkeeping state updates) or what is not an event at all. Never raises:
    a malformed frame is skipped, not a broken stream. ``known``: the secrets to blank (default: every one the
    package knows; a stream adds its conversation's session key)."""
    if not isinstance(frame, Mapping):
        return None
    if known is None:
        known = _secrets.secrets()
    try:
        return _parse(frame, known)
    except Exception:  # noqa: BLE001 - the server's schema grows; one odd frame must not stop the feed
        return None


def _parse(frame: Mapping[str, Any], known: _secrets.Secrets) -> Event | None:
    kind = frame.get("kind")
    base: dict[str, Any] = {
        "time": _time(frame.get("timestamp")),
        "id": _str(frame.get("id")),
        "source_kind": _str(kind),
    }

    def text(value: Any) -> str | None:
        return neutral_text(value, known=known)

    if kind == "ConversationStateUpdateEvent":
        return _state_update(frame, base)
    if kind == "ActionEvent":
        return _action(frame, base, text)
    if kind == "ObservationEvent":
        return _observation(frame, base, text)
    if kind == "UserRejectObservation":
        reason = text(frame.get("rejection_reason")) or "rejected"
        return Event(
            kind="observation",
            summary=_line(f"rejected: {reason}"),
            tool=text(frame.get("tool_name")),
            text=reason,
            action_id=_str(frame.get("action_id")),
            **base,
        )
    if kind == "AgentErrorEvent":
        error = text(frame.get("error")) or "the agent failed"
        return Event(
            kind="error",
            summary=_line(f"error: {error}"),
            tool=text(frame.get("tool_name")),
            text=error,
            is_error=True,
            action_id=_str(frame.get("action_id")),
            **base,
        )
    if kind == "ConversationErrorEvent":
        detail = text(frame.get("detail")) or ""
        code = text(frame.get("code")) or "error"
        return Event(kind="error", summary=_line(f"error: {code}: {detail}"), text=detail, is_error=True, **base)
    if kind == "MessageEvent":
        message = frame.get("llm_message")
        message = message if isinstance(message, Mapping) else {}
        said = text(_contents_text(message.get("content"))) or ""
        who = "you" if frame.get("source") == "user" else "agent"
        return Event(kind="message", summary=_line(f"{who}: {said}"), text=said, **base)
    if kind == "PauseEvent":
        return Event(kind="status", summary="paused", **base)
    if kind == "InterruptEvent":
        return Event(kind="status", summary="interrupted", **base)
    if kind in ("Condensation", "CondensationSummaryEvent"):
        return Event(kind="other", summary="condensed the history", **base)
    if kind == "HookExecutionEvent":
        return None
    return None  # SystemPromptEvent, TokenEvent, StreamingDeltaEvent, LLMCompletionLogEvent, and the unknown


def _state_update(frame: Mapping[str, Any], base: dict[str, Any]) -> Event | None:
    key, value = frame.get("key"), frame.get("value")
    if key == "execution_status" and isinstance(value, str) and value:
        status = value.lower()
        return Event(kind="status", summary=_line(f"status: {status.replace('_', ' ')}"), status=status, **base)
    if key == "stats":
        cost = cost_of_stats(value)
        return Event(kind="status", summary=f"cost: {cost}", cost=cost, **base) if cost is not None else None
    if key == "full_state" and isinstance(value, Mapping):
        raw = value.get("execution_status")
        now = raw.lower() if isinstance(raw, str) and raw else None
        cost = cost_of_stats(value.get("stats"))
        if now is None and cost is None:
            return None
        summary = _line(f"status: {now.replace('_', ' ')}") if now else f"cost: {cost}"
        return Event(kind="status", summary=summary, status=now, cost=cost, **base)
    return None


#: Where the agent works: a path under it is shown relative to it (as ``conv.changes()`` lists it).
WORKSPACE = "/workspace/project/"


def _relative(path: str) -> str:
    return path[len(WORKSPACE) :] if path.startswith(WORKSPACE) and len(path) > len(WORKSPACE) else path


_EDITS = {"create": "created", "str_replace": "edited", "insert": "edited", "undo_edit": "undid an edit of"}


def _action(frame: Mapping[str, Any], base: dict[str, Any], text: Any) -> Event:
    action = frame.get("action")
    action = action if isinstance(action, Mapping) else {}
    action_kind = _str(action.get("kind")) or ""
    tool = text(frame.get("tool_name"))
    thought = text(_contents_text(frame.get("thought"))) or text(frame.get("reasoning_content"))
    common = {"tool": tool, **base}
    if (
        action_kind in ("TerminalAction", "ExecuteBashAction", "CmdRunAction")
        or "command" in action
        and tool
        in (
            "terminal",
            "execute_bash",
        )
    ):
        command = text(action.get("command")) or ""
        return Event(kind="command", summary=_line(f"$ {command}"), command=command, text=thought, **common)
    if action_kind in ("FileEditorAction", "StrReplaceEditorAction") or tool in ("file_editor", "str_replace_editor"):
        path = text(action.get("path")) or "a file"
        shown = _relative(path)
        verb = action.get("command")
        if verb == "view":
            return Event(
                kind="other", summary=_line(f"viewed {shown}"), path=path, command="view", text=thought, **common
            )
        done = _EDITS.get(verb if isinstance(verb, str) else "", "edited")
        return Event(
            kind="edit", summary=_line(f"{done} {shown}"), path=path, command=text(verb), text=thought, **common
        )
    if action_kind == "ThinkAction":
        said = text(action.get("thought")) or thought or ""
        return Event(kind="thought", summary=_line(f"thinking: {said}"), text=said, **common)
    if action_kind == "FinishAction":
        message = text(action.get("message")) or ""
        return Event(
            kind="finish", summary=_line(f"finished: {message}" if message else "finished"), text=message, **common
        )
    if action_kind == "MessageAction":
        message = text(action.get("content") or action.get("message")) or ""
        return Event(kind="message", summary=_line(f"agent: {message}"), text=message, **common)
    summary = text(frame.get("summary")) or (f"{tool}" if tool else action_kind or "a step")
    return Event(kind="other", summary=_line(summary), text=thought, **common)


def _observation(frame: Mapping[str, Any], base: dict[str, Any], text: Any) -> Event:
    observation = frame.get("observation")
    observation = observation if isinstance(observation, Mapping) else {}
    output = text(_contents_text(observation.get("content"))) or ""
    exit_code = observation.get("exit_code")
    failed = observation.get("is_error") is True or (
        isinstance(exit_code, int) and not isinstance(exit_code, bool) and exit_code not in (0, -1)
    )
    tool = text(frame.get("tool_name"))
    first = _line(output)
    if failed:
        code = f" (exit {exit_code})" if isinstance(exit_code, int) and exit_code not in (0, -1) else ""
        summary = _line(f"failed{code}: {first}" if first else f"failed{code}")
    else:
        summary = _line(f"→ {first}" if first else "→ (no output)")
    return Event(
        kind="observation",
        summary=summary,
        tool=tool,
        command=text(observation.get("command")),
        path=text(observation.get("path")),
        text=output,
        is_error=failed,
        action_id=_str(frame.get("action_id")),
        **base,
    )


# ---------------------------------------------------------------------------------------------------- fold
def worth_showing(event: Event) -> bool:
    """Whether the feed shows it: the agent's steps, its messages, errors and failed outputs, and the statuses a
    person must act on; not every output or cost tick."""
    if event.kind == "status":
        return event.status in _SHOWN_STATUSES or event.summary in ("paused", "interrupted")
    if event.kind == "observation":
        return event.is_error or event.source_kind == "UserRejectObservation"
    return True


def fold(activity: Activity, event: Event | None) -> Activity:
    """``activity`` with ``event`` taken in (the same value when it changes nothing a panel shows)."""
    if event is None:
        return activity
    changes: dict[str, Any] = {}
    if event.time is not None and (activity.last_time is None or event.time > activity.last_time):
        changes["last_time"] = event.time
    if event.cost is not None and event.cost != activity.cost:
        changes["cost"] = event.cost
    status = activity.status
    if event.status is not None:
        status = changes["status"] = event.status
    last_action = activity.last_action
    if event.is_action:
        changes["steps"] = activity.steps + 1
        last_action = changes["last_action"] = event
        if event.kind == "finish":
            changes["answer"] = event.text or None
    elif event.action_id is not None and last_action is not None and event.action_id == last_action.id:
        last_action = changes["last_action"] = None
    if worth_showing(event):
        changes["recent"] = (*activity.recent, event)[-RECENT:]
    pending = last_action if status == "waiting_for_confirmation" else None
    if pending is not activity.pending:
        changes["pending"] = pending
    return dataclasses.replace(activity, **changes) if changes else activity


def fold_all(activity: Activity, events: Iterable[Event | None]) -> Activity:
    for event in events:
        activity = fold(activity, event)
    return activity


# ---------------------------------------------------------------------------------------------------- trajectory
class Trajectory(tuple[Event, ...]):
    """Every event of a conversation, oldest first (what ``conv.events()`` returns); ``.to_dataframe()`` for pandas."""

    __slots__ = ()

    COLUMNS = ("time", "kind", "summary", "tool", "command", "path", "text", "is_error", "id")

    def to_dataframe(self) -> pandas.DataFrame:
        import pandas

        return pandas.DataFrame(
            [{name: getattr(e, name) for name in self.COLUMNS} for e in self], columns=list(self.COLUMNS)
        )

    def __repr__(self) -> str:
        steps = sum(e.is_action for e in self)
        lines = [f"<Trajectory: {len(self)} events, {steps} steps>"]
        lines += [f"  {e.time:%H:%M:%S} {e.summary}" if e.time else f"  {e.summary}" for e in self if worth_showing(e)]
        return "\n".join(lines[:51] + (["  …"] if len(lines) > 51 else []))
