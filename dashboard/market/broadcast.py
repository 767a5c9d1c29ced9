"""Publishing to channel-layer groups: the only place that talks to the layer outbound.

Per producer window, one ``market.batch`` message carries every symbol's ticks, each
symbol's ticks encoded once (a ``BatchEntry``), and its book changes and trades
(``dashboard.market.depth``); dashboards pick their symbols from it. Each symbol the
window changed also gets one ``symbol.ticks`` message on its own group, for
single-symbol streams. Catalog changes go to the ``catalog`` group as a ready
``symbols`` frame.

A message to a connection's groups (a user's, a login session's, an API token's, the
catalog's) names its group: a web process receives them all on one channel
(``dashboard.streams.events``) and hands each to the dashboards in that group.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from dashboard.market.protocol import BatchEntry, alert_frame, symbols_frame
from ticker import metrics

logger = logging.getLogger(__name__)

MARKET_GROUP = "market"
CATALOG_GROUP = "catalog"


def symbol_group(symbol: str) -> str:
    return f"symbol.{symbol}"


async def publish_window(
    layer: Any,
    entries: Mapping[str, BatchEntry],
    books: Mapping[str, list[Any]] | None = None,
    trades: Mapping[str, list[Any]] | None = None,
) -> None:
    """Send one window: one market message, plus one message per symbol it changed.

    A symbol's book entry and trades (``dashboard.market.depth``) travel in the same
    message as its ticks, so a stream gets a window's ticks before its book.
    """
    books, trades = books or {}, trades or {}
    if not (entries or books or trades):
        return
    ticks = {symbol: e.to_wire() for symbol, e in entries.items()}
    message: dict[str, Any] = {"type": "market.batch", "ticks": ticks}
    if books:
        message["books"] = books
    if trades:
        message["trades"] = trades
    await layer.group_send(MARKET_GROUP, message)
    for symbol in {**ticks, **books, **trades}:
        one: dict[str, Any] = {"type": "symbol.ticks", "symbol": symbol, "entry": ticks.get(symbol)}
        if symbol in books:
            one["book"] = books[symbol]
        if symbol in trades:
            one["trades"] = trades[symbol]
        await layer.group_send(symbol_group(symbol), one)


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


async def publish_alert(layer: Any, user_id: int, alert: Mapping[str, Any]) -> None:
    """Push a fired alert to every open stream of its owner, as a ready ``alert`` frame."""
    group = user_group(user_id)
    await layer.group_send(group, {"type": "alert.fired", "group": group, "frame": alert_frame(alert)})


def session_group(session_key: str) -> str:
    """A group per login session, named by a hash: session keys are secrets."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def token_group(token_id: int) -> str:
    """A group per API token: revoking the token closes the streams opened with it."""
    return f"apitoken.{token_id}"


def _send_from_sync(group: str, message: dict[str, Any], operation: str) -> bool:
    """``group_send`` from sync code (admin, signals, commands), counted and logged on failure.

    A failure is not raised: saving a symbol or logging out must not fail because Redis
    is briefly away (streams refresh the catalog on reconnect).
    """
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception as exc:
        metrics.CHANNEL_LAYER_ERRORS.labels(operation).inc()
        logger.warning("%s to group %s not broadcast: channel layer unavailable (%r)", operation, group, exc)
        return False
    return True


def publish_revoked(group: str, reason: str) -> bool:
    """Close every stream in ``group`` (a user's or a session's): logout, deactivation."""
    return _send_from_sync(group, {"type": "access.revoked", "group": group, "reason": reason}, "publish_revoked")


def publish_catalog(catalog: Sequence[Mapping[str, Any]]) -> bool:
    """Tell every open stream the catalog changed, as a ready ``symbols`` frame."""
    frame = symbols_frame(catalog)
    message = {"type": "catalog.changed", "group": CATALOG_GROUP, "catalog": list(catalog), "frame": frame}
    return _send_from_sync(CATALOG_GROUP, message, "publish_catalog")
