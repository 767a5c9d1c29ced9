"""The ``depth`` and ``trades`` channels of the stream session, driven by events alone."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.market.depth import BookReplicas, MarketWindow, book_entry, trades_piece, window_of
from dashboard.streams.session import StreamSession
from tests.dashboard.streams.test_session import (
    CATALOG,
    HELLO,
    Clock,
    drain,
    entry,
    kinds,
    make,
    send,
    state,
    subscribed,
)

BIDS = [(9.0 - i * 0.1, 10.0 + i) for i in range(30)]
ASKS = [(10.0 + i * 0.1, 10.0 + i) for i in range(30)]


class Market:
    """A producer's windows as the feed hands them over: books through a real replica."""

    def __init__(self) -> None:
        self.replicas = BookReplicas()
        self.u = 0
        self.trade_id = 0

    def window(
        self,
        symbol: str = "AAA",
        changes: tuple[list[Any], list[Any]] | None = None,
        trades: int = 0,
        epoch: str = "e1",
    ) -> MarketWindow:
        first = self.u + 1
        self.u += 1
        if changes is None:
            raw = book_entry(epoch, first, self.u, 1000 + self.u, BIDS, ASKS, True)
        else:
            raw = book_entry(epoch, first, self.u, 1000 + self.u, changes[0], changes[1], False)
        made = []
        for _ in range(trades):
            self.trade_id += 1
            made.append(
                {
                    "symbol": symbol,
                    "epoch": epoch,
                    "id": self.trade_id,
                    "ts": 1,
                    "price": 9.5,
                    "size": 1.0,
                    "side": "buy",
                }
            )
        traded = {symbol: [epoch, made[0]["id"], made[-1]["id"], trades_piece(made)]} if made else None
        return window_of(self.replicas, {symbol: raw}, traded)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def opened(clock: Any, **options: Any) -> StreamSession:
    session = make(clock, **options)
    session.open(CATALOG, HELLO)
    drain(session)
    return session


def test_depth_alone_is_acked_at_once_reads_nothing_and_snapshots_on_the_next_window(clock) -> None:
    session, market = opened(clock), Market()
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["depth"], "depth_levels": 5})
    assert session.take_reads() == [], "a depth subscription reads no series"
    (ack,) = drain(session)
    assert (ack["type"], ack["symbols"]) == ("ack", ["AAA"])
    session.batch({}, None, market.window())
    (snapshot,) = drain(session)
    assert snapshot["type"] == "depth_snapshot"
    assert snapshot["u"] == 1
    assert snapshot["bids"] == [list(b) for b in BIDS[:5]]
    assert snapshot["asks"] == [list(a) for a in ASKS[:5]]
    # Level 6 changes: outside a 5-level view, yet the frame comes so that U follows u.
    session.batch({}, None, market.window(changes=([[BIDS[5][0], 99.0]], [])))
    (diff,) = drain(session)
    assert (diff["type"], diff["U"], diff["u"], diff["bids"], diff["asks"]) == ("depth", 2, 2, [], [])
    # The touch is taken: the 6th level enters the view.
    session.batch({}, None, market.window(changes=([[BIDS[0][0], 0.0]], [])))
    (diff,) = drain(session)
    assert diff["U"] == 3
    assert sorted(map(tuple, diff["bids"])) == sorted([(BIDS[0][0], 0.0), (BIDS[5][0], 99.0)])


def test_within_a_window_ticks_come_before_depth_and_trades_last(clock) -> None:
    session, market = opened(clock), Market()
    subscribed(session, "AAA", "e1", 0)
    send(session, {"op": "subscribe", "id": 2, "symbols": ["AAA"], "channels": ["depth", "trades"]})
    drain(session)
    session.batch({"AAA": entry("AAA", "e1", 1, 2)}, None, market.window(trades=2))
    frames = drain(session)
    assert kinds(frames) == ["ticks", "depth_snapshot", "trades"]
    assert [t["id"] for t in frames[2]["data"]] == [1, 2]
    session.batch({"AAA": entry("AAA", "e1", 3, 3)}, None, market.window(changes=([], [[ASKS[0][0], 3.0]]), trades=1))
    frames = drain(session)
    assert kinds(frames) == ["ticks", "depth", "trades"]
    assert frames[1]["asks"] == [[ASKS[0][0], 3.0]]
    assert frames[2]["data"][0]["id"] == 3


def test_a_client_that_asks_for_nothing_new_sees_only_its_ticks(clock) -> None:
    session, market = opened(clock), Market()
    subscribed(session, "AAA", "e1", 0)
    session.batch({"AAA": entry("AAA", "e1", 1, 1)}, None, market.window(trades=3))
    assert kinds(drain(session)) == ["ticks"]
    assert session.steppable() == frozenset({"AAA"}), "still shares the feed's frames"


