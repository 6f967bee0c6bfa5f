"""What the agent of one V1 conversation does, event by event: the one source of its status and of its events.

The real server's truth is the agent server's event log: the app server's ``execution_status``, its
``events/search`` and the agent server's WebSocket all read it. So here each conversation has an :class:`Agent`
that turns the conversation's :class:`~.server.Timeline` (and what the test or the client did: follow-ups,
``interrupt``, ``run``, confirmations, pending messages) into a log of events, as time passes: :func:`catch_up`
walks the agent forward to "now" (the server's clock: a :class:`~.server.ManualClock` moves it in tests) and appends
what became due; an interaction first catches up, then acts at that moment. The log only grows, and what is in it
never changes, so every reader sees the same ids, time stamps and order, and a socket that sent the first ``n``
events sends the rest by index. Events are kept compact (a tag and a few values, see :class:`Event`) and rendered
to the recorded JSON shapes (``recorded/events-1.11.0.jsonl``) when sent: a server may hold thousands of
conversations.

A run, as the real agent (recorded with the fake LLM: 3 terminal steps 1 s apart, then finish): at its start
``execution_status: running`` and a ``stats`` update; each step of ``timeline.steps`` (evenly spread over
``timeline.running``: step *k* of *n* at *k*/(*n*+1) of it) an ``ActionEvent``, its ``ObservationEvent`` and a
``stats`` update stamped just before the action (as the real one is, though sent after); at the end (``running``
after the start) the outcome: ``finished`` (the ``FinishAction``, its observation, the status, ``stats``, a
``full_state`` snapshot), ``error`` (the status, then a ``ConversationErrorEvent``) or ``stuck``. A step is a shell
command (``"pytest -q"``: a ``TerminalAction``; ``echo`` prints its words, anything else prints nothing; the
output is wrapped in the terminal's raw bracketed-paste escapes ``\\x1b[?2004l`` … ``\\x1b[?2004h``, as recorded),
``"edit:PATH"`` (a ``FileEditorAction`` ``str_replace`` of "old line" by "new line" in ``PATH``, relative to the
workspace) or ``"error:TEXT"`` (an ``AgentErrorEvent``: a tool call that failed; the agent goes on). A command
that writes a file (``printf 'a,b\\n1,2\\n' > out.csv``, ``echo … > PATH``) writes it in the workspace, a real
directory (:mod:`._workspace`), when its step happens.

Interactions, as recorded on the real 1.11.0 (``recorded/README.md``): a follow-up with ``run`` during a run
restarts it from the follow-up (the app server's rule: the run then ends ``running`` after it); ``interrupt`` stops
the agent at once (``paused``, ``InterruptEvent``; no observation for what it was doing) and ``run`` goes on where it
stopped, its remaining steps shifted by the pause; with confirmation (``timeline.confirm``, or the per-conversation
``confirmation_policy``) each step's action waits (``waiting_for_confirmation``) until it is accepted (the
observation follows, the run goes on) or rejected (``UserRejectObservation``, status ``idle``: the run is over); a
``FinishAction`` never waits, as in the SDK. Messages queued before READY under ``task-{task id}`` (or the
conversation's id with hyphens) are delivered at READY, right after the first message, in the running run.
Live stats: tokens and cost grow per LLM call (a run's start, each step, its finish) and reach the timeline's
``cost``/``prompt_tokens``/``completion_tokens`` at the end of the first run (when those are zero: 10 prompt and
5 completion tokens a call, as the fake LLM counts); later runs add more.
"""

from __future__ import annotations

import json
import secrets
import uuid
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._fastapi import iso

if TYPE_CHECKING:
    from .server import Conversation

