"""Deleted alerts told to the producers (``dashboard/market/alert_deletions.py``), on the suite's Redis."""

from __future__ import annotations

from dashboard.market import alert_deletions
from dashboard.market.store import ALERTS_VERSION_KEY


def test_deletions_are_recorded_with_the_version_bump_and_read_by_time(redis_client) -> None:
    alert_deletions.announce_deleted(redis_client, [7], now_ms=1_000_000)
    assert redis_client.get(ALERTS_VERSION_KEY) == b"1"
    alert_deletions.announce_deleted(redis_client, [8, 9], now_ms=1_060_000)
    assert redis_client.get(ALERTS_VERSION_KEY) == b"2"
    assert alert_deletions.deleted_since(redis_client, 0) == [7, 8, 9]
    assert alert_deletions.deleted_since(redis_client, 1_000_001) == [8, 9]


def test_the_record_is_bounded_in_time_and_size(redis_client, monkeypatch) -> None:
    keep = alert_deletions.DELETED_ALERTS_KEEP_MS
    alert_deletions.announce_deleted(redis_client, [1], now_ms=0)
    alert_deletions.announce_deleted(redis_client, [2], now_ms=keep + 1)
    assert alert_deletions.deleted_since(redis_client, 0) == [2], "older than the producers need: trimmed"
    monkeypatch.setattr(alert_deletions, "MAX_DELETED_ALERTS", 3)
    alert_deletions.announce_deleted(redis_client, list(range(10, 20)), now_ms=keep + 2)
    assert len(alert_deletions.deleted_since(redis_client, 0)) == 3
