"""``--dry-run``: exactly what would be sent and where. Nothing is sent, not even the question of which API the
server speaks, and no key is needed (its table row says it talks to no server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ValidationError
from .compose import compose_message, fan_out_task

if TYPE_CHECKING:
    from ..arguments import Invocation
    from . import Context

#: ``--dry-run --map``: every message up to this many items; past it, the first few and a count.
DRY_RUN_MESSAGES = 5
DRY_RUN_MESSAGES_PAST = 3


def run(context: Context, invocation: Invocation) -> None:
    from .. import context as notebook
    from .._secrets import blank
    from ..client import _detected
    from ..session import with_extras
    from .start import extras
    from ..config import resolve_api, resolve_base_url
    from ..start_options import StartOptions
    from .start import start_keywords
    from ..validation import validate_message, validate_repository

    if invocation.watch is not None or invocation.reattach or invocation.command not in (None, "fix"):
        raise ValidationError("--dry-run shows a task before it is sent: use it with a message, --continue or fix.")
    base_url = resolve_base_url(invocation.base_url or context.settings.base_url)
    api = resolve_api(invocation.api or context.settings.api)
    api = api if api != "auto" else _detected.get(base_url, "auto: asked of the server on the first real call")
    where = f" on {validate_repository(invocation.repo)}" if invocation.repo else ", no repository"
    server = f"  server: {base_url} (API {api})\n"
    org = invocation.org or context.settings.org
    if org:
        server += f"  organisation: {org} (X-Org-Id)\n"
    options = StartOptions.make(**start_keywords(invocation))  # (checked, secrets read: their names shown only)
    server += "".join(f"  {line}\n" for line in options.described())
    if options and api == "v0":
        options.v0_fields()  # (what a V0 server cannot take is refused as the real start would refuse it)
    if invocation.map_over is not None:
        _dry_run_map(context, invocation, where, server)
        return
    task = notebook.last_error_task(context.shell, context.errors) if invocation.command == "fix" else None
    # Blanked as the client blanks what it sends (a key the package knows), so the count is what would be sent.
    message = validate_message(blank(compose_message(context, invocation, task), context.namespace))
    uploads, schema = extras(context, invocation)
    message = with_extras(message, uploads, schema)
    files = "".join(f"  upload: {u.path} ({u.what}, {len(u.data):,} bytes)\n" for u in uploads)
    if invocation.follow_up:
        target = f"a follow-up to {invocation.continue_id or 'the latest conversation'}"
    else:
        target = f"a new conversation{where}"
    print(
        f"openhands: dry run, nothing was sent. Would send {target}\n{server}{files}"
        f"  message ({len(message):,} characters):\n"
        "-----\n" + message + "\n-----"
    )


def _dry_run_map(context: Context, invocation: Invocation, where: str, server: str) -> None:
    """``--dry-run --map``: how many conversations would start, and what each item would send (all of them, or the
    first few and a count), made exactly as the batch makes them."""
    from .._secrets import blank, secrets
    from ..batch import _messages
    from ..validation import validate_message
    from ..views import one_line

    items, task = fan_out_task(context, invocation)
    if not items:
        raise ValidationError(f"--map {invocation.map_over} is empty: nothing would start.")
    known = secrets(context.namespace)
    messages = [validate_message(blank(message, known=known)) for message in _messages(task, items)]
    shown = len(messages) if len(messages) <= DRY_RUN_MESSAGES else DRY_RUN_MESSAGES_PAST
    count = f"{len(messages)} new conversation{'' if len(messages) == 1 else 's'}"
    running = min(int(invocation.max_running or 10), len(messages))
    parts = [
        f"openhands: dry run, nothing was sent. Would start {count}{where}, one per item of "
        f"{invocation.map_over}, at most {running} running at once\n{server}"
    ]
    for number, (item, message) in enumerate(zip(items[:shown], messages), start=1):
        parts.append(
            f"  message {number} of {len(messages)} (item {one_line(repr(item), 60)}, "
            f"{len(message):,} characters):\n-----\n{message}\n-----\n"
        )
    if shown < len(messages):
        parts.append(f"  … and {len(messages) - shown} more messages, one per item (not shown)\n")
    print(blank("".join(parts), known=known), end="")  # an item (or its repr) may hold a key
