"""WebSocket over the local server's own sockets: the agent server's ``/sockets/events/{id}``.

Why not the ``websockets`` library's ready-made server: the real agent server answers its REST routes (``POST
…/interrupt``) and its WebSocket on one port, and the library's servers only take ``GET`` requests (a ``POST`` is
"unsupported HTTP method"). So the agent server is the same stdlib HTTP server as the app server (recording,
faults, the same answers), and a request that asks to upgrade is handed to :class:`WebSocket`, which drives the
library's *sans-I/O* server protocol (``websockets.server.ServerProtocol``: the handshake's checks and answer,
framing, masking, ping/pong, the closing handshake) over that request's socket, in that request's thread. The
library is imported only here, when a socket is opened: ``import openhands_magics.testing`` stays cheap.

Reading waits on the socket and on a wake-up pipe at once (``select``), so the session thread sleeps until a frame
comes in, the server has news (:meth:`WebSocket.wake`: an event, a clock that moved) or the next event is due.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

#: Frames a client may send us, at most (the real server's default, 1 MiB).
MAX_SIZE = 2**20
#: How long a close waits for the client's closing frame before it hangs up anyway.
CLOSE_TIMEOUT = 2.0


class Closed(Exception):
    """The client closed the socket, hung up, or the server dropped it."""


class WebSocket:
    """One server-side WebSocket on an accepted connection whose HTTP request (``path`` with its query, and
    ``headers``) was already read. Call :meth:`reject` or :meth:`accept` first, then :meth:`send`,
    :meth:`receive` and :meth:`close` from the one thread that owns it; :meth:`wake` and :meth:`drop` from any."""

    def __init__(self, connection: socket.socket, path: str, headers: list[tuple[str, str]]) -> None:
        from websockets.http11 import Request
        from websockets.server import ServerProtocol

        self._socket = connection
        self._protocol = ServerProtocol(max_size=MAX_SIZE)
        # The HTTP server read the request already: the protocol parses it again from its bytes (it must see it to
        # go on to frames), and its request is what the handshake checks.
        lines = [f"GET {path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers), "", ""]
        self._protocol.receive_data("\r\n".join(lines).encode("latin-1", errors="replace"))
        parsed = [event for event in self._protocol.events_received() if isinstance(event, Request)]
        self._request = parsed[0] if parsed else None  # (None: headers it cannot read; the handshake fails)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._dropped = threading.Event()
        self.close_code: int | None = None  #: the code we closed with, or the client's

    # ------------------------------------------------------------------ handshake
    def reject(self, status: int, text: str = "") -> None:
        """Refuse the upgrade with a plain HTTP answer (what Starlette sends for a socket closed before accept)."""
        response = self._protocol.reject(status, text)
        self._protocol.send_response(response)
        self._flush()
        self._release()

    def accept(self) -> bool:
        """Answer the handshake; ``False`` (and the 400 the library chose already sent) for a bad handshake."""
        if self._request is None:
            self.reject(400, "Failed to open a WebSocket connection: invalid HTTP request.\n")
            return False
        response = self._protocol.accept(self._request)
        self._protocol.send_response(response)
        self._flush()
        if response.status_code != 101:
            self._release()
            return False
        return True

    # ------------------------------------------------------------------ frames
    def send(self, text: str) -> None:
        """Send one text frame."""
        if self._dropped.is_set():
            raise Closed("dropped")
        self._protocol.send_text(text.encode())
        self._flush()

    def receive(self, timeout: float | None) -> list[str]:
        """The text frames that arrive within ``timeout`` seconds (``[]`` if none, or on :meth:`wake`); ``Closed``
        once the client closed or hung up (the closing handshake already answered)."""
        from websockets.frames import Frame, Opcode

        if self._dropped.is_set():
            raise Closed("dropped")
        readable, _, _ = select.select([self._socket, self._wake_read], [], [], timeout)
        if self._wake_read in readable:
            with contextlib.suppress(OSError):
                while self._wake_read.recv(4096):
                    pass
        if self._dropped.is_set():
            raise Closed("dropped")
        if self._socket not in readable:
            return []
        try:
            data = self._socket.recv(65536)
        except OSError:
            data = b""
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        texts = []
        for frame in self._protocol.events_received():
            if isinstance(frame, Frame) and frame.opcode is Opcode.TEXT:
                texts.append(bytes(frame.data).decode(errors="replace"))
        self._flush()  # pongs, the answer to a close
        received = self._protocol.close_rcvd  # (``close_code`` waits for the TCP end: the client's, here ours)
        if received is not None or not data:
            self.close_code = self.close_code or (received.code if received else None)
            self._release()
            raise Closed("closed by the client")
        return texts

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: send the closing frame, wait a little for the client's, then hang up."""
        if self._dropped.is_set():
            return
        self.close_code = code
        with contextlib.suppress(Exception):
            self._protocol.send_close(code, reason)
            self._flush()
            deadline = CLOSE_TIMEOUT
            while deadline > 0 and self._protocol.close_rcvd is None:
                readable, _, _ = select.select([self._socket], [], [], 0.1)
                deadline -= 0.1
                if readable:
                    data = self._socket.recv(65536)
                    if not data:
                        break
                    self._protocol.receive_data(data)
                    self._protocol.events_received()
        self._release()

    # ------------------------------------------------------------------ from other threads
    def wake(self) -> None:
        """Make a :meth:`receive` that waits return now (the server has something to send)."""
        with contextlib.suppress(OSError):
            self._wake_write.send(b"!")

    def drop(self) -> None:
        """Hang up at once, without a closing frame (a network cut, a proxy that restarts)."""
        self._dropped.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self.wake()

    # ------------------------------------------------------------------ internals
    def _flush(self) -> None:
        data = b"".join(self._protocol.data_to_send())
        if data:
            try:
                self._socket.sendall(data)
            except OSError as error:
                self._dropped.set()
                raise Closed("the client is gone") from error

    def _release(self) -> None:
        for end in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                end.close()


def wants_upgrade(method: str, headers: dict[str, Any]) -> bool:
    """Whether a request asks for a WebSocket (``GET`` with ``Upgrade: websocket``)."""
    return method == "GET" and str(headers.get("upgrade", "")).lower() == "websocket"
