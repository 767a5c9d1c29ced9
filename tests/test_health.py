"""Probes: liveness always, readiness only with database, Redis and a producing worker;
readiness checked at most once a second, its details for balancers and staff only."""

from __future__ import annotations

import time

import pytest

from dashboard.market import store as market_store
from dashboard.market.client import use_redis
from ticker import health


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    """Every test starts with no cached result and a clock of its own."""
    clock = Clock()
    monkeypatch.setattr(health, "READINESS", health.Readiness(clock=clock))
    return clock


@pytest.fixture
def balancer(settings) -> None:
    """The test client's address (127.0.0.1) is a trusted proxy: it sees the details."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]


@pytest.fixture
def fresh_producer(redis_client) -> None:
    redis_client.set(market_store.PRODUCER_HEARTBEAT_KEY, time.time_ns() // 1_000_000)


def pings(redis_client) -> int:
    """PINGs the server has answered (the readiness check's Redis call), from its own stats."""
    return int(redis_client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))


def test_healthz_needs_nothing(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
@pytest.mark.usefixtures("balancer")
def test_ready_with_database_redis_and_a_recent_producer_window(client, fresh_producer) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["producer"]["last_window_age_ms"] < 5000


@pytest.mark.django_db
@pytest.mark.usefixtures("balancer")
def test_not_ready_without_a_producer(client, redis_client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["producer"]["ok"] is False


@pytest.mark.django_db
@pytest.mark.usefixtures("balancer")
def test_not_ready_when_the_producer_stalled(client, redis_client) -> None:
    redis_client.set(market_store.PRODUCER_HEARTBEAT_KEY, time.time_ns() // 1_000_000 - 60_000)
    body = client.get("/readyz").json()
    assert body["status"] == "unavailable"
    assert body["checks"]["producer"]["last_window_age_ms"] >= 60_000


@pytest.mark.django_db
@pytest.mark.usefixtures("balancer")
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


@pytest.mark.django_db
def test_anyone_else_gets_the_status_alone(client, redis_client, django_user_model) -> None:
    # No exception names, timings or producer age for an anonymous client...
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (503, {"status": "unavailable"})
    # ...nor for a trader's session.
    client.force_login(django_user_model.objects.create_user("trader", password="pw-long-enough-1"))
    assert client.get("/readyz").json() == {"status": "unavailable"}


@pytest.mark.django_db
def test_a_staff_session_gets_the_details(client, fresh_producer, django_user_model) -> None:
    client.force_login(django_user_model.objects.create_user("ops", password="pw-long-enough-1", is_staff=True))
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "producer"}


@pytest.mark.django_db
def test_the_checks_run_once_a_second_whatever_the_request_rate(
    client, redis_client, fresh_producer, clock, django_assert_num_queries
) -> None:
    before = pings(redis_client)
    with django_assert_num_queries(1):  # the database check's SELECT 1, once
        statuses = {client.get("/readyz").status_code for _ in range(50)}
    assert statuses == {200}
    assert pings(redis_client) - before == 1
    assert health.READINESS.runs == 1
    # Within the second a change is not seen; after it, it is, with one more run.
    redis_client.delete(market_store.PRODUCER_HEARTBEAT_KEY)
    clock.now += health.READY_CACHE_SECONDS / 2
    assert client.get("/readyz").status_code == 200
    clock.now += health.READY_CACHE_SECONDS / 2
    assert client.get("/readyz").status_code == 503
    assert health.READINESS.runs == 2