def test_a_stream_in_step_keeps_the_shared_ticks_and_gets_its_book_frames_after(clock) -> None:
    session, market = opened(clock), Market()
    subscribed(session, "AAA", "e1", 0)
    send(session, {"op": "subscribe", "id": 2, "symbols": ["AAA"], "channels": ["depth", "trades"]})
    drain(session)
    assert session.steppable() == frozenset({"AAA"}), "book channels do not take it off the shared frames"
    session.book_window(market.window(trades=2))
    frames = drain(session)
    assert kinds(frames) == ["depth_snapshot", "trades"]
    session.book_window(market.window(changes=([], [[ASKS[0][0], 1.0]])))
    assert kinds(drain(session)) == ["depth"]


def test_bad_channels_and_levels_are_bad_frames_and_depth_is_bounded(clock) -> None:
    session = opened(clock)
    for bad in (
        {"channels": ["book"]},
        {"channels": []},
        {"channels": "depth"},
        {"depth_levels": 0},
        {"depth_levels": 51},
        {"depth_levels": True},
        {"depth_levels": 2.5},
    ):
        send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["depth"], **bad})
        (error,) = drain(session)
        assert (error["type"], error["code"]) == ("error", "bad_frame"), bad
    limited = make(clock)
    limited.limits = type(limited.limits)(max_symbols=3, max_depth_symbols=1)
    limited.books.max_depth_symbols = 1
    limited.open(CATALOG, HELLO)
    drain(limited)
    send(limited, {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["depth"]})
    send(limited, {"op": "subscribe", "id": 2, "symbols": ["BBB"], "channels": ["depth"]})
    ack, error = drain(limited)
    assert ack["type"] == "ack"
    assert (error["code"], error["id"]) == ("too_many_symbols", 2)
    assert set(limited.books.depth) == {"AAA"}, "the refused subscribe changed nothing"


def test_each_depth_snapshot_is_charged_to_the_read_budget(clock) -> None:
    session = opened(clock)
    before = session.budget.tokens
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"], "channels": ["depth"]})
    assert before - session.budget.tokens == 2


def test_unsubscribe_by_channel_keeps_the_others_and_without_channels_ends_all(clock) -> None:
    session, market = opened(clock), Market()
    subscribed(session, "AAA", "e1", 0)
    send(session, {"op": "subscribe", "id": 2, "symbols": ["AAA"], "channels": ["depth", "trades"]})
    send(session, {"op": "unsubscribe", "id": 3, "symbols": ["AAA"], "channels": ["depth"]})
    assert drain(session)[-1] == {"type": "ack", "id": 3, "op": "unsubscribe", "symbols": ["AAA"]}
    session.batch({"AAA": entry("AAA", "e1", 1, 1)}, None, market.window(trades=1))
    assert kinds(drain(session)) == ["ticks", "trades"]
    send(session, {"op": "unsubscribe", "id": 4, "symbols": ["AAA"]})
    drain(session)
    session.batch({"AAA": entry("AAA", "e1", 2, 2)}, None, market.window(trades=1))
    assert drain(session) == []
    assert not session.books


def test_a_window_held_behind_a_read_brings_its_book_after_the_answer(clock) -> None:
    session, market = opened(clock), Market()
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["ticks", "depth"]})
    (read,) = session.take_reads()
    session.batch({"AAA": entry("AAA", "e1", 1, 1)}, None, market.window())
    assert drain(session) == [], "held while the read is out"
    session.read_done(read, {"AAA": state("AAA", "e1", 0)})
    assert kinds(drain(session)) == ["ack", "snapshot", "ticks", "depth_snapshot"]


def test_a_single_symbol_stream_serves_its_book_and_refuses_anothers(clock) -> None:
    session, market = make(clock, only="AAA"), Market()
    session.open(CATALOG, HELLO)
    (read,) = session.take_reads()
    session.read_done(read, {"AAA": state("AAA", "e1", 0)})
    drain(session)
    send(session, {"op": "subscribe", "id": 1, "symbols": ["BBB"], "channels": ["depth"]})
    assert drain(session)[0]["code"] == "forbidden"
    send(session, {"op": "subscribe", "id": 2, "symbols": ["AAA"], "channels": ["depth"]})
    drain(session)
    assert session.batch_one("AAA", None, None, market.window()) == 0
    assert kinds(drain(session)) == ["depth_snapshot"], "a window of book changes only"


def test_a_delisted_symbol_leaves_the_book_channels(clock) -> None:
    session = opened(clock)
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"], "channels": ["depth", "trades"]})
    session.catalog_changed([CATALOG[0]], '{"type":"symbols"}')
    assert set(session.books.depth) == {"AAA"}
    assert session.books.trades == {"AAA"}


def test_a_gap_in_the_processs_book_resnapshots_the_client(clock) -> None:
    session, market = opened(clock), Market()
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"], "channels": ["depth"]})
    drain(session)
    session.batch({}, None, market.window())
    drain(session)
    market.u += 1  # a window the process never got
    session.batch({}, None, market.window(changes=([], [])))
    assert drain(session) == [], "no book to diff: nothing until the keyframe"
    session.batch({}, None, market.window())
    (snapshot,) = drain(session)
    assert snapshot["type"] == "depth_snapshot"
    assert snapshot["u"] == market.u
