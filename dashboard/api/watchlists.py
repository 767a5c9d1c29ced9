"""Watchlists over HTTP: the user's lists, each an ordered set of symbols.

* ``GET /api/watchlists/``: the user's lists (a first visit gets one with every enabled symbol).
* ``POST /api/watchlists/`` ``{"name": "Tech", "symbols": ["AAPL"]}``: 201 with the list.
* ``GET|PATCH|DELETE /api/watchlists/<id>/``: one list; another user's is a 404.

Every rule lives in ``dashboard.watchlists``; its ``WatchlistError`` becomes a 400 here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from pydantic import StrictInt, field_validator

from dashboard import watchlists as watchlist_services
from dashboard.api.errors import ApiError, get_or_404, responses
from dashboard.models import Watchlist
from dashboard.watchlists import MAX_NAME, MAX_POSITION, WatchlistError


def _symbol_codes(value: object) -> object:
    # The service's message, not pydantic's, for the common mistake of a bare string.
    if value is not None and not isinstance(value, list):
        raise ValueError("symbols must be a list of symbol codes")
    return value


class WatchlistOut(Schema):
    id: int
    name: str
    position: int
    symbols: list[str]


class WatchlistsOut(Schema):
    watchlists: list[WatchlistOut]


class WatchlistIn(Schema):
    name: str = Field(max_length=MAX_NAME)
    symbols: list[str] = Field(default_factory=list, max_length=Watchlist.MAX_SYMBOLS)

    _codes = field_validator("symbols", mode="before")(_symbol_codes)


class WatchlistPatch(Schema):
    """Any of: a new name, the full ordered symbols, a position among the user's lists."""

    name: str | None = Field(None, max_length=MAX_NAME)
    symbols: list[str] | None = Field(None, max_length=Watchlist.MAX_SYMBOLS)
    position: StrictInt | None = Field(None, ge=0, le=MAX_POSITION)

    _codes = field_validator("symbols", mode="before")(_symbol_codes)


router = Router(tags=["watchlists"])


def _rule(err: WatchlistError) -> ApiError:
    return ApiError(400, "bad_request", str(err))


def _own(request: HttpRequest, pk: int) -> Watchlist:
    return get_or_404(Watchlist, pk=pk, user=request.user)


@router.get("/", response=responses({200: WatchlistsOut}), summary="The user's watchlists")
def watchlists(request: HttpRequest) -> dict[str, Any]:
    """The user's watchlists; a first visit gets one with every enabled symbol."""
    return {"watchlists": watchlist_services.list_for(request.user)}


@router.post("/", response=responses({201: WatchlistOut}, 400), summary="Create a watchlist")
def create_watchlist(request: HttpRequest, payload: WatchlistIn) -> Status[dict[str, Any]]:
    try:
        created = watchlist_services.create(request.user, payload.name, payload.symbols)
    except WatchlistError as err:
        raise _rule(err) from None
    return Status(201, watchlist_services.to_wire(created))


@router.get("/{int:pk}/", response=responses({200: WatchlistOut}, 404), summary="One watchlist")
def watchlist(request: HttpRequest, pk: int) -> dict[str, Any]:
    return watchlist_services.to_wire(_own(request, pk))


@router.patch("/{int:pk}/", response=responses({200: WatchlistOut}, 400, 404), summary="Rename, reorder or move")
def update_watchlist(request: HttpRequest, pk: int, payload: WatchlistPatch) -> dict[str, Any]:
    found = _own(request, pk)
    try:
        watchlist_services.update(found, payload.model_dump(exclude_unset=True))
    except WatchlistError as err:
        raise _rule(err) from None
    return watchlist_services.to_wire(found)


@router.delete("/{int:pk}/", response=responses({204: None}, 404), summary="Delete a watchlist")
def delete_watchlist(request: HttpRequest, pk: int) -> Status[None]:
    watchlist_services.delete(_own(request, pk))
    return Status(204, None)
