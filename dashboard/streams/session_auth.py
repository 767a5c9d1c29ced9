"""Who is opening a stream: the session's user, looked up for many handshakes at once.

Channels' ``AuthMiddleware`` sends every handshake to the database thread on its own:
one thread hop, a fresh connection opened and closed around it (``close_old_connections``
with ``CONN_MAX_AGE=0``), a session query and a user query. In a crowd of dashboards
opening at once (``make bench``'s connect storm) that thread took a large share of the
web process's samples, and the event loop waited on it for the GIL (docs/performance.md,
"What made the storm fit"). ``BatchedAuthMiddleware``
keeps Channels' lookup (``channels.auth.get_user``, so every rule of Django's session
authentication holds as it is) but runs the handshakes that wait together in one trip:
one hop and one connection for the batch. Batches form by themselves: while one is in
the database thread the next handshakes queue, so a lone handshake is never delayed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.auth import AuthMiddleware, get_user
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.db import close_old_connections

from dashboard.market.loop_services import BackgroundTask, services

# The most handshakes one trip resolves (the rest wait for the next, right after).
MAX_BATCH = 64

_lookup = get_user.func  # Channels' own lookup, without its per-call thread hop


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
