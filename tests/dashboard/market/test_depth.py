"""Book replicas and depth frames: a client's best n levels stay right, frames built once."""

from __future__ import annotations

import json
import random

from dashboard.market.depth import BookReplicas, book_entry, trades_frame, trades_piece, view_changes, window_of


def apply(view: dict[float, float], changes: list[list[float]]) -> None:
    for price, size in changes:
        if size:
            view[price] = size
        else:
            view.pop(price, None)


def best(view: dict[float, float], levels: int, bids: bool) -> list[list[float]]:
    return [[p, view[p]] for p in sorted(view, reverse=bids)[:levels]]


def random_book(rng: random.Random, mid: int) -> tuple[dict[float, float], dict[float, float]]:
    bids = {float(mid - i): float(rng.randint(1, 9)) for i in range(1, rng.randint(1, 30))}
    asks = {float(mid + i): float(rng.randint(1, 9)) for i in range(0, rng.randint(1, 30))}
    return bids, asks


def test_view_changes_turn_the_best_n_before_into_the_best_n_after() -> None:
    rng = random.Random(7)
    for _ in range(300):
        before = sorted(((float(rng.randint(0, 40)), float(rng.randint(1, 5))) for _ in range(25)), reverse=True)
        before = list(dict(before).items())
        before.sort(reverse=True)
        after = dict(before)
        for _ in range(rng.randint(0, 8)):
            price = float(rng.randint(0, 40))
            if rng.random() < 0.4:
                after.pop(price, None)
            else:
                after[price] = float(rng.randint(1, 5))
        after_levels = sorted(after.items(), reverse=True)
        for levels in (1, 3, 20):
            view = dict(before[:levels])
            apply(view, [list(c) for c in view_changes(before, after_levels, levels)])
            assert sorted(view.items(), reverse=True) == after_levels[:levels]


def test_a_client_of_any_level_count_keeps_its_book_right_through_diffs() -> None:
    rng = random.Random(11)
    replicas = BookReplicas()
    bids, asks = random_book(rng, 100)
    u = 1
    replicas.apply("AAA", book_entry("e1", 1, 1, 5, bids.items(), asks.items(), True))
    client = {n: (dict(best(bids, n, True)), dict(best(asks, n, False))) for n in (1, 5, 20)}
    last_u = {n: 1 for n in client}
    for window in range(200):
        mid = 100 + rng.randint(-3, 3)
        new_bids, new_asks = random_book(rng, mid) if window % 17 == 0 else (dict(bids), dict(asks))
        for _ in range(rng.randint(1, 6)):
            side = new_bids if rng.random() < 0.5 else new_asks
            price = float(mid + rng.randint(-20, 20))
            if rng.random() < 0.3:
                side.pop(price, None)
            elif (side is new_bids and price < mid) or (side is new_asks and price >= mid):
                side[price] = float(rng.randint(1, 9))
        changes_b = [[p, new_bids.get(p, 0.0)] for p in set(bids) | set(new_bids) if bids.get(p) != new_bids.get(p)]
        changes_a = [[p, new_asks.get(p, 0.0)] for p in set(asks) | set(new_asks) if asks.get(p) != new_asks.get(p)]
        first = u + 1
        u += rng.randint(1, 3)
        update = replicas.apply("AAA", book_entry("e1", first, u, window, changes_b, changes_a, False))
        assert update is not None
        assert update.continues("e1", first - 1)
        bids, asks = new_bids, new_asks
        for n, (cb, ca) in client.items():
            frame = json.loads(update.frame(n))
            assert (frame["type"], frame["U"], frame["u"]) == ("depth", last_u[n] + 1, u)
            assert update.frame(n) is update.frame(n), "built once per level count"
            last_u[n] = u
            apply(cb, frame["bids"])
            apply(ca, frame["asks"])
            assert best(cb, n, True) == best(bids, n, True)
            assert best(ca, n, False) == best(asks, n, False)


