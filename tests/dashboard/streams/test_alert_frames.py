"""A fired price alert reaches every open stream of its owner, and only its owner's.

The real producer (with its alert hook) runs on the test's loop; streams connect through
the full ASGI stack. Each alert is set where the next tick crosses it, so it fires in the
first window after the producer reloads its alerts.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.market.client import sync_redis
from dashboard.market.store import bump_alerts_version
from dashboard.models import Alert, Symbol
from tests.dashboard.conftest import next_frame, running_producer


@pytest.fixture
def bob_cookie(transactional_db, django_user_model) -> str:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="bob", password="not-used-here-2"))
    return f"sessionid={client.cookies['sessionid'].value}"


async def set_alert(username: str, symbol: str = "AAA", **fields) -> Alert:
    alert = await Alert.objects.acreate(
        user=await get_user_model().objects.aget(username=username),
        symbol=await Symbol.objects.aget(symbol=symbol),
        **fields,
    )
    await sync_to_async(bump_alerts_version)(sync_redis())
    return alert


async def fires_now(username: str) -> Alert:
    """An alert the next tick of AAA crosses (AAA trades near 100)."""
    return await set_alert(username, condition="below", price=Decimal("100000"))


async def next_alert(communicator) -> dict:
    return (await next_frame(communicator, "alert", timeout=10))["alert"]


async def test_an_alert_reaches_all_the_owners_streams_and_no_one_elses(symbols, connect, bob_cookie) -> None:
    alice_stream, ok, _ = await connect("/ws/stream/")
    assert ok
    alice_symbol, ok, _ = await connect("/ws/symbols/BBB/")
    assert ok
    bob_stream, ok, _ = await connect("/ws/stream/", cookie=bob_cookie)
    assert ok
    bob_symbol, ok, _ = await connect("/ws/symbols/AAA/", cookie=bob_cookie)
    assert ok
    async with running_producer(alerts=True):
        first = await fires_now("alice")
        for stream in (alice_stream, alice_symbol):
            alert = await next_alert(stream)
            assert alert["id"] == first.pk
        await first.arefresh_from_db()
        assert alert == {
            "id": first.pk,
            "symbol": "AAA",
            "condition": "below",
            "price": 100000.0,
            "triggered_price": first.triggered_price,
            "triggered_at": int(first.triggered_at.timestamp() * 1000),
        }
        # Bob's first alert frame is his own: Alice's, published earlier, never reached him.
        bobs = await fires_now("bob")
        for stream in (bob_stream, bob_symbol):
            assert (await next_alert(stream))["id"] == bobs.pk
        # And Alice's next one is hers again, not Bob's.
        second = await fires_now("alice")
        for stream in (alice_stream, alice_symbol):
            assert (await next_alert(stream))["id"] == second.pk


async def test_the_alert_arrives_within_a_window_of_its_crossing_tick(symbols, connect) -> None:
    """On a symbol stream: the crossing tick's window is the last or the one before the last before the alert.

    (It is stored first, beside the window loop: usually the alert directly follows its window.)
    """
    stream, ok, _ = await connect("/ws/symbols/AAA/")
    assert ok
    async with running_producer(alerts=True):
        # The series is live on this stream (its snapshot then ticks) before the alert is set:
        # under load the producer's first windows may otherwise all land in the snapshot.
        while json.loads(await stream.receive_from(timeout=10))["type"] != "ticks":
            pass
        alert = await fires_now("alice")
        windows: list[list[dict]] = []
        while True:
            frame = json.loads(await stream.receive_from(timeout=10))
            if frame["type"] == "ticks":
                windows.append(frame["data"])
            elif frame["type"] == "alert":
                break
        assert frame["alert"]["id"] == alert.pk
        fired = frame["alert"]
        recent = [t for ticks in windows[-2:] for t in ticks if t["ts"] == fired["triggered_at"]]
        assert recent, f"crossing tick at {fired['triggered_at']} not in the last two windows: {windows[-2:]}"
        assert recent[0]["price"] == fired["triggered_price"]
