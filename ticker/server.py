"""Daphne, with a bound on what a slow WebSocket client can make the server hold.

Daphne hands every frame to Twisted's transport, which buffers without limit when a
client stops reading: one stalled tab would grow the server's memory for as long as
it stays connected. This runs Daphne's own command line (same options) with one
change, a WebSocket protocol subclass that

* watches the bytes waiting in the transport's write buffer (Twisted's producer API is
  taken: Daphne leaves the HTTP channel registered on the upgraded transport),
* closes a client whose buffer has stayed full for ``SLOW_CLIENT_SECONDS`` with
  close code 4408, dropping its frames meanwhile, and aborts the TCP connection when
  not even the close frame can be delivered,
* closes at once a client whose pending bytes pass ``MAX_OUTBOUND_BYTES``,
* drops frames the application sends once the closing handshake has begun (Daphne
  would raise inside the consumer for a frame that can no longer be delivered),

and one for proxies: ``X-Forwarded-For`` / ``-Port`` / ``-Proto`` are honoured only on
connections from an address in ``TRUSTED_PROXIES`` (Daphne's ``--proxy-headers`` trusts
anyone who can reach it, so any client could pick the address the login throttle
counts), taking the entry the proxy itself added (the last one). With
``TRUSTED_PROXIES`` set the headers are read without ``--proxy-headers``.

The application then gets its ``websocket.disconnect`` and releases the connection.

Usage: ``python -m ticker.server [daphne options] ticker.asgi:application``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import struct
import sys
import time
from typing import Any

import daphne.http_protocol
import daphne.ws_protocol
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.utils import parse_x_forwarded_for
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor
from twisted.web.http_headers import Headers

from ticker import gc_tuning

logger = logging.getLogger("ticker.server")

CLOSE_TOO_SLOW = 4408


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol that closes clients which stop reading (4408)."""

    slow_after = 5.0
    max_outbound_bytes = 4 * 1024 * 1024
    # "Full": more than Twisted's own write-buffer size waiting, the point where it
    # would tell a producer to pause.
    full_bytes = 64 * 1024
    # A small kernel send buffer makes a stalled reader visible in seconds, not minutes.
    socket_send_buffer = 64 * 1024
    abort_after = 3.0
    slow_closing = False
    full_since: float | None = None
    dropped_frames = 0

    def onOpen(self) -> None:
        super().onOpen()
        # Not every transport is a TCP socket (UNIX sockets, test transports).
        with contextlib.suppress(AttributeError, OSError):
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_send_buffer)

    def pending_bytes(self) -> int:
        # Twisted's FileDescriptor keeps unsent data in these two attributes.
        transport = self.transport
        return len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)

    def _update_fullness(self) -> int:
        pending = self.pending_bytes()
        if pending <= self.full_bytes:
            self.full_since = None
        elif self.full_since is None:
            self.full_since = time.monotonic()
        return pending

    def serverSend(self, content: Any, binary: bool = False) -> None:
        if self.state != self.STATE_OPEN or self.slow_closing:
            # The closing handshake has begun (either side): a frame can no longer be
            # delivered, and raising would only kill the consumer with a traceback.
            self.dropped_frames += 1
            return
        pending = self._update_fullness()
        if pending > self.max_outbound_bytes:
            self.close_slow("outbound buffer over the limit")
            return
        if binary or self._perMessageCompress is not None or self.send_queue or self.autoFragmentSize:
            super().serverSend(content, binary)
            return
        self.write_text_frame(content.encode(), pending)

    def write_text_frame(self, payload: bytes, pending: int) -> None:
        """One unfragmented, uncompressed text frame, written at once when nothing is queued.

        Twisted's ``transport.write`` only queues: it registers the socket for writing
        (an ``epoll_ctl``), sends on the next reactor turn and unregisters it (another
        one): three system calls and a loop turn per frame. Like asyncio's transports,
        this sends straight away when the transport holds nothing, and leaves only what
        the kernel did not take (a slow reader) to Twisted's buffer and the bounds above.
        """
        size = len(payload)
        if size < 126:
            frame = bytes((0x81, size)) + payload
        elif size < 65536:
            frame = struct.pack("!BBH", 0x81, 126, size) + payload
        else:
            frame = struct.pack("!BBQ", 0x81, 127, size) + payload
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if (
            pending == 0
            and sock is not None
            and transport.connected
            and not transport.disconnecting
            and not getattr(transport, "TLS", False)
            and not getattr(transport, "_writeDisconnected", False)
        ):
            try:
                sent = sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # Twisted's own write finds the error and closes the connection
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)

    def check_timeouts(self) -> None:
        super().check_timeouts()
        if self.slow_closing or self.state != self.STATE_OPEN:
            return
        self._update_fullness()
        if self.full_since is not None and time.monotonic() - self.full_since >= self.slow_after:
            self.close_slow(f"write buffer full for {time.monotonic() - self.full_since:.1f} s")

    def close_slow(self, reason: str) -> None:
        from ticker import metrics

        self.slow_closing = True
        metrics.SLOW_CLIENT_CLOSES.inc()
        client = "{}:{}".format(*tuple(self.client_addr)) if self.client_addr else "?"
        logger.warning(
            "closing slow client %s on %s with %d: %s (%d bytes pending)",
            client,
            self.request.path if getattr(self, "request", None) else "?",
            CLOSE_TOO_SLOW,
            reason,
            self.pending_bytes(),
        )
        self.sendClose(code=CLOSE_TOO_SLOW, reason="too slow")
        reactor.callLater(self.abort_after, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self.state != self.STATE_CLOSED:
            self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.dropped_frames:
            from ticker import metrics

            metrics.FRAMES_DROPPED.labels("too_slow" if self.slow_closing else "closing").inc(self.dropped_frames)
            # Never a silent drop: say how many frames a closing client did not get.
            logger.warning(
                "%d frames not delivered to %s: connection closing (%s)",
                self.dropped_frames,
                ":".join(map(str, self.client_addr)) if self.client_addr else "?",
                "too slow" if self.slow_closing else f"close code {code}",
            )
        super().onClose(wasClean, code, reason)


TRUSTED_PROXIES: frozenset[str] = frozenset()
LISTEN_BACKLOG = 2048


def trusted_forwarded_for(headers: Any, *names: Any, original_addr: Any = None, original_scheme: Any = None) -> Any:
    """Daphne's ``parse_x_forwarded_for``, applied only to a trusted proxy's connections."""
    if not original_addr or str(original_addr[0]) not in TRUSTED_PROXIES:
        return original_addr, original_scheme
    if isinstance(headers, Headers):
        headers = dict(headers.getAllRawHeaders())
    # The proxy appends (or sets) the address it saw: the last entry is the one to trust.
    headers = {name.lower(): value for name, value in headers.items()}
    forwarded = headers.get(b"x-forwarded-for")
    if forwarded is not None:
        value = forwarded[-1] if isinstance(forwarded, list) else forwarded
        headers[b"x-forwarded-for"] = value.split(b",")[-1].strip()
    return parse_x_forwarded_for(headers, *names, original_addr=original_addr, original_scheme=original_scheme)


def _positional(headers: Any, *args: Any, **kwargs: Any) -> Any:
    # Daphne passes the original address and scheme positionally after the header names.
    names, rest = args[:3], list(args[3:])
    if rest:
        kwargs.setdefault("original_addr", rest.pop(0))
    if rest:
        kwargs.setdefault("original_scheme", rest.pop(0))
    return trusted_forwarded_for(headers, *names, **kwargs)


# Both of Daphne's protocols look the function up in their own module.
daphne.http_protocol.parse_x_forwarded_for = _positional
daphne.ws_protocol.parse_x_forwarded_for = _positional


class BoundedServer(Server):
    """Daphne's server, building WebSocket connections with ``BoundedWebSocketProtocol``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Twisted listens with a backlog of 50: a crowd of clients reconnecting at once
        # (after a deploy) overflows it and handshakes fail before Daphne sees them.
        self.endpoints = [
            f"{e}:backlog={LISTEN_BACKLOG}" if e.startswith("tcp:") and "backlog=" not in e else e
            for e in self.endpoints
        ]
        if TRUSTED_PROXIES and not self.proxy_forwarded_address_header:
            self.proxy_forwarded_address_header = "X-Forwarded-For"
            self.proxy_forwarded_port_header = "X-Forwarded-Port"
            self.proxy_forwarded_proto_header = "X-Forwarded-Proto"

    @property
    def ws_factory(self) -> Any:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # Daphne creates its WebSocket factory inside run(); swap the protocol as it does.
        factory.protocol = BoundedWebSocketProtocol
        self._ws_factory = factory


class BoundedCommandLineInterface(CommandLineInterface):
    server_class = BoundedServer


def configure_from_settings() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticker.settings")
    import django
    from django.conf import settings

    django.setup()
    from dashboard.market.client import sync_redis
    from dashboard.market.redis_requirements import enforce

    enforce(sync_redis())

    global TRUSTED_PROXIES
    TRUSTED_PROXIES = frozenset(settings.TRUSTED_PROXIES)
    BoundedWebSocketProtocol.slow_after = settings.TICKER["SLOW_CLIENT_SECONDS"]
    BoundedWebSocketProtocol.max_outbound_bytes = settings.TICKER["MAX_OUTBOUND_BYTES"]


def main(argv: list[str] | None = None) -> None:
    configure_from_settings()
    from django.conf import settings

    # The application is loaded before the collector is tuned, so that it is frozen with
    # the rest of what lives as long as the process (Daphne then finds it imported).
    importlib.import_module("ticker.asgi")
    gc_tuning.tune(settings.TICKER["GC_THRESHOLD0"])
    BoundedCommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
