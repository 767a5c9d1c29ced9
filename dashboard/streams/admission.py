"""Who may open a stream, decided once around both stream routes (``StreamAdmission``).

Not logged in: accepted and closed with 4401. Over the per-user bounds: an error frame
and 4429. Otherwise the stream is counted and handed to the process's access audit
(``dashboard.streams.access``: closed with 4401 once its user, session or token is no
longer valid), the consumer runs, and both are released in a ``finally`` however the consumer
ends, so a stream whose setup fails never leaks its slot. Consumers contain no
admission code.

A runaway script (or a tab stuck in a reconnect loop) must not eat a server process:
past ``MAX_CONNECTIONS_PER_USER`` open streams, or ``MAX_CONNECTS_PER_MINUTE`` new ones,
further sockets are closed with 4429. Counts are per process; with N Daphne processes a
user can hold at most N times the limit (the load balancer bounds anonymous floods).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict, deque
from typing import Any

from django.conf import settings

from dashboard.market.loop_services import services
from dashboard.market.protocol import CloseCode, ErrorCode, error_frame
from dashboard.streams.access import Credentials, audit
from dashboard.streams.collector import collector
from dashboard.streams.guard import ReadBudget
from ticker import metrics

logger = logging.getLogger(__name__)

# ``MAX_CONNECTS_PER_MINUTE`` counts the connects of this many seconds.
CONNECT_WINDOW_SECONDS = 60.0
# A stream closed for abuse counts as this many connects: at the default 120 a minute, a
# user closed a dozen times in a minute connects no more until the minute has passed.
ABUSE_CLOSE_CONNECTS = 10


class ConnectionLimiter:
    """Open-stream counts and recent connect times per user; thread-safe (sync consumers)."""

    def __init__(
        self, max_open: int, max_per_minute: int, reads_per_second: float = 100.0, read_burst: float = 1000.0
    ) -> None:
        self.max_open = max_open
        self.max_per_minute = max_per_minute
        self.reads_per_second = reads_per_second
        self.read_burst = read_burst
        self._open: dict[int, int] = defaultdict(int)
        self._recent: dict[int, deque[float]] = defaultdict(deque)
        # Kept while the user has streams or recent connects: reconnecting refills nothing.
        self._budgets: dict[int, ReadBudget] = {}
        self._lock = threading.Lock()

    def acquire(self, user_id: int, now: float | None = None) -> str | None:
        """Admit a new stream (returns None) or say why not."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent[user_id]
            while recent and now - recent[0] >= CONNECT_WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= self.max_per_minute:
                return f"more than {self.max_per_minute} new connections per minute"
            recent.append(now)
            if self._open[user_id] >= self.max_open:
                return f"more than {self.max_open} open connections"
            self._open[user_id] += 1
            return None

    def read_budget(self, user_id: int) -> ReadBudget:
        """The read budget all of this user's streams in the process share."""
        with self._lock:
            budget = self._budgets.get(user_id)
            if budget is None:
                budget = self._budgets[user_id] = ReadBudget(self.reads_per_second, self.read_burst)
            return budget

    def penalize(self, user_id: int, now: float | None = None) -> None:
        """A stream of ``user_id`` was closed for abuse: it costs ``ABUSE_CLOSE_CONNECTS`` connects.

        An abuser closed with 4400 would otherwise come straight back, and each connect
        (session lookup, groups, hello, snapshots) costs the process more than the frames
        that earned the close; so the per-minute allowance runs out after a few.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent[user_id].extend([now] * ABUSE_CLOSE_CONNECTS)

    def release(self, user_id: int) -> None:
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]
                if not self._recent.get(user_id):
                    self._recent.pop(user_id, None)
                    self._budgets.pop(user_id, None)

    def open_count(self, user_id: int) -> int:
        with self._lock:
            return self._open.get(user_id, 0)


def _new_limiter() -> ConnectionLimiter:
    cfg = settings.TICKER
    return ConnectionLimiter(
        cfg["MAX_CONNECTIONS_PER_USER"],
        cfg["MAX_CONNECTS_PER_MINUTE"],
        cfg["READS_PER_SECOND"],
        # A subscribe of the most symbols allowed must always fit.
        max(cfg["READ_BURST"], cfg["MAX_SYMBOLS_PER_CONNECTION"]),
    )


def limiter() -> ConnectionLimiter:
    """The running event loop's limiter (Daphne runs one loop per process)."""
    return services.get(_new_limiter)


async def _refuse(receive: Any, send: Any, code: CloseCode, frame: str | None = None) -> None:
    """Answer the handshake with a close code the client can read (a refused handshake
    would only be an HTTP 403, indistinguishable from an Origin refusal)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if frame is not None:
        await send({"type": "websocket.send", "text": frame})
    await send({"type": "websocket.close", "code": int(code)})


class StreamAdmission:
    """ASGI middleware around one stream route; ``kind`` labels its metrics.

    Sits inside ``SessionAuthStack`` (it needs ``scope["user"]``), as channels'
    ``OriginValidator`` sits around the whole WebSocket app.
    """

    def __init__(self, app: Any, kind: str) -> None:
        self.app = app
        self.kind = kind

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            await _refuse(receive, send, CloseCode.NOT_AUTHENTICATED)
            return
        bounds = limiter()
        refused = bounds.acquire(user.pk)
        if refused:
            await _refuse(receive, send, CloseCode.RATE_LIMITED, error_frame(ErrorCode.RATE_LIMITED, refused))
            return
        gauge = metrics.CONNECTIONS_OPEN.labels(self.kind)
        gauge.inc()
        # On the connection's own scope, not a copy held for the stream's life (as AddressGate).
        scope["ticker.read_budget"] = bounds.read_budget(user.pk)
        # Called by the consumer when it closes the stream for abuse (4400, 4429).
        scope["ticker.penalize"] = functools.partial(bounds.penalize, user.pk)
        session = scope.get("session")
        credentials = Credentials(user.pk, getattr(session, "session_key", None), scope.get("api_token_id"))
        stream = AdmittedStream(credentials, send, self.kind)
        audits = audit()
        audits.register(stream)
        garbage = collector()
        garbage.opened()
        try:
            await self.app(scope, receive, send)
        finally:
            audits.unregister(stream)
            bounds.release(user.pk)
            gauge.dec()
            garbage.closed()


class AdmittedStream:
    """An open stream as the access audit sees it: its credentials and a way to close it."""

    def __init__(self, credentials: Credentials, send: Any, kind: str) -> None:
        self.credentials = credentials
        self._send = send
        self.kind = kind

    async def revoke(self, reason: str) -> None:
        # Straight to the server, past the consumer: a sync consumer's own close must
        # run on its thread, and the socket's disconnect then ends either consumer.
        logger.info("closing %s stream of user %s: %s", self.kind, self.credentials.user_id, reason)
        await self._send({"type": "websocket.close", "code": int(CloseCode.NOT_AUTHENTICATED)})
