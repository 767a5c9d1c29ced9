"""Each symbol's order book and recent trades in Redis: the producer's writes, the API's reads.

The keys are ``store``'s (``book_key``, ``trades_key``; ``store.purge_symbol`` drops them
with the rest of a symbol). The producer writes both through a script that first checks
its lease, as the ticks are written: a producer that lost a symbol never overwrites the
book of the one that took it. The book is stored as of each window's end, so its ``u``
is always the ``u`` of a ``depth`` frame (a client that builds its book from the API's
snapshot finds the frame that continues it, ``U == u + 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from dashboard.market.store import book_key, lease_key, trades_key

# Trades kept per symbol for the API (and the tape a page fills on open).
KEEP_TRADES = 500
MAX_TRADES_READ = KEEP_TRADES

# KEYS: lease, book, trades. ARGV: owner, book JSON, trades to keep, then trades, oldest first.
BOOK_COMMIT_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
if #ARGV > 3 then
  redis.call('LPUSH', KEYS[3], unpack(ARGV, 4))
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
return 1
"""


def commit_call(
    symbol: str, owner: str, book: Mapping[str, Any], trades: Sequence[str], keep_trades: int = KEEP_TRADES
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of ``BOOK_COMMIT_SCRIPT``: ``book`` as ``read_book`` returns it,
    ``trades`` encoded (``Trade.to_wire``), oldest first."""
    return [lease_key(symbol), book_key(symbol), trades_key(symbol)], [owner, orjson.dumps(book), keep_trades, *trades]


def read_book(redis: Any, symbol: str) -> dict[str, Any] | None:
    """The stored book of ``symbol``, or None: ``epoch``, ``ts`` and ``state``, the producer's
    ``OrderBook.to_state()`` (its ``u``, and ``bids``/``asks`` best first, among the rest)."""
    raw = redis.get(book_key(symbol))
    return orjson.loads(raw) if raw else None


async def aread_book(redis: Any, symbol: str) -> dict[str, Any] | None:
    raw = await redis.get(book_key(symbol))
    return orjson.loads(raw) if raw else None


def read_trades(redis: Any, symbol: str, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` trades of ``symbol``, newest first."""
    limit = max(1, min(limit, MAX_TRADES_READ))
    return [orjson.loads(raw) for raw in redis.lrange(trades_key(symbol), 0, limit - 1)]
