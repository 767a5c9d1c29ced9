"""Server frames both consumers build alike, from settings and market state.

Keeping these in one place is what makes the async multi-symbol stream and the sync
single-symbol stream behave identically where they overlap.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from dashboard.market import protocol
from dashboard.market.protocol import Position
from dashboard.market.store import Snapshot


def server_time() -> int:
    return time.time_ns() // 1_000_000


def limits() -> protocol.Limits:
    cfg = settings.TICKER
    return protocol.Limits(
        max_frame_bytes=cfg["MAX_FRAME_BYTES"],
        max_symbols=cfg["MAX_SYMBOLS_PER_CONNECTION"],
        max_client_frames_per_second=cfg["MAX_CLIENT_FRAMES_PER_SECOND"],
        max_depth_symbols=cfg["MAX_DEPTH_SYMBOLS"],
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


def since_from_query(query_string: bytes, symbol: str) -> dict[str, Position]:
    """``?epoch=E&seq=N`` on a single-symbol stream's URL: resume on connect."""
    query = parse_qs(query_string.decode("latin-1"))
    epoch, seq = query.get("epoch", [""])[0], query.get("seq", [""])[0]
    # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
    if epoch and seq.isascii() and seq.isdigit() and len(epoch) <= 64 and len(seq) <= 16:
        return {symbol: Position(epoch=epoch, seq=int(seq))}
    return {}
