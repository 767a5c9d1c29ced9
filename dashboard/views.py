"""Thin views: pages for logged-in traders; live data arrives over the WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from dashboard import watchlists
from dashboard.market.candles import INTERVALS_MS
from dashboard.models import Symbol
from dashboard.selectors import catalog_entries


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # The catalog and the user's watchlists ride in the page (json_script), so the
    # stream can subscribe as soon as it opens, with no API round trip first.
    context = {
        "catalog": catalog_entries(),
        "watchlists": watchlists.list_for(request.user),
        "intervals": list(INTERVALS_MS.items()),
    }
    return render(request, "dashboard/dashboard.html", context)


@login_required
def symbol_page(request: HttpRequest, symbol: str) -> HttpResponse:
    entry = get_object_or_404(Symbol, symbol=symbol, enabled=True)
    context = {"symbol": entry.to_catalog_entry(), "intervals": list(INTERVALS_MS.items())}
    return render(request, "dashboard/symbol.html", context)
