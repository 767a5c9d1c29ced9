"""Market state in Redis: the one module that knows its key layout.

Per symbol: a producer lease (``lease:``), the series state (``state:``: epoch, seq,
unrounded mid, quote, session) and the recent ticks (``ticks:``, a sorted set scored
by seq) that serve snapshots and resume. The producer writes through a Lua script that
first checks its lease, so a producer that lost its lease can never store a tick and
no ``(symbol, epoch, seq)`` is ever written twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
# Per web process, its open streams (JSON, with a TTL): written by its heartbeat hub,
# read by `manage.py ticker_status`. A process that stops writing drops out on its own.
WEB_STREAMS_PREFIX = f"{KEY_PREFIX}web:streams:"
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


# Live producers (sorted set: owner -> last acquire round, ms): how many share the market.
PRODUCERS_KEY = f"{KEY_PREFIX}producers"
# Bumped by a producer that stops cleanly: the others acquire its symbols in their next window.
HANDOVER_KEY = f"{KEY_PREFIX}producers:handover"


def lease_key(symbol: str) -> str:
    return f"{KEY_PREFIX}lease:{symbol}"


def web_streams_key(process_id: str) -> str:
    return f"{WEB_STREAMS_PREFIX}{process_id}"


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


def book_key(symbol: str) -> str:
    return f"{KEY_PREFIX}book:{symbol}"


def trades_key(symbol: str) -> str:
    return f"{KEY_PREFIX}trades:{symbol}"


# KEYS: the lease, then the symbol's other keys. ARGV: the only owner whose lease may be
# dropped with them ("" for any): a producer never purges a symbol another one holds.
PURGE_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if ARGV[1] ~= '' and owner and owner ~= ARGV[1] then return 0 end
return redis.call('DEL', unpack(KEYS))
"""


def purge_symbol(redis: Any, symbol: str, owner: str = "") -> Any:
    """Delete every key of ``symbol`` (lease, series state, recent ticks, candles, queued
    controls, book, trades), so the code, if it is created again, starts a new epoch with its own history.
    With ``owner``, only while the lease is that owner's or nobody's. Returns the number of
    keys deleted (awaitable with an async client). Pending candles stay queued: the flush
    drops those of a symbol that no longer exists."""
    keys = [
        lease_key(symbol),
        state_key(symbol),
        ticks_key(symbol),
        forming_key(symbol),
        control_key(symbol),
        book_key(symbol),
        trades_key(symbol),
        *(recent_candles_key(symbol, interval) for interval in INTERVALS),
    ]
    return redis.eval(PURGE_SCRIPT, len(keys), *keys, owner)


@contextmanager
def pending_candles(redis: Any, limit: int) -> Iterator[list[bytes]]:
    """The oldest ``limit`` closed candles waiting for the database (``encode_candle``),
    trimmed from ``PENDING_CANDLES_KEY`` only when the block completes: a crash before
    then leaves them queued, to be written again (the writer must ignore duplicates)."""
    batch = redis.lrange(PENDING_CANDLES_KEY, 0, limit - 1)
    yield batch
    if batch:
        redis.ltrim(PENDING_CANDLES_KEY, len(batch), -1)


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
    decoded = ((interval.decode(), encoded) for interval, encoded in raw.items())
    return {name: Candle.from_wire(name, orjson.loads(encoded)) for name, encoded in decoded if name in INTERVALS_MS}


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
    return {key: value for key, value in orjson.loads(raw).items() if key not in ("symbol", "interval")}


@dataclass(frozen=True)
class SubscribeState:
    """What a (re)subscribe needs: the snapshot, or the held ticks after the client's ``since``."""

    snapshot: Snapshot
    # (seq, encoded tick) after the client's position, oldest first, when they are all held
    # and no more than the cap; None otherwise (the client then gets the snapshot).
    missed: list[tuple[int, str]] | None


