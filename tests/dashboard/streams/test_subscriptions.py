"""Per-connection subscription state (what of each batch a client gets) and the resume decision."""

from __future__ import annotations

import json

from dashboard.market.protocol import Position, encode_ticks, ticks_frame
from dashboard.market.store import Snapshot, SubscribeState
from dashboard.streams.subscriptions import Subscriptions, subscription_frame


def tick(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "seq": seq, "ts": 1000 + seq, "price": 1.5, "bid": 1.4, "ask": 1.6, "volume": 3.0}


def entry(epoch: str, first: int, last: int, symbol: str = "A") -> list:
    return [epoch, first, last, encode_ticks([tick(symbol, s) for s in range(first, last + 1)])]


def seqs(pieces: list[str]) -> list[int]:
    return [t["seq"] for t in json.loads(ticks_frame(pieces))["data"]]


def test_subscriptions_skip_what_the_snapshot_covered() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 10)
    assert subs.select({"A": entry("e1", 8, 10)}) == []
    assert seqs(subs.select({"A": entry("e1", 9, 12)})) == [11, 12]
    assert seqs(subs.select({"A": entry("e1", 13, 14)})) == [13, 14]
    assert subs.position("A") == ("e1", 14)


def test_subscriptions_ignore_unsubscribed_symbols() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 0)
    assert seqs(subs.select({"A": entry("e1", 1, 1), "B": entry("e1", 1, 1, "B")})) == [1]
    subs.remove("A")
    assert subs.select({"A": entry("e1", 2, 2)}) == []


def test_a_new_epoch_asks_for_a_fresh_snapshot_instead_of_ticks() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 100)
    assert subs.select({"A": entry("e2", 1, 2)}) == []
    assert subs.select({"A": entry("e2", 3, 3)}) == [], "nothing until the snapshot is sent"
    assert subs.take_resync() == ["A"]
    assert subs.take_resync() == []
    subs.add("A", "e2", 3)
    assert seqs(subs.select({"A": entry("e2", 3, 4)})) == [4]


def test_subscription_made_before_the_series_started_gets_a_snapshot_of_it() -> None:
    subs = Subscriptions()
    subs.add("A", None, 0)
    assert subs.select({"A": entry("e1", 1, 3)}) == []
    assert subs.take_resync() == ["A"]


# --- the resume decision ----------------------------------------------------------------


def held(seqs: range, epoch: str = "e1", last: int | None = None) -> SubscribeState:
    snap = Snapshot(symbol="A", epoch=epoch, seq=last if last is not None else seqs[-1], quote={"price": 1}, candles=[])
    return SubscribeState(snapshot=snap, missed=[(s, json.dumps(tick("A", s))) for s in seqs])


def test_resume_in_the_same_epoch_sends_exactly_the_missed_ticks() -> None:
    frame, epoch, seq = subscription_frame(held(range(6, 9)), Position("e1", 5), "trading", "1m")
    body = json.loads(frame)
    assert (body["type"], body["recovered"], [t["seq"] for t in body["data"]]) == ("ticks", True, [6, 7, 8])
    assert (epoch, seq) == ("e1", 8)


def test_resume_from_another_epoch_gets_a_snapshot_marked_not_recovered() -> None:
    frame, epoch, seq = subscription_frame(held(range(6, 9)), Position("old", 5), "trading", "1m")
    body = json.loads(frame)
    assert (body["type"], body["recovered"], body["seq"]) == ("snapshot", False, 8)
    assert (epoch, seq) == ("e1", 8)


def test_resume_past_what_is_held_gets_a_snapshot() -> None:
    # Ticks 3..5 were trimmed: only 6..8 are held, so the gap cannot be filled.
    frame, _, _ = subscription_frame(held(range(6, 9)), Position("e1", 2), "trading", "1m")
    assert json.loads(frame)["type"] == "snapshot"


def test_resume_when_nothing_was_missed_sends_an_empty_recovery() -> None:
    frame, _, seq = subscription_frame(held(range(0), last=5), Position("e1", 5), "trading", "1m")
    assert json.loads(frame) == {"type": "ticks", "recovered": True, "data": []}
    assert seq == 5


def test_plain_subscribe_gets_a_snapshot_without_a_recovered_flag() -> None:
    state = SubscribeState(snapshot=held(range(1, 2)).snapshot, missed=None)
    body = json.loads(subscription_frame(state, None, "halted", "5s")[0])
    assert body["type"] == "snapshot"
    assert "recovered" not in body
    assert (body["status"], body["interval"]) == ("halted", "5s")
