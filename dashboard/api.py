"""The HTTP API (django-ninja): catalog, candle history, watchlists, personal API tokens.

Typed schemas generate the OpenAPI 3 document at ``/api/openapi.json``; the interactive
docs at ``/api/docs`` load swagger-ui from ninja's own static files (no CDN).

Two ways in, tried in order:

* ``Authorization: Bearer tkr_…``: a personal token (``dashboard.tokens``) for scripts.
  No CSRF (a browser cannot be made to send that header cross-site); read-only tokens
  are refused writes (403); each token is throttled (429).
* the session cookie of a logged-in browser, with Django's CSRF check on writes.

Every error, whatever raised it, has one JSON shape: ``{"error": code, "message": text}``
plus ``"field"`` when one input is to blame (``ErrorOut``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import DataError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, URLResolver
from django.views.decorators.csrf import csrf_exempt
from ninja import Field, NinjaAPI, Query, Router, Schema, Status
from ninja.errors import HttpError, Throttled, ValidationError
from ninja.openapi.docs import Swagger
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import BaseThrottle
from ninja.utils import check_csrf
from pydantic import StrictInt, field_validator

from dashboard import tokens
from dashboard import watchlists as watchlist_services
from dashboard.alerts_api import router as alerts_router
from dashboard.market.client import sync_redis
from dashboard.market.protocol import DEFAULT_INTERVAL, INTERVALS
from dashboard.market.store import read_quotes
from dashboard.models import ApiToken, Symbol, Watchlist
from dashboard.selectors import DEFAULT_HISTORY, MAX_HISTORY, candle_history, catalog_entries
from dashboard.watchlists import MAX_POSITION, WatchlistError

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ERROR_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "server_error",
}


# --- Errors ---------------------------------------------------------------------------


class ErrorOut(Schema):
    """Every error response: a stable code for programs, a message for people."""

    error: str = Field(description="machine-readable code, e.g. not_authenticated, bad_request, rate_limited")
    message: str
    field: str | None = Field(None, description="the input at fault, when there is one")


class ApiError(HttpError):
    """An error with an explicit code (and field) for the common shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status, message)
        self.code = code
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, str]:
    body = {"error": code, "message": message}
    if field:
        body["field"] = field
    return body


def error_response(status: int, code: str, message: str, field: str | None = None) -> HttpResponse:
    """A JSON error outside ninja's handlers (unknown paths, 405)."""
    return HttpResponse(
        api.renderer.render(None, error_body(code, message, field), response_status=status),  # type: ignore[arg-type]
        status=status,
        content_type=api.get_content_type(),
    )


# Any operation can answer these: a malformed request (400), no or bad credentials (401),
# a CSRF failure or a read-only token's write (403), a throttled token (429); and one
# with path parameters, a 404.
COMMON_ERRORS = (400, 401, 403, 429)
COMMON_ERRORS_TEXT = {
    400: "Invalid request: the message names the field",
    401: "Not authenticated: no session, or a bad, expired or revoked token",
    403: "Forbidden: CSRF check failed, or a read-only token tried to write",
    404: "Not found",
    429: "Too many requests for this token: see Retry-After",
}


# --- Authentication and throttling ----------------------------------------------------


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``; a bad token is a 401 even if a session exists.

    Another scheme (``Basic`` from a proxy in front of a staging site) is ignored: the
    session decides.
    """

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        scheme, _, secret = request.headers.get(self.header, "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.authenticate(request, secret)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        try:
            found = tokens.authenticate(token.strip())
        except tokens.TokenError as err:
            raise ApiError(401, err.code, err.message) from None
        if found.read_only and request.method not in SAFE_METHODS:
            raise ApiError(403, "forbidden", "this API token is read-only")
        # Handlers read request.user whichever way the caller came in.
        request.user = found.user
        request.api_token = found  # type: ignore[attr-defined]
        return found


class SessionCookie(APIKeyCookie):
    """The browser's login session. CSRF is checked on writes once the user is known,
    so an anonymous write is a 401 (log in) rather than a 403."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> AbstractBaseUser | None:
        if not request.user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise ApiError(
                403, "csrf_failed", "CSRF token missing or incorrect: send the csrftoken cookie's value in X-CSRFToken"
            )
        return request.user


