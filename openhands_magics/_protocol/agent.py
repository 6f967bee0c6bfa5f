"""The agent server's side of a V1 conversation: where it is, its key, and what to send it (sans-IO).

Each V1 conversation runs in an *agent server* (one per sandbox): its live event stream
(``/sockets/events/{id}``) and the controls the app server does not pass on (``interrupt``,
``respond_to_confirmation``, ``agent_final_response``) are there. Its address is the host of the conversation's
``conversation_url`` (which may be a path relative to the app server, when the app server proxies sandboxes), and
its key is the conversation's ``session_api_key``, sent as ``X-Session-API-Key``.

That key is a secret like the API key. It never enters a :class:`~..models.Conversation` (which is shown, recorded
and compared): the dialect hands it here as it reads the answer (:func:`remember`), into an :class:`Access` that
refuses ``repr``, ``str`` and ``pickle``, kept in a bounded map in memory only, keyed by server and conversation.
Whoever needs it (the stream, the agent verbs) asks :func:`access_for` and puts it in a header, nowhere else.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..validation import is_id

__all__ = ["Access", "AgentRequest", "access_for", "forget", "remember", "session_keys"]

#: How many conversations' access is kept (the oldest is forgotten first; it is read again with the conversation).
MAX_ACCESS = 4096
SESSION_HEADER = "X-Session-API-Key"
#: The close codes after which the socket is not tried again: bad key, unknown conversation, too many subscribers.
REFUSED_CODES = {
    4001: "the agent server refused the key",
    4004: "the agent server does not know it",
    1013: "too many listeners",
}

T = TypeVar("T")
_lock = threading.Lock()
_access: OrderedDict[tuple[str, str], Access] = OrderedDict()


class Access:
    """Where one conversation's agent server is (``base``: ``http(s)://host[/prefix]``) and its key. Shows neither
    key nor anything derived from it: ``repr`` names the host only; it cannot be pickled or copied to disk."""

    __slots__ = ("_key", "base", "conversation_id")

    def __init__(self, base: str, key: str, conversation_id: str) -> None:
        self.base = base
        self._key = key
        self.conversation_id = conversation_id

    def reveal(self) -> str:
        """The key itself, for one header."""
        return self._key

    def headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self._key}

    def socket_url(self, after: str | None = None) -> str:
        """``ws(s)://host/sockets/events/{id}?resend_mode=all`` (``since`` and ``after_timestamp`` on a reconnect)."""
        scheme, rest = self.base.split("://", 1)
        ws = {"https": "wss", "http": "ws"}.get(scheme, scheme)
        query = (("resend_mode", "since"), ("after_timestamp", after)) if after else (("resend_mode", "all"),)
        return f"{ws}://{rest}/sockets/events/{self.conversation_id}?{urllib.parse.urlencode(query)}"

    def url(self, tail: str) -> str:
        """An agent-server REST route of this conversation: ``{base}/api/conversations/{id}/{tail}``."""
        return f"{self.base}/api/conversations/{self.conversation_id}/{tail}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Access)
            and (self.base, self.conversation_id) == (other.base, other.conversation_id)
            and self._key == other._key
        )

    def __hash__(self) -> int:
        return hash((self.base, self.conversation_id))

    def __repr__(self) -> str:
        return f"<Access {self.base} (key hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("A conversation's agent-server access holds its session key and cannot be pickled.")

    def __copy__(self) -> Access:
        return self

    def __deepcopy__(self, memo: Any) -> Access:
        return self


