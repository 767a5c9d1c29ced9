"""Open streams lose their right to stay open: one audit per server process.

Logout, a saved deactivation, a password change and a token's revocation close streams
at once through their user's, session's or token's group (``dashboard.signals``,
``dashboard.tokens``). What no signal announces (a session that expires,
``QuerySet.update(is_active=False)``, rows deleted in bulk, ``clearsessions``), and a
close message that was lost (a channel-layer shard restarting), is caught here: every
``TICKER["ACCESS_CHECK_SECONDS"]`` the process asks the database, in three queries
whatever the number of streams, which of its streams' users are still active, which of
their sessions still exist unexpired and still carry their user's current auth hash
(Django's own test: a password change or reset changes it), and which of their API
tokens still exist unexpired; it closes the others (4401).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.db import close_old_connections
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from dashboard import tokens
from dashboard.market.loop_services import BackgroundTask, services

logger = logging.getLogger(__name__)

# Primary keys per IN (...) query: well under SQLite's 999 bound variables.
CHUNK = 500
# Decoded session data kept between checks (a few hundred bytes each).
DECODED_SESSIONS = 20_000


@dataclass(frozen=True)
class Credentials:
    """What a stream was admitted on: its user, and its session or its API token."""

    user_id: int
    session_key: str | None
    token_id: int | None = None


class Revocable(Protocol):
    credentials: Credentials

    async def revoke(self, reason: str) -> None: ...


@dataclass
class Valid:
    """What one check found still valid: active users, their sessions, (token, user) pairs."""

    users: set[int] = field(default_factory=set)
    sessions: dict[str, int] = field(default_factory=dict)  # session key -> its user
    tokens: set[tuple[int, int]] = field(default_factory=set)

    def refusal(self, creds: Credentials) -> str | None:
        """Why a stream admitted on ``creds`` must close, or None."""
        if creds.user_id not in self.users:
            return "user deactivated or deleted"
        if creds.session_key and self.sessions.get(creds.session_key) != creds.user_id:
            return "session expired, ended or its password changed"
        if creds.token_id is not None and (creds.token_id, creds.user_id) not in self.tokens:
            return "API token revoked or expired"
        return None


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(values)
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _session_holds(stored: str | None, hashes: list[str]) -> bool:
    """Whether a session's stored auth hash still logs its user in, by the test of Django's
    ``get_user``: it is the user's current one (or one of a fallback key)."""
    if not stored:
        return False
    return any(constant_time_compare(stored, expected) for expected in hashes)


def _user_id(data: dict[str, Any]) -> int | None:
    try:
        return int(data[SESSION_KEY])
    except (KeyError, TypeError, ValueError):
        return None


def _login_of(session_data: str) -> tuple[int | None, str | None]:
    """The user id and auth hash a session's stored data holds (neither when it does not verify)."""
    return _verified_login(session_data, settings.SECRET_KEY, tuple(settings.SECRET_KEY_FALLBACKS))


@functools.lru_cache(maxsize=DECODED_SESSIONS)
def _verified_login(session_data: str, _key: str, _fallbacks: tuple[str, ...]) -> tuple[int | None, str | None]:
    # Cached by the data and the keys that verify it: a check every few seconds would
    # otherwise verify and decode every open stream's session each time, while the data of
    # a logged-in session hardly ever changes (and a key rotation is a new cache key).
    data = Session.get_session_store_class()().decode(session_data)
    return _user_id(data), data.get(HASH_SESSION_KEY)


def still_valid(user_ids: set[int], session_keys: set[str], token_ids: set[int] | None = None) -> Valid:
    """Which of these users, sessions and tokens are still valid (one query per kind and chunk)."""
    close_old_connections()
    try:
        found = Valid()
        users: dict[int, Any] = {}
        for chunk in _chunks(user_ids):
            rows = get_user_model().objects.filter(pk__in=chunk, is_active=True).only("pk", "password")
            users.update((row.pk, row) for row in rows)
        found.users = set(users)
        now = timezone.now()
        hashes: dict[int, list[str]] = {}  # each user's, made once per check
        for chunk in _chunks(session_keys):
            rows = Session.objects.filter(session_key__in=chunk, expire_date__gt=now)
            for session_key, session_data in rows.values_list("session_key", "session_data"):
                user_id, stored = _login_of(session_data)
                user = users.get(user_id)  # type: ignore[arg-type]
                if user is None:
                    continue
                if user.pk not in hashes:
                    hashes[user.pk] = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
                if _session_holds(stored, hashes[user.pk]):
                    found.sessions[session_key] = user.pk
        for chunk in _chunks(token_ids or ()):
            found.tokens.update(tokens.live(now).filter(pk__in=chunk).values_list("pk", "user_id"))
        return found
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
        """Close every stream whose user, session or token is no longer valid; returns how many."""
        streams = list(self.streams)
        if not streams:
            return 0
        creds = [s.credentials for s in streams]
        found = await sync_to_async(still_valid, thread_sensitive=False)(
            {c.user_id for c in creds},
            {c.session_key for c in creds if c.session_key},
            {c.token_id for c in creds if c.token_id is not None},
        )
        closed = 0
        for stream in streams:
            reason = found.refusal(stream.credentials)
            if reason is None:
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
