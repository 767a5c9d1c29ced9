"""The HTTP API (django-ninja): catalog, candle history, watchlists, API tokens, price alerts.

Typed schemas generate the OpenAPI 3 document at ``/api/openapi.json``; the interactive
docs at ``/api/docs`` load swagger-ui from ninja's own static files (no CDN).

| module        | holds                                                                    |
|---------------|--------------------------------------------------------------------------|
| ``errors``    | the one error shape (``ErrorOut``), ``ApiError``, ``responses``, handlers |
| ``auth``      | bearer token, session cookie (CSRF on writes), per-token throttle         |
| ``app``       | the ``api`` instance, schema post-processing, routers, ``not_found``      |
| ``market``    | ``/api/symbols/``, ``/api/symbols/<symbol>/candles/``                     |
| ``watchlists``, ``tokens``, ``alerts`` | one router each; their rules live in services     |

An operation refuses a request by raising ``ApiError``; the handlers answer it, and any
other failure, as ``{"error": code, "message": text}`` plus ``"field"`` when one input is
to blame. ``dashboard/urls.py`` mounts ``api.urls`` at ``/api/`` and ``not_found`` after it.
"""

from dashboard.api.app import api, not_found

__all__ = ["api", "not_found"]
