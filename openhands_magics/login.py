"""Logging in as OpenHands' own CLI does: the key it keeps (its device-code flow is not here yet).

``openhands login`` (OpenHands-CLI, ``openhands_cli/auth``) keeps the key in ``~/.openhands/cloud/api_key.txt``
(``$OPENHANDS_PERSISTENCE_DIR/cloud/api_key.txt`` when set), mode 0600. Without ``OPENHANDS_API_KEY`` (or a
``--login`` key), that file's key is used, when the file is readable by its owner only: a key others on the machine
could read is refused in one line (``chmod 600 PATH``), and the key is never printed. ``--login --save`` writes the
key there the same way (0600), so the CLI and the notebook share one login.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["cli_key_path", "read_cli_key", "save_cli_key"]

#: What OpenHands' CLI reads to find its directory (``openhands_cli.locations.get_persistence_dir``).
PERSISTENCE_ENV = "OPENHANDS_PERSISTENCE_DIR"


def cli_key_path() -> Path:
    """Where OpenHands' CLI keeps its key."""
    base = os.environ.get(PERSISTENCE_ENV) or os.path.expanduser("~/.openhands")
    return Path(base) / "cloud" / "api_key.txt"


def read_cli_key() -> str | None:
    """The CLI's key, or None when there is no such file (or it is empty). A file others may read is refused."""
    path = cli_key_path()
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        raise ConfigurationError(
            f"OpenHands' CLI key file {path} may be read by others (mode {stat.S_IMODE(mode):04o}): run "
            f"`chmod 600 {path}`, or set OPENHANDS_API_KEY."
        )
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def save_cli_key(key: str) -> Path:
    """Write ``key`` where the CLI keeps it, readable by its owner only (created 0600, never wider for a moment)."""
    path = cli_key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key)
    os.chmod(path, 0o600)
    return path
