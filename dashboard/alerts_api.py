"""Price alerts over HTTP: a ``ninja.Router`` mounted by ``dashboard/api.py`` at ``/api/alerts/``.

* ``GET /api/alerts/?status=all|active|triggered|unseen``: the user's alerts, newest first.
* ``POST /api/alerts/`` ``{"symbol": "AAPL", "condition": "above", "price": "190.50"}``
  (or ``"condition": "rise"|"fall", "percent": "2.5", "minutes": 15``): 201 with the alert.
* ``DELETE /api/alerts/<id>/``: 204; another user's alert is a 404.
* ``POST /api/alerts/seen/`` ``{"ids": [...]}``: the page showed these fired alerts.

Alerts are evaluated by the producer (``workers/alerts.py``), never by the browser: a
create or delete bumps ``ALERTS_VERSION_KEY`` after its transaction commits, and the
producers reload within a window. Errors use the API's common shape
``{"error", "message", "field"?}``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status

from dashboard.market.client import sync_redis
from dashboard.market.protocol import SYMBOL_PATTERN
from dashboard.market.store import bump_alerts_version
from dashboard.models import Alert, AlertCondition, Symbol

logger = logging.getLogger(__name__)

MAX_LISTED = 500
PRICE_CONDITIONS = (AlertCondition.ABOVE, AlertCondition.BELOW)

router = Router(tags=["alerts"])


class AlertErrorOut(Schema):
    """The API's common error shape."""

    error: str
    message: str
    field: str | None = None


def responses(ok: dict[int, Any], *errors: int) -> dict[int, Any]:
    """Documented answers: ``ok``, the API's authentication and throttling errors, and ``errors``."""
    return {**ok, **dict.fromkeys((401, 403, 429, *errors), AlertErrorOut)}


class AlertIn(Schema):
    """A new alert: a price for ``above``/``below``; a percent and minutes for ``rise``/``fall``."""

    symbol: str = Field(pattern=rf"^{SYMBOL_PATTERN}$", description="an enabled symbol, e.g. AAPL")
    condition: Literal["above", "below", "rise", "fall"]
    price: Decimal | None = Field(
        None, gt=0, max_digits=20, decimal_places=8, description='above/below: the price, e.g. "190.50"'
    )
    percent: Decimal | None = Field(
        None, gt=0, lt=1000, max_digits=6, decimal_places=3, description="rise/fall: the move in percent"
    )
    minutes: int | None = Field(
        None, ge=1, le=Alert.MAX_WINDOW_MINUTES, description="rise/fall: within this many minutes"
    )


class AlertOut(Schema):
    """An alert, as listed and as pushed in the stream's ``alert`` frame (times in ms, UTC)."""

    id: int
    symbol: str
    condition: str
    price: float | None
    percent: float | None
    minutes: int | None
    created_at: int
    triggered_price: float | None
    triggered_at: int | None = Field(description="null while the alert waits to fire")
    seen: bool = Field(description="a fired alert the trader's page has shown")


class AlertsOut(Schema):
    alerts: list[AlertOut]


class SeenIn(Schema):
    ids: list[int] = Field(max_length=MAX_LISTED)


class SeenOut(Schema):
    seen: int


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def to_wire(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "symbol": alert.symbol.symbol,
        "condition": alert.condition,
        "price": float(alert.price) if alert.price is not None else None,
        "percent": float(alert.percent) if alert.percent is not None else None,
        "minutes": alert.window_minutes,
        "created_at": _ms(alert.created_at),
        "triggered_price": alert.triggered_price,
        "triggered_at": _ms(alert.triggered_at),
        "seen": alert.seen_at is not None,
    }


