"""What both consumers share: limits from settings, market-state readers, frames they build alike.

Keeping these in one place is what makes the async multi-symbol stream and the sync
single-symbol stream behave identically where they overlap.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import redis
import redis.asyncio as aioredis
from django.conf import settings

from dashboard import protocol
from dashboard.protocol import ClientGuard, ClientOp, CloseCode, ErrorCode, Position, ProtocolError, Verdict
from workers.market_store import Snapshot, SubscribeState

# Malformed input, as opposed to a well-formed request the server refuses.
ABUSE_CODES = frozenset({ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_OP, ErrorCode.FRAME_TOO_LARGE})

_sync_client: redis.Redis | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def server_time() -> int:
    return time.time_ns() // 1_000_000


def limits() -> protocol.Limits:
    cfg = settings.TICKER
    return protocol.Limits(
        max_frame_bytes=cfg["MAX_FRAME_BYTES"],
        max_symbols=cfg["MAX_SYMBOLS_PER_CONNECTION"],
        max_client_frames_per_second=cfg["MAX_CLIENT_FRAMES_PER_SECOND"],
    )


def hello(catalog: Sequence[Mapping[str, Any]]) -> str:
    return protocol.hello_frame(
        server_time=server_time(),
        heartbeat_ms=settings.TICKER["HEARTBEAT_MS"],
        limits=limits(),
        symbols=catalog,
    )


def snapshot(snap: Snapshot, status: str, interval: str, recovered: bool | None = None) -> str:
    return protocol.snapshot_frame(
        symbol=snap.symbol,
        epoch=snap.epoch,
        seq=snap.seq,
        quote=snap.quote,
        candles=snap.candles,
        status=status,
        interval=interval,
        recovered=recovered,
    )


@dataclass
class Screened:
    """The outcome of screening one client frame: an op to run, frames to send, or a close."""

    op: ClientOp | None = None
    replies: list[str] = field(default_factory=list)
    close: CloseCode | None = None


def screen(guard: ClientGuard, limits: protocol.Limits, text: str | None, data: bytes | None) -> Screened:
    """Rate-limit and parse a client frame, the same way for both consumers."""
    now = time.monotonic()
    verdict = guard.admit(now)
    if verdict is Verdict.CLOSE:
        return Screened(close=CloseCode.RATE_LIMITED)
    if verdict is Verdict.REFUSE:
        if guard.should_report_refusal():
            message = f"more than {limits.max_client_frames_per_second} frames per second; frame ignored"
            return Screened(replies=[protocol.error_frame(ErrorCode.RATE_LIMITED, message)])
        return Screened()
    try:
        return Screened(op=protocol.parse_client_frame(text, data, limits=limits))
    except ProtocolError as err:
        if err.code in ABUSE_CODES and guard.bad_frame(now) is Verdict.CLOSE:
            return Screened(replies=[err.frame()], close=CloseCode.PROTOCOL_ABUSE)
        return Screened(replies=[err.frame()])


def since_from_query(query_string: bytes, symbol: str) -> dict[str, Position]:
    """``?epoch=E&seq=N`` on a single-symbol stream's URL: resume on connect."""
    query = parse_qs(query_string.decode("latin-1"))
    epoch, seq = query.get("epoch", [""])[0], query.get("seq", [""])[0]
    if epoch and seq.isdigit() and len(epoch) <= 64 and len(seq) <= 16:
        return {symbol: Position(epoch=epoch, seq=int(seq))}
    return {}


def subscription_frame(
    state: SubscribeState, since: Position | None, status: str, interval: str
) -> tuple[str, str | None, int]:
    """The frame answering a (re)subscribe of one symbol, and the position it leaves the client at.

    Resume: when ``since`` is in the current epoch and every tick after it is still held,
    exactly those ticks (``recovered: true``); otherwise a snapshot (``recovered: false``
    when a resume was asked for).
    """
    snap = state.snapshot
    if since is not None and state.missed is not None and snap.epoch == since.epoch and since.seq <= snap.seq:
        seqs = [seq for seq, _ in state.missed]
        expected = list(range(since.seq + 1, since.seq + 1 + len(seqs)))
        if seqs == expected and (not seqs or seqs[-1] >= snap.seq):
            last = seqs[-1] if seqs else since.seq
            return protocol.ticks_frame([t for _, t in state.missed], recovered=True), snap.epoch, last
    recovered = False if since is not None else None
    return snapshot(snap, status, interval, recovered=recovered), snap.epoch, snap.seq


def sync_redis() -> redis.Redis:
    """A process-wide synchronous client (thread-safe pool) for the sync consumer."""
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)
        return _sync_client


def async_redis() -> aioredis.Redis:
    """An asyncio client for the running event loop (Daphne runs one per process)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.from_url(settings.MARKET_REDIS_URL, **settings.REDIS_CONNECTION_OPTIONS)
        _async_clients[loop] = client
    return client
