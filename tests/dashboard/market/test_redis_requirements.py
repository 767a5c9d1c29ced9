"""An evicting Redis is refused at start; the safe one passes; an unreachable one is let through with a warning."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from dashboard.market.client import sync_redis, use_redis
from dashboard.market.redis_requirements import RedisRequirementError, enforce, problems
from ticker.embedded_redis import free_port


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


@pytest.fixture
def unreachable() -> Iterator[redis.Redis]:
    """The market client pointed at a port nobody listens on."""
    with use_redis(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2):
        yield sync_redis()


def test_unreachable_redis_is_tolerated_at_start(unreachable, caplog) -> None:
    with pytest.raises(redis.ConnectionError):
        problems(unreachable)  # the check itself cannot run...
    with caplog.at_level(logging.WARNING, logger="dashboard.market.redis_requirements"):
        assert enforce(unreachable) is None  # ...and start-up goes on without it
    [record] = [r for r in caplog.records if r.name == "dashboard.market.redis_requirements"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("Redis settings not checked, server unreachable: ")
    assert "ConnectionError" in record.getMessage()


def test_manage_py_check_warns_when_redis_is_unreachable(unreachable, capsys) -> None:
    call_command("check", tags=["ticker"])  # a warning, not a SystemCheckError
    assert "ticker.W001" in capsys.readouterr().err