#: Where the agent works: a repository's changes are read at this path, their paths are relative to it.
WORKSPACE = "/workspace/project"
#: Events of one moment are this far apart (seconds), so that their time stamps differ and sort them: more than a
#: microsecond, as a float of today's epoch is only precise to ~0.2 µs and time stamps are rounded to microseconds.
TICK = 1e-5
ENDED = frozenset({"finished", "error", "stuck"})  #: terminal ``execution_status`` values
MODEL = "openai/fake-model"
#: Confirmation policies a conversation can be given (``POST {agent}/api/conversations/{id}/confirmation_policy``).
POLICIES = ("NeverConfirm", "AlwaysConfirm", "ConfirmRisky")
_ESCAPE_OFF, _ESCAPE_ON = "\x1b[?2004l", "\x1b[?2004h"  # bracketed paste, as the agent's terminal prints it


_TAGS = (
    "system_prompt",
    "message",
    "last_user",
    "status",
    "stats",
    "action",
    "observation",
    "reject",
    "finish",
    "finish_observation",
    "agent_error",
    "conversation_error",
    "interrupt",
    "pause",
    "full_state",
    "hook_state",
    "policy",
)
_CODE = {tag: code for code, tag in enumerate(_TAGS)}
_GOLDEN = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd: seed + n * it differs for every n (mod 2**128)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of an agent's log, as read (see :meth:`Agent.event`): ``at`` when it happened (visible from then
    on; epoch seconds of the server's clock), ``stamp`` its ``timestamp``, ``tag`` what it is and ``data`` the value
    its JSON is made of (see :func:`render`). ``full_state`` snapshots are sent live (to the sockets and the app
    server) but not stored by the agent server (not replayed); a ``hook_state`` is the snapshot the app server's
    webhook gets when it subscribes, at READY (only the app server has it)."""

    index: int
    at: float
    tag: str
    stamp: float
    data: Any
    id: str

    @property
    def stored(self) -> bool:
        """In the agent server's store: replayed, and in its own ``events/search``."""
        return self.tag not in ("full_state", "hook_state")

    @property
    def live(self) -> bool:
        """Sent to the sockets open when it happens."""
        return self.tag != "hook_state"


class Agent:
    """The agent of one conversation (see the module docstring); change it only through this module's functions,
    holding the server's lock. Its log is kept in columns (a server holds thousands of conversations: a finished
    one costs well under a kilobyte): when, what, how many ticks its time stamp is off ``at``, and one value; ids
    are derived from a per-conversation seed and the event's place in the log."""

    __slots__ = (
        "_at",
        "_tags",
        "_ticks",
        "_data",
        "seed",
        "caught",
        "status",
        "started",
        "prompted",
        "step",
        "began",
        "halted",
        "waiting",
        "calls",
        "policy",
        "top",
    )

    def __init__(self) -> None:
        self._at = array("d")
        self._tags = bytearray()
        self._ticks = array("i")
        self._data: list[Any] = []
        self.seed = secrets.randbits(128)
        self.caught = float("-inf")  #: walked forward up to this moment
        self.status = "idle"  #: the ``execution_status`` now (the last one in the log)
        self.started = False  #: the start task's READY moment was walked through
        self.prompted = False  #: the system prompt was sent (with the first user message)
        self.step = -1  #: the current run's next beat (0 … len(steps), the last is the end); -1: no run
        self.began = 0.0  #: the current run's zero, moved on by the time it stood still
        self.halted: float | None = None  #: since when the run stands still (paused, waiting for a confirmation)
        self.waiting: int | None = None  #: the log index of the action that waits for confirmation
        self.calls = 0  #: LLM calls so far (what the live stats count)
        self.policy: str | None = None  #: a confirmation policy set for this conversation (``None``: the timeline's)
        self.top = float("-inf")  #: the latest time stamp so far

    @property
    def count(self) -> int:
        """How many events the log holds."""
        return len(self._tags)

    def event(self, index: int) -> Event:
        at = self._at[index]
        return Event(
            index, at, _TAGS[self._tags[index]], at + self._ticks[index] * TICK, self._data[index], self.id(index)
        )

    def events(self, start: int = 0) -> list[Event]:
        """The log from ``start`` on, oldest first."""
        return [self.event(index) for index in range(start, self.count)]

    def id(self, index: int, salt: int = 0) -> str:
        """A uuid4-shaped id, the same every time for this event (``salt``: another id of it: its tool call's)."""
        value = (self.seed + (2 * index + salt + 1) * _GOLDEN) % 2**128
        value = (value & ~(0xF << 76) | 4 << 76) & ~(0x3 << 62) | 0x2 << 62
        return str(uuid.UUID(int=value))

    def hex_id(self, index: int, salt: int, size: int) -> str:
        """``size`` hex digits, the same every time for this event (tool call and LLM response ids)."""
        return self.id(index, salt).replace("-", "")[-size:]

    def append(self, at: float, tag: str, data: Any, stamp: float | None) -> int:
        if stamp is None:
            stamp = at if at > self.top else self.top + TICK
        self.top = max(self.top, stamp)
        self._at.append(at)
        self._tags.append(_CODE[tag])
        self._ticks.append(round((stamp - at) / TICK))
        self._data.append(data)
        return self.count - 1


