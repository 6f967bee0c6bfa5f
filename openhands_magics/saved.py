"""Finding the conversations a notebook started, from its saved outputs: what ``%openhands --reattach`` needs after
a kernel restart, when this process's record (``history()``) is empty.

Every output the magic writes carries the ids in its metadata (``{"openhands": {"conversation_id", "task_id",
"base_url"}}``); outputs written before that are read from their text line. The notebook's file is the one Jupyter
names for the kernel's session (``JPY_SESSION_NAME``, which ipykernel also puts in ``__session__``; VS Code sets
``__vsc_ipynb_file__``).

The file is read as untrusted text: anything in it may be missing, of the wrong type, malformed or hostile (an id
like ``../../api/settings``, a base URL with terminal escapes, JSON nested past the recursion limit). A part that is
not what a notebook holds is skipped; an id that could not be a conversation's is dropped (the others still count);
a file that cannot be read at all is said in one line by the caller (:func:`read_notebook` gives the reason).
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

__all__ = ["SavedConversation", "checked_id", "metadata_for", "notebook_path", "read_notebook", "saved_conversations"]

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
    return {
        "openhands": {"conversation_id": handle.id, "task_id": handle.task_id, "base_url": handle.endpoint.base_url}
    }


def notebook_path(user_ns: dict[str, Any]) -> Path | None:
    """This kernel's notebook file, when the front end said which one it is."""
    for name in (os.environ.get("JPY_SESSION_NAME"), user_ns.get("__vsc_ipynb_file__"), user_ns.get("__session__")):
        if isinstance(name, str) and name.endswith(".ipynb"):
            path = Path(name)
            for candidate in (path, Path.cwd() / path.name):  # Jupyter names it relative to its root, run in its folder
                if candidate.is_file():
                    return candidate
    return None


def checked_id(value: Any) -> str | None:
    """``value`` if it may go into a URL path as an id (validation's check), else None: ids read from a file are
    the file's word, not the server's."""
    from .errors import OpenHandsError
    from .validation import validate_conversation_id

    if value is None:
        return None
    try:
        return validate_conversation_id(value)
    except OpenHandsError:
        return None


def saved_conversations(path: Path) -> list[SavedConversation]:
    """The conversations named in the notebook's outputs, in order, each once (none if the file cannot be read)."""
    return read_notebook(path)[0]


def read_notebook(path: Path) -> tuple[list[SavedConversation], str | None]:
    """The conversations named in the notebook's outputs, and why the file could not be read (None if it could)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        return [], "its JSON is nested too deep"
    except UnicodeDecodeError:
        return [], "it is not UTF-8 text"
    except ValueError:
        return [], "it is not valid JSON"
    except OSError as error:
        return [], f"it could not be opened ({error.strerror or type(error).__name__})"
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        return [], "it has no list of cells"
    found: dict[str, SavedConversation] = {}
    for cell in cells:
        outputs = cell.get("outputs") if isinstance(cell, dict) else None
        for output in outputs if isinstance(outputs, list) else []:
            for saved in _from_output(output):
                key = saved.task_id or saved.conversation_id or ""
                if key and (key not in found or saved.conversation_id):
                    found[key] = saved
    return list(found.values()), None


def _from_output(output: Any) -> list[SavedConversation]:
    if not isinstance(output, dict):
        return []
    metadata = output.get("metadata")
    meta = metadata.get("openhands") if isinstance(metadata, dict) else None
    if isinstance(meta, dict):
        base_url = meta.get("base_url")
        if base_url is not None and not isinstance(base_url, str):  # not ours: whose server it names is unknown
            return []
        conversation, task = checked_id(meta.get("conversation_id")), checked_id(meta.get("task_id"))
        return [SavedConversation(conversation, task, base_url)] if conversation or task else []
    data = output.get("data")
    text = (data.get("text/plain") if isinstance(data, dict) else None) or output.get("text") or ""
    if isinstance(text, list):
        text = "".join(part for part in text if isinstance(part, str))
    if not isinstance(text, str):
        return []
    saved = []
    for line in text.splitlines():
        match = _LINE.match(line.strip())  # at the start: an agent's answer quoted on a later line is not an id
        if match:
            conversation = match.group("id") if match.group("id") != "(not created yet)" else None
            saved.append(SavedConversation(conversation, match.group("task"), None))
    return saved
