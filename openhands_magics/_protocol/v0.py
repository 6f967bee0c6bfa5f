"""The V0 dialect (``/api/conversations``): OpenHands up to 1.6 (deprecated there, removed in 1.7).

Its ``status`` cannot tell "the agent works" from "the agent is done": both are RUNNING until the server closes idle
conversations (an hour by default). The agent's state is only in the conversation's events, so while the status is
RUNNING a read also fetches the latest events and takes the last ``agent_state_changed``; that is what lets
``--wait`` end when the agent finishes instead of an hour later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError, NotFoundError, ProtocolError, UnsupportedApiError, ValidationError
from ..models import (
    SHARED_FIELDS,
    Conversation,
    ConversationStatus,
    Outcome,
    optional_str,
    public_fields,
    shared_fields,
)
from ..validation import is_id, validate_conversation_id, validate_user_conversation_id
from .common import Call, Operation, expect_json, item_path, server_said
from .dialect import Dialect, Page

if TYPE_CHECKING:
    from ..start_options import StartOptions

CONVERSATIONS_PATH = "/api/conversations"
#: Events read back to find the agent's latest state; more than this since its last change means it is busy.
EVENTS_LIMIT = 20

S = ConversationStatus

_AGENT_STATES = {
    "loading": (S.STARTING, "loading agent"),
    "init": (S.STARTING, "loading agent"),
    "running": (S.RUNNING, None),
    "user_confirmed": (S.RUNNING, None),
    "user_rejected": (S.RUNNING, None),
    "rate_limited": (S.RUNNING, "rate limited by the LLM"),
    "awaiting_user_input": (S.WAITING_FOR_INPUT, None),
    "awaiting_user_confirmation": (S.WAITING_FOR_CONFIRMATION, None),
    "paused": (S.PAUSED, None),
    "finished": (S.FINISHED, None),
    "rejected": (S.FINISHED, "the agent declined the task"),
    "stopped": (S.STOPPED, "stopped by the user"),
    "error": (S.ERROR, None),
}
_FIELDS = frozenset({"conversation_id", "status", "last_updated_at", *SHARED_FIELDS})


def derive_status(server_status: str | None, agent_state: str | None) -> tuple[str | None, str | None]:
    """(status, phase): the server's status, refined by the agent's state while the server says RUNNING."""
    status = (server_status or "").upper() or None
    if status == S.RUNNING and agent_state:
        return _AGENT_STATES.get(agent_state.lower(), (agent_state.upper(), None))
    return status, None


def latest_agent_state(events: Any) -> str | None:
    """The newest ``agent_state_changed`` in an events answer read newest first, or None."""
    items = events.get("events") if isinstance(events, Mapping) else None
    for event in items if isinstance(items, list) else ():
        if isinstance(event, Mapping) and event.get("observation") == "agent_state_changed":
            extras = event.get("extras")
            state = extras.get("agent_state") if isinstance(extras, Mapping) else None
            return state if isinstance(state, str) else None
    return None


class V0(Dialect):
    name = "v0"
    batch_size = 1

    def normalize_id(self, reference: str) -> str:
        return validate_user_conversation_id(reference)

    def start(
        self,
        message: str | None,
        repository: str | None,
        conversation_id: str | None = None,
        options: StartOptions | None = None,
    ) -> Operation[Conversation]:
        if message is None:
            raise UnsupportedApiError(
                "This server speaks the V0 API (OpenHands 1.6 or older): it cannot start a conversation that waits for "
                "its files (--upload); describe the data in the message (--context) instead."
            )
        if conversation_id is not None:  # (the session asks dialect.name first: only V1 takes an id)
            raise ValidationError("A V0 server (OpenHands before 1.7) cannot be given the new conversation's id.")
        payload = {"initial_user_msg": message}
        if repository:
            payload["repository"] = repository
        if options:  # (1.6.0 forbids unknown fields with a 422: what it lacks is refused here, before the POST)
            payload.update(options.v0_fields())
        call = Call("POST", CONVERSATIONS_PATH, json=payload, route="start", api=self.name)
        response = yield call
        body = expect_json(response, call, self.base_url, repository=repository)
        if not isinstance(body, Mapping) or not isinstance(body.get("conversation_id"), str):
            raise ProtocolError("The server's answer to the new conversation has no conversation_id.")
        conversation_id = validate_conversation_id(body["conversation_id"])
        if body.get("status", "ok") != "ok":
            said, _ = server_said(response)
            raise BadRequestError(
                f"The server did not start the conversation: {said or body.get('status')} "
                f"(it named id {conversation_id})."
            )
        status = optional_str(body.get("conversation_status"), "conversation_status") or S.STARTING
        return Conversation(
            conversation_id,
            status=status.upper(),
            selected_repository=repository,
            api=self.name,
            server_status=status.upper(),
        )

    def read(self, snapshots: Sequence[Conversation]) -> Operation[list[Conversation | None]]:
        """One request each; an id that is not one (from a saved notebook, the record) is not sent: it reads as
        unknown (None)."""
        results: list[Conversation | None] = []
        for snapshot in snapshots:
            readable = is_id(snapshot.conversation_id)
            results.append((yield from self._read_one(snapshot.conversation_id or "")) if readable else None)
        return results

    def find(self, reference: str) -> Operation[Conversation]:
        ref = self.normalize_id(reference)
        found = yield from self._read_one(ref)
        if found is None:
            raise NotFoundError(f"Conversation {ref} was not found on {self.base_url}: check the id and the base URL.")
        return found

    def search(self, limit: int, page_id: str | None = None) -> Operation[Page]:
        """``GET /api/conversations?limit=&page_id=`` (``results``, newest first). The agent's state is not read
        for each: a listed V0 conversation shows the server's status (RUNNING also when the agent is done)."""
        results, next_page = yield from self._page(CONVERSATIONS_PATH, "results", limit, page_id)
        return Page(tuple(self._snapshot(item, None) for item in results if isinstance(item, Mapping)), next_page)

    def outcome(self, snapshot: Conversation) -> Operation[Outcome]:
        """V0 gives no answer or changes this client reads: nothing to show, and nothing to complain about."""
        return Outcome()
        yield  # (an operation: a generator that sends nothing)

    def _read_one(self, conversation_id: str) -> Operation[Conversation | None]:
        path = item_path(CONVERSATIONS_PATH + "/{}", conversation_id, "conversation id")
        call = Call("GET", path, api=self.name)
        body = expect_json((yield call), call, self.base_url)
        if body is None:  # what OpenHands answers (HTTP 200) for an id it does not know
            return None
        if not isinstance(body, Mapping):
            raise ProtocolError(f"The server sent a {type(body).__name__} where a conversation was expected.")
        if body.get("conversation_id") != conversation_id:
            raise ProtocolError(
                f"Asked for conversation {conversation_id} but the server answered about "
                f"{str(body.get('conversation_id'))[:60]}."
            )
        server_status = optional_str(body.get("status"), "status")
        agent_state = None
        if (server_status or "").upper() == S.RUNNING:
            events = Call(
                "GET", path + "/events", params=(("reverse", "true"), ("limit", str(EVENTS_LIMIT))), api=self.name
            )
            answer = yield events
            if answer.is_success:  # a server without the events route still gets the plain status
                agent_state = latest_agent_state(expect_json(answer, events, self.base_url))
        return self._snapshot(body, agent_state)

    def _snapshot(self, body: Mapping[str, Any], agent_state: str | None) -> Conversation:
        server_status = optional_str(body.get("status"), "status")
        status, phase = derive_status(server_status, agent_state)
        return Conversation(
            conversation_id=validate_conversation_id(str(body.get("conversation_id"))),
            status=status,
            phase=phase,
            **shared_fields(body, updated="last_updated_at"),
            api=self.name,
            server_status=server_status.upper() if server_status else None,
            agent_state=agent_state,
            extra=public_fields(body, _FIELDS),
        )
