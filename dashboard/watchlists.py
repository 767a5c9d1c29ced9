"""Watchlist services: create, rename, replace symbols (add, remove, reorder), delete.

Views stay thin: they parse JSON and call these; every rule (name length, unique names,
known symbols, the per-list limit) is enforced here with a ``WatchlistError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max

from dashboard.models import Symbol, Watchlist, WatchlistItem

DEFAULT_NAME = "Market"
# Lists per user: more than a trader uses, few enough that one account cannot fill the table.
MAX_WATCHLISTS = 50
# The length of the name column (Watchlist.name).
MAX_NAME = 40
# Positions order a user's lists; far beyond any real count, well inside the column (2**31 - 1).
MAX_POSITION = 10_000


class WatchlistError(ValueError):
    """A request that breaks a watchlist rule; its message is safe to show to the user."""


def to_wire(watchlist: Watchlist) -> dict[str, Any]:
    return {
        "id": watchlist.pk,
        "name": watchlist.name,
        "position": watchlist.position,
        "symbols": [item.symbol.symbol for item in watchlist.items.select_related("symbol")],
    }


def list_for(user: AbstractBaseUser) -> list[dict[str, Any]]:
    """The user's watchlists; a first visit gets one with every enabled symbol."""
    lists = list(Watchlist.objects.filter(user=user).prefetch_related("items__symbol"))
    if not lists:
        create(user, DEFAULT_NAME, list(Symbol.objects.filter(enabled=True).values_list("symbol", flat=True)))
        lists = list(Watchlist.objects.filter(user=user).prefetch_related("items__symbol"))
    return [to_wire(w) for w in lists]


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise WatchlistError("a watchlist needs a name")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise WatchlistError(f"watchlist names are at most {MAX_NAME} characters")
    return name


def _symbols(codes: object) -> list[Symbol]:
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise WatchlistError("symbols must be a list of symbol codes")
    if len(codes) > Watchlist.MAX_SYMBOLS:
        raise WatchlistError(f"a watchlist holds at most {Watchlist.MAX_SYMBOLS} symbols")
    if len(set(codes)) != len(codes):
        raise WatchlistError("a symbol can appear only once in a watchlist")
    found = {s.symbol: s for s in Symbol.objects.filter(symbol__in=codes, enabled=True)}
    unknown = [c for c in codes if c not in found]
    if unknown:
        raise WatchlistError(f"unknown or disabled symbols: {', '.join(unknown[:10])}")
    return [found[c] for c in codes]


@transaction.atomic
def create(user: AbstractBaseUser, name: object, codes: object = ()) -> Watchlist:
    name = _clean_name(name)
    symbols = _symbols(list(codes) if isinstance(codes, (list, tuple)) else codes)
    if Watchlist.objects.filter(user=user).count() >= MAX_WATCHLISTS:
        raise WatchlistError(f"at most {MAX_WATCHLISTS} watchlists")
    last = Watchlist.objects.filter(user=user).aggregate(m=Max("position"))["m"]
    try:
        with transaction.atomic():
            watchlist = Watchlist.objects.create(user=user, name=name, position=(last or 0) + 1)
    except IntegrityError:
        raise WatchlistError(f"you already have a watchlist named {name!r}") from None
    _replace_symbols(watchlist, symbols)
    return watchlist


@transaction.atomic
def update(watchlist: Watchlist, data: dict[str, Any]) -> Watchlist:
    """Rename (``name``), replace the ordered symbols (``symbols``), or move (``position``)."""
    if "name" in data:
        watchlist.name = _clean_name(data["name"])
    if "position" in data:
        position = data["position"]
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_POSITION:
            raise WatchlistError(f"position must be an integer from 0 to {MAX_POSITION}")
        watchlist.position = data["position"]
    try:
        with transaction.atomic():
            watchlist.save()
    except IntegrityError:
        raise WatchlistError(f"you already have a watchlist named {watchlist.name!r}") from None
    if "symbols" in data:
        _replace_symbols(watchlist, _symbols(data["symbols"]))
    return watchlist


def _replace_symbols(watchlist: Watchlist, symbols: Sequence[Symbol]) -> None:
    WatchlistItem.objects.filter(watchlist=watchlist).delete()
    WatchlistItem.objects.bulk_create(
        WatchlistItem(watchlist=watchlist, symbol=symbol, position=i) for i, symbol in enumerate(symbols)
    )


def delete(watchlist: Watchlist) -> None:
    watchlist.delete()
