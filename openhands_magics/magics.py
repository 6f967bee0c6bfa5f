"""``%openhands`` / ``%%openhands``: start or watch a conversation from a notebook without blocking the kernel.

The magic is a router: it parses the line (:mod:`.arguments`), picks the command from the table, resolves the
endpoint when the command talks to a server, and runs the command's module (:mod:`.commands`) with a small context;
around it stands the error boundary, so whatever goes wrong is one line, never a traceback. The settings that shape
the session (how fast to poll, whether to record and notify) are pushed into it when they change, not on each call.

This module is what ``%load_ext`` imports, so it imports only IPython and traitlets (already loaded in any
IPython) and the two light modules it routes with; httpx and ipywidgets are imported on first use.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Bool, Float, TraitError, Unicode, observe, validate

from . import commands
from .arguments import Invocation, docstring, parse_invocation, resolve_references, usage
from .config import API_CHOICES, MIN_INTERVAL, REMOTE_MIN_INTERVAL
from .errors import OpenHandsError

if TYPE_CHECKING:
    from .endpoint import Endpoint
    from .session import Session

__all__ = ["OpenHandsMagics"]

log = logging.getLogger("openhands_magics")
#: The traits a command reads, as :class:`~openhands_magics.commands.Settings`; and those the session holds.
_SETTINGS = tuple(f.name for f in dataclasses.fields(commands.Settings))
_INTO_SESSION = ("poll_interval", "max_poll_interval", "remember_conversations", "notify")


@magics_class
class OpenHandsMagics(Magics):
    """Configure with ``%config OpenHandsMagics.<name> = value`` or in ``ipython_config.py``.

    A thin front: it parses the line and routes it to a command, which calls the process's
    :class:`~openhands_magics.session.Session`. The API key is deliberately not a trait: config values are printed by
    ``%config`` and saved in files.
    """

    _refused: list[tuple[str, Any]]
    _cleanup_registered = False
    #: The session the settings were pushed into (the process's; made on the first call, which imports httpx).
    _configured: Session | None = None
    _settings: commands.Settings | None = None

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
        failed = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if result is not None and failed:
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
    poll_interval = Float(
        2.0,
        help="seconds between status polls while the status changes "
        f"(at least {MIN_INTERVAL:g}; servers off this machine: at least {REMOTE_MIN_INTERVAL:g})",
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
    once = Bool(
        None,
        allow_none=True,
        help="run each task once: the conversation's id is derived from the notebook and the task, and a re-run "
        "attaches to it instead of starting (and paying for) a new run; default (None): on under papermill and "
        "nbconvert, off interactively (--once, --new per cell)",
    ).tag(config=True)
    org = Unicode(
        None,
        allow_none=True,
        help="Cloud: the organisation to act in (sent as X-Org-Id), for an account in several; --org per line; "
        "default: the account's current one",
    ).tag(config=True)
    timeout = Float(30.0, help=f"seconds one call may take in all, retries included (at least {MIN_INTERVAL:g})").tag(
        config=True
    )
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

    @validate("org")
    def _org(self, proposal: Any) -> str | None:
        from .validation import is_org

        value = proposal["value"]
        if value and not is_org(value):
            self._refuse(proposal, "must be an organisation id (letters, digits, - and _)")
        return value.strip() if value else None

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

    # ------------------------------------------------------------------ settings, observed
    @property
    def settings(self) -> commands.Settings:
        """The settings commands read, as one value (made again after any of them changed)."""
        if self._settings is None:
            self._settings = commands.Settings(**{name: getattr(self, name) for name in _SETTINGS})
        return self._settings

    @observe(*_SETTINGS)
    def _settings_changed(self, _change: Any) -> None:
        self._settings = None

    @observe(*_INTO_SESSION)
    def _session_settings_changed(self, _change: Any) -> None:
        if self._configured is not None:
            self._configure(self._configured)

    def _session(self) -> Session:
        """The process's session, given this magic's settings the first time it is seen (later changes follow by
        themselves: :meth:`_session_settings_changed`)."""
        from .session import get_session

        session = get_session()
        if session is not self._configured:
            self._configure(session)
            self._configured = session
        return session

    def _configure(self, session: Session) -> None:
        from .polling import PollSchedule

        session.schedule = PollSchedule(self.poll_interval, max(self.poll_interval, self.max_poll_interval))
        session.remember = self.remember_conversations
        session.notify = self.notify

    # ------------------------------------------------------------------ the magic
    @no_var_expand  # a task text like "make {x} faster" or "cost $5" must reach the agent unchanged
    @line_cell_magic
    def openhands(self, line: str = "", cell: str | None = None) -> Any:
        try:
            invocation = parse_invocation(line, cell)
            if invocation.help:
                print(usage())
                return None
            if invocation.references:  # `pause {conv.id}`, `--watch $cid`: only the id argument is expanded
                resolve_references(invocation, self.shell.user_ns if self.shell is not None else {})
            if invocation.login and not self._login(invocation):
                return None
            if invocation.login and not invocation.message.strip() and invocation.watch is None:
                return None
            return self._route(invocation)
        except OpenHandsError as error:
            commands.say(str(error))
        except KeyboardInterrupt:
            commands.say(
                "Interrupted. If it was starting a conversation, it may exist anyway: check the OpenHands app."
            )
        except Exception as error:  # a bug must not look like a crash of the user's kernel
            log.debug("unexpected error in %%openhands", exc_info=True)
            commands.say(
                f"Unexpected error ({type(error).__name__}: {error}); please report it with the "
                "openhands-magics version."
            )
        return None

    openhands.__doc__ = docstring()

    def _route(self, invocation: Invocation) -> Any:
        from .saved import notebook_path

        command = commands.route(invocation)
        session = self._session()
        path = notebook_path(self.shell.user_ns if self.shell is not None else {})
        session.notebook = str(path) if path else None
        # The no-key / bad-URL line comes before anything is sent.
        endpoint = self._endpoint(invocation) if command.endpoint else None
        context = commands.Context(self.shell, session, self.settings, endpoint, self._errors)
        return commands.run(command, context, invocation)

    def _endpoint(self, invocation: Invocation) -> Endpoint:
        from .endpoint import Endpoint

        settings = self.settings
        return Endpoint.resolve(
            invocation.base_url or settings.base_url,
            api=invocation.api or settings.api,
            timeout=settings.timeout,
            ca_bundle=settings.ca_bundle,
            use_env_proxy=settings.use_env_proxy,
            org=invocation.org or settings.org,
        )

    def _login(self, invocation: Invocation) -> bool:
        """``--login``: the device flow where the server has it (the code and link shown, the key polled for in the
        I/O thread: :mod:`.login`), else a prompt for the key. True when a key is there now (a task on the same
        line goes on)."""
        from .config import resolve_base_url, set_session_api_key
        from .login import authorize

        settings, save = self.settings, invocation.save
        base_url = resolve_base_url(invocation.base_url or settings.base_url)
        code = authorize(base_url, ca_bundle=settings.ca_bundle, use_env_proxy=settings.use_env_proxy)
        if code is not None:
            self._device_login(base_url, code, save)
            if invocation.message.strip():
                commands.say("The task was not sent: run it again once you are logged in.")
            return False
        try:
            key = getpass.getpass("OpenHands API key (kept in memory only): ")
        except Exception:  # StdinNotImplementedError where the front end cannot prompt (nbconvert, papermill)
            commands.say("This front end cannot prompt for a key; set OPENHANDS_API_KEY in the environment instead.")
            return False
        set_session_api_key(key)
        if save and key.strip():
            from .login import save_cli_key

            path = save_cli_key(key.strip())
            commands.say(
                f"API key kept in memory, and saved to {path} (mode 0600) as OpenHands' CLI does.", error=False
            )
            return True
        commands.say("API key kept in memory for this session.", error=False)
        return True

    def _device_login(self, base_url: str, code: Any, save: bool) -> None:
        from IPython.display import display

        from .login import code_lines, start_device_login

        text, markup = code_lines(code)
        shown = display({"text/plain": text, "text/html": markup}, raw=True, display_id=True)

        def tell(line: str, html: str) -> None:  # (in the I/O thread: the shown code becomes the outcome)
            if shown is not None:
                shown.update({"text/plain": line, "text/html": html}, raw=True)
            else:
                print(line)

        settings = self.settings
        start_device_login(
            base_url, code, save=save, ca_bundle=settings.ca_bundle, use_env_proxy=settings.use_env_proxy, tell=tell
        )

    def close(self) -> None:
        """Stop every poller and close every connection (``%unload_ext``); the record of conversations stays."""
        from .session import get_session

        self.unregister()
        get_session().close()
