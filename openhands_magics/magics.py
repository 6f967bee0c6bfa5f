"""``%openhands`` / ``%%openhands``: start or watch a conversation from a notebook without blocking the kernel.

This module is what ``%load_ext`` imports, so it imports only IPython and traitlets (already loaded in any
IPython); httpx and ipywidgets are imported on first use.
"""

from __future__ import annotations

import getpass
import logging
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, TraitError, Unicode, validate

from . import commands
from .arguments import USAGE, Invocation, parse_invocation, resolve_references
from .config import API_CHOICES, MIN_INTERVAL, REMOTE_MIN_INTERVAL
from .errors import OpenHandsError, WaitTimeout

if TYPE_CHECKING:
    from .handle import ConversationHandle
    from .polling import PollSchedule
    from .session import Endpoint

__all__ = ["OpenHandsMagics"]

log = logging.getLogger("openhands_magics")


def _say(line: str) -> None:
    """One line to stderr: how every error reaches the user, never as a traceback (made safe for a terminal by
    :func:`commands.say`, as every line the commands print)."""
    commands.say(line)


def _headless(shell: Any) -> bool:
    """Run by nbconvert --execute or papermill: their kernel client (nbclient) sends every cell with
    ``allow_stdin=False``, where JupyterLab, Notebook and VS Code allow input."""
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and getattr(kernel, "_allow_stdin", True) is False


