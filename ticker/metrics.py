"""Prometheus metrics of every Ticker process, and the ``/metrics`` endpoint that reports them.

Multiprocess-safe: each process (Daphne, workers, beat) writes its samples under
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` aggregates the whole host. Access needs a
staff session or ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

import atexit
import hmac
import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

CONNECTIONS_OPEN = Gauge(
    "ticker_connections_open", "Open WebSocket streams.", ["endpoint"], multiprocess_mode="livesum"
)
FRAMES_SENT = Counter("ticker_frames_sent_total", "Frames sent to stream clients.", ["endpoint"])
TICKS_SENT = Counter("ticker_ticks_sent_total", "Ticks sent to stream clients.", ["endpoint"])
FRAMES_DROPPED = Counter("ticker_frames_dropped_total", "Frames not delivered to a client, by reason.", ["reason"])
SLOW_CLIENT_CLOSES = Counter("ticker_slow_client_closes_total", "Clients closed with 4408 (too slow).")
PROTOCOL_CLOSES = Counter("ticker_protocol_closes_total", "Streams closed by the server, by close code.", ["code"])
PRODUCER_TICKS = Counter("ticker_producer_ticks_total", "Ticks produced and stored.")
PRODUCER_LAG = Histogram(
    "ticker_producer_window_lag_seconds",
    "How late a producer window started against its schedule.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PRODUCER_WINDOW_FAILURES = Counter("ticker_producer_window_failures_total", "Producer windows that failed.")
CHANNEL_LAYER_ERRORS = Counter(
    "ticker_channel_layer_errors_total", "Channel layer operations that failed.", ["operation"]
)
TASK_FAILURES = Counter("ticker_celery_task_failures_total", "Celery tasks that raised.", ["task"])


def _mark_dead() -> None:
    # Drops this process's live gauges from the aggregate once it exits.
    multiprocess.mark_process_dead(os.getpid())


atexit.register(_mark_dead)


def _authorized(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    # Bytes: compare_digest refuses non-ASCII str, and a header is whatever a client sends.
    return bool(token) and hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        return HttpResponse("staff session or bearer token required\n", status=403, content_type="text/plain")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
