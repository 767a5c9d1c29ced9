"""Market state in Redis: the one module that knows its key layout.

Per symbol: a producer lease (``lease:``), the series state (``state:``: epoch, seq,
unrounded mid, quote, session) and the recent ticks (``ticks:``, a sorted set scored
by seq) that serve snapshots and resume. The producer writes through a Lua script that
first checks its lease, so a producer that lost its lease can never store a tick and
no ``(symbol, epoch, seq)`` is ever written twice.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from dashboard.market.candles import INTERVALS_MS, Candle

INTERVALS = tuple(INTERVALS_MS)

KEY_PREFIX = "ticker:"
WATCHDOG_KEY = f"{KEY_PREFIX}watchdog:last_run_ms"
PENDING_CANDLES_KEY = f"{KEY_PREFIX}candles:pending"
# Bumped on every catalog change or control command: producers poll it once per window.
CATALOG_VERSION_KEY = f"{KEY_PREFIX}catalog:version"
# Bumped on every alert created or deleted: producers reload their active alerts when it changes.
ALERTS_VERSION_KEY = f"{KEY_PREFIX}alerts:version"
MAX_CONTROLS = 100
# Milliseconds timestamp of the last producer window that completed (any worker).
PRODUCER_HEARTBEAT_KEY = f"{KEY_PREFIX}producer:last_window_ms"
# Closed candles waiting for the database; capped so a stopped beat cannot fill Redis.
MAX_PENDING_CANDLES = 100_000
# Closed candles kept per symbol and interval in Redis for snapshots and history.
KEEP_CANDLES = 500

# KEYS: lease, state, ticks, forming candles, pending candles, recent candles per interval (INTERVALS order).
# ARGV: owner, lease_ms, epoch, seq, mid, quote, session, keep_ticks, keep_candles,
#       n_forming, (interval, json) * n_forming, n_closed, (interval_index, json) * n_closed, (seq, tick) * rest
COMMIT_SCRIPT = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], 'epoch', ARGV[3], 'seq', ARGV[4], 'mid', ARGV[5], 'quote', ARGV[6], 'session', ARGV[7])
local keep_candles = tonumber(ARGV[9])
local i = 10
local n = tonumber(ARGV[i])
i = i + 1
redis.call('DEL', KEYS[4])
for _ = 1, n do
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local recent = KEYS[6 + tonumber(ARGV[i])]
  redis.call('LPUSH', recent, ARGV[i + 1])
  redis.call('LTRIM', recent, 0, keep_candles - 1)
  redis.call('RPUSH', KEYS[5], ARGV[i + 1])
  i = i + 2
end
if n > 0 then redis.call('LTRIM', KEYS[5], -{MAX_PENDING_CANDLES}, -1) end
while i < #ARGV do
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
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


def forming_key(symbol: str) -> str:
    return f"{KEY_PREFIX}candles:forming:{symbol}"


def recent_candles_key(symbol: str, interval: str) -> str:
    return f"{KEY_PREFIX}candles:recent:{symbol}:{interval}"


def commit_keys(symbol: str) -> list[str]:
    return [
        lease_key(symbol),
        state_key(symbol),
        ticks_key(symbol),
        forming_key(symbol),
        PENDING_CANDLES_KEY,
        *(recent_candles_key(symbol, interval) for interval in INTERVALS),
    ]


def control_key(symbol: str) -> str:
    return f"{KEY_PREFIX}control:{symbol}"


def bump_alerts_version(redis: Any) -> None:
    """Tell every producer to reload its active alerts (one was created or deleted)."""
    redis.incr(ALERTS_VERSION_KEY)


def push_control(redis: Any, symbol: str, command: dict[str, Any]) -> None:
    """Queue a command (shock, reset) for whichever producer owns ``symbol``."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(control_key(symbol), orjson.dumps(command))
        pipe.ltrim(control_key(symbol), -MAX_CONTROLS, -1)
        pipe.incr(CATALOG_VERSION_KEY)
        pipe.execute()


def bump_catalog_version(redis: Any) -> None:
    redis.incr(CATALOG_VERSION_KEY)


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
    candles: list[dict[str, Any]]


def encode_candle(symbol: str, candle: Candle) -> bytes:
    return orjson.dumps({"symbol": symbol, "interval": candle.interval, **candle.to_wire()})


def commit_args(
    owner: str,
    lease_ms: int,
    state: SeriesState,
    ticks: Sequence[tuple[int, str]],
    *,
    symbol: str,
    forming: Sequence[Candle] = (),
    closed: Sequence[Candle] = (),
    keep_ticks: int,
    keep_candles: int = KEEP_CANDLES,
) -> list[Any]:
    """Arguments of ``COMMIT_SCRIPT`` (keys from ``commit_keys``)."""
    args: list[Any] = [
        owner,
        lease_ms,
        state.epoch,
        state.seq,
        repr(state.mid),
        orjson.dumps(state.quote),
        orjson.dumps(state.session),
        keep_ticks,
        keep_candles,
        len(forming),
    ]
    for candle in forming:
        args += [candle.interval, encode_candle(symbol, candle)]
    args.append(len(closed))
    for candle in closed:
        args += [INTERVALS.index(candle.interval), encode_candle(symbol, candle)]
    for seq, encoded in ticks:
        args += [seq, encoded]
    return args


