"""Protocol conformance: limits, abuse closes and resume, on both consumers where they overlap."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from dashboard.market.store import read_quotes
from tests.dashboard.conftest import collect_ticks, live_snapshot, next_frame, running_producer
from tests.waiting import until

STREAM = "/ws/stream/"
SYMBOL_AAA = "/ws/symbols/AAA/"
BOTH = [STREAM, SYMBOL_AAA]


async def opened(connect, path: str):
    communicator, connected, _ = await connect(path)
    assert connected
    await next_frame(communicator, "hello")
    return communicator


async def closing_code(communicator, timeout: float = 5.0) -> int:
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


@pytest.mark.parametrize("path", BOTH)
async def test_frame_over_64_kib_gets_frame_too_large(connect, symbols, path) -> None:
    communicator = await opened(connect, path)
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 1, "pad": "x" * 70_000}))
    assert (await next_frame(communicator, "error"))["code"] == "frame_too_large"
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 2}))
    assert (await next_frame(communicator, "pong"))["id"] == 2


@pytest.mark.parametrize("path", BOTH)
async def test_frames_over_the_rate_are_refused_then_the_flood_is_closed_4429(connect, symbols, path) -> None:
    communicator = await opened(connect, path)
    for i in range(25):
        await communicator.send_to(text_data=json.dumps({"op": "ping", "id": i}))
    error = await next_frame(communicator, "error")
    assert error["code"] == "rate_limited"
    for i in range(40):
        await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 100 + i}))
    assert await closing_code(communicator) == 4429


@pytest.mark.parametrize("path", BOTH)
async def test_pings_under_the_rate_are_all_answered(connect, symbols, path) -> None:
    communicator = await opened(connect, path)
    for i in range(15):
        await communicator.send_to(text_data=json.dumps({"op": "ping", "id": i}))
    ids = [(await next_frame(communicator, "pong"))["id"] for _ in range(15)]
    assert ids == list(range(15))


@pytest.mark.parametrize("path", BOTH)
async def test_a_stream_closed_for_abuse_is_charged_to_its_users_connects(connect, symbols, settings, path) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_CONNECTS_PER_MINUTE": 12}
    communicator = await opened(connect, path)
    for _ in range(11):
        await communicator.send_to(text_data="not json")
        await asyncio.sleep(0.06)  # stay under the rate limit: this is about bad frames
    assert await closing_code(communicator) == 4400
    again = await opened(connect, path)  # 1 + 10 (the close) + 1 of the 12 a minute
    await again.disconnect()
    refused, _, _ = await connect(path)
    assert "new connections per minute" in (await next_frame(refused, "error"))["message"]
    assert await closing_code(refused) == 4429


@pytest.mark.parametrize("path", BOTH)
async def test_repeated_bad_frames_close_with_4400(connect, symbols, path) -> None:
    communicator = await opened(connect, path)
    for _ in range(11):
        await communicator.send_to(text_data="not json")
        await asyncio.sleep(0.06)  # stay under the rate limit: this is about bad frames
    assert await closing_code(communicator) == 4400


async def test_more_symbols_than_the_limit_are_refused(connect, symbols, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_SYMBOLS_PER_CONNECTION": 1}
    communicator = await opened(connect, STREAM)
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    assert (await next_frame(communicator, "ack"))["id"] == 1
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["BBB"]}))
    error = await next_frame(communicator, "error")
    assert (error["code"], error["id"]) == ("too_many_symbols", 2)


MISSED = 5  # ticks a resuming client has missed, at least


async def market_moved_on(redis_client: redis.Redis, symbol: str, last_seen: int) -> None:
    """While the client is away, wait until the producer has stored ``MISSED`` ticks after ``last_seen``."""

    async def moved_on() -> bool:
        quotes = await asyncio.to_thread(read_quotes, redis_client, [symbol])  # off the producer's loop
        return quotes[symbol].seq >= last_seen + MISSED

    await until(moved_on, 10, f"{MISSED} {symbol} ticks after seq {last_seen}")


async def test_resume_sends_exactly_the_missed_ticks(connect, producer, redis_client) -> None:
    first = await opened(connect, STREAM)
    await first.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    snapshot = await live_snapshot(first)
    seen = await collect_ticks(first, 5)
    position = {"epoch": snapshot["epoch"], "seq": seen[-1]["seq"]}
    await first.disconnect()
    await market_moved_on(redis_client, "AAA", position["seq"])

    second = await opened(connect, STREAM)
    await second.send_to(
        text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["AAA"], "since": {"AAA": position}})
    )
    await next_frame(second, "ack")
    frame = json.loads(await second.receive_from(timeout=5))
    assert frame["type"] == "ticks", "no snapshot when every missed tick is held"
    assert frame["recovered"] is True
    missed = [t["seq"] for t in frame["data"]]
    assert len(missed) >= MISSED
    assert missed == list(range(position["seq"] + 1, position["seq"] + 1 + len(missed)))
    live = await collect_ticks(second, 5)
    assert live[0]["seq"] == missed[-1] + 1


async def test_resume_from_another_epoch_gets_a_fresh_snapshot(connect, producer) -> None:
    communicator = await opened(connect, STREAM)
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    epoch = (await live_snapshot(communicator))["epoch"]
    await collect_ticks(communicator, 2)
    since = {"AAA": {"epoch": "an-old-epoch", "seq": 3}}
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["AAA"], "since": since}))
    await next_frame(communicator, "ack")
    snapshot = await next_frame(communicator, "snapshot")
    assert snapshot["recovered"] is False
    assert snapshot["epoch"] == epoch


async def test_resubscribe_after_a_gap_fills_it_on_an_open_stream(connect, producer) -> None:
    communicator = await opened(connect, STREAM)
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    epoch = (await live_snapshot(communicator))["epoch"]
    await collect_ticks(communicator, 2)
    # The client noticed a gap after seq 0: everything since is still held.
    since = {"AAA": {"epoch": epoch, "seq": 0}}
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["AAA"], "since": since}))
    await next_frame(communicator, "ack")
    frame = await next_frame(communicator, "ticks")
    assert frame.get("recovered") is True
    seqs = [t["seq"] for t in frame["data"]]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_resume_beyond_what_is_held_gets_a_snapshot(connect, producer, redis_client) -> None:
    communicator = await opened(connect, STREAM)
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    snapshot = await live_snapshot(communicator)
    await collect_ticks(communicator, 3)
    redis_client.zremrangebyrank("ticker:ticks:AAA", 0, 1)  # the oldest ticks have expired
    since = {"AAA": {"epoch": snapshot["epoch"], "seq": 0}}
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["AAA"], "since": since}))
    await next_frame(communicator, "ack")
    assert (await next_frame(communicator, "snapshot"))["recovered"] is False


async def test_symbol_stream_resumes_on_connect_from_the_url(connect, producer, redis_client) -> None:
    first = await opened(connect, SYMBOL_AAA)
    snapshot = await live_snapshot(first)
    seen = await collect_ticks(first, 5)
    await first.disconnect()
    await market_moved_on(redis_client, "AAA", seen[-1]["seq"])
    second = await opened(connect, f"{SYMBOL_AAA}?epoch={snapshot['epoch']}&seq={seen[-1]['seq']}")
    frame = json.loads(await second.receive_from(timeout=5))
    assert (frame["type"], frame["recovered"]) == ("ticks", True)
    missed = [t["seq"] for t in frame["data"]]
    assert missed == list(range(seen[-1]["seq"] + 1, seen[-1]["seq"] + 1 + len(missed)))
    assert len(missed) >= MISSED
    live = await collect_ticks(second, 3)
    assert live[0]["seq"] == missed[-1] + 1


async def test_a_non_ascii_digit_seq_in_the_url_is_served_a_snapshot_not_crashed(connect, producer) -> None:
    # "²" (%C2%B2) passes str.isdigit() but not int(): the stream must still open and serve.
    communicator = await opened(connect, f"{SYMBOL_AAA}?epoch=e&seq=%C2%B2")
    snapshot = await live_snapshot(communicator)
    assert (snapshot["symbol"], snapshot.get("recovered", False)) == ("AAA", False)
    assert await collect_ticks(communicator, 2)


@pytest.mark.parametrize("path", BOTH)
async def test_subscribing_before_the_series_starts_gets_its_snapshot_when_it_does(connect, symbols, path) -> None:
    communicator = await opened(connect, path)
    if path == STREAM:
        await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    empty = await next_frame(communicator, "snapshot")
    assert (empty["epoch"], empty["seq"], empty["quote"]) == (None, 0, None)
    async with running_producer(wait_for_ticks=False):
        started = await live_snapshot(communicator)
        ticks = await collect_ticks(communicator, 5)
    seqs = [t["seq"] for t in ticks if t["symbol"] == "AAA"]
    assert seqs == list(range(started["seq"] + 1, started["seq"] + 1 + len(seqs)))


async def test_too_many_open_streams_per_user_are_closed_4429(connect, symbols, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_CONNECTIONS_PER_USER": 2}
    first = await opened(connect, STREAM)
    await opened(connect, SYMBOL_AAA)
    third, connected, _ = await connect(STREAM)
    assert connected
    error = await next_frame(third, "error")
    assert error["code"] == "rate_limited"
    assert "open connections" in error["message"]
    assert await closing_code(third) == 4429
    # Closing one frees a place.
    await first.disconnect()
    await opened(connect, STREAM)


async def test_connect_storms_are_closed_4429(connect, symbols, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_CONNECTS_PER_MINUTE": 3}
    for _ in range(3):
        communicator = await opened(connect, STREAM)
        await communicator.disconnect()
    storm, _, _ = await connect(STREAM)
    assert "new connections per minute" in (await next_frame(storm, "error"))["message"]
    assert await closing_code(storm) == 4429


async def test_symbol_stream_acks_a_resubscribe_and_hears_catalog_changes(connect, producer) -> None:
    from decimal import Decimal

    from asgiref.sync import sync_to_async

    from dashboard.models import Symbol

    communicator = await opened(connect, SYMBOL_AAA)
    snapshot = await live_snapshot(communicator)
    await communicator.send_to(
        text_data=json.dumps({"op": "subscribe", "id": "r1", "symbols": ["AAA"], "interval": "5s"})
    )
    assert (await next_frame(communicator, "ack"))["id"] == "r1"
    again = await next_frame(communicator, "snapshot")
    assert (again["interval"], again["epoch"]) == ("5s", snapshot["epoch"])
    await sync_to_async(Symbol.objects.create)(symbol="ZZZ", name="Listed now", initial_price=Decimal("3"))
    catalog = await next_frame(communicator, "symbols")
    assert "ZZZ" in [s["symbol"] for s in catalog["symbols"]]


@pytest.fixture
def market_store_down():
    """Snapshots read from a Redis that refuses connections (a real client, a dead port)."""
    from dashboard.market.client import use_redis

    with use_redis("redis://127.0.0.1:1/0", socket_connect_timeout=0.2):
        yield


async def test_subscribe_while_the_store_is_down_is_an_error_not_a_crash(connect, symbols, market_store_down) -> None:
    communicator = await opened(connect, STREAM)
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 5, "symbols": ["AAA"]}))
    error = await next_frame(communicator, "error")
    assert (error["code"], error["id"]) == ("unavailable", 5)
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 6}))
    assert (await next_frame(communicator, "pong"))["id"] == 6


async def test_symbol_stream_while_the_store_is_down_closes_1013(connect, symbols, market_store_down) -> None:
    communicator = await opened(connect, SYMBOL_AAA)
    assert (await next_frame(communicator, "error"))["code"] == "unavailable"
    assert await closing_code(communicator) == 1013


async def test_subscribes_over_the_users_read_budget_are_refused_whole(connect, producer, settings) -> None:
    # Budget of 3 symbol reads, refilled at 1 per second, shared by the user's streams.
    settings.TICKER = {**settings.TICKER, "READ_BURST": 3, "READS_PER_SECOND": 1, "MAX_SYMBOLS_PER_CONNECTION": 2}
    first = await opened(connect, STREAM)
    second = await opened(connect, STREAM)
    await first.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"]}))
    assert (await next_frame(first, "ack"))["id"] == 1
    await second.send_to(text_data=json.dumps({"op": "subscribe", "id": 2, "symbols": ["AAA", "BBB"]}))
    refused = await next_frame(second, "error")
    assert (refused["id"], refused["code"]) == (2, "rate_limited")
    assert 0 < refused["retry_after_ms"] <= 1000
    # Refused whole: nothing was subscribed, so an unsubscribe removes nothing.
    await second.send_to(text_data=json.dumps({"op": "unsubscribe", "id": 3, "symbols": ["AAA", "BBB"]}))
    assert (await next_frame(second, "ack"))["symbols"] == []
    # One read is still there: a one-symbol subscribe fits.
    await second.send_to(text_data=json.dumps({"op": "subscribe", "id": 4, "symbols": ["AAA"]}))
    assert (await next_frame(second, "ack"))["id"] == 4
    assert (await live_snapshot(second))["symbol"] == "AAA"