# ---------------------------------------------------------------------------------------------------- reading
def agent(c: Conversation) -> Agent:
    """The conversation's agent (made on first use)."""
    if c.agent is None:
        c.agent = Agent()
    return c.agent


def catch_up(c: Conversation, now: float) -> Agent:
    """Walk the agent forward to ``now``: everything due by then happens, in order, at its own moment."""
    a = agent(c)
    if now <= a.caught:
        return a
    while True:
        due = next_due(c, a)
        if due is None or due > now:
            break
        _happen(c, a, due)
    a.caught = now
    return a


def _offset(c: Conversation, step: int) -> float:
    """How far into a run its beat ``step`` comes: step *k* of *n* at *k*/(*n*+1) of ``running``, the end at it."""
    n, running = len(c.timeline.steps), c.timeline.running
    return running * (step + 1) / (n + 1) if step < n else running


def next_due(c: Conversation, a: Agent) -> float | None:
    """When the agent does something next by itself (``None``: only when told)."""
    if not a.started:
        return None if c.fails_in else c.ready_at
    if a.status == "running" and a.step >= 0 and a.halted is None:
        return a.began + _offset(c, a.step)
    return None


def status_at(c: Conversation, now: float) -> str:
    """The agent's ``execution_status`` at ``now`` (``idle`` before anything)."""
    a = catch_up(c, now)
    code = _CODE["status"]
    for index in range(a.count - 1, -1, -1):
        if a._tags[index] == code and a._at[index] <= now:
            return str(a._data[index])
    return "idle"


def last_change(c: Conversation, now: float) -> float:
    """When the agent's status last changed by ``now`` (``-inf``: never): the moment the agent server posts the
    conversation to the app server's webhook, which saves it afresh (see ``public`` in :mod:`.v1`)."""
    a = catch_up(c, now)
    code = _CODE["status"]
    return max((a._at[i] for i in range(a.count) if a._tags[i] == code and a._at[i] <= now), default=float("-inf"))


def first_end(c: Conversation, now: float) -> float | None:
    """When a run first ended (finished, error, stuck) by ``now``; None if none has."""
    a = catch_up(c, now)
    code = _CODE["status"]
    return min((a._at[i] for i in range(a.count) if a._tags[i] == code and a._data[i] in ENDED), default=None)


def ended_by(c: Conversation, now: float, delay: float = 0.0) -> bool:
    """Whether a run ended (finished, error, stuck) at least ``delay`` seconds before ``now``."""
    ended = first_end(c, now)
    return ended is not None and ended + delay <= now


def stored(c: Conversation, now: float) -> list[Event]:
    """The events stored by ``now`` (what a replay sends and what is searchable), in the order they happened."""
    a = catch_up(c, now)
    return [e for e in a.events() if e.stored and e.at <= now]


def app_server_events(c: Conversation, now: float) -> list[Event]:
    """Every event the app server's webhook got by ``now`` (snapshots included), in the order they happened."""
    a = catch_up(c, now)
    return [e for e in a.events() if e.at <= now]


def calls_at(c: Conversation, now: float) -> int:
    """How many LLM calls the live stats counted by ``now``."""
    return next((e.data for e in reversed(stored(c, now)) if e.tag == "stats"), 0)


