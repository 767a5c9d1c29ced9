"""Price alert services: create (with the per-user caps), list, mark seen, delete, prune.

The HTTP router (``dashboard.api.alerts``) and the admin call these; every rule (the
fields each condition needs, known symbols, the caps) is enforced here with an
``AlertError``. Alerts are evaluated by the producers (``workers/alerts.py``), never here:
a create or delete bumps ``ALERTS_VERSION_KEY`` after its transaction commits
(``announce_change``, a delete with the deleted id), and the producers follow within a window.

What one user can store is bounded: at most ``MAX_ALERTS_PER_USER`` waiting and
``MAX_KEPT_ALERTS_PER_USER`` kept in all (fired ones included: past it a new alert
replaces the oldest fired one its owner has seen); beat deletes fired alerts after
``ALERT_RETENTION_DAYS`` (``prune_fired``); the API limits creations per minute.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from dashboard.market.alert_deletions import announce_deleted
from dashboard.market.client import sync_redis
from dashboard.market.store import bump_alerts_version
from dashboard.models import Alert, AlertCondition, Symbol

logger = logging.getLogger(__name__)

# Alerts one list answer holds, and ids one mark-seen request may name: bounds one request's work.
MAX_LISTED = 500
PRICE_CONDITIONS = (AlertCondition.ABOVE, AlertCondition.BELOW)
# A fall of 100 % would take the price to zero, which no symbol reaches.
MAX_FALL_PERCENT = 100
# Fired alerts deleted per statement and statements per prune run: a beat run stays short
# however far behind it is; the next run goes on where it stopped.
PRUNE_BATCH = 1000
PRUNE_MAX_BATCHES = 20
ListStatus = Literal["all", "active", "triggered", "unseen"]


class AlertError(ValueError):
    """A refused alert; ``code`` and ``field`` are the API's, the message is safe to show."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _ms(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp() * 1000)


def to_wire(alert: Alert) -> dict[str, Any]:
    """An alert as the API lists it (times in ms since the Unix epoch, UTC)."""
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


def announce_change(deleted: Sequence[int] = ()) -> None:
    """Producers reload their alerts (and drop ``deleted``); if Redis is away, within their refresh period."""
    try:
        if deleted:
            announce_deleted(sync_redis(), deleted)
        else:
            bump_alerts_version(sync_redis())
    except Exception as exc:
        logger.warning("alerts changed but producers not told (Redis unavailable): %r", exc)


def list_for(user: AbstractBaseUser, status: ListStatus = "all") -> list[dict[str, Any]]:
    """``status``: ``active`` (waiting), ``triggered``, ``unseen`` (fired, not yet shown), ``all``; newest first."""
    alerts = Alert.objects.filter(user=user).select_related("symbol")
    if status == "active":
        alerts = alerts.filter(triggered_at__isnull=True)
    elif status == "triggered":
        alerts = alerts.filter(triggered_at__isnull=False)
    elif status == "unseen":
        alerts = alerts.filter(triggered_at__isnull=False, seen_at__isnull=True)
    return [to_wire(a) for a in alerts[:MAX_LISTED]]


def _required(value: Any, field: str, condition: str) -> Any:
    if value is None:
        raise AlertError("bad_request", f"{field}: required for '{condition}'", field)
    return value


def _target(condition: str, price: Decimal | None, percent: Decimal | None, minutes: int | None) -> dict[str, Any]:
    """The model fields of the alert's target: a price, or a move in percent within minutes."""
    if condition in PRICE_CONDITIONS:
        return {"price": _required(price, "price", condition)}
    percent = _required(percent, "percent", condition)
    minutes = _required(minutes, "minutes", condition)
    if condition == AlertCondition.FALL and percent >= MAX_FALL_PERCENT:
        raise AlertError("bad_request", f"percent: a fall is less than {MAX_FALL_PERCENT} %", "percent")
    return {"percent": percent, "window_minutes": minutes}


