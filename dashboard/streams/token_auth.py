"""WebSocket handshakes authenticated by a personal API token (``Authorization: Bearer``).

For scripts and other non-browser clients (a browser cannot set that header on a
WebSocket). Sits inside ``SessionAuthStack`` and outside the router, so
``StreamAdmission`` sees the token's user in ``scope["user"]``:

* a valid token: ``scope["user"]`` is its owner and ``scope["api_token_id"]`` its id
  (the consumers join ``token_group(id)``, so revoking the token closes the stream);
* a bearer header with an unknown, revoked or expired token: ``scope["user"]`` is
  anonymous, whatever session cookie came along, and admission closes with 4401;
* no bearer header: the session decides, untouched.

A stream opened with a token is closed (4401) when the token expires (its own expiry or
the maximum lifetime, ``dashboard.tokens.expiry``), when it is revoked (its group), and,
should that message be lost, at the access audit's next check (``dashboard.streams.access``
re-checks the token of every token stream).

The Origin rule (``dashboard.streams.origin``) lets a handshake without an Origin
through only when it carries a bearer header; this middleware then decides.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from dashboard import tokens
from dashboard.market.protocol import CloseCode
from dashboard.models import ApiToken

logger = logging.getLogger(__name__)


def bearer_secret(scope: dict[str, Any]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return secret.strip()
    return None


@database_sync_to_async
def _authenticate(secret: str) -> ApiToken | None:
    try:
        return tokens.authenticate(secret)
    except tokens.TokenError as err:
        logger.info("stream handshake refused: %s", err.message)
        return None


class BearerTokenMiddleware:
    """ASGI middleware: a bearer token, when present, is the handshake's credential."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        secret = bearer_secret(scope)
        if secret is None:
            await self.app(scope, receive, send)
            return
        token = await _authenticate(secret)
        scope = dict(scope)
        # The token alone speaks for this handshake: a cookie that came along is ignored,
        # so a stream never outlives its token through a session (nor the reverse).
        scope["session"] = None
        scope["user"] = token.user if token is not None else AnonymousUser()
        scope["api_token_id"] = token.pk if token is not None else None
        expiry = None
        if token is not None:
            # The stream ends when its token does, as a revocation would end it.
            remaining = (tokens.expiry(token) - timezone.now()).total_seconds()
            expiry = asyncio.get_running_loop().create_task(_close_at_expiry(send, remaining, token.pk))
        try:
            await self.app(scope, receive, send)
        finally:
            if expiry is not None:
                expiry.cancel()


async def _close_at_expiry(send: Any, delay: float, token_id: int) -> None:
    await asyncio.sleep(max(delay, 0.0))
    logger.info("closing a stream of API token %s: the token expired", token_id)
    try:
        # Straight to the server, as the access audit does: the socket's disconnect then
        # ends either kind of consumer.
        await send({"type": "websocket.close", "code": int(CloseCode.NOT_AUTHENTICATED)})
    except Exception:
        logger.debug("stream already closed at its token's expiry", exc_info=True)
