"""The API's one error shape, the one way to raise it, and the handlers that answer with it.

Every error body is ``{"error": code, "message": text}`` plus ``"field"`` when one input is
to blame (``ErrorOut``). An operation that refuses a request raises ``ApiError``; the
handlers installed by ``install_exception_handlers`` turn that, and whatever else an
operation or ninja raises (validation, throttling, an unexpected failure), into that body.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from django.db import DataError, models
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Schema
from ninja.errors import HttpError, Throttled, ValidationError

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=models.Model)

# The code of an error raised without one (by ninja or Django), by status.
ERROR_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "server_error",
}
NOT_FOUND_MESSAGE = "no such resource"

# Any operation can answer these: a malformed request (400), no or bad credentials (401),
# a CSRF failure or a read-only token's write (403), a throttled caller (429); and one
# with path parameters, a 404.
COMMON_ERRORS = (400, 401, 403, 429)
COMMON_ERRORS_TEXT = {
    400: "Invalid request: the message names the field",
    401: "Not authenticated: no session, or a bad, expired or revoked token",
    403: "Forbidden: CSRF check failed, or a read-only token tried to write",
    404: "Not found",
    429: "Too many requests for this token, session or (alert creation) user: see Retry-After",
}
# Responses every authenticated operation may give, documented on each.
AUTH_ERRORS = (401, 403, 429)


class ErrorOut(Schema):
    """Every error response: a stable code for programs, a message for people."""

    error: str = Field(description="machine-readable code, e.g. not_authenticated, bad_request, rate_limited")
    message: str
    field: str | None = Field(None, description="the input at fault, when there is one")


class ApiError(HttpError):
    """A refused request: its status, its code (and field) for the common shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(status, message)
        self.code = code
        self.field = field


def responses(ok: dict[int, Any], *errors: int) -> dict[int, Any]:
    """An operation's documented answers: ``ok``, the authentication and throttling errors, and ``errors``."""
    return {**ok, **dict.fromkeys((*AUTH_ERRORS, *errors), ErrorOut)}


def get_or_404(model: type[ModelT], **lookup: Any) -> ModelT:
    """The one row of ``model`` that ``lookup`` names, else an ``ApiError`` 404."""
    try:
        return model._default_manager.get(**lookup)
    except model.DoesNotExist:
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE) from None


def error_body(code: str, message: str, field: str | None = None) -> dict[str, str]:
    body = {"error": code, "message": message}
    if field:
        body["field"] = field
    return body


def error_response(api: NinjaAPI, status: int, code: str, message: str, field: str | None = None) -> HttpResponse:
    """A JSON error outside ninja's handlers (unknown paths, 405)."""
    return HttpResponse(
        api.renderer.render(None, error_body(code, message, field), response_status=status),  # type: ignore[arg-type]
        status=status,
        content_type=api.get_content_type(),
    )


# --- The handlers: each takes the API first (bound by install_exception_handlers) ---------


def _http_error(api: NinjaAPI, request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, ApiError):
        body = error_body(exc.code, exc.message, exc.field)
    elif isinstance(exc, Throttled):
        retry = f"; retry in {math.ceil(exc.wait)} s" if exc.wait is not None else ""
        # The throttle that refused says what it counts (dashboard.api.auth).
        body = error_body("rate_limited", f"{getattr(request, 'throttled', 'too many requests')}{retry}")
    else:
        body = error_body(ERROR_CODES.get(exc.status_code, "error"), exc.message)
    return api.create_response(request, body, status=exc.status_code)


def _validation_error(api: NinjaAPI, request: HttpRequest, exc: ValidationError) -> HttpResponse:
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


def _not_found(api: NinjaAPI, request: HttpRequest, exc: Http404) -> HttpResponse:
    return api.create_response(request, error_body("not_found", NOT_FOUND_MESSAGE), status=404)


def _out_of_range(api: NinjaAPI, request: HttpRequest, exc: Exception) -> HttpResponse:
    # A number past what the database stores (an id of 2**64): the caller's input, so a 400,
    # on every operation, including those whose schema left the integer unbounded.
    logger.warning("API %s %s: a value out of the database's range: %r", request.method, request.path, exc)
    return api.create_response(
        request, error_body("bad_request", "a number in the request is out of range"), status=400
    )


def _server_error(api: NinjaAPI, request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("API %s %s failed", request.method, request.path, exc_info=exc)
    return api.create_response(request, error_body("server_error", "internal error; it has been logged"), status=500)


HANDLERS: dict[type[Exception], Callable[..., HttpResponse]] = {
    HttpError: _http_error,  # ApiError, ninja's own (401, throttled) and any other HttpError
    ValidationError: _validation_error,
    Http404: _not_found,
    OverflowError: _out_of_range,  # SQLite
    DataError: _out_of_range,  # PostgreSQL: integer out of range
    Exception: _server_error,
}


def install_exception_handlers(api: NinjaAPI) -> None:
    """Answer every exception of ``api``'s operations in the common shape (the most specific class wins)."""
    for exc_class, handler in HANDLERS.items():
        api.add_exception_handler(exc_class, partial(handler, api))
