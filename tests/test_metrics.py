"""/metrics: restricted to staff or a bearer token, and reporting what the processes count."""

from __future__ import annotations

import pytest

from ticker import metrics


@pytest.fixture
def staff(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="ops", password="pw-for-test-1", is_staff=True))
    return client


@pytest.mark.django_db
def test_anonymous_and_traders_are_refused(client, django_user_model) -> None:
    assert client.get("/metrics").status_code == 403
    client.force_login(django_user_model.objects.create_user(username="t", password="pw-for-test-1"))
    assert client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_staff_sees_the_aggregated_metrics(staff) -> None:
    metrics.SLOW_CLIENT_CLOSES.inc()
    body = staff.get("/metrics").content.decode()
    assert "ticker_slow_client_closes_total" in body
    assert "ticker_producer_window_lag_seconds_bucket" in body or "ticker_frames_sent_total" in body


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "status"),
    [("Bearer s3cret-token", 200), ("Bearer wrong", 403), ("", 403), ("Bearer s3cr\u00e9t-t\u00f8ken", 403)],
)
def test_bearer_token(client, settings, header, status) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == status


@pytest.mark.django_db
def test_no_token_configured_means_staff_only(client, settings) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
