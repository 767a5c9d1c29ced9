"""Probes: liveness always, readiness only with database, Redis and a producing worker."""

from __future__ import annotations

import time

import pytest

from dashboard.market import store as market_store
from dashboard.market.client import use_redis


@pytest.fixture
def fresh_producer(redis_client) -> None:
    redis_client.set(market_store.PRODUCER_HEARTBEAT_KEY, time.time_ns() // 1_000_000)


def test_healthz_needs_nothing(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_with_database_redis_and_a_recent_producer_window(client, fresh_producer) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["producer"]["last_window_age_ms"] < 5000


@pytest.mark.django_db
def test_not_ready_without_a_producer(client, redis_client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["producer"]["ok"] is False


@pytest.mark.django_db
def test_not_ready_when_the_producer_stalled(client, redis_client) -> None:
    redis_client.set(market_store.PRODUCER_HEARTBEAT_KEY, time.time_ns() // 1_000_000 - 60_000)
    body = client.get("/readyz").json()
    assert body["status"] == "unavailable"
    assert body["checks"]["producer"]["last_window_age_ms"] >= 60_000


@pytest.mark.django_db
def test_not_ready_when_redis_is_down(client) -> None:
    # A real client aimed at a port nothing listens on.
    with use_redis("redis://127.0.0.1:1/0", socket_connect_timeout=0.2):
        body = client.get("/readyz").json()
    assert body["checks"]["redis"]["ok"] is False
    assert body["status"] == "unavailable"


@pytest.mark.django_db
def test_probes_answer_a_balancers_plain_http_hostless_check_in_production(client, settings, fresh_producer) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["ticker.example.com"]
    # Anything else from that check would be redirected to HTTPS or refused for its Host.
    assert client.get("/accounts/login/", HTTP_HOST="10.0.0.11:8001").status_code == 400
    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.0.0.11:8001")
        assert response.status_code == 200, path