def test_a_lost_window_drops_the_replica_until_the_next_keyframe() -> None:
    replicas = BookReplicas()
    replicas.apply("AAA", book_entry("e1", 1, 1, 0, [(9.0, 1.0)], [(10.0, 1.0)], True))
    assert replicas.apply("AAA", book_entry("e1", 3, 3, 1, [(9.0, 2.0)], [], False)) is None, "u 2 was missed"
    assert "AAA" not in replicas.books
    assert replicas.missed == 1
    update = replicas.apply("AAA", book_entry("e1", 4, 4, 2, [(8.0, 1.0)], [(11.0, 1.0)], True))
    assert update is not None
    assert update.before is None, "a keyframe after a gap: streams need a snapshot"
    snapshot = json.loads(update.after.snapshot_frame("AAA", 20))
    assert snapshot == {
        "type": "depth_snapshot",
        "symbol": "AAA",
        "epoch": "e1",
        "u": 4,
        "bids": [[8.0, 1.0]],
        "asks": [[11.0, 1.0]],
    }


def test_a_keyframe_that_repeats_the_book_continues_it_and_sends_nothing() -> None:
    replicas = BookReplicas()
    replicas.apply("AAA", book_entry("e1", 1, 5, 0, [(9.0, 1.0)], [(10.0, 1.0)], True))
    update = replicas.apply("AAA", book_entry("e1", 6, 5, 1, [(9.0, 1.0)], [(10.0, 1.0)], True))
    assert update is not None
    assert not update.changed
    assert update.frame(20) is None
    assert update.continues("e1", 5)


def test_trades_are_joined_from_pieces_encoded_once() -> None:
    piece = trades_piece([{"symbol": "AAA", "id": 1}, {"symbol": "AAA", "id": 2}])
    frame = json.loads(trades_frame([piece, trades_piece([{"symbol": "BBB", "id": 7}])]))
    assert frame == {
        "type": "trades",
        "data": [{"symbol": "AAA", "id": 1}, {"symbol": "AAA", "id": 2}, {"symbol": "BBB", "id": 7}],
    }


def test_a_window_applies_a_symbols_book_once_when_asked() -> None:
    replicas = BookReplicas()
    books = {s: book_entry("e1", 1, 1, 0, [(9.0, 1.0)], [(10.0, 1.0)], True) for s in ("AAA", "BBB")}
    window = window_of(replicas, books, {"AAA": ["e1", 1, 1, "{}"]})
    assert set(window.trades) == {"AAA"}
    assert replicas.books == {}, "nothing applied before a stream asks"
    assert window.book("BBB") is window.book("BBB"), "made once"
    assert replicas.books["BBB"].u == 1
    assert "AAA" not in replicas.books, "a book nobody follows costs a queued entry"


def test_entries_nobody_asked_for_are_dropped_at_the_next_keyframe() -> None:
    replicas = BookReplicas()
    first = window_of(replicas, {"AAA": book_entry("e1", 1, 1, 0, [(9.0, 1.0)], [(10.0, 1.0)], True)}, None)
    second = window_of(replicas, {"AAA": book_entry("e1", 2, 2, 1, [(9.0, 2.0)], [], False)}, None)
    keyframe = window_of(replicas, {"AAA": book_entry("e1", 3, 3, 2, [(9.0, 3.0)], [(10.0, 1.0)], True)}, None)
    assert first.book("AAA") is None, "replaced by the keyframe before anyone asked"
    assert second.book("AAA") is None
    update = keyframe.book("AAA")
    assert update is not None
    assert update.before is None, "no diff across entries never applied: a snapshot"
    assert update.after.bids == ((9.0, 3.0),)
    assert replicas.missed == 0, "nothing was lost on the way"
    later = window_of(replicas, {"AAA": book_entry("e1", 4, 4, 3, [(8.0, 1.0)], [], False)}, None)
    assert later.book("AAA").continues("e1", 3)
