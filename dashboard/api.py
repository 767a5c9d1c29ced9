"""JSON endpoints for traders' pages and integrators: catalog, candle history, watchlists.

Both need a logged-in session; without one they answer 401 in JSON (an API client
cannot follow a login redirect).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_http_methods

from dashboard import watchlists as services
from dashboard.market.client import sync_redis
from dashboard.market.protocol import DEFAULT_INTERVAL, INTERVALS
from dashboard.market.store import read_quotes
from dashboard.models import Symbol, Watchlist
from dashboard.selectors import MAX_HISTORY, candle_history, catalog_entries
from dashboard.watchlists import WatchlistError


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
    snapshots = read_quotes(sync_redis(), [e["symbol"] for e in catalog])
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
    data = candle_history(sync_redis(), instrument, interval, limit)
    return JsonResponse({"symbol": instrument.symbol, "interval": interval, "candles": data})


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise WatchlistError("the body must be JSON") from None
    if not isinstance(data, dict):
        raise WatchlistError("the body must be a JSON object")
    return data


@require_http_methods(["GET", "POST"])
@api_login_required
def watchlists(request: HttpRequest) -> JsonResponse:
    """GET: the user's watchlists. POST ``{"name", "symbols"?}``: create one."""
    if request.method == "GET":
        return JsonResponse({"watchlists": services.list_for(request.user)})
    try:
        data = _json_body(request)
        created = services.create(request.user, data.get("name"), data.get("symbols", []))
    except WatchlistError as err:
        return _bad_request(str(err))
    return JsonResponse(services.to_wire(created), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_login_required
def watchlist(request: HttpRequest, pk: int) -> HttpResponse:
    """GET one; PATCH ``{"name"?, "symbols"?, "position"?}``; DELETE."""
    found = get_object_or_404(Watchlist, pk=pk, user=request.user)
    if request.method == "DELETE":
        services.delete(found)
        return HttpResponse(status=204)
    if request.method == "PATCH":
        try:
            services.update(found, _json_body(request))
        except WatchlistError as err:
            return _bad_request(str(err))
    return JsonResponse(services.to_wire(found))