def create(
    user: AbstractBaseUser,
    symbol: str,
    condition: str,
    *,
    price: Decimal | None = None,
    percent: Decimal | None = None,
    minutes: int | None = None,
) -> Alert:
    """A new alert of ``user``, unless it would pass ``MAX_ALERTS_PER_USER`` active alerts
    or ``MAX_KEPT_ALERTS_PER_USER`` kept ones with no seen fired alert to make room.

    It fires once, evaluated by the producers against every tick window: no page needs to be open.
    """
    fields = _target(condition, price, percent, minutes)
    instrument = Symbol.objects.filter(symbol=symbol, enabled=True).first()
    if instrument is None:
        raise AlertError("bad_request", f"symbol: unknown or disabled symbol {symbol}", "symbol")
    cap = settings.TICKER["MAX_ALERTS_PER_USER"]
    with transaction.atomic():
        # One create at a time per user, so concurrent requests cannot pass the cap together:
        # a row lock where the database has them; SQLite serialises writers anyway, and its
        # transaction must write first (a read-then-write one fails fast with "database is locked").
        if connection.features.has_select_for_update:
            get_user_model().objects.select_for_update().only("pk").get(pk=user.pk)
        alert = Alert.objects.create(user=user, symbol=instrument, condition=condition, **fields)
        if Alert.objects.filter(user=user, triggered_at__isnull=True).count() > cap:
            # Raised inside the block: the alert just created is rolled back with it.
            raise AlertError("too_many_alerts", f"at most {cap} active alerts; delete one first")
        _make_room(user)
        transaction.on_commit(announce_change)
    logger.info("alert %s created by user %s: %s %s", alert.pk, user.pk, instrument.symbol, condition)
    return alert


def _make_room(user: AbstractBaseUser) -> None:
    """Keep ``user`` within ``MAX_KEPT_ALERTS_PER_USER`` rows by deleting their oldest seen fired
    alerts (history only: the owner was shown them); refuse when that is not enough.

    Without it an alert that fires at once frees its active slot, and a loop of creates adds
    rows without end. Runs inside ``create``'s transaction, under its lock.
    """
    kept = settings.TICKER["MAX_KEPT_ALERTS_PER_USER"]
    excess = Alert.objects.filter(user=user).count() - kept
    if excess <= 0:
        return
    oldest_seen = list(
        Alert.objects.filter(user=user, triggered_at__isnull=False, seen_at__isnull=False)
        .order_by("triggered_at", "id")
        .values_list("id", flat=True)[:excess]
    )
    if len(oldest_seen) < excess:
        raise AlertError(
            "too_many_alerts",
            f"at most {kept} alerts kept, fired ones included until they are seen "
            "(POST /api/alerts/seen/); delete some first",
        )
    Alert.objects.filter(pk__in=oldest_seen).delete()
    logger.info("user %s: %d seen fired alerts deleted to keep %d", user.pk, len(oldest_seen), kept)


def prune_fired(before: datetime, *, batch: int = PRUNE_BATCH, max_batches: int = PRUNE_MAX_BATCHES) -> int:
    """Delete alerts that fired before ``before`` (seen or not), oldest first; returns how many.

    At most ``max_batches`` deletes of ``batch`` rows per call. Fired alerts are in no
    producer's rules, so nobody needs telling.
    """
    deleted = 0
    for _ in range(max_batches):
        ids = list(
            Alert.objects.filter(triggered_at__lt=before).order_by("triggered_at").values_list("id", flat=True)[:batch]
        )
        if not ids:
            break
        count, _ = Alert.objects.filter(pk__in=ids).delete()
        deleted += count
        if len(ids) < batch:
            break
    if deleted:
        logger.info("pruned %d alerts fired before %s", deleted, before.isoformat())
    return deleted


def mark_seen(user: AbstractBaseUser, ids: list[int]) -> int:
    """The page showed these fired alerts of ``user``: they leave ``status=unseen``; returns how many did."""
    return Alert.objects.filter(user=user, pk__in=ids, triggered_at__isnull=False, seen_at__isnull=True).update(
        seen_at=timezone.now()
    )


def delete(user: AbstractBaseUser, alert_id: int) -> bool:
    """Delete one of ``user``'s alerts (False: there is no such alert of theirs)."""
    deleted, _ = Alert.objects.filter(pk=alert_id, user=user).delete()
    if not deleted:
        return False
    # With its id: producers drop the rule on the version bump, not at their next full load.
    transaction.on_commit(lambda: announce_change([alert_id]))
    return True
