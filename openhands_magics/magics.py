"""``%openhands`` / ``%%openhands``: start or watch a conversation from a notebook without blocking the kernel.

This module is what ``%load_ext`` imports, so it imports only IPython and traitlets (already loaded in any
IPython); httpx and ipywidgets are imported on first use.
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Float, TraitError, Unicode, validate

from .arguments import USAGE, Invocation, parse_invocation
from .errors import OpenHandsError, WaitTimeout

if TYPE_CHECKING:
    from .client import AsyncOpenHandsClient, OpenHandsClient
    from .config import ApiKey
    from .handle import ConversationHandle
    from .polling import PollSchedule, Watcher

__all__ = ["OpenHandsMagics"]

#: Clients are shared per (base URL, key, HTTP timeout): a new key, server or %config timeout gets its own pool.
PoolKey = tuple[str, "ApiKey", float]

log = logging.getLogger("openhands_magics")


def _say(line: str) -> None:
    """One line to stderr: how every error reaches the user, never as a traceback."""
    print(f"openhands: {line}", file=sys.stderr)


def _has_widget_frontend(shell: Any) -> bool:
    """Only a kernel can show widgets; the terminal IPython gets text."""
    return getattr(shell, "kernel", None) is not None


@magics_class
class OpenHandsMagics(Magics):
    """Configure with ``%config OpenHandsMagics.<name> = value`` or in ``ipython_config.py``.

    The API key is deliberately not a trait: config values are printed by ``%config`` and saved in files.
    """

    base_url = Unicode(
        None,
        allow_none=True,
        help="OpenHands server; default: $OPENHANDS_BASE_URL, else https://app.all-hands.dev",
    ).tag(config=True)
    poll_interval = Float(2.0, help="seconds between status polls while the status changes").tag(config=True)
    max_poll_interval = Float(30.0, help="polls slow down to this many seconds while nothing changes").tag(config=True)
    timeout = Float(30.0, help="seconds to wait for one HTTP answer").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self._sync_clients: dict[PoolKey, OpenHandsClient] = {}
        self._async_clients: dict[PoolKey, AsyncOpenHandsClient] = {}
        self._watchers: set[Watcher] = set()

    @validate("poll_interval", "max_poll_interval", "timeout")
    def _positive(self, proposal: Any) -> float:
        if not proposal["value"] > 0:
            raise TraitError(f"{proposal['trait'].name} must be a positive number of seconds")
        return proposal["value"]

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

          --repo OWNER/REPO, --base-url URL, --wait, --timeout SECONDS (with --wait),
          --no-panel, --watch ID, --login, --help

        Set the key with the OPENHANDS_API_KEY environment variable or `%openhands --login`.
        `conv = %openhands ...` returns a handle (.id .url .status .title .refresh() .wait());
        `openhands_magics.last()` is the latest one.
        """
        try:
            invocation = parse_invocation(line, cell)
            if invocation.help:
                print(USAGE)
                return None
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
        print("openhands: API key kept in memory for this session.")
        return True

    def _run(self, invocation: Invocation) -> ConversationHandle:
        from .handle import ConversationHandle

        pool_key = self._pool_key(invocation.base_url)  # the no-key / bad-URL line comes before anything is sent
        client = self._sync_client(pool_key)
        if invocation.watch is not None:
            conversation = client.get_conversation(invocation.watch)
        else:  # the client refuses an empty message or a bad --repo before sending anything
            conversation = client.start_conversation(invocation.message, invocation.repo)
        # From here on the id exists on the server: record it first, then make sure every path shows it.
        handle = ConversationHandle(conversation, client, schedule=self._schedule())
        try:
            self._show(handle, invocation, pool_key)
        except Exception as error:
            log.debug("showing conversation %s failed", handle.id, exc_info=True)
            print(f"OpenHands conversation {handle.id}: {handle.url}")
            _say(f"Could not display the panel ({type(error).__name__}: {error}); the conversation is recorded "
                 "in openhands_magics.last().")
        if invocation.wait:
            self._wait(handle, invocation.timeout)
        return handle

    # ------------------------------------------------------------------ showing and watching
    def _show(self, handle: ConversationHandle, invocation: Invocation, pool_key: PoolKey) -> None:
        import asyncio

        from IPython.display import display

        from .views import text_summary

        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # terminal IPython: nothing runs between cells, so there is nothing to poll with
            loop = None
        if loop is not None and _has_widget_frontend(self.shell) and not invocation.no_panel:
            from .panel import ConversationPanel

            watcher = None if handle.is_final else self._start_watcher(handle, pool_key, lambda: panel.watching_ended())
            panel = ConversationPanel(handle, on_stop=watcher.stop if watcher else None)
            display(panel)
        elif loop is not None and _has_widget_frontend(self.shell):  # --no-panel in a kernel: an updating text output
            shown_text = text_summary(handle)
            shown = display({"text/plain": shown_text}, raw=True, display_id=True)

            def update_text(h: ConversationHandle) -> None:
                nonlocal shown_text
                if (text := text_summary(h)) != shown_text:  # redraws without news must not flood the front end
                    shown_text = text
                    shown.update({"text/plain": text}, raw=True)

            handle.subscribe(update_text)
            if not handle.is_final:
                self._start_watcher(handle, pool_key, None)
        else:
            print(text_summary(handle))
        if self.shell is not None:
            handle.skip_display_in(self.shell.execution_count)

    def _start_watcher(
        self, handle: ConversationHandle, pool_key: PoolKey, on_end: Callable[[], None] | None
    ) -> Watcher:
        from .polling import Watcher

        def finished(watcher: Watcher) -> None:
            self._watchers.discard(watcher)
            if on_end is not None:
                on_end()

        watcher = Watcher(handle, self._async_client(pool_key), self._schedule(), on_done=finished)
        self._watchers.add(watcher)
        return watcher

    def _wait(self, handle: ConversationHandle, timeout: float | None) -> None:
        from .views import status_change_line

        print(status_change_line(handle), flush=True)
        try:
            handle.wait(timeout, on_change=lambda h: print(status_change_line(h), flush=True))
        except KeyboardInterrupt:
            _say(f"Stopped waiting; conversation {handle.id} goes on: {handle.url}")
        except WaitTimeout as error:
            _say(str(error))
        except OpenHandsError as error:
            _say(f"{error} Conversation {handle.id}: {handle.url}")

    # ------------------------------------------------------------------ shared clients
    def _schedule(self) -> PollSchedule:
        from .polling import PollSchedule

        return PollSchedule(self.poll_interval, max(self.poll_interval, self.max_poll_interval))

    def _pool_key(self, base_url: str | None) -> PoolKey:
        from .config import resolve_api_key, resolve_base_url

        return resolve_base_url(base_url or self.base_url), resolve_api_key(), self.timeout

    def _sync_client(self, pool_key: PoolKey) -> OpenHandsClient:
        """The shared blocking client for this base URL and key: one connection pool across cells."""
        from .client import OpenHandsClient

        if pool_key not in self._sync_clients:
            base_url, api_key, timeout = pool_key
            self._sync_clients[pool_key] = OpenHandsClient(api_key, base_url=base_url, timeout=timeout)
        return self._sync_clients[pool_key]

    def _async_client(self, pool_key: PoolKey) -> AsyncOpenHandsClient:
        """The pollers' shared client. It does not retry by itself: the poller's backoff does, and shows it."""
        from ._protocol import NO_RETRIES
        from .client import AsyncOpenHandsClient

        if pool_key not in self._async_clients:
            base_url, api_key, timeout = pool_key
            self._async_clients[pool_key] = AsyncOpenHandsClient(api_key, base_url=base_url, timeout=timeout, retry=NO_RETRIES)
        return self._async_clients[pool_key]

    def close(self) -> None:
        """Stop every poller and close every connection pool (``%unload_ext``)."""
        for watcher in list(self._watchers):
            watcher.stop()
        self._watchers.clear()
        for client in self._sync_clients.values():
            client.close()
        self._sync_clients.clear()
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for async_client in self._async_clients.values():
            if loop is not None:
                loop.create_task(async_client.aclose())
        self._async_clients.clear()
