"""Finding the conversations a notebook started, from its saved outputs: what ``%openhands --reattach`` needs after
a kernel restart, when this process's record (``history()``) is empty.

Every output the magic writes carries the ids in its metadata (``{"openhands": {"conversation_id", "task_id",
"base_url"}}``); outputs written before that are read from their text line. The notebook's file is the one Jupyter
names for the kernel's session (``JPY_SESSION_NAME``, which ipykernel also puts in ``__session__``; VS Code sets
``__vsc_ipynb_file__``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .handle import ConversationHandle

__all__ = ["SavedConversation", "metadata_for", "notebook_path", "saved_conversations"]

_HEX = r"[0-9a-f]{32}"
_LINE = re.compile(rf"OpenHands conversation (?P<id>{_HEX}|\(not created yet\)).*?(?:· start task (?P<task>{_HEX}))?$")


@dataclass(frozen=True)
class SavedConversation:
    conversation_id: str | None
    task_id: str | None
    base_url: str | None

    @property
    def reference(self) -> str:
        return self.conversation_id or self.task_id or ""


def metadata_for(handle: ConversationHandle) -> dict[str, Any]:
    """What an output of this conversation carries, so a saved notebook can be read back."""
    return {"openhands": {"conversation_id": handle.id, "task_id": handle.task_id,
                          "base_url": handle.endpoint.base_url}}


def notebook_path(user_ns: dict[str, Any]) -> Path | None:
    """This kernel's notebook file, when the front end said which one it is."""
    for name in (os.environ.get("JPY_SESSION_NAME"), user_ns.get("__vsc_ipynb_file__"), user_ns.get("__session__")):
        if isinstance(name, str) and name.endswith(".ipynb"):
            path = Path(name)
            for candidate in (path, Path.cwd() / path.name):  # Jupyter names it relative to its root, run in its folder
                if candidate.is_file():
                    return candidate
    return None


def saved_conversations(path: Path) -> list[SavedConversation]:
    """The conversations named in the notebook's outputs, in order, each once."""
    found: dict[str, SavedConversation] = {}
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return []
    for cell in cells:
        for output in cell.get("outputs", []) if isinstance(cell, dict) else []:
            for saved in _from_output(output):
                key = saved.task_id or saved.conversation_id or ""
                if key and (key not in found or saved.conversation_id):
                    found[key] = saved
    return list(found.values())


def _from_output(output: Any) -> list[SavedConversation]:
    if not isinstance(output, dict):
        return []
    meta = (output.get("metadata") or {}).get("openhands")
    if isinstance(meta, dict):
        ids = {k: meta.get(k) if isinstance(meta.get(k), str) else None for k in ("conversation_id", "task_id", "base_url")}
        return [SavedConversation(ids["conversation_id"], ids["task_id"], ids["base_url"])]
    text = (output.get("data") or {}).get("text/plain") or output.get("text") or ""
    lines = "".join(text) if isinstance(text, list) else str(text)
    saved = []
    for line in lines.splitlines():
        match = _LINE.match(line.strip())  # at the start: an agent's answer quoted on a later line is not an id
        if match:
            conversation = match.group("id") if match.group("id") != "(not created yet)" else None
            saved.append(SavedConversation(conversation, match.group("task"), None))
    return saved
