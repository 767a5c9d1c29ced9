"""Thin views: pages for logged-in traders; live data arrives over the WebSocket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from dashboard.catalog import catalog_entries
from dashboard.models import Symbol


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/dashboard.html", {"catalog": catalog_entries()})


@login_required
def symbol_page(request: HttpRequest, symbol: str) -> HttpResponse:
    entry = get_object_or_404(Symbol, symbol=symbol, enabled=True)
    return render(request, "dashboard/symbol.html", {"symbol": entry.to_catalog_entry()})