# The whole answer to one symbol of a (re)subscribe, decided inside Redis so its cost is
# bounded whatever the client asks: a resume reads ticks only when the epoch matches and
# every missed tick (at most ARGV[3]) is still held; otherwise the snapshot's candles.
# KEYS: state, ticks, recent candles of the interval, forming candles.
# ARGV: since epoch ('' when not resuming), since seq, max missed ticks, candles, interval.
# Returns {epoch, seq, quote, 1, {member, score, ...}} or {epoch, seq, quote, 0, recent, forming}.
SUBSCRIBE_SCRIPT = """
local state = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'quote')
local epoch = state[1] or ''
local seq = tonumber(state[2] or '0')
local quote = state[3] or ''
if ARGV[1] ~= '' and epoch == ARGV[1] then
  local since = tonumber(ARGV[2])
  local missing = seq - since
  if missing == 0 then return {epoch, tostring(seq), quote, 1, {}} end
  if missing > 0 and missing <= tonumber(ARGV[3]) then
    local held = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. since, seq, 'WITHSCORES', 'LIMIT', 0, missing)
    if #held == 2 * missing and tonumber(held[2]) == since + 1 then
      return {epoch, tostring(seq), quote, 1, held}
    end
  end
end
local recent, forming = {}, ''
local n = tonumber(ARGV[4])
if n > 0 then
  recent = redis.call('LRANGE', KEYS[3], 0, n - 1)
  forming = redis.call('HGET', KEYS[4], ARGV[5]) or ''
end
return {epoch, tostring(seq), quote, 0, recent, forming}
"""

# Missed ticks one resume may read per symbol: about the size of a snapshot's candles.
MAX_RESUME_TICKS = 250


def _subscribe_call(
    symbol: str, interval: str, since: tuple[str, int] | None, candles: int, max_missed: int
) -> tuple[list[str], list[Any]]:
    keys = [state_key(symbol), ticks_key(symbol), recent_candles_key(symbol, interval), forming_key(symbol)]
    epoch, seq = since if since is not None else ("", 0)
    return keys, [epoch, seq, max_missed, candles, interval]


def _parse_subscribe_reply(symbol: str, reply: list[Any]) -> SubscribeState:
    epoch, seq, quote, resumed = reply[0], reply[1], reply[2], reply[3]
    state = (epoch or None, seq if epoch else None, quote or None)
    if resumed:
        held = reply[4]
        missed = [(int(held[i + 1]), held[i].decode()) for i in range(0, len(held), 2)]
        return SubscribeState(parse_snapshot(symbol, state, [], None), missed)
    return SubscribeState(parse_snapshot(symbol, state, reply[4], reply[5] or None), None)


def read_subscribe(
    redis: Any,
    symbols: Sequence[str],
    interval: str,
    since: Mapping[str, tuple[str, int]],
    candles: int = SNAPSHOT_CANDLES,
    max_missed: int = MAX_RESUME_TICKS,
) -> dict[str, SubscribeState]:
    """For each symbol, the missed ticks after its ``since`` ``(epoch, seq)`` when a resume
    is possible, else a snapshot with up to ``candles`` recent candles; one round trip."""
    script = redis.register_script(SUBSCRIBE_SCRIPT)
    with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            keys, args = _subscribe_call(symbol, interval, since.get(symbol), candles, max_missed)
            script(keys=keys, args=args, client=pipe)
        replies = pipe.execute()
    return {s: _parse_subscribe_reply(s, r) for s, r in zip(symbols, replies, strict=True)}


async def aread_subscribe(
    redis: Any,
    symbols: Sequence[str],
    interval: str,
    since: Mapping[str, tuple[str, int]],
    candles: int = SNAPSHOT_CANDLES,
    max_missed: int = MAX_RESUME_TICKS,
) -> dict[str, SubscribeState]:
    """``read_subscribe`` for an asyncio client."""
    script = redis.register_script(SUBSCRIBE_SCRIPT)
    async with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            keys, args = _subscribe_call(symbol, interval, since.get(symbol), candles, max_missed)
            await script(keys=keys, args=args, client=pipe)
        replies = await pipe.execute()
    return {s: _parse_subscribe_reply(s, r) for s, r in zip(symbols, replies, strict=True)}


def read_quotes(redis: Any, symbols: Sequence[str]) -> dict[str, Snapshot]:
    """The latest state of ``symbols`` without candles (catalog API, admin list)."""
    with redis.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.hmget(state_key(symbol), *SNAPSHOT_FIELDS)
        replies = pipe.execute()
    return {s: parse_snapshot(s, state, [], None) for s, state in zip(symbols, replies, strict=True)}
