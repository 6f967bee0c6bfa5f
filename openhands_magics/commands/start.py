"""``%openhands MESSAGE``: start a conversation and show it; :func:`present` is how every command that hands back
one conversation (start, fix, ``--watch``, ``--continue``) shows it and, with ``--wait`` or where nobody watches,
waits for it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConcurrencyLimitError, OpenHandsError, WaitTimeout
from ..files import prepare_uploads
from ..results import parse_returns
from ..session import PreparedStart
from ..start_options import StartOptions
from . import say
from .compose import compose_message

if TYPE_CHECKING:
    from ..arguments import Invocation
    from ..handle import ConversationHandle
    from . import Context

log = logging.getLogger("openhands_magics")


def run(context: Context, invocation: Invocation) -> ConversationHandle:
    # The client refuses an empty message or a bad --repo before sending anything; the start's options are checked
    # (and the secrets read from the environment) before the message is made.
    options = StartOptions.make(**start_keywords(invocation))
    uploads, schema = extras(context, invocation)
    ready = prepare(context, invocation, compose_message(context, invocation), uploads, schema, options)
    running = None if invocation.new else context.session.same_task(ready)
    if running is not None:  # the cell ran again while its task runs: the same conversation, not a second bill
        running.set_note("this same task is still running from this notebook: shown again (--new starts another)")
        return present(context, invocation, running)
    if uploads:
        announce(uploads, " once the sandbox is ready")
    handle = start(context, invocation, ready, once=once(context, invocation))
    return present(context, invocation, handle)


def announce(uploads: tuple[Any, ...], when: str = "") -> None:
    """``OpenHands: uploading 2 files (1,234 bytes)…``, before the wait for them."""
    size = sum(len(u.data) for u in uploads)
    plural = "s" * (len(uploads) > 1)
    print(f"OpenHands: uploading {len(uploads)} file{plural} ({size:,} bytes){when}…", flush=True)


def start_keywords(invocation: Invocation) -> dict[str, Any]:
    """The start's options of the magic line, as :meth:`Session.start` and ``map()`` take them."""
    return {
        "branch": invocation.branch,
        "model": invocation.model,
        "plan": invocation.plan,
        "instructions": invocation.instructions,
        "title": invocation.title,
        "share": invocation.share,
        "secrets": invocation.secret,
        "sandbox": invocation.sandbox,
    }


def prepare(
    context: Context,
    invocation: Invocation,
    message: str,
    uploads: tuple[Any, ...] = (),
    schema: Any = None,
    options: StartOptions | None = None,
) -> PreparedStart:
    """The start of ``message`` with the line's options (``options``: made already), checked and made once."""
    return context.session.prepare(
        message,
        invocation.repo,
        endpoint=context.server,
        upload=uploads,
        returns=schema,
        options=options if options is not None else StartOptions.make(**start_keywords(invocation)),
    )


def start(context: Context, invocation: Invocation, ready: PreparedStart, *, once: bool = False) -> ConversationHandle:
    """The session's launch of a prepared start; a start the account has no place for is one line naming the
    conversations that run (with their links) and offering ``--queue``."""
    try:
        return context.session.launch(ready, once=once, new=invocation.new, queue=invocation.queue)
    except ConcurrencyLimitError as error:
        raise ConcurrencyLimitError(full_account(error, context.session.running(context.server))) from None


def full_account(error: ConcurrencyLimitError, running: list[ConversationHandle]) -> str:
    """``Too many conversations running (HTTP 429): ...; running: "Fix the tests" <link>, ...; add --queue ...``"""
    from ..views import one_line

    named = ", ".join(f"{one_line(h.title or h.reference, 40)!r} {h.url or h.reference}" for h in running[:10])
    more = f" and {len(running) - 10} more" if len(running) > 10 else ""
    now = f" Running: {named}{more}." if named else ""
    return (
        f"{error}{now} Add --queue to start this one as soon as one of them ends, or stop one (`%openhands stop ID`)."
    )


def extras(context: Context, invocation: Invocation) -> tuple[tuple[Any, ...], Any]:
    """``--upload`` read from the notebook (every size checked: nothing is sent if one is too large) and the
    ``--returns`` schema."""
    uploads = prepare_uploads(invocation.upload or (), context.namespace) if invocation.upload else ()
    schema = parse_returns(invocation.returns, context.namespace) if invocation.returns else None
    return uploads, schema


def once(context: Context, invocation: Invocation) -> bool:
    """Whether this start runs its task once (``--once``; else ``%config OpenHandsMagics.once``; unset, on where
    nobody watches: papermill and nbconvert re-run whole notebooks)."""
    if invocation.new:
        return False
    if invocation.once:
        return True
    return context.settings.once if context.settings.once is not None else context.headless


def present(context: Context, invocation: Invocation, handle: ConversationHandle) -> ConversationHandle:
    """Show it (it exists on the server and is recorded: every path shows its ids), and wait when asked to.
    ``--max-cost`` becomes its budget guard."""
    if invocation.max_cost is not None:
        handle.max_cost, handle.budget_spent = invocation.max_cost, False
    try:
        context.session.show(handle, panel=not invocation.no_panel)
    except Exception as error:
        log.debug("showing conversation %s failed", handle.reference, exc_info=True)
        task = f" · start task {handle.task_id}" if handle.task_id else ""  # V0 has no start task
        print(
            f"OpenHands conversation {handle.id or '(not created yet)'}{task}: {handle.url or handle.endpoint.base_url}"
        )
        say(
            f"Could not display the panel ({type(error).__name__}: {error}); the conversation is recorded in "
            "openhands_magics.last()."
        )
    if context.shell is not None:
        handle.skip_display_in(context.shell.execution_count)
    if invocation.wait or (context.settings.headless_wait and context.headless):
        _wait(handle, invocation.timeout)
    return handle


def _wait(handle: ConversationHandle, timeout: float | None) -> None:
    from ..views import plain, status_change_line

    print(status_change_line(handle), flush=True)
    try:
        handle.wait(timeout, on_change=lambda h: print(status_change_line(h), flush=True))
        if handle.outcome is not None and handle.outcome.answer:  # a log that ends with what the agent said
            print(f"{handle.reference}: answer: {plain(handle.outcome.answer[:2000])}", flush=True)
    except KeyboardInterrupt:
        say(f"Stopped waiting; {handle.reference} goes on: {handle.url or handle.endpoint.base_url}")
    except WaitTimeout as error:
        say(str(error))
    except OpenHandsError as error:
        say(f"{error} Conversation {handle.reference}: {handle.url or handle.endpoint.base_url}")
