"""Price alerts: the pure rules (``workers/alert_rules.py``) and the producer's hook (``workers/alerts.py``).

The rule tests feed hand-made ticks. The producer tests run the real ``Producer`` against
the suite's Redis, the real channel layer and the test database: an alert fires once,
within the window of the crossing tick, with that tick's price, and a second producer that
still holds the same alert during a lease handover neither stores nor publishes it again.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from dashboard import alert_services
from dashboard.market import store as market_store
from dashboard.market.broadcast import user_group
from dashboard.market.client import new_async_redis, sync_redis
from dashboard.models import Alert, Symbol
from workers.alert_rules import MINUTE_MS, AlertEvaluator, AlertRule
from workers.alerts import AlertWatcher
from workers.producer import Producer, ProducerConfig
from workers.specs import producer_specs


@dataclass(frozen=True)
class T:
    """A tick as the evaluator reads it."""

    ts: int
    price: float


def ticks(*prices: float, start: int = 1_000, step: int = 50) -> list[T]:
    return [T(start + i * step, p) for i, p in enumerate(prices)]


def rule(id: int, condition: str, price: float | None = None, **kw) -> AlertRule:
    return AlertRule(
        id=id, user_id=kw.pop("user_id", 1), symbol=kw.pop("symbol", "AAA"), condition=condition, price=price, **kw
    )


# --- the pure rules ----------------------------------------------------------------------


def test_above_fires_at_the_first_tick_at_or_above_with_its_price_and_time() -> None:
    evaluator = AlertEvaluator([rule(1, "above", 101.0)])
    assert evaluator.evaluate("AAA", ticks(100.0, 100.9)) == []
    [firing] = evaluator.evaluate("AAA", ticks(100.5, 101.0, 102.0, start=2_000))
    assert (firing.rule.id, firing.price, firing.ts) == (1, 101.0, 2_050)


def test_below_fires_at_the_first_tick_at_or_below() -> None:
    evaluator = AlertEvaluator([rule(1, "below", 99.0)])
    assert evaluator.evaluate("AAA", ticks(100.0, 99.01)) == []
    [firing] = evaluator.evaluate("AAA", ticks(99.5, 98.7, 98.0, start=3_000))
    assert (firing.price, firing.ts) == (98.7, 3_050)


def test_a_rule_fires_once() -> None:
    evaluator = AlertEvaluator([rule(1, "above", 101.0), rule(2, "below", 99.0)])
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(102.0))] == [1]
    assert evaluator.evaluate("AAA", ticks(103.0)) == []
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(98.0))] == [2]
    assert evaluator.evaluate("AAA", ticks(97.0, 104.0)) == []
    assert len(evaluator) == 0


def test_other_symbols_and_empty_windows_fire_nothing() -> None:
    evaluator = AlertEvaluator([rule(1, "above", 1.0)])
    assert evaluator.evaluate("BBB", ticks(500.0)) == []
    assert evaluator.evaluate("AAA", []) == []
    assert len(evaluator) == 1


def test_indexed_thresholds_match_a_brute_force_check() -> None:
    rng = random.Random(7)
    rules = [
        rule(i, rng.choice(["above", "below"]), round(rng.uniform(90, 110), 2), symbol=rng.choice(["AAA", "BBB"]))
        for i in range(2_000)
    ]
    evaluator = AlertEvaluator(rules)
    active = {r.id: r for r in rules}
    price = {"AAA": 100.0, "BBB": 100.0}
    for window in range(300):
        for symbol in ("AAA", "BBB"):
            prices = []
            for _ in range(rng.randint(0, 4)):
                price[symbol] = round(price[symbol] * (1 + rng.gauss(0, 0.004)), 2)
                prices.append(price[symbol])
            batch = ticks(*prices, start=window * 100)
            expected = {}
            for r in list(active.values()):
                if r.symbol != symbol:
                    continue
                hit = next(
                    (t for t in batch if (t.price >= r.price if r.condition == "above" else t.price <= r.price)), None
                )
                if hit is not None:
                    expected[r.id] = (hit.price, hit.ts)
                    del active[r.id]
            got = {f.rule.id: (f.price, f.ts) for f in evaluator.evaluate(symbol, batch)}
            assert got == expected
    assert len(evaluator) == len(active)


def test_move_rules_match_a_brute_force_check() -> None:
    rng = random.Random(11)
    rules = [
        rule(i, rng.choice(["rise", "fall"]), percent=round(rng.uniform(0.2, 8.0), 2), minutes=rng.choice([1, 2, 5]))
        for i in range(400)
    ]
    evaluator = AlertEvaluator(rules)
    active = {r.id: r for r in rules}
    seen: list[T] = []
    price, ts = 100.0, 0
    for _ in range(1_500):
        batch = []
        for _ in range(rng.randint(0, 3)):
            ts += rng.randint(20, 400)
            price = round(price * (1 + rng.gauss(0, 0.002)), 2)
            batch.append(T(ts, price))
        expected = {}
        for tick in batch:
            seen.append(tick)
            seen = [t for t in seen if t.ts >= tick.ts - 5 * MINUTE_MS]
            recent = {m: [t.price for t in seen if t.ts >= tick.ts - m * MINUTE_MS] for m in (1, 2, 5)}
            lows = {m: min(p) for m, p in recent.items()}
            highs = {m: max(p) for m, p in recent.items()}
            for r in list(active.values()):
                if r.condition == "rise":
                    hit = tick.price / lows[r.minutes] >= 1 + r.percent / 100
                else:
                    hit = tick.price / highs[r.minutes] <= 1 - r.percent / 100
                if hit:
                    expected[r.id] = (tick.price, tick.ts)
                    del active[r.id]
        got = {f.rule.id: (f.price, f.ts) for f in evaluator.evaluate("AAA", batch)}
        assert got == expected
    assert 0 < len(active) < len(rules), "some fired, some did not"


def test_rise_fires_on_a_move_from_the_low_of_the_last_n_minutes() -> None:
    evaluator = AlertEvaluator([rule(1, "rise", percent=2.0, minutes=1), rule(2, "rise", percent=5.0, minutes=1)])
    assert evaluator.evaluate("AAA", ticks(100.0, 99.0, 100.0)) == []
    # 99.0 was 50 ms ago: +2 % from it is 100.98.
    [firing] = evaluator.evaluate("AAA", ticks(100.5, 100.98, 101.5, start=2_000))
    assert (firing.rule.id, firing.price, firing.ts) == (1, 100.98, 2_050)
    assert evaluator.evaluate("AAA", ticks(103.0, start=3_000)) == []


def test_a_move_older_than_the_window_does_not_count() -> None:
    evaluator = AlertEvaluator([rule(1, "rise", percent=2.0, minutes=1)])
    assert evaluator.evaluate("AAA", ticks(99.0, start=0)) == []
    assert evaluator.evaluate("AAA", ticks(100.0, start=MINUTE_MS - 10)) == []
    # The 99.0 low left the one-minute window: +2 % is now measured from 100.0.
    assert evaluator.evaluate("AAA", ticks(101.5, start=MINUTE_MS + 10)) == []
    [firing] = evaluator.evaluate("AAA", ticks(102.0, start=MINUTE_MS + 20))
    assert firing.price == 102.0


def test_fall_fires_on_a_drop_from_the_high() -> None:
    evaluator = AlertEvaluator([rule(1, "fall", percent=10.0, minutes=5)])
    assert evaluator.evaluate("AAA", ticks(100.0, 120.0, 110.0)) == []
    [firing] = evaluator.evaluate("AAA", ticks(108.5, 108.0, start=4 * MINUTE_MS))
    assert (firing.price, firing.ts) == (108.0, 4 * MINUTE_MS + 50)


def test_a_reload_keeps_move_history_and_never_restores_a_fired_rule() -> None:
    r1, r2 = rule(1, "above", 101.0), rule(2, "rise", percent=1.0, minutes=10)
    evaluator = AlertEvaluator([r1, r2])
    evaluator.evaluate("AAA", ticks(100.0))
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(101.0, start=2_000))] == [1, 2]
    # A load that started before the firing was stored still lists both.
    evaluator.replace([r1, r2, rule(3, "rise", percent=0.5, minutes=10)])
    assert len(evaluator) == 1
    # Rule 3's group keeps the 100.0 low seen before the reload.
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(100.6, start=3_000))] == [3]
    # Fired rules no longer listed are forgotten; one whose firing was not stored comes back.
    evaluator.replace([r1])
    evaluator.forget_fired([1])
    evaluator.replace([r1])
    assert len(evaluator) == 1


def test_add_indexes_only_new_rules_beside_the_current_ones() -> None:
    evaluator = AlertEvaluator([rule(1, "above", 101.0), rule(2, "rise", percent=1.0, minutes=10)])
    evaluator.evaluate("AAA", ticks(100.0))
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(101.0, start=2_000))] == [1, 2]
    # A partial load lists a fired rule again (it raced the firing), a known one and new ones.
    added = evaluator.add([rule(1, "above", 101.0), rule(3, "below", 99.0), rule(4, "rise", percent=0.5, minutes=10)])
    assert added == 2
    assert evaluator.add([rule(3, "below", 99.0)]) == 0
    assert len(evaluator) == 2
    # Rule 4 joins the track that saw the 100.0 low.
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(100.6, start=3_000))] == [4]
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(98.0, start=4_000))] == [3]


def test_remove_drops_deleted_rules_and_keeps_the_move_history() -> None:
    evaluator = AlertEvaluator(
        [rule(1, "above", 101.0), rule(2, "rise", percent=1.0, minutes=10), rule(3, "rise", percent=2.0, minutes=10)]
    )
    evaluator.evaluate("AAA", ticks(100.0))
    assert evaluator.remove([1, 3, 99]) == 2
    assert len(evaluator) == 1
    # The removed ones never fire; rule 2 kept the track that saw the 100.0 low (+1 % is 101.0).
    assert [f.rule.id for f in evaluator.evaluate("AAA", ticks(101.0, start=2_000))] == [2]


async def test_a_version_bump_reads_only_recent_alerts_and_a_full_load_comes_on_schedule() -> None:
    calls: list[object] = []

    async def load(since):
        calls.append(since)
        return [rule(len(calls), "above", 1_000.0)]

    async def store(firings):
        return []

    watcher = AlertWatcher(None, load=load, store=store, refresh_ms=10_000)
    await watcher.on_window(b"1", 0, {}, set())
    await watcher.loaded()
    await watcher.on_window(b"2", 100, {}, set())
    await watcher.loaded()
    await watcher.on_window(b"2", 200, {}, set())  # no change: no load
    await watcher.loaded()
    assert calls[0] is None, "the first load is full"
    assert calls[1] is not None, "a change reads only what was created since the full load"
    assert len(calls) == 2
    assert len(watcher.evaluator) == 2
    await watcher.on_window(b"2", 10_000, {}, set())
    await watcher.loaded()
    assert calls[2] is None
    assert len(watcher.evaluator) == 1, "a full load replaces: rules gone from the database go"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"condition": "above"},
        {"condition": "below", "price": 0.0},
        {"condition": "rise", "percent": 2.0},
        {"condition": "rise", "percent": 0.0, "minutes": 5},
        {"condition": "fall", "percent": 100.0, "minutes": 5},
        {"condition": "sideways", "price": 1.0},
    ],
)
def test_rules_without_their_arguments_are_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="alert 9"):
        AlertRule(id=9, user_id=1, symbol="AAA", **kwargs)


# --- in the producer ---------------------------------------------------------------------


@pytest.fixture
async def aredis(transactional_db, redis_client) -> AsyncIterator[aioredis.Redis]:
    client = new_async_redis()
    yield client
    await client.aclose()


@pytest.fixture
def trader(transactional_db, django_user_model):
    Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100"), tick_interval_ms=50)
    return django_user_model.objects.create_user(username="alice", password="not-used-here-1")


def make_producer(aredis: aioredis.Redis, owner: str) -> Producer:
    layer = get_channel_layer()
    return Producer(
        ProducerConfig(owner=owner),
        redis=aredis,
        layer=layer,
        load_catalog=sync_to_async(producer_specs, thread_sensitive=False),
        rng=random.Random(3),
        alerts=AlertWatcher(layer),
    )


def first_tick(entries: dict, symbol: str) -> dict:
    return json.loads("[" + entries[symbol].piece + "]")[0]


async def create_alert(user, **fields) -> Alert:
    alert = await Alert.objects.acreate(user=user, symbol=await Symbol.objects.aget(symbol="AAA"), **fields)
    await sync_to_async(market_store.bump_alerts_version)(sync_redis())
    return alert


async def next_message(layer, channel: str, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def test_an_alert_fires_once_in_the_window_of_its_crossing_tick(aredis, trader) -> None:
    layer = get_channel_layer()
    inbox = await layer.new_channel()
    await layer.group_add(user_group(trader.pk), inbox)
    producer = make_producer(aredis, "p1")
    await producer.run_window(20_000_000)
    crossing = await create_alert(trader, condition="below", price=Decimal("1000"))
    waiting = await create_alert(trader, condition="above", price=Decimal("100000"))
    # This window sees the new version and reloads in the background; the reload may land
    # before its ticks are checked (a fast database) or only for the next window.
    before = await producer.run_window(20_000_100)
    await producer.alerts.loaded()
    after = await producer.run_window(20_000_200)
    await producer.alerts.settled()  # stored and pushed off the window's path
    await crossing.arefresh_from_db()
    assert crossing.triggered_at is not None
    fired_at = int(crossing.triggered_at.timestamp() * 1000)
    firsts = [first_tick(entries, "AAA") for entries in (before, after)]
    # It fired on the first tick of the first window that checked it, at that tick's price.
    tick = next(t for t in firsts if t["ts"] == fired_at)
    assert crossing.triggered_price == tick["price"]
    message = await next_message(layer, inbox)
    assert message["type"] == "alert.fired"
    frame = json.loads(message["frame"])
    assert frame == {
        "type": "alert",
        "alert": {
            "id": crossing.pk,
            "symbol": "AAA",
            "condition": "below",
            "price": 1000.0,
            "triggered_price": tick["price"],
            "triggered_at": tick["ts"],
        },
    }
    for i in range(3, 6):
        await producer.run_window(20_000_000 + i * 100)
    await producer.alerts.settled()
    assert producer.alerts.fired == 1
    await waiting.arefresh_from_db()
    assert waiting.triggered_at is None
    with pytest.raises(TimeoutError):
        await next_message(layer, inbox, timeout=0.3)
    await layer.group_discard(user_group(trader.pk), inbox)


async def test_two_producers_during_a_handover_fire_an_alert_once(aredis, trader) -> None:
    layer = get_channel_layer()
    inbox = await layer.new_channel()
    await layer.group_add(user_group(trader.pk), inbox)
    first, second = make_producer(aredis, "p1"), make_producer(aredis, "p2")
    await first.run_window(30_000_000)
    await second.run_window(30_000_000)
    alert = await create_alert(trader, condition="below", price=Decimal("1000"))
    await first.run_window(30_000_100)
    await second.run_window(30_000_100)
    await first.alerts.loaded()
    await second.alerts.loaded()
    assert len(second.alerts.evaluator) == 1, "the second producer holds the alert too"
    entries = await first.run_window(30_000_200)
    await first.alerts.settled()
    assert first.alerts.fired == 1
    fired_price = first_tick(entries, "AAA")["price"]
    # Handover: the first producer stops, the second takes AAA and ticks it with the stale alert.
    await first.release_all()
    now = 30_000_300
    while "AAA" not in (await second.run_window(now)):
        now += 100
        assert now < 30_010_000, "the second producer never took AAA over"
    await second.alerts.settled()
    assert second.alerts.fired == 0
    assert len(second.alerts.evaluator) == 0, "evaluated, found already fired, not stored again"
    await alert.arefresh_from_db()
    assert alert.triggered_price == fired_price
    assert json.loads((await next_message(layer, inbox))["frame"])["alert"]["id"] == alert.pk
    with pytest.raises(TimeoutError):
        await next_message(layer, inbox, timeout=0.3)
    await layer.group_discard(user_group(trader.pk), inbox)


async def test_a_deleted_alert_leaves_the_producer_on_the_version_bump(aredis, trader) -> None:
    """Not at the next full load (5 minutes): the delete's bump carries its id."""
    producer = make_producer(aredis, "p1")
    await producer.run_window(40_000_000)
    await producer.alerts.loaded()
    keep = await create_alert(trader, condition="above", price=Decimal("100000"))
    gone = await create_alert(trader, condition="below", price=Decimal("0.01"))
    await producer.run_window(40_000_100)
    await producer.alerts.loaded()
    assert len(producer.alerts.evaluator) == 2
    assert await sync_to_async(alert_services.delete)(trader, gone.pk)
    await producer.run_window(40_000_200)  # sees the new version: a partial load, no full one
    await producer.alerts.loaded()
    assert len(producer.alerts.evaluator) == 1, "the deleted alert is dropped at once"
    await producer.run_window(40_000_300)
    await producer.alerts.loaded()
    assert len(producer.alerts.evaluator) == 1
    assert await Alert.objects.filter(pk=keep.pk, triggered_at__isnull=True).aexists()
    await producer.release_all()
