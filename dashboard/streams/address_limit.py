"""Handshakes no user answers for, limited per client address before any lookup.

``StreamAdmission`` bounds a user's streams, but only once the handshake's credentials
were looked up: a handshake with a bearer token (a token query), or with a session cookie
that turns out to name nobody (a session query), costs the database whoever sends it, and
anonymous ones cost a trip to the database thread. Those are charged to the address they
came from (IPv6 by its /64, as the login throttle counts: ``ticker.auth.address_group``):

* anonymous (no session cookie, no bearer header) and bearer handshakes when they arrive;
* session handshakes afterwards, when the session named no user (a valid session is the
  user's, bounded by ``StreamAdmission``, so a crowd of traders behind one address is
  never counted).

An address with ``MAX_ANONYMOUS_HANDSHAKES_PER_MINUTE`` of them within the last minute has
its next handshakes refused before any lookup: an error frame, then close 4429. Counts are
per process, as the per-user ones are; a handshake without a client address (a unix
socket) is not counted. ``ticker.asgi`` puts ``AddressGate`` outside the lookups and
``ChargeUnknownSessions`` inside them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import parse_cookie

from dashboard.market.loop_services import services
from dashboard.market.protocol import CloseCode, ErrorCode, error_frame
from dashboard.streams.admission import _refuse
from dashboard.streams.token_auth import bearer_secret
from ticker.auth import address_group

logger = logging.getLogger(__name__)

# The limit counts the handshakes of this many seconds.
WINDOW_SECONDS = 60.0
# Past this many tracked addresses the ones with nothing left in the window are forgotten,
# so a spray of addresses cannot grow the table without bound.
PRUNE_ABOVE = 10_000
# Where the gate leaves the counting of a session handshake for after its lookup.
CHARGE_KEY = "ticker.charge_address"


class AddressLimiter:
    """Recent uncredited handshakes per address group; used on the event loop only."""

    def __init__(self, max_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_per_minute = max_per_minute
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}

    def _window(self, group: str, now: float) -> deque[float]:
        recent = self._recent.get(group)
        if recent is None:
            if len(self._recent) >= PRUNE_ABOVE:
                self._prune(now)
            recent = self._recent[group] = deque()
        while recent and now - recent[0] >= WINDOW_SECONDS:
            recent.popleft()
        return recent

    def _prune(self, now: float) -> None:
        self._recent = {g: r for g, r in self._recent.items() if r and now - r[-1] < WINDOW_SECONDS}

    def blocked(self, group: str) -> bool:
        """Whether ``group`` used up its handshakes of the last minute."""
        return len(self._window(group, self.clock())) >= self.max_per_minute

    def charge(self, group: str) -> None:
        now = self.clock()
        recent = self._window(group, now)
        recent.append(now)
        if len(recent) == self.max_per_minute:
            logger.info("stream handshakes from %s refused for a while: %d uncredited in a minute", group, len(recent))

    def tracked(self) -> int:
        return len(self._recent)


def _new_limiter() -> AddressLimiter:
    return AddressLimiter(settings.TICKER["MAX_ANONYMOUS_HANDSHAKES_PER_MINUTE"])


def limiter() -> AddressLimiter:
    """The running event loop's limiter (one per Daphne process)."""
    return services.get(_new_limiter)


def _group(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return address_group(str(client[0])) if client else None


def _has_session_cookie(scope: dict[str, Any]) -> bool:
    # Parsed as Channels' CookieMiddleware parses it: the session lookup reads this same cookie.
    for name, value in scope.get("headers", []):
        if name == b"cookie" and settings.SESSION_COOKIE_NAME in parse_cookie(value.decode("latin1")):
            return True
    return False


class AddressGate:
    """Outside the lookups: refuses an address over its limit, charges what it can already."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        group = _group(scope)
        if group is None:
            await self.app(scope, receive, send)
            return
        bounds = limiter()
        if bounds.blocked(group):
            message = f"more than {bounds.max_per_minute} handshakes without a valid session from your address a minute"
            await _refuse(receive, send, CloseCode.RATE_LIMITED, error_frame(ErrorCode.RATE_LIMITED, message))
            return
        if bearer_secret(scope) is not None or not _has_session_cookie(scope):
            bounds.charge(group)
            await self.app(scope, receive, send)
            return
        # Set on the connection's own scope, not a copy: a copy per layer would be held for
        # the stream's whole life (every layer of ``ticker.asgi`` is ours or reads only).
        scope[CHARGE_KEY] = functools.partial(bounds.charge, group)
        await self.app(scope, receive, send)


class ChargeUnknownSessions:
    """Inside the lookups: a session handshake that named no user is charged to its address."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        charge = scope.get(CHARGE_KEY)
        user = scope.get("user")
        if charge is not None and (user is None or not user.is_authenticated):
            charge()
        await self.app(scope, receive, send)
