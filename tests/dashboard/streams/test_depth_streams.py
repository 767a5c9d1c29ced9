"""Depth and trades on both endpoints, against the real producer, Redis and channel layer.

A client builds the book from ``depth_snapshot`` and ``depth`` frames as the protocol
says; the tests check what an exchange client relies on: no ``U`` gap, the book never
crossed, its top the last tick's bid and ask after every depth frame, trade ids rising
by one, every trade within the top of book, and the API's snapshot continued by the
stream (``U == u + 1``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.dashboard.conftest import next_frame

STREAM = "/ws/stream/"
SYMBOL_AAA = "/ws/symbols/AAA/"
BOTH = [STREAM, SYMBOL_AAA]


class ClientBook:
    """A client's book of one symbol, kept from the stream's frames."""

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.u: int | None = None
        self.epoch: str | None = None

    def snapshot(self, frame: dict[str, Any]) -> None:
        self.bids = dict(map(tuple, frame["bids"]))
        self.asks = dict(map(tuple, frame["asks"]))
        self.u, self.epoch = frame["u"], frame["epoch"]

    def apply(self, frame: dict[str, Any]) -> None:
        assert frame["epoch"] == self.epoch
        assert frame["U"] == self.u + 1, f"U {frame['U']} after u {self.u}: a gap"
        for side, changes in ((self.bids, frame["bids"]), (self.asks, frame["asks"])):
            for price, size in changes:
                if size:
                    side[price] = size
                else:
                    side.pop(price, None)
        self.u = frame["u"]
        assert len(self.bids) <= self.levels
        assert len(self.asks) <= self.levels

    def top(self) -> tuple[float, float]:
        return max(self.bids), min(self.asks)


async def opened(connect, path: str):
    communicator, connected, _ = await connect(path)
    assert connected
    await next_frame(communicator, "hello")
    return communicator


async def follow(communicator, windows: int, levels: int) -> dict[str, Any]:
    """Read frames until ``windows`` depth frames came; check the invariants on the way."""
    book = ClientBook(levels)
    quote: tuple[float, float] | None = None
    # Each tick's bid and ask by its ts: a trade prints within the top of book of its own tick.
    quotes_at: dict[int, tuple[float, float]] = {}
    trade_ids: list[int] = []
    depth_frames = 0
    checked = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while depth_frames < windows:
        assert loop.time() < deadline, f"{depth_frames} depth frames in 20 s"
        frame = json.loads(await communicator.receive_from(timeout=5))
        kind = frame["type"]
        if kind == "snapshot" and frame["quote"]:
            quote = (frame["quote"]["bid"], frame["quote"]["ask"])
        elif kind == "ticks":
            mine = [t for t in frame["data"] if t["symbol"] == "AAA"]
            quotes_at.update((t["ts"], (t["bid"], t["ask"])) for t in mine)
            quote = (mine[-1]["bid"], mine[-1]["ask"])
        elif kind == "depth_snapshot":
            book.snapshot(frame)
        elif kind == "depth":
            book.apply(frame)
            depth_frames += 1
        elif kind == "trades":
            for trade in frame["data"]:
                assert trade["symbol"] == "AAA"
                if trade_ids:
                    assert trade["id"] == trade_ids[-1] + 1, "trade ids rise by exactly 1"
                trade_ids.append(trade["id"])
                assert trade["side"] in ("buy", "sell")
                if trade["ts"] in quotes_at:  # not a trade of a tick the snapshot covered
                    bid, ask = quotes_at[trade["ts"]]
                    assert bid <= trade["price"] <= ask, "a trade within the top of book of its tick"
                    checked += 1
        else:
            continue
        if kind in ("depth_snapshot", "depth") and book.bids and book.asks:
            best_bid, best_ask = book.top()
            assert best_bid < best_ask, "never crossed"
            assert (best_bid, best_ask) == quote, "the book's top is the last tick's bid and ask"
    return {"book": book, "trades": trade_ids, "checked": checked}


async def subscribe_book(communicator, path: str, levels: int = 10) -> None:
    channels = ["ticks", "depth", "trades"] if path == STREAM else ["depth", "trades"]
    request = {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": channels, "depth_levels": levels}
    await communicator.send_to(text_data=json.dumps(request))
    assert (await next_frame(communicator, "ack"))["symbols"] == ["AAA"]


@pytest.mark.parametrize("path", BOTH)
async def test_a_client_keeps_a_right_book_and_tape_from_the_stream(connect, producer, path) -> None:
    communicator = await opened(connect, path)
    await subscribe_book(communicator, path)
    seen = await follow(communicator, windows=25, levels=10)
    assert len(seen["book"].bids) == len(seen["book"].asks) == 10
    assert len(seen["trades"]) > 5
    assert seen["checked"] >= len(seen["trades"]) - 5, "nearly every trade checked against its own tick"


@pytest.mark.parametrize("path", BOTH)
async def test_bad_channels_and_levels_are_refused_and_the_stream_goes_on(connect, producer, path) -> None:
    communicator = await opened(connect, path)
    for bad in ({"channels": ["orders"]}, {"channels": ["depth"], "depth_levels": 51}):
        await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 9, "symbols": ["AAA"], **bad}))
        error = await next_frame(communicator, "error")
        assert (error["code"], error["id"]) == ("bad_frame", 9)
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 10}))
    assert (await next_frame(communicator, "pong"))["id"] == 10


async def test_more_depth_symbols_than_allowed_are_refused(connect, producer, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_DEPTH_SYMBOLS": 1}
    communicator = await opened(connect, STREAM)
    await communicator.send_to(
        text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"], "channels": ["depth"]})
    )
    assert (await next_frame(communicator, "error"))["code"] == "too_many_symbols"


async def test_the_apis_book_is_continued_by_the_stream(connect, producer, client) -> None:
    communicator = await opened(connect, STREAM)
    await communicator.send_to(
        text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["depth"], "depth_levels": 5})
    )
    await next_frame(communicator, "depth_snapshot")
    get = sync_to_async(client.get)
    book = (await get("/api/symbols/AAA/depth/?levels=5")).json()
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert book["bids"][0][0] < book["asks"][0][0]
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["u"] <= book["u"]:
        frames.append(await next_frame(communicator, "depth"))
    assert any(f["U"] == book["u"] + 1 for f in frames), "a frame continues the API's u"
    trades = (await get("/api/symbols/AAA/trades/?limit=20")).json()["trades"]
    assert len(trades) == 20
    ids = [t["id"] for t in trades]
    assert ids == list(range(ids[0], ids[0] - 20, -1)), "newest first, none missing"
    assert (await get("/api/symbols/AAA/depth/?levels=51")).status_code == 400
    assert (await get("/api/symbols/NOPE/trades/")).status_code == 404
