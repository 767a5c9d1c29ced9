"""The process feed's shared frames and shared subscribe reads (``dashboard.streams.feed``)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from dashboard.market.depth import book_entry
from dashboard.market.protocol import encode_ticks
from dashboard.streams.feed import MarketFeed, SubscribeReads
from dashboard.streams.subscriptions import Subscriptions


def entry(symbol: str, epoch: str, first: int, last: int) -> list[Any]:
    ticks = [{"symbol": symbol, "seq": seq, "ts": seq, "price": 1.0} for seq in range(first, last + 1)]
    return [epoch, first, last, encode_ticks(ticks)]


class Stream:
    """What the feed needs of a stream, on a real ``Subscriptions``."""

    feed_key = None
    send_text = None

    def __init__(self, positions: dict[str, tuple[str, int]]) -> None:
        self.subs = Subscriptions()
        for symbol, (epoch, seq) in positions.items():
            self.subs.add(symbol, epoch, seq)
        self.shared: list[str] = []
        self.own: list[str] = []

    async def raw_send(self, message: dict[str, Any]) -> None:
        self.shared.append(message["text"])

    async def deliver(self, ticks: dict[str, Any], window: Any = None) -> None:
        pieces = self.subs.select(ticks)
        if pieces:
            self.own.append('{"type":"ticks","data":[' + ",".join(pieces) + "]}")

    def steppable(self) -> frozenset[str] | None:
        return self.subs.key()

    def in_step(self, last: dict[str, tuple[str, int]]) -> bool:
        return self.subs.matches(last)

    def leave_step(self, last: dict[str, tuple[str, int]]) -> None:
        self.subs.catch_up(last)

    follows_books = False
    book_windows: list[Any] = []

    async def deliver_books(self, window: Any) -> None:
        self.book_windows = [*self.book_windows, (len(self.shared), window)]

    def seqs(self) -> list[tuple[str, int]]:
        frames = [orjson.loads(f) for f in self.own + self.shared]
        return sorted((t["symbol"], t["seq"]) for f in frames for t in f["data"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_streams_in_step_share_one_frame_and_leave_on_a_gap() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        a, b = Stream({"A": ("e", 2), "B": ("e", 5)}), Stream({"A": ("e", 2), "B": ("e", 5)})
        for s in (a, b):
            feed.targets.add(s)
            feed.loose.add(s)
        await feed.dispatch({"A": entry("A", "e", 3, 3), "B": entry("B", "e", 6, 6)})
        assert a.feed_key == b.feed_key == frozenset({"A", "B"}), "in step after the first batch"
        assert len(a.own) == len(b.own) == 1
        await feed.dispatch({"A": entry("A", "e", 4, 5)})
        assert a.shared == b.shared
        assert a.shared[0] is b.shared[0], "the same text for both"
        # A gap in B: the group leaves and each stream decides on its own (the gap reaches the
        # client, which resubscribes); then they are in step with the feed again.
        await feed.dispatch({"B": entry("B", "e", 9, 9)})
        assert len(a.own) == len(b.own) == 2, "the gap went through each stream's own path"
        assert a.seqs() == b.seqs() == [("A", 3), ("A", 4), ("A", 5), ("B", 6), ("B", 9)]
        assert a.feed_key is not None, "back in step"
        await feed.dispatch({"A": entry("A", "e", 6, 6), "B": entry("B", "e", 10, 10)})
        assert len(a.shared) == 2

    run(scenario())


def test_a_detached_stream_continues_from_the_feeds_positions() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        a, b = Stream({"A": ("e", 0)}), Stream({"A": ("e", 0)})
        for s in (a, b):
            feed.targets.add(s)
            feed.loose.add(s)
        for seq in range(1, 4):
            await feed.dispatch({"A": entry("A", "e", seq, seq)})
        feed.detach(a)  # what a subscribe or unsubscribe does first
        assert a.subs.position("A") == ("e", 3)
        a.subs.add("B", "e", 7)
        await feed.dispatch({"A": entry("A", "e", 4, 4), "B": entry("B", "e", 8, 8)})
        assert a.seqs() == [("A", 1), ("A", 2), ("A", 3), ("A", 4), ("B", 8)]
        assert b.seqs() == [("A", 1), ("A", 2), ("A", 3), ("A", 4)]
        assert a.feed_key == frozenset({"A", "B"})

    run(scenario())


def test_a_new_epoch_leaves_the_group_and_asks_for_a_snapshot() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        a = Stream({"A": ("e", 0)})
        feed.targets.add(a)
        feed.loose.add(a)
        await feed.dispatch({"A": entry("A", "e", 1, 1)})
        await feed.dispatch({"A": entry("A", "e", 2, 2)})
        assert a.feed_key is not None
        assert a.shared
        await feed.dispatch({"A": entry("A", "f", 1, 1)})
        assert a.feed_key is None
        assert a.subs.take_resync() == ["A"]

    run(scenario())


def test_members_that_follow_books_get_them_after_the_shared_ticks() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        a, b = Stream({"A": ("e", 0)}), Stream({"A": ("e", 0)})
        a.follows_books = True
        for s in (a, b):
            feed.targets.add(s)
            feed.loose.add(s)
        await feed.dispatch({"A": entry("A", "e", 1, 1)})
        assert a.feed_key is not None
        book = book_entry("e", 1, 1, 0, [(9.0, 1.0)], [(10.0, 1.0)], True)
        await feed.dispatch({"A": entry("A", "e", 2, 2)}, {"A": book}, None)
        assert a.feed_key == b.feed_key, "both still share the ticks frame"
        ((shared_before, window),) = a.book_windows
        assert shared_before == len(a.shared) == 1, "the book frames come after that window's shared ticks"
        assert window.book("A").after.u == 1
        assert b.book_windows == []
        await feed.dispatch({}, {"A": book_entry("e", 2, 2, 1, [(9.0, 2.0)], [], False)}, None)
        assert len(a.book_windows) == 2, "a window of books alone reaches them too"

    run(scenario())


class State:
    def __init__(self, epoch: str, seq: int) -> None:
        self.snapshot = type("Snap", (), {"epoch": epoch, "seq": seq})()


def test_subscribe_reads_are_shared_until_the_feed_moves_past_them() -> None:
    async def scenario() -> None:
        last: dict[str, tuple[str, int]] = {"A": ("e", 5)}
        reads = SubscribeReads(last)
        calls: list[list[str]] = []
        current = {"seq": 5}

        async def reader(symbols: list[str], since: dict[str, tuple[str, int]]) -> dict[str, Any]:
            calls.append(symbols)
            await asyncio.sleep(0)  # a round trip: concurrent callers share it
            return {s: State("e", current["seq"]) for s in symbols}

        first, second = await asyncio.gather(
            reads.read(reader, ["A"], "1m", {}, 250), reads.read(reader, ["A"], "1m", {}, 250)
        )
        assert calls == [["A"]]
        assert first["A"] is second["A"]
        assert (await reads.read(reader, ["A"], "1m", {}, 250))["A"] is first["A"]
        last["A"] = ("e", 6)  # the feed sent a newer batch: the kept read is too old
        current["seq"] = 6
        assert (await reads.read(reader, ["A"], "1m", {}, 250))["A"].snapshot.seq == 6
        assert len(calls) == 2
        built = []
        frame = reads.frame("A", "1m", None, 250, first["A"], "open", lambda: built.append(1) or "x")
        assert frame == "x"
        assert built == [1], "a stale state is built, not kept"

    run(scenario())


def test_a_shared_read_a_window_old_is_completed_with_the_pieces_sent_since() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        await feed.dispatch({"A": entry("A", "e", 5, 5)})
        calls: list[list[str]] = []
        series = {"epoch": "e", "seq": 5}

        async def reader(symbols: list[str], since: dict[str, tuple[str, int]]) -> dict[str, Any]:
            calls.append(symbols)
            return {s: State(series["epoch"], series["seq"]) for s in symbols}

        first = await feed.reads.read(reader, ["A"], "1m", {}, 250)
        await feed.dispatch({"A": entry("A", "e", 6, 7)})
        again = await feed.reads.read(reader, ["A"], "1m", {}, 250)
        assert again["A"] is first["A"]
        assert len(calls) == 1
        pieces, seq = feed.reads.behind("A", "e", 5)
        assert seq == 7
        assert [t["seq"] for t in orjson.loads("[" + ",".join(pieces) + "]")] == [6, 7]
        await feed.dispatch({"A": entry("A", "f", 1, 1)})  # a new epoch: read again
        series.update(epoch="f", seq=1)
        assert feed.reads.behind("A", "e", 5) is None
        await feed.reads.read(reader, ["A"], "1m", {}, 250)
        assert len(calls) == 2

    run(scenario())


def test_a_read_in_flight_overtaken_by_a_new_epoch_is_read_again() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        await feed.dispatch({"A": entry("A", "e", 5, 5)})
        release = asyncio.Event()
        answers = [State("e", 5)]  # read before the restart; then the new epoch

        async def reader(symbols: list[str], since: dict[str, tuple[str, int]]) -> dict[str, Any]:
            await release.wait()  # a slow round trip
            return {s: answers.pop(0) if answers else State("f", 1) for s in symbols}

        first = asyncio.create_task(feed.reads.read(reader, ["A"], "1m", {}, 250))
        await asyncio.sleep(0)  # the first read is in flight
        # The second caller's hold starts here; then the series restarts before the read returns.
        await feed.dispatch({"A": entry("A", "f", 1, 1)})
        second = asyncio.create_task(feed.reads.read(reader, ["A"], "1m", {}, 250))
        await asyncio.sleep(0)
        release.set()
        assert (await second)["A"].snapshot.epoch == "f", "not the overtaken read"
        await first

    run(scenario())


class DirectStream(Stream):
    """A stream under Daphne: the shared frame is written through its synchronous ``send_text``."""

    def __init__(self, positions: dict[str, tuple[str, int]]) -> None:
        super().__init__(positions)
        self.send_text = self.shared.append

    async def raw_send(self, message: dict[str, Any]) -> None:
        raise AssertionError("a stream with send_text gets its shared frames through it")


def test_a_shared_frame_goes_through_send_text_where_there_is_one_and_the_asgi_send_elsewhere() -> None:
    async def scenario() -> None:
        feed = MarketFeed(layer=None)
        direct, asgi = DirectStream({"A": ("e", 2)}), Stream({"A": ("e", 2)})
        for s in (direct, asgi):
            feed.targets.add(s)
            feed.loose.add(s)
        await feed.dispatch({"A": entry("A", "e", 3, 3)})  # per stream: both join the group
        await feed.dispatch({"A": entry("A", "e", 4, 5)})
        assert direct.shared == asgi.shared
        assert len(direct.shared) == 1
        assert direct.seqs() == asgi.seqs() == [("A", 3), ("A", 4), ("A", 5)]

    run(scenario())
