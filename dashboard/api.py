"""JSON endpoints for traders' pages and integrators: the catalog and candle history.

Both need a logged-in session; without one they answer 401 in JSON (an API client
cannot follow a login redirect).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from dashboard import streaming
from dashboard.catalog import catalog_entries
from dashboard.history import MAX_HISTORY, candle_history
from dashboard.models import Symbol
from dashboard.protocol import DEFAULT_INTERVAL, INTERVALS
from workers.market_store import read_snapshots


def api_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "not_authenticated", "message": "log in first"}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


def _bad_request(message: str) -> JsonResponse:
    return JsonResponse({"error": "bad_request", "message": message}, status=400)


@require_GET
@api_login_required
def symbols(request: HttpRequest) -> JsonResponse:
    """The enabled symbols with their latest quote."""
    catalog = catalog_entries()
    snapshots = read_snapshots(streaming.sync_redis(), [e["symbol"] for e in catalog], candles=0)
    for entry in catalog:
        snap = snapshots[entry["symbol"]]
        entry.update({"quote": snap.quote, "epoch": snap.epoch, "seq": snap.seq})
    return JsonResponse({"symbols": catalog})


@require_GET
@api_login_required
def candles(request: HttpRequest, symbol: str) -> JsonResponse:
    """``?interval=1m&limit=500``: history of closed candles plus the forming one."""
    instrument = get_object_or_404(Symbol, symbol=symbol, enabled=True)
    interval = request.GET.get("interval", DEFAULT_INTERVAL)
    if interval not in INTERVALS:
        return _bad_request(f"interval must be one of {', '.join(INTERVALS)}")
    try:
        limit = int(request.GET.get("limit", "500"))
    except ValueError:
        return _bad_request("limit must be an integer")
    if not 1 <= limit <= MAX_HISTORY:
        return _bad_request(f"limit must be between 1 and {MAX_HISTORY}")
    data = candle_history(streaming.sync_redis(), instrument, interval, limit)
    return JsonResponse({"symbol": instrument.symbol, "interval": interval, "candles": data})