class TokenThrottle(BaseThrottle):
    """At most ``settings.API_TOKEN_RATE`` requests per token per period (fixed window).

    The count lives in Django's cache (Redis), incremented atomically, so every web
    process shares one budget per token. Session requests are not counted (the browser
    pages are bounded by their own code). If the cache is unreachable, requests pass:
    the throttle protects the service, it must not take the API down with Redis.
    """

    @staticmethod
    def parse_rate(rate: str) -> tuple[int, int]:
        count, _, period = rate.partition("/")
        seconds = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
        return int(count), seconds[period.strip().lower()]

    def allow_request(self, request: HttpRequest) -> bool:
        token = getattr(request, "api_token", None)
        if token is None:
            return True
        limit, period = self.parse_rate(settings.API_TOKEN_RATE)
        now = time.time()
        window = int(now // period)
        key = f"api-throttle:{token.pk}:{period}:{window}"
        try:
            cache.add(key, 0, timeout=period + 1)
            count = cache.incr(key)
        except Exception as exc:
            logger.warning("API throttle not applied, cache unreachable: %r", exc)
            return True
        if count <= limit:
            return True
        logger.info("API token %s throttled (%s requests in this window)", token.pk, count)
        return False

    def wait(self) -> float | None:
        # Stateless (one instance serves every thread): the rest of the current window.
        _, period = self.parse_rate(settings.API_TOKEN_RATE)
        return period - time.time() % period


# --- The API ---------------------------------------------------------------------------


class TickerAPI(NinjaAPI):
    """``NinjaAPI`` whose 405 answers use the common error shape too, and whose schema
    documents on every operation the errors any operation can give (``COMMON_ERRORS``),
    including those of routers written elsewhere (alerts)."""

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorOut", ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}"))
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                codes = COMMON_ERRORS + ((404,) if "{" in path else ())
                for code in codes:
                    operation["responses"].setdefault(code, {"description": COMMON_ERRORS_TEXT[code], "content": error})
        return schema

    def _get_urls(self) -> list[URLPattern | URLResolver]:
        urls = super()._get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = _json_405(pattern.callback)
        return urls


def _json_405(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    # ninja answers an unknown method itself, in plain text; keep its Allow header.
    @wraps(view)  # keeps csrf_exempt: ninja's auth classes do the CSRF check
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            response = error_response(405, "method_not_allowed", f"{request.method} not allowed here; use {allowed}")
            response["Allow"] = allowed
        return response

    return wrapped


api = TickerAPI(
    title="Ticker API",
    version="1",
    description=(
        "Catalog, candle history, watchlists and personal API tokens. Authenticate with "
        "`Authorization: Bearer <token>` (create one on the API tokens page) or a logged-in "
        "session cookie plus `X-CSRFToken` on writes. The live market streams over WebSocket: "
        "see docs/protocol.md."
    ),
    urls_namespace="dashboard:api",  # included from dashboard/urls.py
    auth=[BearerToken(), SessionCookie()],
    throttle=[TokenThrottle()],
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": False}),
)

# Responses every authenticated operation may give, documented on each.
AUTH_ERRORS: dict[int, type[Schema]] = {401: ErrorOut, 403: ErrorOut, 429: ErrorOut}


def responses(ok: dict[int, Any], *errors: int) -> dict[int, Any]:
    return {**ok, **AUTH_ERRORS, **dict.fromkeys(errors, ErrorOut)}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.field)
    elif isinstance(exc, Throttled):
        retry = f"; retry in {math.ceil(exc.wait)} s" if exc.wait is not None else ""
        body = error_body("rate_limited", f"too many requests for this API token{retry}")
    else:
        body = error_body(ERROR_CODES.get(exc.status_code, "error"), exc.message)
    return api.create_response(request, body, status=exc.status_code)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = [str(part) for part in first.get("loc", ())]
    # loc is (source, field, ...): ("query", "limit"), ("body", "payload", "symbols", 0).
    names = [p for p in location[1:] if p != "payload" and not p.isdigit()]
    field = ".".join(names) or None
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return api.create_response(
        request,
        error_body("bad_request", f"{field}: {message}" if field else message, field),
        status=400,
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, error_body("not_found", "no such resource"), status=404)


