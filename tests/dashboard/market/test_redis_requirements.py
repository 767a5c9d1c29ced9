"""An evicting Redis is refused at start; the safe one passes."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from dashboard.market.client import sync_redis, use_redis
from dashboard.market.redis_requirements import RedisRequirementError, enforce, problems


@pytest.fixture
def evicting(redis_client):
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    yield redis_client
    redis_client.config_set("maxmemory-policy", "noeviction")


def test_noeviction_passes(redis_client) -> None:
    assert problems(redis_client) == []
    enforce(sync_redis())


def test_an_evicting_policy_is_refused_at_start(evicting) -> None:
    assert "allkeys-lru" in problems(evicting)[0]
    with pytest.raises(RedisRequirementError, match="noeviction"):
        enforce(sync_redis())


def test_manage_py_check_reports_it(evicting) -> None:
    with pytest.raises(SystemCheckError, match=r"ticker\.E001"):
        call_command("check", tags=["ticker"])


def test_unreachable_redis_is_tolerated_at_start() -> None:
    with use_redis("redis://127.0.0.1:1/0", socket_connect_timeout=0.2):
        enforce(sync_redis())
