"""Open streams lose their right to stay open: one audit per server process.

Logout, a saved deactivation and a password change close streams at once through their
user's or session's group (``dashboard.signals``). What no signal announces (a session
that expires, ``QuerySet.update(is_active=False)``, rows deleted in bulk, ``clearsessions``)
is caught here: every ``TICKER["ACCESS_CHECK_SECONDS"]`` the process asks the database,
in two queries whatever the number of streams, which of its streams' users are still
active and which of their sessions still exist unexpired, and closes the others (4401).
Streams opened with credentials other than a session are checked by user only.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import close_old_connections
from django.utils import timezone

from dashboard.market.loop_services import BackgroundTask, services

logger = logging.getLogger(__name__)

# Primary keys per IN (...) query: well under SQLite's 999 bound variables.
CHUNK = 500


@dataclass(frozen=True)
class Credentials:
    """What a stream was admitted on."""

    user_id: int
    session_key: str | None


class Revocable(Protocol):
    credentials: Credentials

    async def revoke(self, reason: str) -> None: ...


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def still_valid(user_ids: set[int], session_keys: set[str]) -> tuple[set[int], set[str]]:
    """The active users among ``user_ids`` and the live sessions among ``session_keys``."""
    close_old_connections()
    try:
        users: set[int] = set()
        for chunk in _chunks(user_ids):
            users.update(get_user_model().objects.filter(pk__in=chunk, is_active=True).values_list("pk", flat=True))
        sessions: set[str] = set()
        now = timezone.now()
        for chunk in _chunks(session_keys):
            found = Session.objects.filter(session_key__in=chunk, expire_date__gt=now)
            sessions.update(found.values_list("session_key", flat=True))
        return users, sessions
    finally:
        close_old_connections()


class AccessAudit:
    """The streams of one event loop, and the task that re-checks their credentials."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.streams: weakref.WeakSet[Revocable] = weakref.WeakSet()
        self.checks = BackgroundTask(self._run)

    def register(self, stream: Revocable) -> None:
        self.streams.add(stream)
        self.checks.ensure()

    def unregister(self, stream: Revocable) -> None:
        self.streams.discard(stream)

    async def _run(self) -> None:
        while self.streams:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:
                # The database may be briefly away: streams stay open until the next check.
                logger.warning("stream credentials not re-checked: %r", exc)

    async def check(self) -> int:
        """Close every stream whose user or session is no longer valid; returns how many."""
        streams = list(self.streams)
        if not streams:
            return 0
        user_ids = {s.credentials.user_id for s in streams}
        session_keys = {s.credentials.session_key for s in streams if s.credentials.session_key}
        users, sessions = await sync_to_async(still_valid, thread_sensitive=False)(user_ids, session_keys)
        closed = 0
        for stream in streams:
            creds = stream.credentials
            if creds.user_id not in users:
                reason = "user deactivated or deleted"
            elif creds.session_key and creds.session_key not in sessions:
                reason = "session expired or ended"
            else:
                continue
            self.unregister(stream)
            await stream.revoke(reason)
            closed += 1
        return closed


def _new_audit() -> AccessAudit:
    return AccessAudit(settings.TICKER["ACCESS_CHECK_SECONDS"])


def audit() -> AccessAudit:
    """The audit of the running event loop (Daphne runs one loop per process)."""
    return services.get(_new_audit)