def _out_of_range(request: HttpRequest, exc: Exception) -> HttpResponse:
    # A number past what the database stores (an id of 2**64): the caller's input, so a 400,
    # on every operation, including those whose schema left the integer unbounded.
    logger.warning("API %s %s: a value out of the database's range: %r", request.method, request.path, exc)
    return api.create_response(
        request, error_body("bad_request", "a number in the request is out of range"), status=400
    )


api.add_exception_handler(OverflowError, _out_of_range)  # SQLite
api.add_exception_handler(DataError, _out_of_range)  # PostgreSQL: integer out of range


@api.exception_handler(Exception)
def _server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("API %s %s failed", request.method, request.path, exc_info=exc)
    return api.create_response(request, error_body("server_error", "internal error; it has been logged"), status=500)


# --- Market ----------------------------------------------------------------------------

IntervalName = Literal[INTERVALS]  # type: ignore[valid-type]


class QuoteOut(Schema):
    """Last trade, bid/ask and session statistics (as in the stream's ``snapshot``)."""

    price: float
    bid: float
    ask: float
    volume: float
    ts: int = Field(description="ms since the Unix epoch, UTC")
    open: float
    high: float
    low: float
    change: float
    change_pct: float


class SymbolOut(Schema):
    """A catalog entry with its latest quote (``null`` until the symbol first ticks)."""

    symbol: str
    name: str
    asset_class: str
    precision: int
    status: Literal["trading", "halted"]
    quote: QuoteOut | None
    epoch: str | None
    seq: int


class SymbolsOut(Schema):
    symbols: list[SymbolOut]


class CandleOut(Schema):
    ts: int = Field(description="start of the interval, ms since the Unix epoch, UTC")
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = Field(description="false for the forming (last) candle")


class CandlesOut(Schema):
    symbol: str
    interval: IntervalName
    candles: list[CandleOut]


market = Router(tags=["market"])


@market.get("/symbols/", response=responses({200: SymbolsOut}), summary="The catalog with latest quotes")
def symbols(request: HttpRequest) -> dict[str, Any]:
    """Enabled symbols with their latest quote, epoch and seq."""
    catalog = catalog_entries()
    snapshots = read_quotes(sync_redis(), [e["symbol"] for e in catalog])
    for entry in catalog:
        snap = snapshots[entry["symbol"]]
        entry.update({"quote": snap.quote, "epoch": snap.epoch, "seq": snap.seq})
    return {"symbols": catalog}


@market.get(
    "/symbols/{symbol}/candles/",
    response=responses({200: CandlesOut}, 400, 404),
    summary="Candle history of a symbol",
)
def candles(
    request: HttpRequest,
    symbol: str,
    interval: IntervalName = DEFAULT_INTERVAL,
    limit: int = Query(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY),  # type: ignore[type-arg]
) -> dict[str, Any]:
    """Closed candles, oldest first, then the forming one (``closed: false``)."""
    instrument = get_object_or_404(Symbol, symbol=symbol, enabled=True)
    data = candle_history(sync_redis(), instrument, interval, limit)
    return {"symbol": instrument.symbol, "interval": interval, "candles": data}


# --- Watchlists ------------------------------------------------------------------------


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
    name: str = Field(max_length=40)
    symbols: list[str] = Field(default_factory=list, max_length=Watchlist.MAX_SYMBOLS)

    _codes = field_validator("symbols", mode="before")(_symbol_codes)


class WatchlistPatch(Schema):
    """Any of: a new name, the full ordered symbols, a position among the user's lists."""

    name: str | None = Field(None, max_length=40)
    symbols: list[str] | None = Field(None, max_length=Watchlist.MAX_SYMBOLS)
    position: StrictInt | None = Field(None, ge=0, le=MAX_POSITION)

    _codes = field_validator("symbols", mode="before")(_symbol_codes)


watchlists_router = Router(tags=["watchlists"])


def _rule(err: WatchlistError) -> ApiError:
    return ApiError(400, "bad_request", str(err))


@watchlists_router.get("/", response=responses({200: WatchlistsOut}), summary="The user's watchlists")
def watchlists(request: HttpRequest) -> dict[str, Any]:
    """The user's watchlists; a first visit gets one with every enabled symbol."""
    return {"watchlists": watchlist_services.list_for(request.user)}


