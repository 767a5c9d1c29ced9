"""The market store against a real Redis: lease-checked commits and the subscribe reads."""

from __future__ import annotations

import json

import orjson
import pytest

from dashboard.market import store
from dashboard.market.candles import Candle

OWNER, OTHER = "worker-a", "worker-b"


def tick(seq: int) -> tuple[int, str]:
    return seq, orjson.dumps({"symbol": "AAA", "seq": seq, "price": 100.0 + seq}).decode()


def state(seq: int, epoch: str = "e1") -> store.SeriesState:
    return store.SeriesState(epoch=epoch, seq=seq, mid=100.0 + seq, quote={"price": 100.0 + seq}, session=None)


@pytest.fixture
def commit(redis_client):
    script = redis_client.register_script(store.COMMIT_SCRIPT)

    def _commit(owner: str, seqs: range, *, closed: tuple[Candle, ...] = (), keep_ticks: int = 100) -> int:
        args = store.commit_args(
            owner, 3000, state(seqs[-1]), [tick(s) for s in seqs], symbol="AAA", closed=closed, keep_ticks=keep_ticks
        )
        return script(keys=store.commit_keys("AAA"), args=args)

    return _commit


def test_only_the_lease_holder_can_commit(redis_client, commit) -> None:
    assert commit(OWNER, range(1, 3)) == 0, "no lease, no write"
    assert not redis_client.exists(store.state_key("AAA"))
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    assert commit(OWNER, range(1, 3)) == 1
    assert commit(OTHER, range(3, 5)) == 0, "a producer that lost its lease writes nothing"
    assert store.SeriesState.from_redis(redis_client.hgetall(store.state_key("AAA"))).seq == 2


def test_commit_renews_the_lease_and_keeps_a_bounded_tail(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=100)
    assert commit(OWNER, range(1, 31), keep_ticks=10) == 1
    assert redis_client.pttl(store.lease_key("AAA")) > 1000
    held = redis_client.zrange(store.ticks_key("AAA"), 0, -1, withscores=True)
    assert [int(score) for _, score in held] == list(range(21, 31))


def test_closed_candles_go_to_the_recent_list_and_the_pending_queue(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    candle = Candle("1m", 60_000, 1.0, 2.0, 0.5, 1.5, 10.0, closed=True)
    assert commit(OWNER, range(1, 2), closed=(candle,)) == 1
    assert json.loads(redis_client.lindex(store.recent_candles_key("AAA", "1m"), 0))["ts"] == 60_000
    assert json.loads(redis_client.lindex(store.PENDING_CANDLES_KEY, 0))["symbol"] == "AAA"


def test_pending_candles_are_trimmed_only_once_the_block_completes(redis_client) -> None:
    encoded = [store.encode_candle("AAA", Candle("1m", i * 60_000, 1, 1, 1, 1, 1, closed=True)) for i in range(3)]
    redis_client.rpush(store.PENDING_CANDLES_KEY, *encoded)

    def failed_write() -> None:
        with store.pending_candles(redis_client, 2):
            raise RuntimeError("the database write failed")

    with pytest.raises(RuntimeError):
        failed_write()
    assert redis_client.llen(store.PENDING_CANDLES_KEY) == 3, "a failed write leaves the batch queued"
    with store.pending_candles(redis_client, 2) as batch:
        assert batch == encoded[:2], "the oldest first, at most the limit"
    assert redis_client.lrange(store.PENDING_CANDLES_KEY, 0, -1) == encoded[2:]
    with store.pending_candles(redis_client, 2) as batch:
        assert batch == encoded[2:]
    with store.pending_candles(redis_client, 2) as batch:
        assert batch == []


def test_a_resume_in_the_same_epoch_reads_only_the_missed_ticks(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 11), closed=(Candle("1m", 0, 1, 1, 1, 1, 1, closed=True),))
    states = store.read_subscribe(redis_client, ["AAA", "NEW"], "1m", {"AAA": ("e1", 7)})
    snap = states["AAA"].snapshot
    assert (snap.epoch, snap.seq, snap.quote) == ("e1", 10, {"price": 110.0})
    assert [seq for seq, _ in states["AAA"].missed] == [8, 9, 10]
    assert snap.candles == [], "a resume reads no candles"
    assert states["NEW"].snapshot.epoch is None
    assert states["NEW"].missed is None


def test_a_resume_that_is_up_to_date_reads_nothing_more(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 6))
    assert store.read_subscribe(redis_client, ["AAA"], "1m", {"AAA": ("e1", 5)})["AAA"].missed == []


@pytest.mark.parametrize(
    ("since", "why"),
    [(("other", 7), "another epoch"), (("e1", 2), "more missed than the cap"), (("e1", 11), "ahead of the series")],
)
def test_no_resume_means_a_snapshot_and_no_tick_read(redis_client, commit, since, why) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 11), closed=(Candle("1m", 0, 1, 1, 1, 1, 1, closed=True),))
    state = store.read_subscribe(redis_client, ["AAA"], "1m", {"AAA": since}, max_missed=5)["AAA"]
    assert state.missed is None, why
    assert len(state.snapshot.candles) == 1, "the snapshot's candles instead"


def test_a_resume_past_the_trimmed_tail_gets_a_snapshot(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 31), keep_ticks=10)  # ticks 21..30 held
    assert store.read_subscribe(redis_client, ["AAA"], "1m", {"AAA": ("e1", 15)})["AAA"].missed is None
    assert len(store.read_subscribe(redis_client, ["AAA"], "1m", {"AAA": ("e1", 20)})["AAA"].missed) == 10


async def test_the_async_read_answers_the_same(redis_client, commit) -> None:
    from dashboard.market.client import new_async_redis

    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 11))
    client = new_async_redis()
    try:
        states = await store.aread_subscribe(client, ["AAA"], "1m", {"AAA": ("e1", 8)})
    finally:
        await client.aclose()
    assert [seq for seq, _ in states["AAA"].missed] == [9, 10]


def test_read_quotes_reads_no_candles(redis_client, commit) -> None:
    redis_client.set(store.lease_key("AAA"), OWNER, px=3000)
    commit(OWNER, range(1, 3), closed=(Candle("1m", 0, 1, 1, 1, 1, 1, closed=True),))
    assert store.read_quotes(redis_client, ["AAA"])["AAA"].candles == []