def final_response(c: Conversation, now: float) -> str:
    """``agent_final_response``: the last ``FinishAction``'s message, ``""`` before any."""
    for e in reversed(stored(c, now)):
        if e.tag == "finish":
            return str(e.data)
    return ""


def confirms(c: Conversation, a: Agent) -> bool:
    """Whether the agent waits for a confirmation before each step."""
    if a.policy is not None:
        return a.policy != "NeverConfirm"
    return bool(c.timeline.confirm)


# ---------------------------------------------------------------------------------------------------- interactions
def follow_up(c: Conversation, now: float, text: str, run: bool) -> None:
    """A user message (the app server's ``send-message``, the agent server's ``POST …/events``, a socket frame);
    with ``run`` the agent runs on it from now (a run in progress starts over)."""
    a = catch_up(c, now)
    at = max(now, a.caught)
    _user_message(a, at, text)
    if run:
        _start_run(c, a, at)


def interrupt(c: Conversation, now: float, *, pause: bool = False) -> None:
    """``POST …/interrupt`` (``pause``: ``…/pause``): a running agent stops at once (``paused`` and an
    ``InterruptEvent``, or a ``PauseEvent`` for ``pause``); otherwise it turns ``paused`` with a ``PauseEvent``."""
    a = catch_up(c, now)
    at = max(now, a.caught)
    if a.status == "running":  # as recorded: stats twice, the status, the event, two snapshots
        _emit(a, at, "stats", a.calls)
        _emit(a, at, "stats", a.calls)
        _set_status(a, at, "paused")
        _emit(a, at, "pause" if pause else "interrupt")
        _emit(a, at, "full_state")
        a.halted = at
    else:
        if a.status != "paused":
            _set_status(a, at, "paused")
        _emit(a, at, "pause")
        if a.halted is None and a.step >= 0:
            a.halted = at
    _emit(a, at, "full_state")


def run(c: Conversation, now: float) -> bool:
    """``POST …/run``: a stopped run goes on where it stopped (an action that waited for confirmation is taken as
    accepted); with no run to go on with, the agent runs again. ``False`` if it is running already (the 409)."""
    a = catch_up(c, now)
    at = max(now, a.caught)
    if a.status == "running" and a.halted is None:
        return False
    if a.step >= 0 or a.waiting is not None:
        _resume(c, a, at)
    else:
        _start_run(c, a, at)
    return True


def respond(c: Conversation, now: float, accept: bool, reason: str) -> None:
    """``POST …/events/respond_to_confirmation``: accept (the waiting action runs, the agent goes on) or reject
    (``UserRejectObservation``, status ``idle``: the run is over). Accepting with nothing waiting runs the agent
    unless it runs already; rejecting with nothing waiting does nothing."""
    a = catch_up(c, now)
    at = max(now, a.caught)
    if a.status == "waiting_for_confirmation" and a.waiting is not None:
        if accept:
            _resume(c, a, at)
        else:  # as recorded: the status, then the rejection (the stats and snapshot came when it began to wait)
            action = a.waiting
            _set_status(a, at, "idle")
            _emit(a, at, "reject", (action, reason))
            a.step, a.waiting, a.halted = -1, None, None
    elif accept and not (a.status == "running" and a.halted is None):
        run(c, at)


def set_policy(c: Conversation, now: float, policy: str) -> None:
    """``POST …/confirmation_policy``: confirm each step from now on (or not); a ``confirmation_policy`` update."""
    a = catch_up(c, now)
    a.policy = policy
    _emit(a, max(now, a.caught), "policy", policy)


# ---------------------------------------------------------------------------------------------------- the walk
def _happen(c: Conversation, a: Agent, at: float) -> None:
    if not a.started:
        a.started = True
        _emit(a, at, "hook_state")
        if c.message is not None:
            _user_message(a, at, c.message)
            _start_run(c, a, at)
        for _, text in c.pending:  # queued before READY: delivered now, with ``run``
            _user_message(a, at, text)
            if a.status != "running":
                _start_run(c, a, at)
        return
    step, a.step = a.step, a.step + 1
    if step >= len(c.timeline.steps):
        _end(c, a, at)
    else:
        _step(c, a, at, step)


