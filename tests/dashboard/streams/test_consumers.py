"""Both consumers through the full ASGI stack, with a real Redis layer and a real producer."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from dashboard.market.candles import INTERVALS_MS
from dashboard.models import Symbol
from tests.dashboard.conftest import collect_ticks, next_frame

STREAM = "/ws/stream/"
SYMBOL_AAA = "/ws/symbols/AAA/"


def assert_contiguous(ticks: list[dict], symbol: str, after: int) -> None:
    seqs = [t["seq"] for t in ticks if t["symbol"] == symbol]
    assert seqs, f"no ticks for {symbol}"
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), seqs


# --- both endpoints -----------------------------------------------------------------


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_no_session_is_closed_with_4401(connect, symbols, path) -> None:
    communicator, connected, _ = await connect(path, cookie=None)
    assert connected
    closing = await communicator.receive_output(timeout=5)
    assert closing == {"type": "websocket.close", "code": 4401}
    assert type(closing["code"]) is int, "Daphne's WebSocket library accepts plain ints only"


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_foreign_origin_is_refused(connect, symbols, path) -> None:
    _, connected, _ = await connect(path, origin=b"http://evil.example")
    assert not connected


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_hello_lists_the_enabled_catalog_and_limits(connect, symbols, path) -> None:
    communicator, connected, _ = await connect(path)
    assert connected
    hello = await next_frame(communicator, "hello")
    assert hello["protocol"] == 1
    assert [s["symbol"] for s in hello["symbols"]] == ["AAA", "BBB"]
    assert hello["symbols"][1] == {
        "symbol": "BBB",
        "name": "Double B",
        "asset_class": "equity",
        "precision": 3,
        "status": "trading",
    }
    assert hello["limits"] == {
        "max_frame_bytes": 65536,
        "max_symbols": 200,
        "max_client_frames_per_second": 20,
        "max_depth_symbols": 10,
        "max_depth_levels": 50,
    }
    assert hello["heartbeat_ms"] > 0
    # The interval table travels from its one definition; the browser keeps no copy.
    assert hello["interval_ms"] == INTERVALS_MS
    assert hello["intervals"] == list(INTERVALS_MS)


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_ping_bad_frames_and_the_connection_survives(connect, symbols, path) -> None:
    communicator, _, _ = await connect(path)
    await next_frame(communicator, "hello")
    await communicator.send_to(text_data="{nope")
    error = await next_frame(communicator, "error")
    assert error["code"] == "bad_frame"
    await communicator.send_to(bytes_data=b"\x00\xff")
    assert (await next_frame(communicator, "error"))["code"] == "bad_frame"
    await communicator.send_to(text_data=json.dumps({"op": "jump", "id": 4}))
    error = await next_frame(communicator, "error")
    assert (error["code"], error["id"]) == ("unknown_op", 4)
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 5}))
    pong = await next_frame(communicator, "pong")
    assert pong["id"] == 5
    assert pong["server_time"] > 0


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_heartbeat_arrives_without_ticks(connect, symbols, settings, path) -> None:
    settings.TICKER = {**settings.TICKER, "HEARTBEAT_MS": 200}
    communicator, _, _ = await connect(path)
    await next_frame(communicator, "hello")
    heartbeat = await next_frame(communicator, "heartbeat", timeout=3)
    assert heartbeat["server_time"] > 0


# --- the async multi-symbol stream ----------------------------------------------------


async def test_subscribe_acks_snapshots_then_contiguous_ticks(connect, producer) -> None:
    communicator, _, _ = await connect(STREAM)
    await next_frame(communicator, "hello")
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 7, "symbols": ["AAA", "BBB"]}))
    ack = await next_frame(communicator, "ack")
    assert ack == {"type": "ack", "id": 7, "op": "subscribe", "symbols": ["AAA", "BBB"]}
    snapshots = {}
    for _ in range(2):
        snap = await next_frame(communicator, "snapshot")
        snapshots[snap["symbol"]] = snap
    assert set(snapshots) == {"AAA", "BBB"}
    assert snapshots["AAA"]["status"] == "trading"
    ticks = await collect_ticks(communicator, 30)
    for symbol in ("AAA", "BBB"):
        assert_contiguous(ticks, symbol, snapshots[symbol]["seq"])
    assert {"symbol", "seq", "ts", "price", "bid", "ask", "volume"} <= set(ticks[0])


async def test_unknown_symbol_refuses_the_whole_subscribe(connect, producer) -> None:
    communicator, _, _ = await connect(STREAM)
    await next_frame(communicator, "hello")
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 3, "symbols": ["AAA", "OFF", "NOPE"]}))
    error = await next_frame(communicator, "error")
    assert (error["code"], error["id"]) == ("unknown_symbol", 3)
    assert "OFF" in error["message"]
    assert "NOPE" in error["message"]
    # Nothing was subscribed: a ping is answered with no ticks in between.
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 4}))
    frame = json.loads(await communicator.receive_from(timeout=5))
    assert frame["type"] in {"pong", "heartbeat"}


async def test_unsubscribe_stops_that_symbol(connect, producer) -> None:
    communicator, _, _ = await connect(STREAM)
    await next_frame(communicator, "hello")
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"]}))
    await collect_ticks(communicator, 5)
    await communicator.send_to(text_data=json.dumps({"op": "unsubscribe", "id": 2, "symbols": ["AAA"]}))
    ack = await next_frame(communicator, "ack")
    assert ack == {"type": "ack", "id": 2, "op": "unsubscribe", "symbols": ["AAA"]}
    ticks = await collect_ticks(communicator, 10)
    assert {t["symbol"] for t in ticks} == {"BBB"}


async def test_catalog_change_reaches_open_streams(connect, symbols) -> None:
    communicator, _, _ = await connect(STREAM)
    await next_frame(communicator, "hello")

    def halt_and_add() -> None:
        Symbol.objects.filter(symbol="AAA").update(halted=True)  # update() sends no signal...
        Symbol.objects.create(symbol="NEW", name="New listing", initial_price=Decimal("1.5"))  # ...create() does

    await sync_to_async(halt_and_add)()
    frame = await next_frame(communicator, "symbols")
    catalog = {s["symbol"]: s for s in frame["symbols"]}
    assert set(catalog) == {"AAA", "BBB", "NEW"}
    assert catalog["AAA"]["status"] == "halted"


# --- the sync single-symbol stream ----------------------------------------------------


async def test_symbol_stream_snapshots_then_contiguous_ticks(connect, producer) -> None:
    communicator, _, _ = await connect(SYMBOL_AAA)
    await next_frame(communicator, "hello")
    snapshot = await next_frame(communicator, "snapshot")
    assert snapshot["symbol"] == "AAA"
    ticks = await collect_ticks(communicator, 20)
    assert {t["symbol"] for t in ticks} == {"AAA"}
    assert_contiguous(ticks, "AAA", snapshot["seq"])


@pytest.mark.parametrize("path", ["/ws/symbols/OFF/", "/ws/symbols/NOPE/", "/ws/symbols/bad%20code/"])
async def test_symbol_stream_refuses_unknown_symbols(connect, symbols, path) -> None:
    communicator, connected, _ = await connect(path)
    assert connected
    error = json.loads(await communicator.receive_from(timeout=5))
    assert error["code"] == "unknown_symbol"
    closing = await communicator.receive_output(timeout=5)
    assert closing == {"type": "websocket.close", "code": 1008}
    assert type(closing["code"]) is int


async def test_symbol_stream_serves_its_own_symbol_only(connect, symbols) -> None:
    communicator, _, _ = await connect(SYMBOL_AAA)
    await next_frame(communicator, "hello")
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 9, "symbols": ["BBB"]}))
    error = await next_frame(communicator, "error")
    assert (error["code"], error["id"]) == ("forbidden", 9)


async def test_dashboards_open_no_channel_layer_channel_of_their_own(connect, symbols) -> None:
    from channels.layers import get_channel_layer

    def channels() -> int:
        return len(get_channel_layer()._get_layer().channels)

    first, _, _ = await connect(STREAM)
    await next_frame(first, "hello")
    before = channels()
    for _ in range(5):
        communicator, _, _ = await connect(STREAM)
        await next_frame(communicator, "hello")
    # The process's channels (the market feed's, the connection events'), not one per dashboard.
    assert channels() == before <= 2


# --- access revoked -------------------------------------------------------------------


@pytest.mark.parametrize("path", [STREAM, SYMBOL_AAA])
async def test_logout_closes_that_sessions_streams_only(connect, symbols, client, django_user_model, path) -> None:
    from django.test import Client

    mine, _, _ = await connect(path)
    other_browser = Client()
    await sync_to_async(other_browser.force_login)(await sync_to_async(django_user_model.objects.get)(username="alice"))
    theirs, _, _ = await connect(path, cookie=f"sessionid={other_browser.cookies['sessionid'].value}")
    for communicator in (mine, theirs):
        await next_frame(communicator, "hello")
    await sync_to_async(client.post)("/accounts/logout/")
    assert await _close_code(mine) == 4401
    await theirs.send_to(text_data=json.dumps({"op": "ping", "id": 1}))
    assert (await next_frame(theirs, "pong"))["id"] == 1


async def test_deactivating_a_user_closes_all_their_streams(connect, symbols, django_user_model) -> None:
    first, _, _ = await connect(STREAM)
    second, _, _ = await connect(SYMBOL_AAA)
    for communicator in (first, second):
        await next_frame(communicator, "hello")

    def deactivate() -> None:
        user = django_user_model.objects.get(username="alice")
        user.is_active = False
        user.save()

    await sync_to_async(deactivate)()
    assert await _close_code(first) == 4401
    assert await _close_code(second) == 4401


async def _open_both(connect, **kwargs) -> list:
    opened = [(await connect(path, **kwargs))[0] for path in (STREAM, SYMBOL_AAA)]
    for communicator in opened:
        await next_frame(communicator, "hello")
    return opened


async def test_a_password_change_closes_all_their_streams(connect, symbols, django_user_model) -> None:
    opened = await _open_both(connect)

    def change_password() -> None:
        user = django_user_model.objects.get(username="alice")
        user.set_password("a-brand-new-password-2")
        user.save()

    await sync_to_async(change_password)()
    assert [await _close_code(c) for c in opened] == [4401, 4401]


async def test_saving_a_user_without_a_new_password_closes_nothing(connect, symbols, django_user_model) -> None:
    (stream,) = [(await connect(STREAM))[0]]
    await next_frame(stream, "hello")

    def rename() -> None:
        user = django_user_model.objects.get(username="alice")
        user.first_name = "Alice"
        user.save()

    await sync_to_async(rename)()
    await stream.send_to(text_data=json.dumps({"op": "ping", "id": 3}))
    assert (await next_frame(stream, "pong"))["id"] == 3


async def test_deleting_a_user_closes_all_their_streams(connect, symbols, django_user_model) -> None:
    opened = await _open_both(connect)
    await sync_to_async(django_user_model.objects.filter(username="alice").delete)()
    assert [await _close_code(c) for c in opened] == [4401, 4401]


@pytest.fixture
def quick_audit(settings):
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": 1}


async def test_a_bulk_deactivation_closes_their_streams(connect, symbols, django_user_model, quick_audit) -> None:
    opened = await _open_both(connect)
    # QuerySet.update sends no signal: the access audit notices within its interval.
    await sync_to_async(django_user_model.objects.filter(username="alice").update)(is_active=False)
    assert [await _close_code(c) for c in opened] == [4401, 4401]


async def test_an_expired_session_closes_its_streams(connect, symbols, quick_audit) -> None:
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    opened = await _open_both(connect)
    await sync_to_async(Session.objects.update)(expire_date=timezone.now())
    assert [await _close_code(c) for c in opened] == [4401, 4401]


async def _close_code(communicator, timeout: float = 5.0) -> int:
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]
