"""Selectors for the symbol catalog: what streams list and what producers simulate."""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections

from dashboard.models import Symbol
from workers.simulator import SymbolSpec


def catalog_entries() -> list[dict[str, Any]]:
    """Enabled symbols in the shape of the protocol's ``symbols`` list."""
    return [s.to_catalog_entry() for s in Symbol.objects.filter(enabled=True)]


def enabled_symbol_codes() -> list[str]:
    return list(Symbol.objects.filter(enabled=True).values_list("symbol", flat=True))


def producer_specs() -> list[SymbolSpec]:
    """Simulation parameters of every enabled symbol; runs on the producer's DB thread."""
    close_old_connections()
    try:
        return [s.to_spec() for s in Symbol.objects.filter(enabled=True)]
    finally:
        close_old_connections()
