"""The ``NinjaAPI`` instance: authentication, throttle, error handlers, schema and routers.

``TickerAPI`` adds to ninja's: 405 answers in the common error shape, every operation's
schema documenting the errors any operation can give, and operation ids kept as they were
published. ``not_found`` answers any other path under ``/api/``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.openapi.docs import Swagger
from ninja.operation import Operation

from dashboard.api import alerts, market, tokens, watchlists
from dashboard.api.auth import API_THROTTLES, BearerToken, SessionCookie
from dashboard.api.errors import COMMON_ERRORS, COMMON_ERRORS_TEXT, ErrorOut, error_response, install_exception_handlers

# Operation ids as published when the API was the modules dashboard/api.py and
# dashboard/alerts_api.py: generated clients name their methods after them.
OPERATION_ID_PREFIX = "dashboard_api"
OPERATION_ID_PREFIXES = {alerts.__name__: "dashboard_alerts_api"}


class TickerAPI(NinjaAPI):
    """``NinjaAPI`` whose 405 answers use the common error shape too, and whose schema
    documents on every operation the errors any operation can give (``COMMON_ERRORS``)."""

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

    def get_openapi_operation_id(self, operation: Operation) -> str:
        view = operation.view_func
        return f"{OPERATION_ID_PREFIXES.get(view.__module__, OPERATION_ID_PREFIX)}_{view.__name__}"

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
            response = error_response(
                api, 405, "method_not_allowed", f"{request.method} not allowed here; use {allowed}"
            )
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
    throttle=API_THROTTLES,
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": False}),
)
install_exception_handlers(api)

api.add_router("/", market.router)
api.add_router("/watchlists/", watchlists.router)
api.add_router("/tokens/", tokens.router)
api.add_router("/alerts/", alerts.router)


@csrf_exempt  # it changes nothing; a CSRF refusal would be an HTML page instead of this JSON 404
def not_found(request: HttpRequest) -> HttpResponse:
    """Any path under /api/ that names no operation."""
    return error_response(api, 404, "not_found", f"no API endpoint at {request.path}")
