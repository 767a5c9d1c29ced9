"""``manage.py ticker_status [--json]``: what the running Ticker looks like, from Redis.

For an operator (or a script, with ``--json``), on any host that can reach the Redis:

* the Redis it reads (URL with the password masked, database) and the broker's;
* each channel-layer shard (``CHANNEL_LAYER_REDIS_URLS``, masked) and whether it answers a
  ``PING`` (within ``SHARD_TIMEOUT_S``);
* the producers: each lease owner (``ticker:lease:<SYM>`` holds the owner id) and the
  symbols it holds, plus enabled symbols nobody holds;
* how long ago the last producer window completed (``PRODUCER_HEARTBEAT_KEY``);
* each symbol's epoch and seq (its state hash);
* open streams per web process, as each process's heartbeat hub last published them
  (entries expire after three heartbeats, so a dead process drops out by itself).

Exit status 1 when Redis cannot be read; an unreachable shard is reported, not an error
(streams still run on the other shards' groups).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import orjson
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.market import store
from dashboard.market.client import sync_redis
from dashboard.selectors import enabled_symbol_codes

SCAN_COUNT = 500
# A shard that takes longer than this to answer is reported unreachable: the command must not hang.
SHARD_TIMEOUT_S = 2.0
MASK = "***"
# A query parameter whose name holds one of these carries a credential.
SECRET_PARAMETER_WORDS = ("pass", "secret", "token")


def mask_url(url: str) -> str:
    """``url`` with every password form replaced by ``***``: the userinfo's
    (``redis://user:pw@host``) and a query parameter's (``?password=pw``, which redis-py
    reads too). The rest is kept as written."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = "&".join(_masked_parameter(item) for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _masked_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    secret = any(word in unquote_plus(name).lower() for word in SECRET_PARAMETER_WORDS)
    return f"{name}={MASK}" if equals and secret else item


def redis_database(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def channel_layer_shards(timeout: float = SHARD_TIMEOUT_S) -> list[dict[str, Any]]:
    """Each channel-layer server, in ``CHANNEL_LAYERS`` order (the sharding order), and whether it answers."""
    shards = []
    for host in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]:
        url = host["address"] if isinstance(host, dict) else str(host)
        shard: dict[str, Any] = {"url": mask_url(url), "database": redis_database(url), "reachable": False}
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            shard["reachable"] = bool(client.ping())
        except (redis.RedisError, OSError) as exc:
            # The exception's name only: its text may quote the URL, password included.
            shard["error"] = type(exc).__name__
        finally:
            client.close()
        shards.append(shard)
    return shards


def collect(client: redis.Redis, symbols: list[str], now_ms: int) -> dict[str, Any]:
    """The whole status as one JSON-ready dict (``--json`` prints exactly this)."""
    leased = sorted(
        key.decode().removeprefix(store.lease_key(""))
        for key in client.scan_iter(match=store.lease_key("*"), count=SCAN_COUNT)
    )
    every = sorted(set(symbols) | set(leased))
    with client.pipeline(transaction=False) as pipe:
        for symbol in every:
            pipe.get(store.lease_key(symbol))
            pipe.hmget(store.state_key(symbol), "epoch", "seq")
        pipe.get(store.PRODUCER_HEARTBEAT_KEY)
        replies = pipe.execute()
    last_window = replies.pop()
    rows = []
    producers: dict[str, list[str]] = {}
    for i, symbol in enumerate(every):
        owner = _text(replies[2 * i])
        epoch, seq = replies[2 * i + 1]
        rows.append({"symbol": symbol, "owner": owner, "epoch": _text(epoch), "seq": int(seq) if seq else 0})
        if owner is not None:
            producers.setdefault(owner, []).append(symbol)
    web = []
    for key in client.scan_iter(match=f"{store.WEB_STREAMS_PREFIX}*", count=SCAN_COUNT):
        raw = client.get(key)
        if raw is None:
            continue  # expired between the scan and the read
        entry = orjson.loads(raw)
        entry["reported_ms_ago"] = max(now_ms - int(entry.get("ts", now_ms)), 0)
        web.append(entry)
    web.sort(key=lambda e: (str(e.get("host")), int(e.get("pid", 0))))
    return {
        "redis": {"url": mask_url(settings.MARKET_REDIS_URL), "database": redis_database(settings.MARKET_REDIS_URL)},
        "broker": {"url": mask_url(settings.CELERY_BROKER_URL), "database": redis_database(settings.CELERY_BROKER_URL)},
        "last_window_age_ms": max(now_ms - int(last_window), 0) if last_window else None,
        "producers": [{"owner": owner, "symbols": held} for owner, held in sorted(producers.items())],
        "unheld_symbols": [row["symbol"] for row in rows if row["owner"] is None and row["symbol"] in symbols],
        "symbols": rows,
        "web_processes": web,
        "open_streams": sum(int(e.get("streams", 0)) for e in web),
    }


class Command(BaseCommand):
    """Prints producers, their symbols, each series' epoch and seq, and open streams per web process."""

    help = "Show producers and the symbols they hold, series positions and open streams (from Redis)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            status = collect(sync_redis(), enabled_symbol_codes(), time.time_ns() // 1_000_000)
            status["channel_layer"] = channel_layer_shards()
        except (redis.RedisError, OSError) as exc:
            raise CommandError(f"Redis at {mask_url(settings.MARKET_REDIS_URL)} cannot be read: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        self.stdout.write(self.render(status))

    @staticmethod
    def render(status: dict[str, Any]) -> str:
        lines = [
            f"Redis     {status['redis']['url']} (database {status['redis']['database']})",
            f"Broker    {status['broker']['url']} (database {status['broker']['database']})",
        ]
        shards = status.get("channel_layer", [])
        lines.append(f"Channel layer ({len(shards)} shard{'' if len(shards) == 1 else 's'}):")
        for shard in shards:
            state = "reachable" if shard["reachable"] else f"UNREACHABLE ({shard.get('error', '?')})"
            lines.append(f"  {shard['url']} (database {shard['database']})  {state}")
        age = status["last_window_age_ms"]
        lines.append("Last producer window: " + ("never" if age is None else f"{age / 1000:.1f} s ago"))
        lines.append(f"Producers ({len(status['producers'])}):")
        for producer in status["producers"]:
            held = producer["symbols"]
            lines.append(f"  {producer['owner']}  {len(held)} symbols: {' '.join(held)}")
        if status["unheld_symbols"]:
            lines.append(f"  not held by any producer: {' '.join(status['unheld_symbols'])}")
        lines.append(f"Web processes ({len(status['web_processes'])}), {status['open_streams']} open streams:")
        for web in status["web_processes"]:
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(web.get("by_kind", {}).items()))
            detail = f" ({kinds})" if kinds else ""
            lines.append(
                f"  {web.get('host')}:{web.get('pid')}  {web.get('streams', 0)} open{detail}, "
                f"reported {web['reported_ms_ago'] / 1000:.1f} s ago"
            )
        lines.append("Symbols:")
        lines.append(f"  {'SYMBOL':<10} {'EPOCH':<13} {'SEQ':>9}  OWNER")
        for row in status["symbols"]:
            lines.append(f"  {row['symbol']:<10} {row['epoch'] or '-':<13} {row['seq']:>9}  {row['owner'] or '-'}")
        return "\n".join(lines)