def agent_base(conversation_url: Any, app_base: str, conversation_id: str) -> str | None:
    """The agent server's base URL from ``conversation_url`` (``http://host:8001/api/conversations/ID``, or a path
    such as ``/runtime/abc/api/conversations/ID`` on the app server); None when it is none of these."""
    if not isinstance(conversation_url, str) or not conversation_url or not conversation_url.isprintable():
        return None
    joined = urllib.parse.urljoin(app_base.rstrip("/") + "/", conversation_url)
    parts = urllib.parse.urlsplit(joined)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    path = parts.path.rstrip("/")
    marker = "/api/conversations/"
    cut = path.rfind(marker)
    prefix = path[:cut] if cut >= 0 else ""
    if cut < 0 and path not in ("", "/"):
        prefix = path
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def remember(app_base: str, conversation_id: str, item: Mapping[str, Any]) -> None:
    """Keep what a V1 read said about the agent server (``conversation_url``, ``session_api_key``); called by the
    dialect before the key is dropped from everything else. A read without them keeps what was known."""
    key = item.get("session_api_key")
    base = agent_base(item.get("conversation_url"), app_base, conversation_id)
    if not is_id(conversation_id) or base is None:
        return
    access = Access(base, key if isinstance(key, str) and key.isprintable() else "", conversation_id)
    with _lock:
        _access[(app_base, conversation_id)] = access
        _access.move_to_end((app_base, conversation_id))
        while len(_access) > MAX_ACCESS:
            _access.popitem(last=False)


def access_for(app_base: str, conversation_id: str | None) -> Access | None:
    if conversation_id is None:
        return None
    with _lock:
        return _access.get((app_base, conversation_id))


def forget(app_base: str | None = None) -> None:
    """Forget every access (of one server, or all): the keys leave memory."""
    with _lock:
        for k in [k for k in _access if app_base is None or k[0] == app_base]:
            del _access[k]


def session_keys() -> tuple[str, ...]:
    """Every session key known now (for blanking server text: an observation may echo one)."""
    with _lock:
        return tuple(a.reveal() for a in _access.values() if len(a.reveal()) >= 9)


# ---------------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class AgentRequest:
    """One request to an agent server: the driver adds the key's header (never stored here) and moves the bytes."""

    method: str
    url: str
    json: Any = None
    what: str = ""
    #: The query (``path=…`` of the file routes), kept apart from ``url`` so the driver encodes it.
    params: tuple[tuple[str, str], ...] = ()
    #: A file to send as the multipart field ``file``: (file name, bytes) (the upload route).
    upload: tuple[str, bytes] | None = None
    #: Whether the answer is the bytes of a file (at most this many), not JSON; 0: JSON.
    max_bytes: int = 0

    def __repr__(self) -> str:
        return f"AgentRequest({self.method} {self.url})"


def interrupt(access: Access) -> AgentRequest:
    return AgentRequest("POST", access.url("interrupt"), what="interrupt the agent")


def respond_to_confirmation(access: Access, accept: bool, reason: str) -> AgentRequest:
    body: dict[str, Any] = {"accept": bool(accept)}
    if not accept:
        body["reason"] = reason or "Rejected from the notebook."
    return AgentRequest("POST", access.url("events/respond_to_confirmation"), json=body, what="answer the confirmation")


def final_response(access: Access) -> AgentRequest:
    return AgentRequest("GET", access.url("agent_final_response"), what="read the agent's final response")


def read_final_response(body: Any) -> str | None:
    """``{"response": "…"}``; None for an empty or missing one."""
    if isinstance(body, Mapping) and isinstance(body.get("response"), str) and body["response"].strip():
        return str(body["response"])
    return None


def error_for(response: Any, what: str, base: str) -> Exception:
    """The typed error for an agent server's failed answer, saying what was tried and what the server said."""
    from .. import _secrets
    from ..errors import AuthenticationError, BadRequestError, ConflictError, NotFoundError, ServerError
    from .common import server_said

    said, _ = server_said(response)
    said = _secrets.blank(said, known=_secrets.Secrets((*session_keys(), *_secrets.secrets())))
    status = response.status_code
    tail = f" ({said})" if said else ""
    if status in (401, 403):
        return AuthenticationError(f"Could not {what}: the agent server at {base} refused the session key{tail}.")
    if status == 404:
        return NotFoundError(f"Could not {what}: the agent server at {base} does not know the conversation{tail}.")
    if status == 409:
        return ConflictError(f"Could not {what} now{tail}.", status_code=409)
    if status >= 500:
        return ServerError(f"Could not {what}: the agent server at {base} failed with {status}{tail}.")
    return BadRequestError(f"Could not {what}: the agent server at {base} answered {status}{tail}.", status_code=status)


