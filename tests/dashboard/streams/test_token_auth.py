"""The bearer-token middleware on the WebSocket handshake (``dashboard.streams.token_auth``).

What the middleware puts in the scope is read by an app behind the production order of
middlewares (session, then token); what the stream then does is read through the whole
ASGI stack. Token creation, the HTTP side and the 4401 closes of invalid, revoked and
expired tokens over a session are in ``tests/dashboard/test_tokens.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from dashboard import tokens
from dashboard.models import ApiToken
from dashboard.streams.session_auth import SessionAuthStack
from dashboard.streams.token_auth import BearerTokenMiddleware, bearer_secret
from tests.dashboard.conftest import ORIGIN, next_frame
from ticker.asgi import application

STREAM = "/ws/stream/"


async def _report_scope(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that accepts, says what the middlewares left in the scope, and stays open."""
    await receive()
    await send({"type": "websocket.accept"})
    user = scope["user"]
    session = scope.get("session")
    report = {
        "user": user.username if user.is_authenticated else None,
        "api_token_id": scope.get("api_token_id", "absent"),
        "session_key": session.session_key if session is not None else None,
    }
    await send({"type": "websocket.send", "text": json.dumps(report)})
    while (await receive())["type"] != "websocket.disconnect":
        pass


SCOPE_APP = SessionAuthStack(BearerTokenMiddleware(_report_scope))


def handshake_headers(
    authorization: str | None = None, *, cookie: str | None = None, origin: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    if origin is not None:
        headers.append((b"origin", origin))
    return headers


async def scope_seen(authorization: str | None, *, cookie: str | None = None) -> dict[str, Any]:
    communicator = WebsocketCommunicator(SCOPE_APP, STREAM, headers=handshake_headers(authorization, cookie=cookie))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        return json.loads(await communicator.receive_from(timeout=5))
    finally:
        await communicator.disconnect()


async def open_stream(
    path: str = STREAM,
    authorization: str | None = None,
    *,
    cookie: str | None = None,
    origin: bytes | None = None,
    subprotocols: list[str] | None = None,
) -> tuple[WebsocketCommunicator, bool]:
    """A handshake through the whole ASGI stack (origin, session, token, admission, router)."""
    headers = handshake_headers(authorization, cookie=cookie, origin=origin)
    communicator = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5.0) -> int:
    """The close code, skipping any frame sent before it."""
    async with asyncio.timeout(timeout):
        while True:
            output = await communicator.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return output["code"]


@pytest.fixture
def script_user(transactional_db, django_user_model) -> AbstractBaseUser:
    return django_user_model.objects.create_user(username="ws-script", password="not-used-here-1")


@pytest.fixture
def new_token(script_user) -> Callable[..., Any]:
    """``await new_token(**options)``: a token of ``ws-script`` made on the database thread."""

    @database_sync_to_async
    def _create(**options: Any) -> tokens.NewToken:
        return tokens.create(script_user, "ws", **options)

    return _create


# --- Which header carries the token ---------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "secret"),
    [
        ([(b"authorization", b"Bearer tkr_abc")], "tkr_abc"),
        ([(b"authorization", b"bearer tkr_abc")], "tkr_abc"),
        ([(b"authorization", b"BEARER  tkr_abc ")], "tkr_abc"),
        ([(b"authorization", b"Bearer")], ""),  # a bearer header without a token is still a bearer header
        ([(b"authorization", b"Basic ZTpl"), (b"authorization", b"Bearer tkr_2")], "tkr_2"),
        ([(b"authorization", b"Basic ZTpl")], None),
        ([(b"cookie", b"sessionid=x")], None),
        ([], None),
    ],
)
def test_the_bearer_secret_comes_from_the_authorization_header_only(headers, secret) -> None:
    assert bearer_secret({"headers": headers}) == secret


def test_a_token_in_the_query_string_or_a_subprotocol_is_no_bearer_secret() -> None:
    scope = {"headers": [], "query_string": b"token=tkr_abc", "subprotocols": ["bearer", "tkr_abc"]}
    assert bearer_secret(scope) is None


# --- What the middleware leaves in the scope --------------------------------------------


async def test_a_valid_token_is_the_user_and_its_id_whatever_cookie_came_along(new_token, session_cookie) -> None:
    created = await new_token()
    seen = await scope_seen(f"Bearer {created.secret}", cookie=session_cookie)
    assert seen == {"user": "ws-script", "api_token_id": created.token.pk, "session_key": None}


async def test_without_a_bearer_header_the_session_decides_untouched(session_cookie) -> None:
    seen = await scope_seen(None, cookie=session_cookie)
    assert seen == {"user": "alice", "api_token_id": "absent", "session_key": session_cookie.split("=", 1)[1]}
    assert (await scope_seen("Basic ZTpl", cookie=session_cookie))["user"] == "alice", "another scheme is no token"


