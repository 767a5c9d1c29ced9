"""Market state in Redis: the one module that knows its key layout.

Per symbol: a producer lease (``lease:``), the series state (``state:``: epoch, seq,
unrounded mid, quote, session) and the recent ticks (``ticks:``, a sorted set scored
by seq) that serve snapshots and resume. The producer writes through a Lua script that
first checks its lease, so a producer that lost its lease can never store a tick and
no ``(symbol, epoch, seq)`` is ever written twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

KEY_PREFIX = "ticker:"
WATCHDOG_KEY = f"{KEY_PREFIX}watchdog:last_run_ms"

# KEYS: lease, state, ticks. ARGV: owner, lease_ms, epoch, seq, mid, quote, session, keep, (score, member)*
COMMIT_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'epoch', ARGV[3], 'seq', ARGV[4], 'mid', ARGV[5], 'quote', ARGV[6], 'session', ARGV[7])
for i = 9, #ARGV, 2 do redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[8]) + 1))
return 1
"""

# KEYS: lease. ARGV: owner, lease_ms.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(symbol: str) -> str:
    return f"{KEY_PREFIX}lease:{symbol}"


def state_key(symbol: str) -> str:
    return f"{KEY_PREFIX}state:{symbol}"


def ticks_key(symbol: str) -> str:
    return f"{KEY_PREFIX}ticks:{symbol}"


def new_epoch() -> str:
    """A fresh epoch id: milliseconds since the Unix epoch in hex (sortable, short)."""
    return format(time.time_ns() // 1_000_000, "x")


@dataclass(frozen=True)
class SeriesState:
    """What a producer needs to continue a symbol's series where the last one stopped."""

    epoch: str
    seq: int
    mid: float
    quote: dict[str, Any] | None
    session: list[float] | None

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> SeriesState | None:
        if not raw or b"epoch" not in raw:
            return None
        quote = raw.get(b"quote")
        session = raw.get(b"session")
        return cls(
            epoch=raw[b"epoch"].decode(),
            seq=int(raw[b"seq"]),
            mid=float(raw[b"mid"]),
            quote=orjson.loads(quote) if quote else None,
            session=orjson.loads(session) if session else None,
        )


@dataclass(frozen=True)
class Snapshot:
    """A symbol's latest state as a subscriber needs it."""

    symbol: str
    epoch: str | None
    seq: int
    quote: dict[str, Any] | None


def commit_args(
    owner: str,
    lease_ms: int,
    state: SeriesState,
    ticks: Sequence[tuple[int, str]],
    keep: int,
) -> list[Any]:
    args: list[Any] = [
        owner,
        lease_ms,
        state.epoch,
        state.seq,
        repr(state.mid),
        orjson.dumps(state.quote),
        orjson.dumps(state.session),
        keep,
    ]
    for seq, encoded in ticks:
        args.append(seq)
        args.append(encoded)
    return args


def parse_snapshot(symbol: str, values: Sequence[bytes | None]) -> Snapshot:
    """Turn ``HMGET state epoch seq quote`` into a ``Snapshot``."""
    epoch, seq, quote = values
    if epoch is None:
        return Snapshot(symbol=symbol, epoch=None, seq=0, quote=None)
    return Snapshot(
        symbol=symbol,
        epoch=epoch.decode(),
        seq=int(seq or 0),
        quote=orjson.loads(quote) if quote else None,
    )


SNAPSHOT_FIELDS = ("epoch", "seq", "quote")


def read_snapshots(redis: Any, symbols: Sequence[str]) -> dict[str, Snapshot]:
    """Latest state of ``symbols`` with a synchronous redis client, in one round trip."""
    with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.hmget(state_key(symbol), *SNAPSHOT_FIELDS)
        results = pipe.execute()
    return {s: parse_snapshot(s, v) for s, v in zip(symbols, results, strict=True)}


async def aread_snapshots(redis: Any, symbols: Sequence[str]) -> dict[str, Snapshot]:
    """``read_snapshots`` for an asyncio redis client."""
    async with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.hmget(state_key(symbol), *SNAPSHOT_FIELDS)
        results = await pipe.execute()
    return {s: parse_snapshot(s, v) for s, v in zip(symbols, results, strict=True)}
