"""Who is opening a stream: the session's user, looked up for many handshakes at once.

Channels' ``AuthMiddleware`` sends every handshake to the database thread on its own:
one thread hop, a fresh connection opened and closed around it (``close_old_connections``
with ``CONN_MAX_AGE=0``), a session query and a user query. In a crowd of dashboards
opening at once (``make bench``'s connect storm) that thread took a large share of the
web process's samples, and the event loop waited on it for the GIL (docs/performance.md,
"What made the storm fit"). ``BatchedAuthMiddleware``
keeps Channels' lookup (``channels.auth.get_user``, so every rule of Django's session
authentication holds as it is, plus the one Channels lacks: ``SECRET_KEY_FALLBACKS``)
but runs the handshakes that wait together in one trip: one hop and one connection for
the batch. Batches form by themselves: while one is in
the database thread the next handshakes queue, so a lone handshake is never delayed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.auth import AuthMiddleware, get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import UpdateError
from django.db import close_old_connections
from django.utils.crypto import constant_time_compare

from dashboard.market.loop_services import BackgroundTask, services

# The most handshakes one trip resolves (the rest wait for the next, right after).
MAX_BATCH = 64

_channels_lookup = get_user.func  # Channels' own lookup, without its per-call thread hop


def _lookup_with_fallbacks(session: Any) -> Any:
    """Channels' lookup, and Django's rule that Channels lacks: an auth hash made under one of
    ``SECRET_KEY_FALLBACKS`` still logs its user in (Channels would flush the session, so a
    stream reconnecting after a key rotation would log its trader out everywhere).

    Django's page path cycles the session key on such a hash; here the hash is re-made under
    the current key in place: the browser's cookie stays the session's, and the pages that
    follow find the current hash, so no cycle leaves this tab's open streams on a deleted key.
    """
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend = session[BACKEND_SESSION_KEY]
    except KeyError:
        return AnonymousUser()
    user = load_backend(backend).get_user(user_id) if backend in settings.AUTHENTICATION_BACKENDS else None
    if user is None:
        return AnonymousUser()
    stored, current = session.get(HASH_SESSION_KEY), user.get_session_auth_hash()
    if stored and constant_time_compare(stored, current):
        return user
    if stored and any(constant_time_compare(stored, old) for old in user.get_session_auth_fallback_hash()):
        session[HASH_SESSION_KEY] = current
        try:
            session.save()
        except UpdateError:  # deleted meanwhile (a logout)
            return AnonymousUser()
        return user
    session.flush()
    return AnonymousUser()


def _lookup(scope: dict[str, Any]) -> Any:
    # Fallbacks are set only while a rotation lasts; otherwise Channels' lookup as it is.
    if settings.SECRET_KEY_FALLBACKS and "session" in scope:
        return _lookup_with_fallbacks(scope["session"])
    return _channels_lookup(scope)


def _users(scopes: list[dict[str, Any]]) -> list[Any]:
    """Each scope's user, or the exception its lookup raised (it fails that handshake alone)."""
    found: list[Any] = []
    for scope in scopes:
        try:
            found.append(_lookup(scope))
        except Exception as exc:
            found.append(exc)
            # A lookup that broke the connection must not fail the rest of the batch with it:
            # the next one opens a fresh connection, as a handshake of its own would.
            close_old_connections()
    return found


class UserLoader:
    """Batches the user lookups of one event loop's handshakes."""

    def __init__(self) -> None:
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        # In a context of its own: it serves many handshakes and outlives the first.
        self._draining = BackgroundTask(self._drain, isolated=True)
        self.trips = 0
        self.lookups = 0

    async def user(self, scope: dict[str, Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((scope, future))
        self._draining.ensure()
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                self.trips += 1
                self.lookups += len(batch)
                try:
                    users = await database_sync_to_async(_users)([scope for scope, _ in batch])
                except Exception as exc:  # the trip itself failed: all of this batch fails
                    _fail(batch, exc)
                    continue
                for (_, future), user in zip(batch, users, strict=True):
                    if future.done():  # its handshake went away meanwhile
                        continue
                    if isinstance(user, Exception):
                        future.set_exception(user)
                    else:
                        future.set_result(user)
        except BaseException as exc:  # cancelled (the loop is closing): nobody is left waiting
            _fail(batch + self._waiting, exc)
            self._waiting = []
            raise


def _fail(batch: list[tuple[dict[str, Any], asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            error = RuntimeError(f"user lookup failed: {exc!r}")
            error.__cause__ = exc
            future.set_exception(error)


def loader() -> UserLoader:
    """This event loop's loader (futures belong to one loop)."""
    return services.get(UserLoader)


class BatchedAuthMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware`` with the lookups of concurrent handshakes batched."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        scope["user"]._wrapped = await loader().user(scope)


def SessionAuthStack(inner: Any) -> Any:
    """Cookies, the session, then the user: Channels' ``AuthMiddlewareStack``, batched."""
    return CookieMiddleware(SessionMiddleware(BatchedAuthMiddleware(inner)))