@pytest.mark.parametrize("case", ["unknown", "garbage", "empty", "too long", "revoked", "expired", "user deactivated"])
async def test_a_bad_bearer_token_is_anonymous_even_with_a_session(new_token, session_cookie, case) -> None:
    created = await new_token()

    @database_sync_to_async
    def spoil() -> None:
        if case == "revoked":
            assert tokens.revoke(created.token.user, created.token.pk)
        elif case == "expired":
            ApiToken.objects.filter(pk=created.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        elif case == "user deactivated":
            created.token.user.is_active = False
            created.token.user.save(update_fields=["is_active"])

    await spoil()
    secret = {
        "unknown": "tkr_" + "x" * 43,
        "garbage": "not-a-token",
        "empty": "",
        "too long": created.secret + "x" * 200,
    }.get(case, created.secret)
    seen = await scope_seen(f"Bearer {secret}", cookie=session_cookie)
    assert seen == {"user": None, "api_token_id": None, "session_key": None}


async def test_the_handshake_marks_the_token_used(new_token) -> None:
    created = await new_token()
    assert created.token.last_used_at is None
    before = timezone.now()
    assert (await scope_seen(f"Bearer {created.secret}"))["user"] == "ws-script"
    used = await ApiToken.objects.aget(pk=created.token.pk)
    assert used.last_used_at is not None
    assert used.last_used_at >= before


def _expiry_closers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_close_at_expiry"]


async def test_the_expiry_close_is_armed_while_the_stream_lasts_and_cancelled_after(new_token) -> None:
    created = await new_token(expires_in_days=1)
    communicator = WebsocketCommunicator(SCOPE_APP, STREAM, headers=handshake_headers(f"Bearer {created.secret}"))
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert json.loads(await communicator.receive_from(timeout=5))["api_token_id"] == created.token.pk
    [closer] = _expiry_closers()
    assert not closer.done(), "a day to go: the stream stays open"
    await communicator.disconnect()
    await asyncio.wait([closer], timeout=5)
    assert closer.cancelled(), "the stream ended first: its expiry close is called off"


async def test_a_stream_closes_at_its_tokens_maximum_lifetime(symbols, new_token, settings) -> None:
    # A row with no expiry of its own (made before the bound) still ends at the maximum.
    settings.API_TOKEN_MAX_DAYS = 1
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": 60}  # the expiry closes it, not the audit
    born = timezone.now() - timedelta(days=1) + timedelta(seconds=1.5)
    created = await new_token()
    await ApiToken.objects.filter(pk=created.token.pk).aupdate(created_at=born, expires_at=None)
    communicator, connected = await open_stream(authorization=f"Bearer {created.secret}")
    assert connected
    await next_frame(communicator, "hello")
    assert await closed_with(communicator, timeout=10) == 4401
    assert timezone.now() >= born + timedelta(days=1)


# --- Through the whole stack ------------------------------------------------------------


async def test_a_token_stream_counts_against_the_tokens_user_not_the_cookies(
    symbols, new_token, session_cookie, settings
) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_CONNECTIONS_PER_USER": 1}
    created = await new_token()
    browser, connected = await open_stream(cookie=session_cookie, origin=ORIGIN)
    assert connected
    await next_frame(browser, "hello")
    # Alice's one stream is open; a script with her cookie but its own token is not Alice.
    script, connected = await open_stream(
        authorization=f"Bearer {created.secret}", cookie=session_cookie, origin=ORIGIN
    )
    assert connected
    await next_frame(script, "hello")
    # The token's user is now at the bound: a second stream on the same token is refused.
    again, connected = await open_stream(authorization=f"Bearer {created.secret}")
    assert connected
    assert (await next_frame(again, "error"))["code"] == "rate_limited"
    assert await closed_with(again) == 4429
    for communicator in (browser, script):
        await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 1}))
        assert (await next_frame(communicator, "pong"))["id"] == 1
        await communicator.disconnect()


async def test_a_deactivated_users_token_is_closed_4401(symbols, new_token, script_user) -> None:
    created = await new_token()
    script_user.is_active = False
    await database_sync_to_async(script_user.save)(update_fields=["is_active"])
    communicator, connected = await open_stream(authorization=f"Bearer {created.secret}")
    assert connected  # accepted, then closed with a code the script can read
    assert await closed_with(communicator) == 4401


@pytest.mark.parametrize("where", ["query string", "subprotocol"])
async def test_a_token_outside_the_header_is_no_credential(symbols, new_token, where) -> None:
    created = await new_token()
    path, subprotocols = (
        (f"{STREAM}?token={created.secret}", None) if where == "query string" else (STREAM, ["bearer", created.secret])
    )
    # Without an Origin only a bearer header may pass: refused at the handshake.
    _, connected = await open_stream(path, subprotocols=subprotocols)
    assert not connected
    # From this site's page, with no session: anonymous, closed 4401.
    communicator, connected = await open_stream(path, origin=ORIGIN, subprotocols=subprotocols)
    assert connected
    assert await closed_with(communicator) == 4401


async def test_another_authorization_scheme_leaves_the_session_in_charge(symbols, session_cookie) -> None:
    communicator, connected = await open_stream(authorization="Basic ZTpl", cookie=session_cookie, origin=ORIGIN)
    assert connected
    assert (await next_frame(communicator, "hello"))["protocol"] == 1
    await communicator.disconnect()
    # And it is no pass past the Origin rule: a script must bring a bearer token.
    _, connected = await open_stream(authorization="Basic ZTpl", cookie=session_cookie)
    assert not connected
