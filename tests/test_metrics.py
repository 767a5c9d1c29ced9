"""/metrics: restricted to staff or a bearer token, and reporting what the processes count."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


# The families docs/deploy.md's "Observability" names, in its order.
GUIDE_FAMILIES = (
    "ticker_connections_open",  # open connections per endpoint
    "ticker_frames_sent_total",  # frames sent
    "ticker_ticks_sent_total",  # ticks sent
    "ticker_frames_dropped_total",  # frames dropped by reason
    "ticker_slow_client_closes_total",  # slow-client closes
    "ticker_protocol_closes_total",  # protocol closes by code
    "ticker_producer_ticks_total",  # producer ticks
    "ticker_producer_window_lag_seconds_count",  # window lag
    "ticker_producer_window_failures_total",  # window failures
    "ticker_channel_layer_errors_total",  # channel layer errors
    "ticker_celery_task_failures_total",  # Celery task failures
)


def expected_zero_series() -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every series a process has before any event: the unlabelled families and each known label value."""
    series = set()
    for family, values in metrics.KNOWN_LABELS:
        name = family._name + ("_total" if family._type == "counter" else "")
        [label] = family._labelnames
        series |= {(name, ((label, value),)) for value in values}
    unlabelled = (
        "ticker_slow_client_closes_total",
        "ticker_producer_ticks_total",
        "ticker_producer_window_failures_total",
        "ticker_producer_window_lag_seconds_count",
    )
    return series | {(name, ()) for name in unlabelled}


def test_a_fresh_process_has_every_series_at_zero(tmp_path) -> None:
    # A process of its own: this one has counted in other tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"DJANGO_SETTINGS_MODULE": "ticker.settings", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    script = "import django; django.setup(); from ticker import metrics; print(metrics.render().decode())"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }
    assert {name for name, _ in samples} >= set(GUIDE_FAMILIES)
    missing = expected_zero_series() - set(samples)
    assert not missing, f"no series before the first event: {sorted(missing)}"
    assert all(samples[series] == 0 for series in expected_zero_series())