def _start_run(c: Conversation, a: Agent, at: float) -> None:
    a.step, a.began, a.halted, a.waiting = 0, at, None, None
    _set_status(a, at, "running")
    a.calls += 1
    _emit(a, at, "stats", a.calls)


def _resume(c: Conversation, a: Agent, at: float) -> None:
    if a.halted is not None:
        a.began += at - a.halted
    a.halted = None
    waiting, a.waiting = a.waiting, None
    _set_status(a, at, "running")
    if waiting is not None:
        _emit(a, at, "observation", waiting)


def working_dir(c: Conversation) -> str:
    """The workspace as the agent server names it: relative to its directory, as a process sandbox's ``"."`` is
    (here one agent server serves every sandbox, each in its own sub-directory: see :mod:`._workspace`)."""
    return f"sandboxes/{c.sandbox_id}" if c.workspace else "."


def _step(c: Conversation, a: Agent, at: float, step: int) -> None:
    a.calls += 1
    if c.workspace:  # a step that writes a file (``printf … > PATH``) writes it, as the real agent's shell would
        from ._workspace import write_step

        write_step(c.workspace, c.timeline.steps[step])
    if c.timeline.steps[step].startswith("error:"):
        _emit(a, at, "agent_error", step)
        _emit(a, at, "stats", a.calls, stamp=at - TICK)
        return
    action = _emit(a, at, "action", step)
    if confirms(c, a):  # as recorded: the status, then the run's end publishes stats and a snapshot
        _set_status(a, at, "waiting_for_confirmation")
        _emit(a, at, "stats", a.calls)
        _emit(a, at, "full_state")
        a.waiting, a.halted = action, at
        return
    _emit(a, at, "observation", action)
    _emit(a, at, "stats", a.calls, stamp=a.event(action).stamp - TICK)


def _end(c: Conversation, a: Agent, at: float) -> None:
    outcome = c.timeline.outcome
    a.step = -1
    if outcome == "finished":
        a.calls += 1
        finish = _emit(a, at, "finish", c.results["answer"] if "answer" in c.results else c.timeline.answer)
        _emit(a, at, "finish_observation", finish)
        _set_status(a, at, "finished")
        _emit(a, at, "stats", a.calls, stamp=a.event(finish).stamp - TICK)
    elif outcome == "error":
        _set_status(a, at, "error")
        _emit(a, at, "conversation_error")
    else:
        _set_status(a, at, outcome)
    _emit(a, at, "full_state")


def _user_message(a: Agent, at: float, text: str) -> None:
    if not a.prompted:
        a.prompted = True
        _emit(a, at, "system_prompt")
    _emit(a, at, "last_user", _emit(a, at, "message", text))


def _set_status(a: Agent, at: float, value: str) -> None:
    a.status = value
    _emit(a, at, "status", value)


def _emit(a: Agent, at: float, tag: str, data: Any = None, *, stamp: float | None = None) -> int:
    """Append an event that happened ``at``; its index. Its time stamp is ``at``, or a tick past the latest one so
    far (events of one moment, and of moments closer than their ticks, stamp in order); ``stamp`` gives another."""
    return a.append(at, tag, data, stamp)