# ---------------------------------------------------------------------------------------------------- the workspace
#: An agent-server operation: a generator that yields requests, is sent their answers (JSON, or the bytes of a
#: file) and returns its value; the driver (:meth:`~..stream.StreamSource.run_agent`) adds the key and moves them.
AgentOperation = Generator[AgentRequest, Any, T]
#: The agent server's own files in a process sandbox's directory, never the agent's work.
AGENT_SERVER_FILES = ("./workspace/conversations", "./workspace/bash_events", "./.openhands-agent-server.log")
#: How many files ``files()`` lists at most (the listing is one command's output).
MAX_LISTED = 1000


def conversation_info(access: Access) -> AgentRequest:
    return AgentRequest("GET", access.url("").rstrip("/"), what="read the agent's workspace")


def run_command(access: Access, command: str, cwd: str | None = None, timeout: int = 60) -> AgentRequest:
    """``POST /api/bash/execute_bash_command``: one shell command in the sandbox, its output once it ended."""
    body: dict[str, Any] = {"command": command, "timeout": timeout}
    if cwd is not None:
        body["cwd"] = cwd
    return AgentRequest("POST", f"{access.base}/api/bash/execute_bash_command", json=body, what="look in the workspace")


def command_output(body: Any, what: str) -> str:
    """A ``BashOutput``'s standard output; a ProtocolError for anything else or a command that failed."""
    from ..errors import ProtocolError

    if not isinstance(body, Mapping) or not isinstance(body.get("stdout", ""), (str, type(None))):
        raise ProtocolError(f"The agent server's answer to {what} is not a command's output.")
    if body.get("exit_code") not in (0, None):
        raise ProtocolError(f"Could not {what}: the command failed with exit code {body.get('exit_code')}.")
    return str(body.get("stdout") or "")


def workspace(access: Access) -> AgentOperation[str]:
    """The absolute path of the agent's workspace: its ``working_dir``, which a process sandbox gives relative
    (``"."``: the agent server's own directory), joined to the agent server's directory (``pwd`` there)."""
    from ..errors import ProtocolError
    from ..files import workspace_path

    info = yield conversation_info(access)
    where = info.get("workspace") if isinstance(info, Mapping) else None
    working_dir = where.get("working_dir") if isinstance(where, Mapping) else None
    if not isinstance(working_dir, str) or not working_dir.isprintable() or "\x00" in working_dir:
        raise ProtocolError("The agent server did not say where the agent's workspace is (no working_dir).")
    if working_dir.startswith("/"):
        return workspace_path(working_dir, ".")
    root = command_output((yield run_command(access, "pwd")), "find the workspace").strip()
    if not root.startswith("/") or "\n" in root:
        raise ProtocolError("The agent server did not say where its directory is.")
    return workspace_path(working_dir, ".", root)


def list_files(access: Access, root: str, since: str | None) -> AgentOperation[tuple[str, ...]]:
    """The files under the workspace ``root`` (relative to it, sorted) written since ``since`` (an ISO time, the
    conversation's start: what the agent made or changed), without ``.git`` directories and the agent server's own
    files; at most :data:`MAX_LISTED`."""
    import shlex

    prune = " -o ".join(f"-path {shlex.quote(p)}" for p in ("*/.git", *AGENT_SERVER_FILES))
    newer = f" -newermt {shlex.quote(since)}" if since else ""
    command = f"find . \\( {prune} \\) -prune -o -type f{newer} -print 2>/dev/null | head -n {MAX_LISTED}"
    out = command_output((yield run_command(access, command, cwd=root)), "list the agent's files")
    paths = {line[2:] for line in out.splitlines() if line.startswith("./") and line[2:].isprintable()}
    return tuple(sorted(paths))


def download(access: Access, path: str, max_bytes: int) -> AgentRequest:
    """``GET /api/file/download?path=ABSOLUTE``: the file's bytes (404 when there is none)."""
    return AgentRequest(
        "GET",
        f"{access.base}/api/file/download",
        params=(("path", path),),
        max_bytes=max_bytes,
        what=f"download {path}",
    )


def upload(access: Access, path: str, data: bytes) -> AgentRequest:
    """``POST /api/file/upload?path=ABSOLUTE`` with the multipart field ``file`` (its folders are made)."""
    return AgentRequest(
        "POST",
        f"{access.base}/api/file/upload",
        params=(("path", path),),
        upload=(path.rsplit("/", 1)[-1], data),
        what=f"upload {path}",
    )
