"""Prometheus metrics of every Ticker process, and the ``/metrics`` endpoint that reports them.

Multiprocess-safe: each long-running process (Daphne, workers, beat) writes its samples
under ``PROMETHEUS_MULTIPROC_DIR`` (default ``$TICKER_VAR_DIR/prometheus``) and ``/metrics``
aggregates the whole host, after dropping the processes that are gone
(``ticker/metrics_dir.py``); one-shot commands count in memory and write nothing.
Every labelled family starts with a zero series per known label value (``KNOWN_LABELS``),
so an alert has something to compare with before the first event. Access needs a staff
session or ``Authorization: Bearer <METRICS_TOKEN>``. ``docs/observability.md`` lists them.
"""

from __future__ import annotations

import atexit
import hmac
import os
import sys
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ticker import metrics_dir

# Before the first metric exists: it decides whether values live in files or in memory.
# Reading settings.VAR_DIR also loads the settings (TICKER_VAR_DIR, var/dev.env).
FILES_DIR: Path | None = metrics_dir.configure(
    writes=not metrics_dir.one_shot(sys.argv), default=Path(settings.VAR_DIR) / "prometheus"
)

CONNECTIONS_OPEN = Gauge(
    "ticker_connections_open", "Open WebSocket streams.", ["endpoint"], multiprocess_mode="livesum"
)
FRAMES_SENT = Counter("ticker_frames_sent_total", "Frames sent to stream clients.", ["endpoint"])
TICKS_SENT = Counter("ticker_ticks_sent_total", "Ticks sent to stream clients.", ["endpoint"])
FRAMES_DROPPED = Counter("ticker_frames_dropped_total", "Frames not delivered to a client, by reason.", ["reason"])
SLOW_CLIENT_CLOSES = Counter("ticker_slow_client_closes_total", "Clients closed with 4408 (too slow).")
PROTOCOL_CLOSES = Counter(
    "ticker_protocol_closes_total", "Streams closed for what the client sent, by close code.", ["code"]
)
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


# The label values the code uses, each family's in one place: every one gets its zero
# series at start. tests/test_metric_labels.py fails when code uses a value not listed here.
ENDPOINTS = ("stream", "symbol")  # dashboard/streams/routing.py: StreamAdmission kinds
DROP_REASONS = ("too_slow", "closing")  # ticker/slow_clients.py: frames a closing client did not get
CLOSE_CODES = ("4400", "4429")  # CloseCode.PROTOCOL_ABUSE, RATE_LIMITED: what StreamSession.client_frame returns
CHANNEL_LAYER_OPERATIONS = ("publish_catalog", "publish_revoked")  # dashboard/market/broadcast.py
TASKS = (  # workers/tasks.py, the tasks beat schedules
    "workers.tasks.flush_candles",
    "workers.tasks.producer_watchdog",
    "workers.tasks.prune_candles",
    "workers.tasks.prune_alerts",
)
KNOWN_LABELS: tuple[tuple[Counter | Gauge, tuple[str, ...]], ...] = (
    (CONNECTIONS_OPEN, ENDPOINTS),
    (FRAMES_SENT, ENDPOINTS),
    (TICKS_SENT, ENDPOINTS),
    (FRAMES_DROPPED, DROP_REASONS),
    (PROTOCOL_CLOSES, CLOSE_CODES),
    (CHANNEL_LAYER_ERRORS, CHANNEL_LAYER_OPERATIONS),
    (TASK_FAILURES, TASKS),
)
for _family, _values in KNOWN_LABELS:
    for _value in _values:
        _family.labels(_value)


def _forget_live_gauges() -> None:
    # A clean exit drops this process's open connections at once (a crash: at the next scrape).
    if FILES_DIR is not None:
        metrics_dir.forget_live_gauges(FILES_DIR, metrics_dir.identity(os.getpid()))


atexit.register(_forget_live_gauges)


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
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def render() -> bytes:
    """The host's metrics in the text format: every live process's, plus what exited ones counted."""
    if FILES_DIR is None:
        return generate_latest(REGISTRY)  # a one-shot process: its own, in memory
    FILES_DIR.mkdir(parents=True, exist_ok=True)  # emptied by hand, directory and all
    # Under the lock: a reap by another web process is either not begun or done.
    with metrics_dir.locked(FILES_DIR):
        metrics_dir.reap(FILES_DIR)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(FILES_DIR))
        return generate_latest(registry)
