"""Symbols as the producer simulates them: the database rows turned into ``SymbolSpec``s."""

from __future__ import annotations

from django.db import close_old_connections

from dashboard.models import Symbol
from workers.simulator import SymbolSpec


def spec_of(symbol: Symbol) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol.symbol,
        initial_price=float(symbol.initial_price),
        precision=symbol.precision,
        drift=symbol.drift,
        volatility=symbol.volatility,
        jump_intensity=symbol.jump_intensity,
        spread_bps=symbol.spread_bps,
        tick_interval_ms=symbol.tick_interval_ms,
        halted=symbol.halted,
        book_levels=symbol.book_levels,
        book_size=symbol.book_size,
        liquidity=symbol.liquidity,
    )


def producer_specs() -> list[SymbolSpec]:
    """Simulation parameters of every enabled symbol; runs on the producer's DB thread."""
    close_old_connections()
    try:
        return [spec_of(s) for s in Symbol.objects.filter(enabled=True)]
    finally:
        close_old_connections()
