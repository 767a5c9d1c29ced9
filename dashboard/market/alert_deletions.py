"""Deleted price alerts, told to the producers: their ids in Redis, beside the version bump.

A producer reads only the alerts created since its last full load when
``ALERTS_VERSION_KEY`` changes (``workers/alerts.py``); a deleted alert leaves no row to
read, so the API records its id here, in the same transaction as the bump, and the
producer drops the ids recorded since that full load. Pure Redis, no Django: the web side
writes, the workers read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from dashboard.market.store import ALERTS_VERSION_KEY, KEY_PREFIX

# A sorted set: member the alert id, score the deletion's time in ms.
ALERTS_DELETED_KEY = f"{KEY_PREFIX}alerts:deleted"
# Kept past the producers' full reload (5 min, workers/alerts.py) plus its margin: older
# deletions are already missing from the rules they loaded.
DELETED_ALERTS_KEEP_MS = 15 * 60_000
# Bounds the set under a delete storm; an id trimmed early lingers in a producer until its
# next full load, unable to fire (its row is gone, so storing the firing updates nothing).
MAX_DELETED_ALERTS = 10_000


def announce_deleted(redis: Any, ids: Sequence[int], now_ms: int | None = None) -> None:
    """Record ``ids`` as deleted and bump the alerts version, in one transaction: a producer
    that sees the new version finds the deletions with it."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(ALERTS_DELETED_KEY, dict.fromkeys(map(str, ids), now))
        pipe.zremrangebyscore(ALERTS_DELETED_KEY, "-inf", now - DELETED_ALERTS_KEEP_MS)
        pipe.zremrangebyrank(ALERTS_DELETED_KEY, 0, -MAX_DELETED_ALERTS - 1)
        pipe.incr(ALERTS_VERSION_KEY)
        pipe.execute()


def deleted_since(redis: Any, since_ms: int) -> list[int]:
    """Ids of the alerts deleted at or after ``since_ms`` (within ``DELETED_ALERTS_KEEP_MS``)."""
    return [int(member) for member in redis.zrangebyscore(ALERTS_DELETED_KEY, since_ms, "+inf")]
