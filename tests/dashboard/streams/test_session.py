"""The stream session, driven by events alone: no socket, no Redis, no event loop, no sleep.

Every behaviour both consumers share is decided here; ``test_conformance.py`` runs the
same protocol through the real shells on both endpoints.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest

from dashboard.market.protocol import CloseCode, Limits, Position, encode_ticks
from dashboard.market.store import Snapshot, SubscribeState
from dashboard.streams.guard import ReadBudget
from dashboard.streams.session import Read, StreamSession
from dashboard.streams.shared_reads import SubscribeReads

CATALOG = [
    {"symbol": "AAA", "name": "Triple A", "status": "trading"},
    {"symbol": "BBB", "name": "Double B", "status": "halted"},
]
HELLO = '{"type":"hello"}'


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tick(symbol: str, seq: int) -> dict[str, Any]:
    return {"symbol": symbol, "seq": seq, "ts": 1000 + seq, "price": 1.5, "bid": 1.4, "ask": 1.6, "volume": 3.0}


def entry(symbol: str, epoch: str, first: int, last: int) -> list[Any]:
    return [epoch, first, last, encode_ticks([tick(symbol, s) for s in range(first, last + 1)])]


def state(symbol: str, epoch: str | None, seq: int, missed: list[int] | None = None) -> SubscribeState:
    quote = {"price": 1.5} if epoch else None
    held = None if missed is None else [(s, json.dumps(tick(symbol, s))) for s in missed]
    return SubscribeState(Snapshot(symbol, epoch, seq, quote, [{"ts": 1, "close": 1.5}]), held)


def drain(session: StreamSession) -> list[dict[str, Any]]:
    frames = [json.loads(text) for text in session.outbox]
    session.outbox.clear()
    return frames


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def tick_seqs(frames: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(t["symbol"], t["seq"]) for f in frames if f["type"] == "ticks" for t in f["data"]]


def send(session: StreamSession, frame: dict[str, Any]) -> CloseCode | None:
    return session.client_frame(json.dumps(frame), None)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **options: Any) -> StreamSession:
    options.setdefault("budget", ReadBudget(per_second=100.0, burst=1000.0, now=clock.now))
    session = StreamSession(Limits(max_symbols=3), max_missed=100, clock=clock, wall=lambda: 4242, **options)
    return session


@pytest.fixture
def stream(clock: Clock) -> StreamSession:
    """An opened multi-symbol session, hello taken."""
    session = make(clock)
    session.open(CATALOG, HELLO)
    drain(session)
    return session


def subscribed(session: StreamSession, symbol: str, epoch: str, seq: int, interval: str = "1m") -> None:
    send(session, {"op": "subscribe", "id": 1, "symbols": [symbol], "interval": interval})
    (read,) = session.take_reads()
    session.read_done(read, {symbol: state(symbol, epoch, seq)})
    drain(session)


# --- opening ------------------------------------------------------------------------


def test_a_stream_opens_with_hello_and_reads_nothing(clock) -> None:
    session = make(clock)
    session.open(CATALOG, HELLO)
    assert list(session.outbox) == [HELLO]
    assert session.serving
    assert session.take_reads() == []


def test_a_single_symbol_stream_subscribes_on_open_with_the_resume_position(clock) -> None:
    session = make(clock, only="AAA")
    session.open(CATALOG, HELLO, {"AAA": Position("e1", 4)})
    (read,) = session.take_reads()
    assert (read.symbols, read.interval, read.since_keys(), read.ack, read.opening) == (
        ("AAA",),
        "1m",
        {"AAA": ("e1", 4)},
        None,
        True,
    )
    session.read_done(read, {"AAA": state("AAA", "e1", 6, missed=[5, 6])})
    frames = drain(session)
    assert kinds(frames) == ["hello", "ticks"], "no ack for the subscribe on open"
    assert frames[1]["recovered"] is True
    assert tick_seqs(frames) == [("AAA", 5), ("AAA", 6)]


def test_a_single_symbol_stream_of_an_unknown_symbol_is_refused_and_closed_1008(clock) -> None:
    session = make(clock, only="NOPE")
    session.open(CATALOG, HELLO)
    (error,) = drain(session)
    assert (error["type"], error["code"]) == ("error", "unknown_symbol")
    assert session.close_code is CloseCode.POLICY
    assert not session.serving
    assert session.take_reads() == []
    assert send(session, {"op": "ping", "id": 1}) is None
    assert not session.outbox, "nothing is served once refused"


def test_the_store_down_on_open_is_unavailable_then_1013(clock) -> None:
    session = make(clock, only="AAA")
    session.open(CATALOG, HELLO)
    (read,) = session.take_reads()
    session.read_failed(read)
    frames = drain(session)
    assert kinds(frames) == ["hello", "error"]
    assert frames[1]["code"] == "unavailable"
    assert session.close_code is CloseCode.TRY_AGAIN_LATER


# --- the hold -----------------------------------------------------------------------


def test_batches_that_arrive_during_a_read_wait_then_continue_the_snapshot(stream) -> None:
    send(stream, {"op": "subscribe", "id": 7, "symbols": ["AAA"]})
    (read,) = stream.take_reads()
    stream.batch({"AAA": entry("AAA", "e1", 9, 10)})
    stream.batch({"AAA": entry("AAA", "e1", 11, 12)})
    assert not stream.outbox, "held: nothing before the snapshot"
    assert stream.steppable() is None
    stream.read_done(read, {"AAA": state("AAA", "e1", 10)})
    frames = drain(stream)
    assert kinds(frames) == ["ack", "snapshot", "ticks"]
    assert (frames[0]["id"], frames[0]["symbols"]) == (7, ["AAA"])
    assert (frames[1]["seq"], frames[1]["status"]) == (10, "trading")
    assert tick_seqs(frames) == [("AAA", 11), ("AAA", 12)], "what the snapshot covered is dropped"
    assert stream.steppable() == frozenset({"AAA"})


def test_answers_go_out_in_the_order_the_reads_were_asked(stream) -> None:
    send(stream, {"op": "subscribe", "id": 1, "symbols": ["AAA"]})
    send(stream, {"op": "subscribe", "id": 2, "symbols": ["BBB"]})
    first, second = stream.take_reads()
    stream.read_done(second, {"BBB": state("BBB", "e2", 3)})
    assert not stream.outbox, "the second answer waits for the first"
    stream.batch({"AAA": entry("AAA", "e1", 6, 6), "BBB": entry("BBB", "e2", 4, 4)})
    stream.read_done(first, {"AAA": state("AAA", "e1", 5)})
    frames = drain(stream)
    assert [(f["type"], f.get("id"), f.get("symbol")) for f in frames[:4]] == [
        ("ack", 1, None),
        ("snapshot", None, "AAA"),
        ("ack", 2, None),
        ("snapshot", None, "BBB"),
    ]
    assert sorted(tick_seqs(frames)) == [("AAA", 6), ("BBB", 4)]


def test_a_refused_read_still_releases_what_was_held(stream, clock) -> None:
    subscribed(stream, "AAA", "e1", 5)
    send(stream, {"op": "subscribe", "id": 3, "symbols": ["BBB"]})
    (read,) = stream.take_reads()
    stream.batch({"AAA": entry("AAA", "e1", 6, 6)})
    stream.read_failed(read)
    frames = drain(stream)
    assert [(f["type"], f.get("id"), f.get("code")) for f in frames] == [
        ("error", 3, "unavailable"),
        ("ticks", None, None),
    ]
    assert "BBB" not in stream.subs, "nothing subscribed"
    assert stream.close_code is None


# --- subscribe and unsubscribe ------------------------------------------------------


def test_a_subscribe_naming_an_unknown_symbol_is_refused_whole(stream) -> None:
    send(stream, {"op": "subscribe", "id": 4, "symbols": ["AAA", "NOPE"]})
    (error,) = drain(stream)
    assert (error["code"], error["id"], error["message"]) == ("unknown_symbol", 4, "unknown or disabled symbols: NOPE")
    assert stream.take_reads() == []
    assert len(stream.subs) == 0


def test_more_symbols_than_the_limit_are_refused(stream) -> None:
    stream.catalog["CCC"] = stream.catalog["DDD"] = {"status": "trading"}
    subscribed(stream, "AAA", "e1", 1)
    send(stream, {"op": "subscribe", "id": 1, "symbols": ["BBB"]})
    assert len(stream.take_reads()) == 1
    send(stream, {"op": "subscribe", "id": 2, "symbols": ["CCC", "DDD"]})
    (error,) = drain(stream)
    assert (error["code"], error["id"]) == ("too_many_symbols", 2), "BBB, still being read, counts"
    assert stream.take_reads() == []


def test_a_subscribe_over_the_read_budget_is_refused_whole_and_reads_nothing(clock) -> None:
    session = make(clock, budget=ReadBudget(per_second=1.0, burst=1.0, now=clock.now))
    session.open(CATALOG, HELLO)
    drain(session)
    send(session, {"op": "subscribe", "id": 5, "symbols": ["AAA", "BBB"]})
    (error,) = drain(session)
    assert (error["code"], error["id"], "retry_after_ms" in error) == ("rate_limited", 5, False), "never fits"
    assert session.take_reads() == []
    subscribed(session, "AAA", "e1", 1)
    send(session, {"op": "subscribe", "id": 6, "symbols": ["BBB"]})
    (error,) = drain(session)
    assert (error["code"], error["retry_after_ms"]) == ("rate_limited", 1000)
    clock.now += 1.0
    send(session, {"op": "subscribe", "id": 7, "symbols": ["BBB"]})
    assert [r.symbols for r in session.take_reads()] == [("BBB",)], "the budget refilled with the clock"


def test_a_resubscribe_in_the_same_interval_is_only_acked(stream) -> None:
    subscribed(stream, "AAA", "e1", 5)
    send(stream, {"op": "subscribe", "id": 8, "symbols": ["AAA"]})
    assert kinds(drain(stream)) == ["ack"]
    assert stream.take_reads() == []


@pytest.mark.parametrize("only", [None, "AAA"])
def test_a_resubscribe_in_another_interval_sends_that_intervals_snapshot(clock, only) -> None:
    session = make(clock, only=only)
    session.open(CATALOG, HELLO)
    if only is None:
        send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"]})
    (read,) = session.take_reads()
    session.read_done(read, {"AAA": state("AAA", "e1", 5)})
    drain(session)
    send(session, {"op": "subscribe", "id": "r", "symbols": ["AAA"], "interval": "5s"})
    (read,) = session.take_reads()
    assert (read.symbols, read.interval) == (("AAA",), "5s")
    session.read_done(read, {"AAA": state("AAA", "e1", 7)})
    frames = drain(session)
    assert kinds(frames) == ["ack", "snapshot"]
    assert (frames[1]["interval"], frames[1]["seq"]) == ("5s", 7)
    assert session.intervals["AAA"] == "5s"


def test_a_resubscribe_with_since_resumes_with_the_missed_ticks(stream) -> None:
    subscribed(stream, "AAA", "e1", 5)
    send(stream, {"op": "subscribe", "id": 9, "symbols": ["AAA"], "since": {"AAA": {"epoch": "e1", "seq": 3}}})
    (read,) = stream.take_reads()
    assert read.since_keys() == {"AAA": ("e1", 3)}
    stream.read_done(read, {"AAA": state("AAA", "e1", 6, missed=[4, 5, 6])})
    frames = drain(stream)
    assert kinds(frames) == ["ack", "ticks"]
    assert frames[1]["recovered"] is True
    assert stream.subs.position("AAA") == ("e1", 6)


def test_unsubscribe_acks_what_it_removed_and_its_ticks_stop(stream) -> None:
    subscribed(stream, "AAA", "e1", 5)
    send(stream, {"op": "unsubscribe", "id": 2, "symbols": ["AAA", "BBB"]})
    (ack,) = drain(stream)
    assert (ack["type"], ack["op"], ack["symbols"]) == ("ack", "unsubscribe", ["AAA"])
    stream.batch({"AAA": entry("AAA", "e1", 6, 6)})
    assert not stream.outbox


def test_a_single_symbol_stream_serves_its_own_symbol_only(clock) -> None:
    session = make(clock, only="AAA")
    session.open(CATALOG, HELLO)
    session.read_done(session.take_reads()[0], {"AAA": state("AAA", "e1", 1)})
    drain(session)
    for op in ("subscribe", "unsubscribe"):
        send(session, {"op": op, "id": op, "symbols": ["BBB"]})
        (error,) = drain(session)
        assert (error["code"], error["id"]) == ("forbidden", op)
    assert "AAA" in session.subs


# --- ticks, resyncs, catalog, alerts ------------------------------------------------


def test_a_new_epoch_asks_for_a_fresh_snapshot_in_the_interval_followed(stream) -> None:
    subscribed(stream, "AAA", "e1", 5, interval="5s")
    subscribed(stream, "BBB", "e2", 5)
    stream.batch({"AAA": entry("AAA", "e9", 1, 1), "BBB": entry("BBB", "e9", 1, 1)})
    assert not stream.outbox, "another epoch's ticks are not forwarded"
    reads = stream.take_reads()
    assert sorted((r.symbols, r.interval, r.resync, r.ack) for r in reads) == [
        (("AAA",), "5s", True, None),
        (("BBB",), "1m", True, None),
    ]
    stream.batch({"AAA": entry("AAA", "e9", 2, 2)})
    for read in reads:
        symbol = read.symbols[0]
        stream.read_done(read, {symbol: state(symbol, "e9", 1)})
    frames = drain(stream)
    assert kinds(frames) == ["snapshot", "snapshot", "ticks"]
    assert tick_seqs(frames) == [("AAA", 2)]


def test_a_batch_the_client_gets_whole_goes_out_as_the_frame_built_once(stream) -> None:
    subscribed(stream, "AAA", "e1", 5)
    batch = {"AAA": entry("AAA", "e1", 6, 7)}
    built = '{"type":"ticks","data":[' + batch["AAA"][3] + "]}"
    assert stream.batch(batch, built) == 2, "the ticks it forwarded"
    assert stream.outbox.pop(0) is built
    trimmed = {"AAA": entry("AAA", "e1", 7, 8)}
    assert stream.batch(trimmed, '{"type":"ticks","data":[' + trimmed["AAA"][3] + "]}") == 1
    assert tick_seqs(drain(stream)) == [("AAA", 8)]
    assert stream.take_sent() == (0, 0), "counted by the caller, from what batch returned"


def test_ticks_forwarded_from_the_hold_are_counted_by_take_sent(stream) -> None:
    send(stream, {"op": "subscribe", "id": 1, "symbols": ["AAA", "BBB"]})
    (read,) = stream.take_reads()
    assert stream.batch({"AAA": entry("AAA", "e1", 2, 3), "BBB": entry("BBB", "e2", 2, 2)}) == 0, "held"
    assert stream.batch({"AAA": entry("AAA", "e1", 4, 4)}) == 0
    stream.read_done(read, {"AAA": state("AAA", "e1", 1), "BBB": state("BBB", "e2", 1)})
    assert stream.take_sent() == (2, 4)
    assert stream.take_sent() == (0, 0)


def test_a_catalog_change_drops_delisted_symbols_and_is_announced(clock) -> None:
    changes: list[str] = []
    session = make(clock, on_change=lambda: changes.append("left the group"))
    session.open(CATALOG, HELLO)
    subscribed(session, "AAA", "e1", 5)
    subscribed(session, "BBB", "e2", 5)
    changes.clear()
    session.catalog_changed(CATALOG[:1], '{"type":"symbols"}')
    assert kinds(drain(session)) == ["symbols"]
    assert session.subs.symbols() == ["AAA"]
    assert changes == ["left the group"]
    session.batch({"BBB": entry("BBB", "e2", 6, 6)})
    assert not session.outbox


def test_a_symbol_delisted_while_it_was_read_is_not_subscribed(stream) -> None:
    send(stream, {"op": "subscribe", "id": 1, "symbols": ["BBB"]})
    (read,) = stream.take_reads()
    stream.catalog_changed(CATALOG[:1], '{"type":"symbols"}')
    stream.read_done(read, {"BBB": state("BBB", "e2", 5)})
    assert kinds(drain(stream)) == ["symbols", "ack"]
    assert "BBB" not in stream.subs


def test_on_change_comes_before_anything_changes_what_it_follows(clock) -> None:
    seen: list[tuple[str, ...]] = []
    session = make(clock)
    session.on_change = lambda: seen.append(tuple(session.subs.symbols()))
    session.open(CATALOG, HELLO)
    send(session, {"op": "ping", "id": 1})
    assert seen == [], "a ping changes nothing"
    subscribed(session, "AAA", "e1", 5)
    send(session, {"op": "unsubscribe", "id": 2, "symbols": ["AAA"]})
    assert seen == [(), ("AAA",)], "before the read, and before the removal"


def test_alerts_are_sent_and_pings_answered_with_the_server_time(stream) -> None:
    stream.alert('{"type":"alert"}')
    send(stream, {"op": "ping", "id": 3})
    frames = drain(stream)
    assert kinds(frames) == ["alert", "pong"]
    assert (frames[1]["id"], frames[1]["server_time"]) == (3, 4242)


# --- the guard, on the session's clock ----------------------------------------------


def test_repeated_bad_frames_close_with_4400(stream, clock) -> None:
    codes = []
    for _ in range(11):
        clock.now += 0.06
        codes.append(stream.client_frame("not json", None))
    assert codes == [None] * 10 + [CloseCode.PROTOCOL_ABUSE]
    assert kinds(drain(stream)) == ["error"] * 11
    assert not stream.serving


def test_a_flood_is_refused_once_per_second_then_closed_4429(stream, clock) -> None:
    codes = [send(stream, {"op": "ping", "id": i}) for i in range(60)]
    frames = drain(stream)
    assert kinds(frames).count("pong") == 20
    assert [f["code"] for f in frames if f["type"] == "error"] == ["rate_limited"]
    # 20 admitted, then more refusals within a second than the rate (20): the 41st refusal closes.
    assert codes.index(CloseCode.RATE_LIMITED) == 40
    assert codes[41:] == [None] * 19, "nothing is served once closing"
    assert stream.close_code is CloseCode.RATE_LIMITED


# --- shared reads -------------------------------------------------------------------


def test_a_shared_read_older_than_the_feed_is_completed_with_the_pieces_sent_since(clock) -> None:
    last: dict[str, tuple[str, int]] = {"AAA": ("e1", 7)}
    recent = {"AAA": deque([entry("AAA", "e1", 6, 7)])}
    session = make(clock, shared=SubscribeReads(last, recent))
    session.open(CATALOG, HELLO)
    drain(session)
    send(session, {"op": "subscribe", "id": 1, "symbols": ["AAA"]})
    (read,) = session.take_reads()
    assert isinstance(read, Read)
    session.read_done(read, {"AAA": state("AAA", "e1", 5)})
    frames = drain(session)
    assert kinds(frames) == ["ack", "snapshot", "ticks"]
    assert tick_seqs(frames) == [("AAA", 6), ("AAA", 7)]
    assert session.subs.position("AAA") == ("e1", 7)
    assert session.subs.matches(last), "in step with the feed: it may join a group"


# --- every frame costs a bounded, charged amount ------------------------------------


def test_a_subscribe_that_reads_nothing_is_still_charged_a_unit(clock) -> None:
    budget = ReadBudget(per_second=1.0, burst=2.0, now=clock.now)
    session = make(clock, budget=budget)
    session.open(CATALOG, HELLO)
    subscribed(session, "AAA", "e1", 1)
    send(session, {"op": "subscribe", "id": 2, "symbols": ["AAA"]})
    assert kinds(drain(session)) == ["ack"]
    send(session, {"op": "subscribe", "id": 3, "symbols": ["AAA"]})
    (error,) = drain(session)
    assert (error["code"], error["id"]) == ("rate_limited", 3), "1 + 1 units: the burst of 2 is spent"


def test_an_unknown_symbol_subscribe_is_charged_too(clock) -> None:
    session = make(clock, budget=ReadBudget(per_second=1.0, burst=1.0, now=clock.now))
    session.open(CATALOG, HELLO)
    drain(session)
    send(session, {"op": "subscribe", "id": 1, "symbols": ["NOPE"]})
    send(session, {"op": "subscribe", "id": 2, "symbols": ["NOPE"]})
    assert [f["code"] for f in drain(session)] == ["unknown_symbol", "rate_limited"]


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "subscribe", "symbols": ["NOPE"]},
        {"op": "subscribe", "symbols": ["AAA", "BBB", "CCC", "DDD"]},
        {"op": "unsubscribe", "symbols": ["AAA"]},
    ],
    ids=["unknown_symbol", "too_many_symbols", "forbidden"],
)
def test_refused_requests_count_toward_the_abuse_close(clock, frame) -> None:
    only = "AAA" if frame["op"] == "unsubscribe" else None
    if only:
        frame = {**frame, "symbols": ["BBB"]}  # a single-symbol stream refuses another symbol
    session = make(clock, only=only)
    session.open(CATALOG, HELLO)
    for read in session.take_reads():
        session.read_done(read, {"AAA": state("AAA", "e1", 1)})
    session.catalog.update({"CCC": {"status": "trading"}, "DDD": {"status": "trading"}})
    codes = []
    for i in range(11):
        clock.now += 0.06  # under the frame rate: this is about what is asked
        codes.append(send(session, {**frame, "id": i}))
    assert codes == [None] * 10 + [CloseCode.PROTOCOL_ABUSE]
    assert session.close_code is CloseCode.PROTOCOL_ABUSE


def test_an_unavailable_store_is_not_held_against_the_client(stream, clock) -> None:
    for i in range(15):
        clock.now += 0.06
        send(stream, {"op": "subscribe", "id": i, "symbols": ["AAA"]})
        for read in stream.take_reads():
            stream.read_failed(read)
    assert stream.serving