# ---------------------------------------------------------------------------------------------------- JSON
def render(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    """An event as the real agent server sends it (``id`` and ``timestamp`` first, ``kind`` last)."""
    head: dict[str, Any] = {"id": e.id, "timestamp": iso(e.stamp, naive=True)}
    return {**head, **_BODIES[e.tag](c, e, now)}


def _system_prompt(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    text = (
        "<ROLE>\nYou are OpenHands agent, a helpful AI assistant that can interact with a computer to solve tasks."
        "\n</ROLE>\n(the local OpenHands server's short system prompt)"
    )
    return {
        "source": "agent",
        "system_prompt": {"cache_prompt": False, "type": "text", "text": text},
        "tools": [_tool(*spec) for spec in _TOOLS],
        "dynamic_context": {
            "cache_prompt": False,
            "type": "text",
            "text": f"<CURRENT_DATETIME>\nThe current date and time is: {iso(e.stamp)}\n</CURRENT_DATETIME>",
        },
        "kind": "SystemPromptEvent",
    }


_TOOLS = (
    ("terminal", "Terminal", True, False, True),
    ("file_editor", "FileEditor", True, False, False),
    ("task_tracker", "TaskTracker", False, True, False),
    ("finish", "Finish", False, True, False),
    ("think", "Think", False, True, False),
    ("switch_llm", "SwitchLLM", False, False, False),
)


def _tool(name: str, kind: str, destructive: bool, idempotent: bool, open_world: bool) -> dict[str, Any]:
    return {
        "description": f"The {name} tool (the local OpenHands server's short description).",
        "action_type": f"{kind}Action",
        "observation_type": f"{kind}Observation",
        "annotations": {
            "title": name,
            "readOnlyHint": name in ("finish", "think"),
            "destructiveHint": destructive,
            "idempotentHint": idempotent,
            "openWorldHint": open_world,
        },
        "kind": f"{kind}Tool",
        "title": name,
    }


def _message(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    llm_message = {
        "role": "user",
        "content": [{"cache_prompt": False, "type": "text", "text": e.data}],
        "thinking_blocks": [],
    }
    return {
        "source": "user",
        "llm_message": llm_message,
        "activated_skills": [],
        "extended_content": [],
        "kind": "MessageEvent",
    }


def _state(key: str, value: Any) -> dict[str, Any]:
    return {"source": "environment", "key": key, "value": value, "kind": "ConversationStateUpdateEvent"}


def usage(c: Conversation, calls: int) -> dict[str, Any]:
    """The agent's metrics after ``calls`` LLM calls (the ``stats`` value's ``usage_to_metrics.agent``)."""
    per_run = len(c.timeline.steps) + 2
    cost = float(c.results.get("cost", c.timeline.cost))
    prompt = int(c.results.get("prompt_tokens", c.timeline.prompt_tokens))
    completion = int(c.results.get("completion_tokens", c.timeline.completion_tokens))
    if prompt == completion == 0:
        prompt, completion = 10 * per_run, 5 * per_run
    return {
        "model_name": MODEL,
        "accumulated_cost": cost * calls / per_run,
        "max_budget_per_task": None,
        "accumulated_token_usage": {
            "model": MODEL,
            "prompt_tokens": round(prompt * calls / per_run),
            "completion_tokens": round(completion * calls / per_run),
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "context_window": 0,
            "per_turn_token": round((prompt + completion) / per_run),
            "response_id": "",
        },
    }


def _stats(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    return _state("stats", {"usage_to_metrics": {"agent": usage(c, e.data)}})


def _action_parts(step: str, number: int) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """(tool name, action, tool call arguments, summary) of a step."""
    if step.startswith("edit:"):
        path = step[len("edit:") :]
        path = path if path.startswith("/") else f"{WORKSPACE}/{path}"
        edit = {"command": "str_replace", "path": path, "old_str": "old line", "new_str": "new line"}
        summary = f"step {number}: edit {path}"
        return "file_editor", {**edit, "kind": "FileEditorAction"}, {**edit, "security_risk": "LOW"}, summary
    summary = f"step {number}: {step}"
    action = {"command": step, "is_input": False, "reset": False, "kind": "TerminalAction"}
    return "terminal", action, {"command": step, "security_risk": "LOW", "summary": summary}, summary


def _call_id(c: Conversation, index: int) -> str:
    return "call_" + agent(c).hex_id(index, 1, 12)


def _action(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    call_id, response_id = _call_id(c, e.index), "chatcmpl-" + agent(c).hex_id(e.index, 2, 12)
    tool, action, arguments, summary = _action_parts(c.timeline.steps[e.data], e.data + 1)
    return {
        "source": "agent",
        "thought": [],
        "thinking_blocks": [],
        "action": action,
        "tool_name": tool,
        "tool_call_id": call_id,
        "tool_call": {"id": call_id, "name": tool, "arguments": json.dumps(arguments), "origin": "completion"},
        "llm_response_id": response_id,
        "security_risk": "LOW",
        "summary": summary,
        "kind": "ActionEvent",
    }


def terminal_output(command: str) -> str:
    """What the agent's terminal shows for a command: ``echo``'s words, nothing for anything else."""
    words = command.split()
    return " ".join(words[1:]) + "\n" if words[:1] == ["echo"] else ""


def _observation(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    action_id, call_id, step = agent(c).id(e.data), _call_id(c, e.data), c.timeline.steps[agent(c).event(e.data).data]
    tool = _action_parts(step, 1)[0]
    if tool == "file_editor":
        path = _action_parts(step, 1)[1]["path"]
        observation: dict[str, Any] = {
            "content": [{"cache_prompt": False, "type": "text", "text": f"The file {path} has been edited."}],
            "is_error": False,
            "command": "str_replace",
            "path": path,
            "prev_exist": True,
            "old_content": "old line\n",
            "new_content": "new line\n",
            "kind": "FileEditorObservation",
        }
    else:
        text = _ESCAPE_OFF + terminal_output(step) + _ESCAPE_ON
        observation = {
            "content": [{"cache_prompt": False, "type": "text", "text": text}],
            "is_error": False,
            "command": step,
            "exit_code": 0,
            "timeout": False,
            "metadata": {
                "exit_code": 0,
                "pid": -1,
                "username": "openhands",
                "hostname": "localhost",
                "working_dir": WORKSPACE,
                "py_interpreter_path": "/usr/bin/python3",
                "prefix": "",
                "suffix": "\n[The command completed with exit code 0.]",
            },
            "full_output_save_dir": f"workspace/conversations/{c.conversation_id}/observations",
            "kind": "TerminalObservation",
        }
    return {
        "source": "environment",
        "tool_name": tool,
        "tool_call_id": call_id,
        "observation": observation,
        "action_id": action_id,
        "extended_content": [],
        "kind": "ObservationEvent",
    }


def _reject(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    action, reason = e.data
    action_id, call_id, step = agent(c).id(action), _call_id(c, action), c.timeline.steps[agent(c).event(action).data]
    return {
        "source": "environment",
        "tool_name": _action_parts(step, 1)[0],
        "tool_call_id": call_id,
        "rejection_reason": reason,
        "rejection_source": "user",
        "action_id": action_id,
        "kind": "UserRejectObservation",
    }


def _finish(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    answer, call_id, response_id = (
        e.data,
        "call_" + agent(c).hex_id(e.index, 1, 24),
        "chatcmpl-" + agent(c).hex_id(e.index, 2, 29),
    )
    arguments = json.dumps({"message": answer})
    return {
        "source": "agent",
        "thought": [],
        "thinking_blocks": [],
        "action": {"message": answer, "kind": "FinishAction"},
        "tool_name": "finish",
        "tool_call_id": call_id,
        "tool_call": {"id": call_id, "name": "finish", "arguments": arguments, "origin": "completion"},
        "llm_response_id": response_id,
        "security_risk": "UNKNOWN",
        "summary": "finish: " + arguments,
        "kind": "ActionEvent",
    }


def _finish_observation(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    a = agent(c)
    action_id, answer, call_id = a.id(e.data), a.event(e.data).data, "call_" + a.hex_id(e.data, 1, 24)
    return {
        "source": "environment",
        "tool_name": "finish",
        "tool_call_id": call_id,
        "observation": {
            "content": [{"cache_prompt": False, "type": "text", "text": answer}],
            "is_error": False,
            "kind": "FinishObservation",
        },
        "action_id": action_id,
        "extended_content": [],
        "kind": "ObservationEvent",
    }


def _agent_error(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    call_id, error = _call_id(c, e.index), c.timeline.steps[e.data][len("error:") :]
    return {
        "source": "agent",
        "tool_name": "terminal",
        "tool_call_id": call_id,
        "error": error,
        "kind": "AgentErrorEvent",
    }


def _conversation_error(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    detail = "The LLM refused the request (the local server's error outcome)"
    return {"source": "environment", "code": "LLMBadRequestError", "detail": detail, "kind": "ConversationErrorEvent"}


def _user_action(kind: str) -> Any:
    return lambda c, e, now: {"source": "user", "kind": kind}


def _full_state_event(c: Conversation, e: Event, now: float) -> dict[str, Any]:
    return _state("full_state", full_state(c, e.at))


def full_state(c: Conversation, at: float) -> dict[str, Any]:
    """The conversation's state at ``at`` (a ``full_state`` update's value; mostly ``GET {agent}/api/conversations/
    {id}`` too): the real one's keys, a short agent."""
    a = catch_up(c, at)
    done = [e for e in a.events() if e.at <= at]
    status = status_at(c, at)
    calls = next((e.data for e in reversed(done) if e.tag == "stats"), 0)
    last_user = next((e.id for e in reversed(done) if e.tag == "message"), None)
    leaf = next((e.id for e in reversed(done) if e.stored and e.tag not in ("stats", "status", "last_user")), None)
    metrics = usage(c, calls)
    policy = a.policy or ("AlwaysConfirm" if c.timeline.confirm else "NeverConfirm")
    return {
        "id": str(uuid.UUID(c.conversation_id)),
        "agent": agent_json(),
        "workspace": {"working_dir": working_dir(c), "kind": "LocalWorkspace"},
        "persistence_dir": f"workspace/conversations/{c.conversation_id}",
        "max_iterations": 30,
        "stuck_detection": True,
        "execution_status": status,
        "confirmation_policy": {"kind": policy},
        "security_analyzer": {"kind": "LLMSecurityAnalyzer"},
        "activated_knowledge_skills": [],
        "activated_path_rules": [],
        "invoked_skills": [],
        "blocked_actions": {},
        "blocked_messages": {},
        "last_user_message_id": last_user,
        "leaf_event_id": leaf,
        "head_is_empty": not done,
        "stats": {"usage_to_metrics": {"agent": {**metrics, "costs": [], "response_latencies": [], "token_usages": []}}}
        if calls
        else {"usage_to_metrics": {}},
        "secret_registry": {"secret_sources": {}},
        "tags": {},
        "agent_state": {},
    }


def agent_json() -> dict[str, Any]:
    """The agent's configuration, as ``full_state`` shows it (its LLM key masked, as the real one does)."""
    return {
        "llm": {
            "model": MODEL,
            "api_key": "**********",
            "auth_type": "api_key",
            "base_url": "http://127.0.0.1:18300/v1",
            "num_retries": 0,
            "timeout": 300,
            "stream": True,
            "native_tool_calling": True,
            "usage_id": "agent",
        },
        "tools": [{"name": name, "params": {}} for name in ("terminal", "file_editor", "task_tracker")],
        "mcp_config": {},
        "include_default_tools": ["FinishTool", "ThinkTool", "SwitchLLMTool"],
        "agent_context": {"skills": [], "secrets": {}},
        "system_prompt_filename": "system_prompt.j2",
        "security_policy_filename": "security_policy.j2",
        "system_prompt_kwargs": {"cli_mode": False, "llm_security_analyzer": True},
        "tool_concurrency_limit": 1,
        "kind": "Agent",
    }


_BODIES: dict[str, Any] = {
    "system_prompt": _system_prompt,
    "message": _message,
    "last_user": lambda c, e, now: _state("last_user_message_id", agent(c).id(e.data)),
    "status": lambda c, e, now: _state("execution_status", e.data),
    "stats": _stats,
    "action": _action,
    "observation": _observation,
    "reject": _reject,
    "finish": _finish,
    "finish_observation": _finish_observation,
    "agent_error": _agent_error,
    "conversation_error": _conversation_error,
    "interrupt": _user_action("InterruptEvent"),
    "pause": _user_action("PauseEvent"),
    "full_state": _full_state_event,
    "hook_state": _full_state_event,
    "policy": lambda c, e, now: _state("confirmation_policy", {"kind": e.data}),
}
