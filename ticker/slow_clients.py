"""A bound on what a slow WebSocket client can make the server hold: close 4408.

Daphne hands every frame to Twisted's transport, which buffers without limit when a
client stops reading: one stalled tab would grow the server's memory for as long as it
stays connected. ``BoundedWebSocketProtocol``, Daphne's WebSocket protocol with

* the bytes waiting in the transport's write buffer watched on every frame and on
  Daphne's timeout check (not Twisted's producer API: Daphne registers the HTTP channel
  as the upgraded transport's producer, which is released once the stream is open),
* a client whose buffer has stayed full for ``slow_after`` seconds closed with
  ``CloseCode.TOO_SLOW`` (4408), its frames dropped meanwhile, and the TCP connection
  aborted when not even the close frame can be delivered,
* a client whose pending bytes pass ``max_outbound_bytes`` closed at once,
* frames the application sends once the closing handshake has begun dropped, counted
  and logged (Daphne would raise inside the consumer for a frame that can no longer be
  delivered).

The application then gets its ``websocket.disconnect`` and releases the connection.
``ticker.server`` builds every WebSocket connection with it and sets the two limits from
``TICKER["SLOW_CLIENT_SECONDS"]`` and ``TICKER["MAX_OUTBOUND_BYTES"]``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from typing import Any

from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import reactor
from twisted.web.http import HTTPChannel

from dashboard.market.protocol import CloseCode

logger = logging.getLogger(__name__)

# autobahn's ``sendClose`` takes a plain ``int`` (``type(code) != int`` refuses an IntEnum).
CLOSE_CODE = int(CloseCode.TOO_SLOW)

KIB = 1024
# "Full": more than Twisted's own write-buffer size waiting, the point where it would tell
# a producer to pause.
FULL_BYTES = 64 * KIB
# A small kernel send buffer makes a stalled reader visible in seconds, not minutes.
SOCKET_SEND_BUFFER = 64 * KIB
# How long the close frame gets to reach a slow client before the TCP connection is aborted
# (a backstop: autobahn's own close-handshake timeout, 1 s unless configured, usually drops
# it first).
ABORT_AFTER_SECONDS = 3.0

# RFC 6455 §5.2: FIN set, opcode 1 (text); a server's frames are never masked.
_FIN_TEXT = 0x81
_LEN_16 = 126
_LEN_64 = 127
_MAX_7 = 125
_MAX_16 = 0xFFFF


def text_frame(payload: bytes) -> bytes:
    """The bytes of one unfragmented, unmasked, uncompressed text frame (RFC 6455 §5.2).

    The same bytes as autobahn's ``prepareMessage(payload, isBinary=False,
    doNotCompress=True).payloadHybi`` (a test holds the two equal), at a third of its cost:
    autobahn builds a ``PreparedMessage`` object and its header field by field for every
    frame, and on the sync endpoint that was half of a frame's server CPU.
    """
    size = len(payload)
    if size <= _MAX_7:
        return bytes((_FIN_TEXT, size)) + payload
    if size <= _MAX_16:
        return struct.pack("!BBH", _FIN_TEXT, _LEN_16, size) + payload
    return struct.pack("!BBQ", _FIN_TEXT, _LEN_64, size) + payload


class BoundedWebSocketProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol that closes clients which stop reading (4408)."""

    # The settings' defaults; ``ticker.server`` sets both from the settings.
    slow_after = 5.0
    max_outbound_bytes = 4 * KIB * KIB
    full_bytes = FULL_BYTES
    socket_send_buffer = SOCKET_SEND_BUFFER
    abort_after = ABORT_AFTER_SECONDS
    slow_closing = False
    full_since: float | None = None
    dropped_frames = 0

    def onOpen(self) -> None:
        super().onOpen()
        # Not every transport is a TCP socket (UNIX sockets, test transports).
        with contextlib.suppress(AttributeError, OSError):
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_send_buffer)
        self._release_http_channel()

    def _release_http_channel(self) -> None:
        """Daphne leaves the upgraded request's HTTP channel registered as the transport's
        producer: the channel, the request, its headers and its body buffer (about 4 KiB)
        would live as long as the stream. Nothing needs them once the handshake is done (the
        bounds above watch the write buffer themselves)."""
        transport = self.transport
        if isinstance(getattr(transport, "producer", None), HTTPChannel):
            transport.unregisterProducer()

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

    def send_text(self, text: str) -> None:
        """A text frame from the application, called directly (``dashboard.streams.consumers.text_sender``) instead of
        through Daphne's ASGI send: what ``Server.handle_reply`` and ``handle_reply`` would do
        for a ``websocket.send`` of text, without a coroutine and two dispatches per frame.
        A connection that is gone drops the frame as a closing one does (``serverSend``)."""
        self.serverSend(text, False)

    def write_text_frame(self, payload: bytes, pending: int) -> None:
        """One unfragmented, uncompressed text frame, written at once when nothing is queued.

        Twisted's ``transport.write`` only queues: it registers the socket for writing
        (an ``epoll_ctl``), sends on the next reactor turn and unregisters it (another
        one): three system calls and a loop turn per frame. Like asyncio's transports,
        this sends straight away when the transport holds nothing, and leaves only what
        the kernel did not take (a slow reader) to Twisted's buffer and the bounds above.
        The frame's bytes are those autobahn's ``sendPreparedMessage`` would write
        (``text_frame``).
        """
        frame = text_frame(payload)
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
            CLOSE_CODE,
            reason,
            self.pending_bytes(),
        )
        self.sendClose(code=CLOSE_CODE, reason="too slow")
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
