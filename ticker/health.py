"""Liveness and readiness probes for operators and load balancers.

``/healthz``: the process answers (no dependency checked). ``/readyz``: the database
and Redis answer and a producer completed a window recently; 503 with the failing
check otherwise. Both answer JSON and are never cached.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dashboard.market import store
from dashboard.market.client import sync_redis

# A producer window older than this means no worker is producing.
MAX_PRODUCER_AGE_MS = 5000


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = check() or {}
        ok = result.pop("ok", True)
    except Exception as exc:
        result, ok = {"error": type(exc).__name__}, False
    return {"ok": ok, "ms": round((time.perf_counter() - started) * 1000, 1), **result}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    sync_redis().ping()


def _producer() -> dict[str, Any]:
    raw = sync_redis().get(store.PRODUCER_HEARTBEAT_KEY)
    if raw is None:
        return {"ok": False, "last_window_age_ms": None}
    age = time.time_ns() // 1_000_000 - int(raw)
    limit = settings.TICKER.get("MAX_PRODUCER_AGE_MS", MAX_PRODUCER_AGE_MS)
    return {"ok": age <= limit, "last_window_age_ms": age}


class ProbeMiddleware:
    """Answers ``/healthz`` and ``/readyz`` before anything else looks at the request.

    A load balancer probes a backend over plain HTTP, by address, often without a ``Host``
    header: with ``DEBUG=0`` the HTTPS redirect (301) and the host check (400) would mark
    every healthy backend down. The probes reveal nothing and change nothing, so they
    skip both. First in ``MIDDLEWARE``.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        probe = PROBES.get(request.path_info)
        return probe(request) if probe is not None else self.get_response(request)


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _timed(_database), "redis": _timed(_redis)}
    checks["producer"] = _timed(_producer) if checks["redis"]["ok"] else {"ok": False, "error": "redis"}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}
