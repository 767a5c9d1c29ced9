"""The web process's graceful stop: on SIGTERM, stop accepting, send streams elsewhere, exit.

Twisted's own SIGTERM handler stops the reactor at once: Daphne cancels every application
and the sockets are cut, so each client sees 1006 and learns nothing. A deploy or a
rolling restart should go unnoticed instead (``docs/upgrading.md``):

1. the listening ports are closed, so the balancer's next connection (a reconnect
   included) is refused here and goes to another process (HAProxy's ``redispatch``);
2. every open WebSocket is closed with 1012 ("service restart"), one at a time at most
   every ``CLOSE_GAP_SECONDS`` and all within ``spread_seconds``, so that a crowd of
   clients does not reconnect to the other processes in the same instant (the clients
   add jitter of their own);
3. the process exits once every connection has closed and its application has finished
   (the consumers' disconnect handlers ran: groups left, gauges decremented), or after
   ``bound_seconds`` whatever remains.

A second SIGTERM (or SIGINT) during the drain stops the reactor at once. A stream that
finishes its handshake during the drain is closed with 1012 as soon as it is seen.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol

from dashboard.market.protocol import CloseCode

logger = logging.getLogger(__name__)

# At most one close per 10 ms: a process of 200 streams drains in 2 s, one of 10 in 0.1 s.
CLOSE_GAP_SECONDS = 0.01
POLL_SECONDS = 0.05
RESTART_REASON = b"server restarting"


def close_restarting(protocol: Any) -> bool:
    """Close one open WebSocket with 1012; whether it was open.

    autobahn's ``sendClose`` accepts only 1000 and 3000-4999 from an application, but 1012
    is the registered code for a restart (RFC 6455 §7.4.2, IANA) and what browsers and the
    ``websockets`` client report: the frame is sent through its lower-level method.
    """
    if protocol.state != AutobahnProtocol.STATE_OPEN:
        return False
    protocol.sendCloseFrame(code=int(CloseCode.SERVICE_RESTART), reasonUtf8=RESTART_REASON, isReply=False)
    return True


class Drain:
    """The SIGTERM handler of one Daphne ``Server``; ``install`` once the reactor runs."""

    def __init__(self, server: Any, reactor: Any, *, bound_seconds: float, spread_seconds: float) -> None:
        self.server = server
        self.reactor = reactor
        self.bound_seconds = bound_seconds
        self.spread_seconds = spread_seconds
        self.started_at: float | None = None
        self.closed = 0

    def install(self) -> None:
        """Replace Twisted's SIGTERM handler (installed at the reactor's start) with ours."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # A signal handler runs between two bytecodes of whatever the loop was doing: hand
        # the work to the reactor's thread instead of doing it here.
        self.reactor.callFromThread(self.start if self.started_at is None else self.stop_now, signum)

    def stop_now(self, signum: int) -> None:
        logger.warning("signal %d during the drain: stopping now", signum)
        self.reactor.stop()

    def start(self, signum: int = signal.SIGTERM) -> None:
        """Stop listening, schedule the 1012 closes, and watch for the end of the drain."""
        if self.started_at is not None:
            return
        self.started_at = self.reactor.seconds()
        for port in getattr(self.server, "listening_ports", []):
            port.stopListening()
        streams = self.open_streams()
        gap = min(CLOSE_GAP_SECONDS, self.spread_seconds / len(streams)) if streams else 0.0
        logger.info(
            "signal %d: draining %d streams (closed with %d over %.2f s; exit when done or after %.0f s)",
            signum,
            len(streams),
            CloseCode.SERVICE_RESTART,
            gap * max(0, len(streams) - 1),
            self.bound_seconds,
        )
        for i, protocol in enumerate(streams):
            self.reactor.callLater(gap * i, self._close, protocol)
        self.reactor.callLater(POLL_SECONDS, self._poll, {id(p) for p in streams})

    def open_streams(self) -> list[Any]:
        return [
            p
            for p in list(self.server.connections)
            if isinstance(p, WebSocketProtocol) and p.state == AutobahnProtocol.STATE_OPEN
        ]

    def _close(self, protocol: Any) -> None:
        if close_restarting(protocol):
            self.closed += 1

    def _poll(self, scheduled: set[int]) -> None:
        # Streams that opened after the drain began (their handshake was under way) are not
        # in the schedule: close them now rather than let them hold the process.
        for protocol in self.open_streams():
            if id(protocol) not in scheduled:
                scheduled.add(id(protocol))
                self._close(protocol)
        elapsed = self.reactor.seconds() - (self.started_at or 0.0)
        remaining = self.busy_connections()
        if remaining and elapsed < self.bound_seconds:
            self.reactor.callLater(POLL_SECONDS, self._poll, scheduled)
            return
        if remaining:
            logger.warning("drain bound of %.0f s reached with %d connections left", self.bound_seconds, remaining)
        logger.info("drained in %.2f s (%d streams closed with 1012); stopping", elapsed, self.closed)
        self.reactor.stop()

    def busy_connections(self) -> int:
        """Connections still open, or whose application has not finished yet."""
        busy = 0
        for details in list(self.server.connections.values()):
            application = details.get("application_instance")
            if not details.get("disconnected") or (application is not None and not application.done()):
                busy += 1
        return busy
