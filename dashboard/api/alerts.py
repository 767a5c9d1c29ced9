"""Price alerts over HTTP, mounted at ``/api/alerts/``.

* ``GET /api/alerts/?status=all|active|triggered|unseen``: the user's alerts, newest first.
* ``POST /api/alerts/`` ``{"symbol": "AAPL", "condition": "above", "price": "190.50"}``
  (or ``"condition": "rise"|"fall", "percent": "2.5", "minutes": 15``): 201 with the alert.
* ``DELETE /api/alerts/<id>/``: 204; another user's alert is a 404.
* ``POST /api/alerts/seen/`` ``{"ids": [...]}``: the page showed these fired alerts.

The rules (each condition's fields, the per-user caps) live in ``dashboard.alert_services``;
its ``AlertError`` becomes a 400 here. Creation is throttled per user (``AlertCreateThrottle``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from dashboard import alert_services
from dashboard.alert_services import MAX_LISTED, AlertError, ListStatus
from dashboard.api.auth import API_THROTTLES, AlertCreateThrottle
from dashboard.api.errors import ApiError, responses
from dashboard.market.protocol import SYMBOL_PATTERN
from dashboard.models import Alert

# The precision of the price and percent columns (Alert.price, Alert.percent).
PRICE_COLUMN = Alert._meta.get_field("price")
PERCENT_COLUMN = Alert._meta.get_field("percent")
# Above the largest percent its column holds (999.999).
PERCENT_BOUND = 1000


class AlertIn(Schema):
    """A new alert: a price for ``above``/``below``; a percent and minutes for ``rise``/``fall``."""

    symbol: str = Field(pattern=rf"^{SYMBOL_PATTERN}$", description="an enabled symbol, e.g. AAPL")
    condition: Literal["above", "below", "rise", "fall"]
    price: Decimal | None = Field(
        None,
        gt=0,
        max_digits=PRICE_COLUMN.max_digits,
        decimal_places=PRICE_COLUMN.decimal_places,
        description='above/below: the price, e.g. "190.50"',
    )
    percent: Decimal | None = Field(
        None,
        gt=0,
        lt=PERCENT_BOUND,
        max_digits=PERCENT_COLUMN.max_digits,
        decimal_places=PERCENT_COLUMN.decimal_places,
        description="rise/fall: the move in percent",
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


router = Router(tags=["alerts"])


@router.get("/", response=responses({200: AlertsOut}, 400), summary="The user's price alerts")
def list_alerts(request: HttpRequest, status: ListStatus = "all") -> dict[str, Any]:
    """``status``: ``active`` (waiting), ``triggered``, ``unseen`` (fired, not yet shown), ``all``."""
    return {"alerts": alert_services.list_for(request.user, status)}


@router.post(
    "/",
    response=responses({201: AlertOut}, 400),
    summary="Create a price alert",
    throttle=[*API_THROTTLES, AlertCreateThrottle()],
)
def create_alert(request: HttpRequest, payload: AlertIn) -> Status[dict[str, Any]]:
    """Fires once, evaluated by the server against every tick window: no page needs to be open.

    At most ``TICKER_ALERT_CREATE_RATE`` creations per user (429 with ``Retry-After``).
    """
    try:
        alert = alert_services.create(
            request.user,
            payload.symbol,
            payload.condition,
            price=payload.price,
            percent=payload.percent,
            minutes=payload.minutes,
        )
    except AlertError as err:
        raise ApiError(400, err.code, err.message, err.field) from None
    return Status(201, alert_services.to_wire(alert))


@router.post("/seen/", response=responses({200: SeenOut}, 400), summary="Mark fired alerts as shown")
def mark_seen(request: HttpRequest, payload: SeenIn) -> dict[str, int]:
    """The page showed these fired alerts: they leave ``status=unseen``."""
    return {"seen": alert_services.mark_seen(request.user, payload.ids)}


@router.delete("/{int:alert_id}/", response=responses({204: None}, 404), summary="Delete a price alert")
def delete_alert(request: HttpRequest, alert_id: int) -> Status[None]:
    if not alert_services.delete(request.user, alert_id):
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    return Status(204, None)