def _error(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": code, "message": message}
    if field:
        body["field"] = field
    return body


def announce_change() -> None:
    """Producers reload their alerts; if Redis is away they do within their refresh period."""
    try:
        bump_alerts_version(sync_redis())
    except Exception as exc:
        logger.warning("alerts changed but producers not told (Redis unavailable): %r", exc)


@router.get("/", response=responses({200: AlertsOut}, 400), summary="The user's price alerts")
def list_alerts(
    request: HttpRequest, status: Literal["all", "active", "triggered", "unseen"] = "all"
) -> dict[str, Any]:
    """``status``: ``active`` (waiting), ``triggered``, ``unseen`` (fired, not yet shown), ``all``."""
    alerts = Alert.objects.filter(user=request.user).select_related("symbol")
    if status == "active":
        alerts = alerts.filter(triggered_at__isnull=True)
    elif status == "triggered":
        alerts = alerts.filter(triggered_at__isnull=False)
    elif status == "unseen":
        alerts = alerts.filter(triggered_at__isnull=False, seen_at__isnull=True)
    return {"alerts": [to_wire(a) for a in alerts[:MAX_LISTED]]}


@router.post(
    "/",
    response=responses({201: AlertOut}, 400),
    summary="Create a price alert",
)
def create_alert(request: HttpRequest, payload: AlertIn) -> Status:
    """Fires once, evaluated by the server against every tick window: no page needs to be open."""
    if payload.condition in PRICE_CONDITIONS:
        if payload.price is None:
            return Status(400, _error("bad_request", f"price: required for '{payload.condition}'", "price"))
        fields: dict[str, Any] = {"price": payload.price}
    else:
        if payload.percent is None:
            return Status(400, _error("bad_request", f"percent: required for '{payload.condition}'", "percent"))
        if payload.minutes is None:
            return Status(400, _error("bad_request", f"minutes: required for '{payload.condition}'", "minutes"))
        if payload.condition == AlertCondition.FALL and payload.percent >= 100:
            return Status(400, _error("bad_request", "percent: a fall is less than 100 %", "percent"))
        fields = {"percent": payload.percent, "window_minutes": payload.minutes}
    symbol = Symbol.objects.filter(symbol=payload.symbol, enabled=True).first()
    if symbol is None:
        return Status(400, _error("bad_request", f"symbol: unknown or disabled symbol {payload.symbol}", "symbol"))
    cap = settings.TICKER["MAX_ALERTS_PER_USER"]
    with transaction.atomic():
        # One create at a time per user, so concurrent requests cannot pass the cap together:
        # a row lock where the database has them; SQLite serialises writers anyway, and its
        # transaction must write first (a read-then-write one fails fast with "database is locked").
        if connection.features.has_select_for_update:
            get_user_model().objects.select_for_update().only("pk").get(pk=request.user.pk)
        alert = Alert.objects.create(user=request.user, symbol=symbol, condition=payload.condition, **fields)
        if Alert.objects.filter(user=request.user, triggered_at__isnull=True).count() > cap:
            transaction.set_rollback(True)
            return Status(400, _error("too_many_alerts", f"at most {cap} active alerts; delete one first"))
        transaction.on_commit(announce_change)
    logger.info("alert %s created by user %s: %s %s", alert.pk, request.user.pk, symbol.symbol, payload.condition)
    return Status(201, to_wire(alert))


@router.post("/seen/", response=responses({200: SeenOut}, 400), summary="Mark fired alerts as shown")
def mark_seen(request: HttpRequest, payload: SeenIn) -> dict[str, int]:
    """The page showed these fired alerts: they leave ``status=unseen``."""
    seen = Alert.objects.filter(
        user=request.user, pk__in=payload.ids, triggered_at__isnull=False, seen_at__isnull=True
    ).update(seen_at=timezone.now())
    return {"seen": seen}


@router.delete(
    "/{int:alert_id}/",
    response=responses({204: None}, 404),
    summary="Delete a price alert",
)
def delete_alert(request: HttpRequest, alert_id: int) -> Status:
    deleted, _ = Alert.objects.filter(pk=alert_id, user=request.user).delete()
    if not deleted:
        return Status(404, _error("not_found", f"no alert {alert_id}"))
    transaction.on_commit(announce_change)
    return Status(204, None)
