"""Liveness and readiness probes for operators and load balancers.

``/healthz``: the process answers (no dependency checked). ``/readyz``: the database
and Redis answer and a producer completed a window recently; 503 otherwise. Both answer
JSON and are never cached by clients.

``/readyz`` is open to anyone, so what it costs and what it tells are bounded: the checks
run at most once per ``READY_CACHE_SECONDS`` per process whatever the request rate (one
request runs them, concurrent ones wait for its result), and the per-check details
(timings, exception names) go only to a balancer in ``TRUSTED_PROXIES`` probing directly
and to staff sessions; anyone else gets ``{"status": ...}`` and the status code.

Probes that answer 200 are left out of Daphne's access log and logged at DEBUG instead
(``QuietProbesAccessLog``, which ``ticker/server.py`` puts in place of Daphne's): a
balancer checks every process once a second, and those lines would bury the requests
worth reading. A failing probe stays in the access log.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from daphne.access import AccessLogGenerator
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from dashboard.market import store
from dashboard.market.client import sync_redis

logger = logging.getLogger(__name__)

# A producer window older than this means no worker is producing.
MAX_PRODUCER_AGE_MS = 5000
# How long one readiness result answers every request: a probe a second per balancer is
# plenty, and a flood of /readyz then costs the database and Redis nothing more.
READY_CACHE_SECONDS = 1.0


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
    every healthy backend down. The probes reveal nothing (``/readyz``'s details are for
    trusted proxies and staff) and change nothing, so they skip both. A ``/readyz``
    request with a session cookie takes the normal path instead, so that a staff session
    is recognised. First in ``MIDDLEWARE``.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        probe = PROBES.get(request.path_info)
        if probe is None or (probe is readyz and settings.SESSION_COOKIE_NAME in request.COOKIES):
            # A session (staff may see the details) goes through the whole stack, whose
            # URLconf routes the probe to the same view with ``request.user`` set.
            return self.get_response(request)
        return probe(request)


class Readiness:
    """The last readiness result of this process, recomputed once it is ``max_age`` old."""

    def __init__(self, max_age: float = READY_CACHE_SECONDS, clock: Any = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self.runs = 0
        self._result: tuple[float, bool, dict[str, Any]] | None = None
        # One request runs the checks; the others that arrive meanwhile take its result.
        self._lock = threading.Lock()

    def get(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            if self._result is None or self.clock() - self._result[0] >= self.max_age:
                ready, checks = _check()
                # Stamped when the checks end: a slow check's result still serves a full period.
                self._result = (self.clock(), ready, checks)
                self.runs += 1
            return self._result[1], self._result[2]

    def clear(self) -> None:
        with self._lock:
            self._result = None


def _check() -> tuple[bool, dict[str, Any]]:
    checks = {"database": _timed(_database), "redis": _timed(_redis)}
    checks["producer"] = _timed(_producer) if checks["redis"]["ok"] else {"ok": False, "error": "redis"}
    return all(check["ok"] for check in checks.values()), checks


READINESS = Readiness()


def may_see_details(request: HttpRequest) -> bool:
    """A balancer's own probe (a trusted proxy, naming nobody else) or a staff session."""
    if request.META.get("REMOTE_ADDR") in settings.TRUSTED_PROXIES:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    ready, checks = READINESS.get()
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable"}
    if may_see_details(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if ready else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class QuietProbesAccessLog(AccessLogGenerator):
    """Daphne's access log without the probes that answered 200 (those go to DEBUG)."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        path = str(details.get("path", "")).partition("?")[0]
        if protocol == "http" and action == "complete" and path in PROBES and details.get("status") == 200:
            logger.debug("probe %s %s from %s", path, details["status"], details.get("client"))
            return
        super().__call__(protocol, action, details)
