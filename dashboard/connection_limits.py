"""Per-user bounds on open streams and on how fast they are opened, in one server process.

A runaway script (or a tab stuck in a reconnect loop) must not eat a server process:
past ``MAX_CONNECTIONS_PER_USER`` open streams, or ``MAX_CONNECTS_PER_MINUTE`` new ones,
further sockets are closed with 4429. Counts are per process; with N Daphne processes a
user can hold at most N times the limit (the load balancer bounds anonymous floods).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class ConnectionLimiter:
    """Open-stream counts and recent connect times per user; thread-safe (sync consumers)."""

    def __init__(self, max_open: int, max_per_minute: int) -> None:
        self.max_open = max_open
        self.max_per_minute = max_per_minute
        self._open: dict[int, int] = defaultdict(int)
        self._recent: dict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def acquire(self, user_id: int, now: float | None = None) -> str | None:
        """Admit a new stream (returns None) or say why not."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent[user_id]
            while recent and now - recent[0] >= 60.0:
                recent.popleft()
            if len(recent) >= self.max_per_minute:
                return f"more than {self.max_per_minute} new connections per minute"
            recent.append(now)
            if self._open[user_id] >= self.max_open:
                return f"more than {self.max_open} open connections"
            self._open[user_id] += 1
            return None

    def release(self, user_id: int) -> None:
        with self._lock:
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]
                if not self._recent.get(user_id):
                    self._recent.pop(user_id, None)

    def open_count(self, user_id: int) -> int:
        with self._lock:
            return self._open.get(user_id, 0)


_limiter: ConnectionLimiter | None = None
_limiter_lock = threading.Lock()


def limiter() -> ConnectionLimiter:
    global _limiter
    from django.conf import settings

    cfg = settings.TICKER
    with _limiter_lock:
        if (
            _limiter is None
            or _limiter.max_open != cfg["MAX_CONNECTIONS_PER_USER"]
            or _limiter.max_per_minute != cfg["MAX_CONNECTS_PER_MINUTE"]
        ):
            _limiter = ConnectionLimiter(cfg["MAX_CONNECTIONS_PER_USER"], cfg["MAX_CONNECTS_PER_MINUTE"])
        return _limiter
