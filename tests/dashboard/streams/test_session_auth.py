"""The stream handshake's user lookup: Channels' own rules, batched across concurrent handshakes."""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from dashboard.streams import session_auth
from dashboard.streams.session_auth import SessionAuthStack


async def _whoami(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that accepts and says who the middleware found."""
    await receive()
    await send({"type": "websocket.accept"})
    user = scope["user"]
    await send({"type": "websocket.send", "text": user.username if user.is_authenticated else "-"})
    await send({"type": "websocket.close", "code": 1000})


APP = SessionAuthStack(_whoami)


def _cookie_of(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def _who(cookie: str | None, timeout: float = 10) -> str:
    headers = [(b"cookie", cookie.encode())] if cookie else []
    communicator = WebsocketCommunicator(APP, "/", headers=headers)
    connected, _ = await communicator.connect(timeout=timeout)
    assert connected
    name = await communicator.receive_from(timeout=10)
    await communicator.disconnect()
    return name


@pytest.fixture
def traders(transactional_db, django_user_model) -> list[tuple[str, str]]:
    users = [django_user_model.objects.create_user(username=f"t{i}", password="pw-not-used-1") for i in range(6)]
    return [(user.username, _cookie_of(user)) for user in users]


@pytest.mark.asyncio
async def test_concurrent_handshakes_share_trips_and_each_gets_its_own_user(traders) -> None:
    # Every trader four times over, all at once, plus two strangers.
    cookies = [cookie for _, cookie in traders] * 4 + [None, "sessionid=not-a-session"]
    expected = [name for name, _ in traders] * 4 + ["-", "-"]
    session_auth.loader()  # this loop's loader, counted from here
    before = session_auth.loader().trips, session_auth.loader().lookups
    found = await asyncio.gather(*(_who(cookie) for cookie in cookies))
    assert found == expected
    loader = session_auth.loader()
    trips, lookups = loader.trips - before[0], loader.lookups - before[1]
    assert lookups == len(cookies)
    assert trips < lookups / 2, f"{lookups} lookups took {trips} trips to the database thread"


@pytest.mark.asyncio
async def test_a_lone_handshake_is_resolved_at_once(traders) -> None:
    name, cookie = traders[0]
    assert await asyncio.wait_for(_who(cookie), timeout=5) == name


@pytest.mark.asyncio
async def test_a_session_from_before_a_password_change_is_anonymous(traders, django_user_model) -> None:
    name, cookie = traders[1]
    user = await django_user_model.objects.aget(username=name)
    user.set_password("changed-since-1")
    await sync_to_async(user.save)()
    assert await _who(cookie) == "-"


@pytest.mark.asyncio
async def test_one_failing_lookup_fails_only_its_own_handshake(traders, monkeypatch) -> None:
    """A lookup that raises (a database error, say) ends that handshake; its batch-mates go on."""
    real = session_auth._lookup
    doomed = traders[2][1].split("=", 1)[1]

    def flaky(scope: dict[str, Any]) -> Any:
        if scope["session"].session_key == doomed:
            raise RuntimeError("database went away")
        return real(scope)

    monkeypatch.setattr(session_auth, "_lookup", flaky)

    async def attempt(cookie: str) -> str:
        try:
            return await _who(cookie, timeout=5)
        except Exception as exc:  # the application raised: the handshake never completes
            return type(exc).__name__

    loader = session_auth.loader()
    trips = loader.trips
    found = await asyncio.gather(*(attempt(cookie) for _, cookie in traders))
    assert loader.trips - trips < len(traders), "the handshakes shared a trip"
    assert found[2] == "RuntimeError", found[2]
    assert [f for i, f in enumerate(found) if i != 2] == [name for i, (name, _) in enumerate(traders) if i != 2]


@pytest.mark.asyncio
async def test_a_lookup_whose_handshake_went_away_leaves_the_others_their_users(traders) -> None:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    scopes = [{"session": store(cookie.split("=", 1)[1])} for _, cookie in traders]
    loader = session_auth.UserLoader()
    waiting = [asyncio.ensure_future(loader.user(scope)) for scope in scopes]
    await asyncio.sleep(0)  # all of them queued on the loader
    waiting[0].cancel()
    users = await asyncio.gather(*waiting[1:])
    assert [user.username for user in users] == [name for name, _ in traders[1:]]
    assert loader.trips == 1
    again = await loader.user({"session": store(traders[0][1].split("=", 1)[1])})
    assert again.username == traders[0][0], "the loader still serves new handshakes"
