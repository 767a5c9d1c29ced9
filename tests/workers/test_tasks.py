"""Beat's housekeeping tasks (``workers/tasks.py``) on real rows, and the schedule that runs them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from dashboard import alert_services
from dashboard.models import Alert, Symbol
from ticker.celery import app
from workers import tasks


@pytest.fixture
def alerts_of_all_ages(db, django_user_model) -> dict[str, int]:
    """One alert of each kind a prune must tell apart, by name: id."""
    user = django_user_model.objects.create_user(username="t", password="pw-for-test-1")
    symbol = Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100"))
    now = timezone.now()
    days = timedelta(days=settings.TICKER["ALERT_RETENTION_DAYS"])
    ages = {
        "old_seen": (now - days - timedelta(hours=1), True),
        "old_unseen": (now - days - timedelta(minutes=1), False),
        "recent": (now - days + timedelta(hours=1), True),
        "waiting": (None, False),
    }
    ids = {}
    for name, (fired_at, seen) in ages.items():
        alert = Alert.objects.create(user=user, symbol=symbol, condition="above", price=Decimal("101"))
        # A waiting alert created long ago is still waiting: age alone never prunes it.
        Alert.objects.filter(pk=alert.pk).update(
            created_at=now - 2 * days,
            triggered_at=fired_at,
            triggered_price=101.0 if fired_at else None,
            seen_at=fired_at if seen else None,
        )
        ids[name] = alert.pk
    return ids


def test_prune_alerts_deletes_fired_alerts_past_the_retention_seen_or_not(alerts_of_all_ages) -> None:
    assert tasks.prune_alerts() == 2
    kept = set(Alert.objects.values_list("id", flat=True))
    assert kept == {alerts_of_all_ages["recent"], alerts_of_all_ages["waiting"]}
    assert tasks.prune_alerts() == 0


def test_pruning_fired_alerts_is_bounded_per_call(alerts_of_all_ages) -> None:
    before = timezone.now()
    assert alert_services.prune_fired(before, batch=1, max_batches=2) == 2
    assert alert_services.prune_fired(before, batch=1, max_batches=2) == 1, "the next run goes on"
    assert set(Alert.objects.values_list("id", flat=True)) == {alerts_of_all_ages["waiting"]}


def test_beat_schedules_every_housekeeping_task_of_the_worker() -> None:
    app.loader.import_default_modules()
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["prune-alerts"]["task"] == "workers.tasks.prune_alerts"
    for entry in schedule.values():
        assert entry["task"] in app.tasks, entry
        assert entry["schedule"] > 0
