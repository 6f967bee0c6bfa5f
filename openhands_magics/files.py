"""Data in and out of the agent's workspace, the part with no network: what an upload sends, and what a downloaded
file becomes in Python.

In: ``--upload df,raw.csv`` (``upload=`` in the Python API) names notebook variables and files. A DataFrame goes as
Parquet when pyarrow is installed (types kept), else as CSV; a file goes as it is; ``bytes`` as they are. Each lands
in the workspace under ``data/`` by its own name, and the task tells the agent where (:func:`upload_note`), because
an agent told nothing of them looks for nothing. Sizes are capped before anything is sent: a notebook variable can
be gigabytes, and an upload is slow and billed by the sandbox's disk.

Out: ``conv.read(path)`` gives what a data scientist wants of a file: a DataFrame for CSV, TSV, Parquet and JSON
tables (pandas when installed), an image shown inline, text otherwise, bytes when it is not text.

Paths: the agent's workspace may be given relative (``working_dir: "."`` on a process sandbox) while the agent
server's file routes want absolute paths; :func:`workspace_path` joins them, and refuses a path that leaves the
workspace (``..``, an absolute path elsewhere), so a notebook cannot be made to read ``/etc/passwd`` through it.
"""

from __future__ import annotations

import importlib.util
import io
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError

__all__ = [
    "MAX_DOWNLOAD_BYTES",
    "MAX_UPLOAD_BYTES",
    "Upload",
    "decode_file",
    "prepare_uploads",
    "upload_note",
    "workspace_path",
]

#: One upload, and all of one call's uploads together, at most this many bytes.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: A downloaded file at most this many bytes (``conv.download`` refuses more, saying so).
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
#: Where uploads land, relative to the workspace.
UPLOAD_DIR = "data"
_TABLES = {".csv": ",", ".tsv": "\t"}
_IMAGES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".svg": "svg+xml", ".webp": "webp"}


@dataclass(frozen=True)
class Upload:
    """One thing to put in the workspace: where (relative to it), its bytes, and what it was (for the message)."""

    path: str
    data: bytes
    what: str

    def __repr__(self) -> str:  # (the bytes may be large: never in a repr)
        return f"Upload({self.path!r}, {len(self.data):,} bytes, {self.what})"


def _is_dataframe(value: object) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_csv")


def _dataframe_bytes(name: str, frame: Any) -> tuple[str, bytes, str]:
    rows, columns = getattr(frame, "shape", (0, 0))
    if importlib.util.find_spec("pyarrow") is not None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return f"{name}.parquet", buffer.getvalue(), f"DataFrame {rows}×{columns}, Parquet"
    return f"{name}.csv", frame.to_csv(index=False).encode(), f"DataFrame {rows}×{columns}, CSV"


def _safe_name(name: str) -> str:
    base = os.path.basename(name.strip())
    if not base or base in (".", "..") or base.startswith(".") and len(base.strip(".")) == 0:
        raise ValidationError(f"--upload: {name!r} is no file name.")
    return base


