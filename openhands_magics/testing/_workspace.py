"""The agent's workspace on the local agent server: real files in a temporary directory, as a process sandbox has.

The real 1.11.0's process sandbox runs one agent server per sandbox in its own directory
(``/tmp/openhands-sandboxes/<sandbox id>``), and gives the conversation's workspace as ``working_dir: "."``, relative
to it; the file routes want absolute paths. Here one agent server serves every sandbox, so its directory is one
temporary directory and each sandbox's workspace is ``sandboxes/<sandbox id>`` under it: relative too, so a client
finds the absolute path the same way (``pwd`` through the command route, joined with ``working_dir``).

Routes, as the real agent server answers them: ``POST /api/bash/execute_bash_command`` runs the command for real
(``bash -c``, in ``cwd`` or the server's directory) and answers a ``BashOutput``; ``GET /api/file/download?path=``
(absolute: else 400 ``Path must be absolute``; 404 ``File not found``; 400 ``Path is not a file``) the bytes as
``application/octet-stream``; ``POST /api/file/upload?path=`` (multipart field ``file``; parents made) ``{"success":
true}``. Unlike the real one (which reads and writes any path), paths outside the server's directory are answered
404: a test server must not serve the machine's files.

A scripted step that writes a file, as the real fake LLM's steps do in a shell (``printf 'x = 1\\n' > a.py``,
``echo hi > notes.txt``, ``mkdir -p d && printf … > d/f``), writes it in the conversation's workspace when the step
happens (:func:`write_step`); no other command of a step is run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ._fastapi import HttpError
from ._http import RecordedRequest, Reply

#: A command's output is cut at this many characters (the real one sends longer output in several pieces).
MAX_OUTPUT = 100_000


def inside(root: str, path: str) -> str | None:
    """``path`` resolved, if it is ``root`` or under it; else None."""
    real_root, target = os.path.realpath(root), os.path.realpath(path)
    return target if target == real_root or target.startswith(real_root + os.sep) else None


def execute(root: str, request: RecordedRequest) -> Reply:
    """``POST /api/bash/execute_bash_command`` ``{"command", "cwd"?, "timeout"?}``."""
    body = request.body if isinstance(request.body, dict) else {}
    command, cwd, timeout = body.get("command"), body.get("cwd"), body.get("timeout", 300)
    if not isinstance(command, str) or not isinstance(cwd, (str, type(None))) or not isinstance(timeout, int):
        raise HttpError(422, "command must be text, cwd text or null, timeout a whole number")
    where = inside(root, os.path.join(root, cwd or "."))
    if where is None or not os.path.isdir(where):
        raise HttpError(404, "Not Found")
    try:
        done = subprocess.run(
            ["bash", "-c", command], cwd=where, capture_output=True, timeout=min(timeout, 60), check=False
        )
        out, err, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        out, err, code = b"", b"timed out", -1
    return Reply(
        200,
        {
            "id": uuid.uuid4().hex,
            "timestamp": "",
            "command_id": uuid.uuid4().hex,
            "order": 0,
            "exit_code": code,
            "stdout": out.decode(errors="replace")[:MAX_OUTPUT] or None,
            "stderr": err.decode(errors="replace")[:MAX_OUTPUT] or None,
            "kind": "BashOutput",
        },
    )


def _absolute(root: str, request: RecordedRequest) -> str:
    values = request.query.get("path")
    if not values:
        raise HttpError(422, "path is required")
    if not os.path.isabs(values[0]):
        raise HttpError(400, "Path must be absolute")
    target = inside(root, values[0])
    if target is None:
        raise HttpError(404, "File not found")
    return target


def download(root: str, request: RecordedRequest) -> Reply:
    """``GET /api/file/download?path=ABSOLUTE``: the file's bytes."""
    target = _absolute(root, request)
    if not os.path.exists(target):
        raise HttpError(404, "File not found")
    if not os.path.isfile(target):
        raise HttpError(400, "Path is not a file")
    with open(target, "rb") as handle:
        data = handle.read()
    name = os.path.basename(target)
    return Reply(
        200,
        data,
        {"Content-Disposition": f'attachment; filename="{name}"'},
        content_type="application/octet-stream",
    )


def upload(root: str, request: RecordedRequest) -> Reply:
    """``POST /api/file/upload?path=ABSOLUTE`` with the multipart field ``file``."""
    target = _absolute(root, request)
    data = _multipart_file(request)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as handle:
        handle.write(data)
    return Reply(200, {"success": True})


def _multipart_file(request: RecordedRequest) -> bytes:
    kind = request.headers.get("content-type", "")
    if not isinstance(request.body, bytes) or not kind.startswith("multipart/form-data"):
        raise HttpError(422, "file is required (multipart/form-data)")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + request.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    raise HttpError(422, "file is required")


_ESCAPES = re.compile(r"\\(.)")
_PRINTF = {"n": "\n", "t": "\t", "\\": "\\", "'": "'", '"': '"'}


def write_step(workspace: str, command: str) -> None:
    """Write what a step's ``printf … > PATH`` / ``echo … > PATH`` (``mkdir -p`` and ``&&`` between them too)
    would, in ``workspace``; anything else is left alone, as the local agent runs no commands."""
    try:
        words = shlex.split(command)
    except ValueError:
        return
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "&&":
            parts.append([])
        else:
            parts[-1].append(word)
    for part in parts:
        if len(part) >= 2 and part[0] == "mkdir":
            for name in part[1:]:
                folder = None if name.startswith("-") else inside(workspace, os.path.join(workspace, name))
                if folder is not None:
                    os.makedirs(folder, exist_ok=True)
            continue
        if len(part) < 3 or part[-2] != ">" or part[0] not in ("printf", "echo"):
            continue
        words, path = part[1:-2], part[-1]
        if part[0] == "printf":
            text = _ESCAPES.sub(lambda m: _PRINTF.get(m.group(1), m.group(0)), words[0]) if words else ""
        else:
            text = " ".join(words) + "\n"
        target = inside(workspace, os.path.join(workspace, path))
        if target is not None:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(text)


def read_text(root: str, path: Any) -> str:
    """What the app server's ``GET …/{id}/file?file_path=`` gives: the file's text, ``""`` when there is none
    (or it is no UTF-8 text, or outside the workspace)."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return ""
    target = inside(root, path)
    if target is None or not os.path.isfile(target):
        return ""
    try:
        with open(target, "rb") as handle:
            return handle.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""