@magics_class
class OpenHandsMagics(Magics):
    """Configure with ``%config OpenHandsMagics.<name> = value`` or in ``ipython_config.py``.

    A thin front: it parses the line, calls the process's :class:`~openhands_magics.session.Session` and displays
    the result. The API key is deliberately not a trait: config values are printed by ``%config`` and saved in files.
    """

    _refused: list[tuple[str, Any]]
    _cleanup_registered = False

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self._refused = []  # (before the config is loaded: loading it may refuse values)
        self._errors: Any = None
        super().__init__(shell, **kwargs)
        if shell is not None:  # the errors of the cells run from now on, for `%openhands fix` and `--cells N`
            shell.events.register("post_run_cell", self._record_error)

    @property
    def errors(self) -> Any:
        """The :class:`~openhands_magics.context.ErrorLog` (made, and its module imported, on the first error)."""
        if self._errors is None:
            from .context import ErrorLog

            self._errors = ErrorLog()
        return self._errors

    def _record_error(self, result: Any) -> None:
        if result is not None and (getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)):
            self.errors._after(result)

    base_url = Unicode(
        None,
        allow_none=True,
        help="OpenHands server; default: $OPENHANDS_BASE_URL, else https://app.all-hands.dev",
    ).tag(config=True)
    api = Unicode(
        None,
        allow_none=True,
        help="OpenHands API: auto (ask the server once), v1 (OpenHands 1.7+, Cloud) or v0 (up to 1.6); "
        "default: $OPENHANDS_API, else auto",
    ).tag(config=True)
    poll_interval = Float(2.0, help="seconds between status polls while the status changes "
                          f"(at least {MIN_INTERVAL:g}; servers off this machine: at least {REMOTE_MIN_INTERVAL:g})"
                          ).tag(config=True)
    max_poll_interval = Float(30.0, help="polls slow down to this many seconds while nothing changes").tag(config=True)
    ca_bundle = Unicode(
        None,
        allow_none=True,
        help="a CA bundle (PEM file) to trust, e.g. your company's HTTPS inspection CA; default: $OPENHANDS_CA_BUNDLE, "
        "else the system's",
    ).tag(config=True)
    use_env_proxy = Bool(
        None,
        allow_none=True,
        help="use the proxy of HTTPS_PROXY / HTTP_PROXY / NO_PROXY (off unless asked, or $OPENHANDS_USE_ENV_PROXY=1)",
    ).tag(config=True)
    headless_wait = Bool(
        True,
        help="where no one can watch (nbconvert --execute, papermill: the front end takes no input), a %openhands "
        "cell waits for the final status as --wait does, so the saved notebook records it",
    ).tag(config=True)
    timeout = Float(30.0, help=f"seconds one call may take in all, retries included (at least {MIN_INTERVAL:g})"
                    ).tag(config=True)
    expand = Bool(
        False,
        help="fill {{name}} placeholders (names, attributes, indexes) in every task from the notebook's variables, as "
        "--expand does; off by default so a task that worked verbatim stays verbatim",
    ).tag(config=True)
    notify = Bool(
        True,
        help="when a conversation a live panel shows ends, mark the browser tab's title (and show a desktop "
        "notification if the page already may); nothing is saved in the notebook",
    ).tag(config=True)
    remember_conversations = Bool(
        True,
        help="record the ids of the conversations started here (and the notebook's path, never a key) in a small file "
        "in Jupyter's data directory, so `%openhands list --here` finds them after a kernel restart",
    ).tag(config=True)

    @validate("poll_interval", "max_poll_interval", "timeout")
    def _seconds(self, proposal: Any) -> float:
        value = proposal["value"]
        if not value >= MIN_INTERVAL or value == float("inf"):  # (NaN fails the first test too)
            self._refuse(proposal, f"must be a number of seconds from {MIN_INTERVAL:g} on")
        return value

    @validate("api")
    def _api(self, proposal: Any) -> str | None:
        value = proposal["value"]
        if value is not None and value.strip().lower() not in API_CHOICES:
            self._refuse(proposal, f"must be one of {', '.join(API_CHOICES)}")
        return None if value is None else value.strip().lower()

    def _refuse(self, proposal: Any, why: str) -> None:
        """Refuse a value so that it does not stick. ``%config`` also merges what it was given into the shell's
        config (the shell is configured by the same line), where the next ``%reload_ext`` would meet it again and
        fail: it is taken out now, and again once the cell has run."""
        name, value = proposal["trait"].name, proposal["value"]
        self._refused.append((name, value))
        self._drop_refused(keep=True)
        if self.shell is not None and not self._cleanup_registered:
            self.shell.events.register("post_run_cell", self._drop_refused)
            self._cleanup_registered = True
        raise TraitError(f"OpenHandsMagics.{name} {why}; got {value!r} (the value was not kept).")

    def _drop_refused(self, *_result: Any, keep: bool = False) -> None:
        section = getattr(getattr(self.shell, "config", None), "get", lambda *_: None)("OpenHandsMagics")
        for name, value in self._refused:
            if section is not None and name in section and (section[name] == value or section[name] != section[name]):
                del section[name]  # (a NaN is not equal to itself)
        if not keep:
            self._refused.clear()

    def unregister(self) -> None:
        """Take the hooks out of the shell (``%unload_ext``)."""
        if self.shell is not None:
            try:
                self.shell.events.unregister("post_run_cell", self._record_error)
            except ValueError:  # (not registered)
                pass
        if self.shell is not None and self._cleanup_registered:
            self.shell.events.unregister("post_run_cell", self._drop_refused)
            self._cleanup_registered = False

    # ------------------------------------------------------------------ the magic
    @no_var_expand  # a task text like "make {x} faster" or "cost $5" must reach the agent unchanged
    @line_cell_magic
    def openhands(self, line: str = "", cell: str | None = None) -> ConversationHandle | None:
        """Start an OpenHands conversation and watch it live.

        Usage::

          %openhands Check README.md for wrong information and open a PR fixing it
          %%openhands --repo owner/repo
          Profile data/load.py, make it 2x faster, and open a PR.

        Options (before the message; `--` ends them):

          --repo OWNER/REPO, --base-url URL, --api auto|v1|v0, --wait, --timeout SECONDS (with --wait),
          --no-panel, --watch ID (conversation id, start task id or link), --reattach, --login, --help

        Set the key with the OPENHANDS_API_KEY environment variable or `%openhands --login`.
        `conv = %openhands ...` returns a handle (.id .task_id .url .status .title .refresh() .wait());
        `openhands_magics.last()` is the latest one.
        """
        try:
            invocation = parse_invocation(line, cell)
            if invocation.help:
                print(USAGE)
                return None
            if invocation.references:  # `pause {conv.id}`, `--watch $cid`: only the id argument is expanded
                resolve_references(invocation, self.shell.user_ns if self.shell is not None else {})
            if invocation.login and not self._login():
                return None
            if invocation.login and not invocation.message.strip() and invocation.watch is None:
                return None
            return self._run(invocation)
        except OpenHandsError as error:
            _say(str(error))
        except KeyboardInterrupt:
            _say("Interrupted. If it was starting a conversation, it may exist anyway: check the OpenHands app.")
        except Exception as error:  # a bug must not look like a crash of the user's kernel
            log.debug("unexpected error in %%openhands", exc_info=True)
            _say(f"Unexpected error ({type(error).__name__}: {error}); please report it with the openhands-magics version.")
        return None

    def _login(self) -> bool:
        from .config import set_session_api_key

        try:
            key = getpass.getpass("OpenHands API key (kept in memory only): ")
        except Exception:  # StdinNotImplementedError where the front end cannot prompt (nbconvert, papermill)
            _say("This front end cannot prompt for a key; set OPENHANDS_API_KEY in the environment instead.")
            return False
        set_session_api_key(key)
        commands.say("API key kept in memory for this session.", error=False)
        return True

    def _run(self, invocation: Invocation) -> ConversationHandle:
        from .saved import notebook_path
        from .session import Endpoint, get_session

        session = get_session()
        session.schedule = self._schedule()
        session.remember = self.remember_conversations
        session.notify = self.notify
        path = notebook_path(self.shell.user_ns if self.shell is not None else {})
        session.notebook = str(path) if path else None
        if invocation.dry_run:  # what would be sent, and where: no key needed, nothing sent
            commands.dry_run(self, invocation)
            return None
        # The no-key / bad-URL line comes before anything is sent.
        endpoint = Endpoint.resolve(invocation.base_url or self.base_url, api=invocation.api or self.api,
                                    timeout=self.timeout, ca_bundle=self.ca_bundle, use_env_proxy=self.use_env_proxy)
        if invocation.command is not None:
            return commands.run(self, invocation, endpoint)
        if invocation.reattach:
            commands.reattach(self, endpoint)
            return None
        if invocation.watch is not None:
            return self.start(invocation, endpoint, None)
        if invocation.map_over is not None:
            return commands.fan_out(self, invocation, endpoint)
        return self.start(invocation, endpoint, commands.compose_message(self, invocation))

    def start(self, invocation: Invocation, endpoint: Endpoint, message: str | None) -> ConversationHandle | None:
        """Start (or follow up, or watch) and show it."""
        from .session import get_session

        session = get_session()
        if invocation.follow_up:  # the message is checked before anything is sent; a paused sandbox is resumed
            handle = commands.follow_up(self, invocation, endpoint, message)
        elif invocation.watch is not None:
            handle = session.attach(invocation.watch, endpoint=endpoint, remember=True)
        else:  # the client refuses an empty message or a bad --repo before sending anything
            handle = session.start(message or "", invocation.repo, endpoint=endpoint)
        # From here on it exists on the server and is recorded: make sure every path shows its ids.
        try:
            session.show(handle, panel=not invocation.no_panel)
        except Exception as error:
            log.debug("showing conversation %s failed", handle.reference, exc_info=True)
            task = f" · start task {handle.task_id}" if handle.task_id else ""  # V0 has no start task
            print(f"OpenHands conversation {handle.id or '(not created yet)'}{task}: {handle.url or endpoint.base_url}")
            _say(f"Could not display the panel ({type(error).__name__}: {error}); the conversation is recorded "
                 "in openhands_magics.last().")
        if self.shell is not None:
            handle.skip_display_in(self.shell.execution_count)
        if invocation.wait or (self.headless_wait and _headless(self.shell)):
            self._wait(handle, invocation.timeout)
        return handle

    def _wait(self, handle: ConversationHandle, timeout: float | None) -> None:
        from .views import plain, status_change_line

        print(status_change_line(handle), flush=True)
        try:
            handle.wait(timeout, on_change=lambda h: print(status_change_line(h), flush=True))
            if handle.outcome is not None and handle.outcome.answer:  # a log that ends with what the agent said
                print(f"{handle.reference}: answer: {plain(handle.outcome.answer[:2000])}", flush=True)
        except KeyboardInterrupt:
            _say(f"Stopped waiting; {handle.reference} goes on: {handle.url or handle.endpoint.base_url}")
        except WaitTimeout as error:
            _say(str(error))
        except OpenHandsError as error:
            _say(f"{error} Conversation {handle.reference}: {handle.url or handle.endpoint.base_url}")

    def _schedule(self) -> PollSchedule:
        from .polling import PollSchedule

        return PollSchedule(self.poll_interval, max(self.poll_interval, self.max_poll_interval))

    def close(self) -> None:
        """Stop every poller and close every connection (``%unload_ext``); the record of conversations stays."""
        from .session import get_session

        self.unregister()
        get_session().close()