def prepare_uploads(names: Iterable[str | Any], namespace: Mapping[str, Any] | None = None) -> tuple[Upload, ...]:
    """What ``--upload a,b`` (or ``upload=[...]``) sends: each name a notebook variable (a DataFrame, ``bytes`` or
    ``str`` text) or a file path; a value given directly (Python API) a DataFrame or ``bytes`` is named by its
    position. One ValidationError line for anything that cannot be sent, before anything is."""
    uploads: list[Upload] = []
    total = 0
    for index, item in enumerate(names):
        if (
            isinstance(item, str)
            and namespace is not None
            and item.strip().isidentifier()
            and item.strip() in namespace
        ):
            name, value = item.strip(), namespace[item.strip()]
        elif isinstance(item, (str, os.PathLike)):
            path = os.fspath(item).strip()
            if not os.path.isfile(path):
                raise ValidationError(f"--upload: {path!r} is neither a notebook variable nor a file.")
            size = os.path.getsize(path)
            if size > MAX_UPLOAD_BYTES:
                raise ValidationError(
                    f"--upload: {path!r} is {size / 1e6:.0f} MB; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB."
                )
            with open(path, "rb") as handle:
                data = handle.read()
            uploads.append(Upload(posixpath.join(UPLOAD_DIR, _safe_name(path)), data, f"file, {len(data):,} bytes"))
            total += len(data)
            continue
        else:
            name, value = f"upload_{index + 1}", item
        if _is_dataframe(value):
            filename, data, what = _dataframe_bytes(name, value)
        elif isinstance(value, (bytes, bytearray)):
            filename, data, what = name, bytes(value), f"{len(value):,} bytes"
        elif isinstance(value, str):
            filename, data, what = f"{name}.txt", value.encode(), f"text, {len(value):,} characters"
        else:
            raise ValidationError(
                f"--upload: {name} is a {type(value).__name__}; a DataFrame, bytes, text or a file path can be sent."
            )
        if len(data) > MAX_UPLOAD_BYTES:
            raise ValidationError(
                f"--upload: {name} is {len(data) / 1e6:.0f} MB once written; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB."
            )
        uploads.append(Upload(posixpath.join(UPLOAD_DIR, _safe_name(filename)), data, what))
        total += len(data)
    if total > MAX_UPLOAD_BYTES:
        raise ValidationError(f"--upload: {total / 1e6:.0f} MB in all; at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB.")
    paths = [u.path for u in uploads]
    if len(set(paths)) != len(paths):
        raise ValidationError("--upload: two uploads would have the same name: " + ", ".join(sorted(paths)))
    return tuple(uploads)


def upload_note(uploads: Iterable[Upload]) -> str:
    """The lines appended to the task that tell the agent where its files are."""
    lines = [f"- {u.path} ({u.what})" for u in uploads]
    return "Files for this task are in the workspace:\n" + "\n".join(lines) if lines else ""


def workspace_path(working_dir: str, path: str, root: str = "/") -> str:
    """The absolute path of ``path`` (relative to the workspace, or absolute inside it) in the workspace
    ``working_dir`` (absolute, or relative to ``root``: the agent server's directory). Refused (ValidationError)
    when it would leave the workspace."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ValidationError("A file path in the workspace is needed, e.g. 'data/clean.csv'.")
    workspace = posixpath.normpath(posixpath.join(root, working_dir or "."))
    target = posixpath.normpath(posixpath.join(workspace, path.strip()))
    if target != workspace and not target.startswith(workspace.rstrip("/") + "/"):
        raise ValidationError(f"{path!r} is outside the agent's workspace ({workspace}); give a path inside it.")
    return target


class SvgImage:
    """An SVG the agent wrote, shown as an ``<img>`` of it: an SVG put in the page as markup could run its scripts,
    an image cannot. ``.data`` is its bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _repr_html_(self) -> str:
        import base64

        return f'<img alt="SVG image" src="data:image/svg+xml;base64,{base64.b64encode(self.data).decode()}">'

    def __repr__(self) -> str:
        return f"<SvgImage {len(self.data):,} bytes>"


def decode_file(path: str, data: bytes) -> Any:
    """What a downloaded file is in Python: a DataFrame for a CSV/TSV/Parquet/JSON table (pandas installed), an
    image (``IPython.display.Image``, shown inline) for PNG/JPEG/GIF/WebP, an :class:`SvgImage` for SVG, text when
    it decodes as UTF-8, else the bytes."""
    extension = posixpath.splitext(path.lower())[1]
    if extension == ".svg":
        return SvgImage(data)
    if extension in _IMAGES:
        from IPython.display import Image

        return Image(data=data, format=_IMAGES[extension])
    if extension in (*_TABLES, ".parquet", ".json", ".jsonl"):
        try:
            import pandas as pd
        except ImportError:
            pd = None
        if pd is not None:
            try:
                if extension in _TABLES:
                    return pd.read_csv(io.BytesIO(data), sep=_TABLES[extension])
                if extension == ".parquet":
                    return pd.read_parquet(io.BytesIO(data))
                return pd.read_json(io.BytesIO(data), lines=extension == ".jsonl")
            except ImportError:  # Parquet without pyarrow: bytes, below
                pass
            except ValueError:  # JSON that is not a table (an object, a scalar): as text, below
                pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data