@watchlists_router.post("/", response=responses({201: WatchlistOut}, 400), summary="Create a watchlist")
def create_watchlist(request: HttpRequest, payload: WatchlistIn) -> Status[dict[str, Any]]:
    try:
        created = watchlist_services.create(request.user, payload.name, payload.symbols)
    except WatchlistError as err:
        raise _rule(err) from None
    return Status(201, watchlist_services.to_wire(created))


@watchlists_router.get("/{int:pk}/", response=responses({200: WatchlistOut}, 404), summary="One watchlist")
def watchlist(request: HttpRequest, pk: int) -> dict[str, Any]:
    return watchlist_services.to_wire(get_object_or_404(Watchlist, pk=pk, user=request.user))


@watchlists_router.patch(
    "/{int:pk}/", response=responses({200: WatchlistOut}, 400, 404), summary="Rename, reorder or move"
)
def update_watchlist(request: HttpRequest, pk: int, payload: WatchlistPatch) -> dict[str, Any]:
    found = get_object_or_404(Watchlist, pk=pk, user=request.user)
    try:
        watchlist_services.update(found, payload.model_dump(exclude_unset=True))
    except WatchlistError as err:
        raise _rule(err) from None
    return watchlist_services.to_wire(found)


@watchlists_router.delete("/{int:pk}/", response=responses({204: None}, 404), summary="Delete a watchlist")
def delete_watchlist(request: HttpRequest, pk: int) -> Status[None]:
    watchlist_services.delete(get_object_or_404(Watchlist, pk=pk, user=request.user))
    return Status(204, None)


# --- Personal API tokens ---------------------------------------------------------------


class TokenOut(Schema):
    """A token as listed: never its secret."""

    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    read_only: bool
    created_at: datetime
    expires_at: datetime | None = Field(description="null: never expires")
    last_used_at: datetime | None


class TokensOut(Schema):
    tokens: list[TokenOut]


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class TokenIn(Schema):
    name: str = Field(max_length=tokens.MAX_NAME)
    read_only: bool = False
    expires_in_days: int | None = Field(
        None, ge=1, le=tokens.MAX_EXPIRY_DAYS, description="empty: the token never expires"
    )


tokens_router = Router(tags=["tokens"])


def _session_only(request: HttpRequest) -> None:
    # A token must not mint or revoke tokens: a leaked one could otherwise outlive its revocation.
    if getattr(request, "api_token", None) is not None:
        raise ApiError(403, "forbidden", "tokens are managed from a logged-in session, not with a token")


@tokens_router.get("/", response=responses({200: TokensOut}), summary="The user's API tokens")
def list_tokens(request: HttpRequest) -> dict[str, Any]:
    return {"tokens": [tokens.to_wire(t) for t in tokens.list_for(request.user)]}


@tokens_router.post("/", response=responses({201: TokenCreated}, 400), summary="Create an API token")
def create_token(request: HttpRequest, payload: TokenIn) -> Status[dict[str, Any]]:
    """Returns the secret once, as ``token``; only its hash is kept."""
    _session_only(request)
    try:
        created = tokens.create(
            request.user, payload.name, read_only=payload.read_only, expires_in_days=payload.expires_in_days
        )
    except tokens.TokenError as err:
        raise ApiError(400, err.code, err.message) from None
    return Status(201, {**tokens.to_wire(created.token), "token": created.secret})


@tokens_router.delete("/{int:token_id}/", response=responses({204: None}, 404), summary="Revoke an API token")
def revoke_token(request: HttpRequest, token_id: int) -> Status[None]:
    """Deletes the token; streams opened with it close with 4401."""
    _session_only(request)
    if not tokens.revoke(request.user, token_id):
        raise Http404
    return Status(204, None)


api.add_router("/", market)
api.add_router("/watchlists/", watchlists_router)
api.add_router("/tokens/", tokens_router)
# Price alerts: their own module, the same auth, throttle and error shape.
api.add_router("/alerts/", alerts_router)


@csrf_exempt  # it changes nothing; a CSRF refusal would be an HTML page instead of this JSON 404
def not_found(request: HttpRequest) -> HttpResponse:
    """Any path under /api/ that names no operation."""
    return error_response(404, "not_found", f"no API endpoint at {request.path}")