def parse_forming(raw: dict[bytes, bytes]) -> dict[str, Candle]:
    """``HGETALL`` of a forming-candles hash, as candles by interval."""
    forming = {}
    for interval, encoded in raw.items():
        name = interval.decode()
        if name in INTERVALS_MS:
            forming[name] = Candle.from_wire(name, orjson.loads(encoded))
    return forming


def queue_history(
    pipe: Any,
    symbol: str,
    state: SeriesState,
    closed: Mapping[str, Sequence[Candle]],
    forming: Mapping[str, Candle],
    keep_candles: int = KEEP_CANDLES,
) -> None:
    """Queue on ``pipe`` a generated history as the state a producer continues from.

    The recent-candle lists get the newest ``keep_candles`` closed candles (newest first,
    as the commit script keeps them), the forming candles become the ones the live series
    goes on filling, and ``state`` (``seq`` 0 of a new epoch) is where its ticks continue.
    Run it in a MULTI pipeline while holding the symbol's lease.
    """
    for interval, candles in closed.items():
        key = recent_candles_key(symbol, interval)
        pipe.delete(key)
        newest = candles[-keep_candles:]
        if newest:
            # LPUSH oldest first leaves the newest at the head, like the commit script.
            pipe.lpush(key, *(encode_candle(symbol, c) for c in newest))
    pipe.delete(forming_key(symbol), ticks_key(symbol))
    if forming:
        pipe.hset(forming_key(symbol), mapping={i: encode_candle(symbol, c) for i, c in forming.items()})
    pipe.hset(
        state_key(symbol),
        mapping={
            "epoch": state.epoch,
            "seq": state.seq,
            "mid": repr(state.mid),
            "quote": orjson.dumps(state.quote),
            "session": orjson.dumps(state.session),
        },
    )


SNAPSHOT_FIELDS = ("epoch", "seq", "quote")
SNAPSHOT_CANDLES = 200


def parse_snapshot(symbol: str, state: Sequence[bytes | None], recent: list[bytes], forming: bytes | None) -> Snapshot:
    """Turn ``HMGET state``, the recent closed candles and the forming one into a ``Snapshot``."""
    epoch, seq, quote = state
    candles = [_wire_candle(raw) for raw in reversed(recent)]
    if forming:
        candles.append(_wire_candle(forming))
    return Snapshot(
        symbol=symbol,
        epoch=epoch.decode() if epoch is not None else None,
        seq=int(seq or 0) if epoch is not None else 0,
        quote=orjson.loads(quote) if quote else None,
        candles=candles,
    )


def _wire_candle(raw: bytes) -> dict[str, Any]:
    data = orjson.loads(raw)
    data.pop("symbol", None)
    data.pop("interval", None)
    return data


@dataclass(frozen=True)
class SubscribeState:
    """What a (re)subscribe needs: the snapshot, and the held ticks after the client's ``since``."""

    snapshot: Snapshot
    # (seq, encoded tick) after the client's position, oldest first; None when no ``since``.
    missed: list[tuple[int, str]] | None


def _queue_subscribe(pipe: Any, symbol: str, interval: str, since_seq: int | None, candles: int) -> None:
    pipe.hmget(state_key(symbol), *SNAPSHOT_FIELDS)
    if candles > 0:
        pipe.lrange(recent_candles_key(symbol, interval), 0, candles - 1)
        pipe.hget(forming_key(symbol), interval)
    if since_seq is not None:
        pipe.zrangebyscore(ticks_key(symbol), f"({since_seq}", "+inf", withscores=True)


def _parse_subscribe(
    symbols: Sequence[str], since: Mapping[str, int], candles: int, replies: list[Any]
) -> dict[str, SubscribeState]:
    states: dict[str, SubscribeState] = {}
    i = 0
    for symbol in symbols:
        state = replies[i]
        i += 1
        recent, forming = [], None
        if candles > 0:
            recent, forming = replies[i], replies[i + 1]
            i += 2
        missed = None
        if symbol in since:
            missed = [(int(score), member.decode()) for member, score in replies[i]]
            i += 1
        states[symbol] = SubscribeState(parse_snapshot(symbol, state, recent, forming), missed)
    return states


def read_subscribe(
    redis: Any,
    symbols: Sequence[str],
    interval: str,
    since: Mapping[str, int],
    candles: int = SNAPSHOT_CANDLES,
) -> dict[str, SubscribeState]:
    """Snapshots (with up to ``candles`` recent candles) plus, for symbols with a ``since``
    seq, the ticks held after it; one round trip."""
    with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            _queue_subscribe(pipe, symbol, interval, since.get(symbol), candles)
        return _parse_subscribe(symbols, since, candles, pipe.execute())


async def aread_subscribe(
    redis: Any,
    symbols: Sequence[str],
    interval: str,
    since: Mapping[str, int],
    candles: int = SNAPSHOT_CANDLES,
) -> dict[str, SubscribeState]:
    """``read_subscribe`` for an asyncio client."""
    async with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            _queue_subscribe(pipe, symbol, interval, since.get(symbol), candles)
        return _parse_subscribe(symbols, since, candles, await pipe.execute())


def read_quotes(redis: Any, symbols: Sequence[str]) -> dict[str, Snapshot]:
    """The latest state of ``symbols`` without candles (catalog API, admin list)."""
    return {s: state.snapshot for s, state in read_subscribe(redis, symbols, "1m", {}, candles=0).items()}
