"""Who may call the API, and how often: two ways in, tried in order, and throttles.

* ``Authorization: Bearer tkr_…``: a personal token (``dashboard.tokens``) for scripts.
  No CSRF (a browser cannot be made to send that header cross-site); read-only tokens
  are refused writes (403); each token is throttled (429, ``TokenThrottle``).
* the session cookie of a logged-in browser, with Django's CSRF check on writes; each
  user's session calls are throttled alike (429, ``SessionThrottle``).

Alert creation has a per-user rate of its own (``AlertCreateThrottle``).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import BaseThrottle
from ninja.utils import check_csrf

from dashboard import tokens
from dashboard.api.errors import ApiError
from dashboard.models import ApiToken

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The units ``settings.API_TOKEN_RATE`` may name ("100/min"), in seconds.
PERIOD_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
# A window's counter outlives the window by this much, so no request of it finds the key gone.
WINDOW_GRACE_S = 1


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


class CacheRateThrottle(BaseThrottle):
    """At most the rate named by ``rate_setting`` ("600/min") per caller per period (fixed window).

    The count lives in Django's cache (Redis), incremented atomically, so every web process
    shares one budget per caller (ninja's ``SimpleRateThrottle`` reads then writes a list,
    so parallel requests can all pass, and keeps state on the one shared instance). If the
    cache is unreachable, requests pass: the throttle protects the service, it must not
    take the API down with Redis. A refusal names itself in ``request.throttled`` for the
    429's message. Subclasses say whom a request counts for (``caller``; None: not counted).
    """

    scope = ""
    rate_setting = ""
    refused = "too many requests"

    @staticmethod
    def parse_rate(rate: str) -> tuple[int, int]:
        count, _, period = rate.partition("/")
        return int(count), PERIOD_SECONDS[period.strip().lower()]

    def caller(self, request: HttpRequest) -> object | None:
        raise NotImplementedError

    def allow_request(self, request: HttpRequest) -> bool:
        caller = self.caller(request)
        if caller is None:
            return True
        limit, period = self.parse_rate(getattr(settings, self.rate_setting))
        window = int(time.time() // period)
        key = f"api-throttle:{self.scope}:{caller}:{period}:{window}"
        try:
            cache.add(key, 0, timeout=period + WINDOW_GRACE_S)
            count = cache.incr(key)
        except Exception as exc:
            logger.warning("API throttle %s not applied, cache unreachable: %r", self.scope, exc)
            return True
        if count <= limit:
            return True
        logger.info("API %s %s throttled (%s requests in this window)", self.scope, caller, count)
        request.throttled = self.refused  # type: ignore[attr-defined]
        return False

    def wait(self) -> float | None:
        # Stateless (one instance serves every thread): the rest of the current window.
        _, period = self.parse_rate(getattr(settings, self.rate_setting))
        return period - time.time() % period


class TokenThrottle(CacheRateThrottle):
    """Each API token: ``settings.API_TOKEN_RATE``."""

    scope = "token"
    rate_setting = "API_TOKEN_RATE"
    refused = "too many requests for this API token"

    def caller(self, request: HttpRequest) -> object | None:
        token = getattr(request, "api_token", None)
        return None if token is None else token.pk


class SessionThrottle(CacheRateThrottle):
    """Each user calling with their browser session: ``settings.API_SESSION_RATE``.

    A loop of the dearest call (a 2,000-candle history) from a page or a copied cookie
    would otherwise hold the web process's one thread for sync views for everyone.
    """

    scope = "session"
    rate_setting = "API_SESSION_RATE"
    refused = "too many requests from this session"

    def caller(self, request: HttpRequest) -> object | None:
        if getattr(request, "api_token", None) is not None or not request.user.is_authenticated:
            return None
        return request.user.pk


class AlertCreateThrottle(CacheRateThrottle):
    """Alerts each user may create (by session or any of their tokens): ``settings.ALERT_CREATE_RATE``."""

    scope = "alert-create"
    rate_setting = "ALERT_CREATE_RATE"
    refused = "too many alerts created"

    def caller(self, request: HttpRequest) -> object | None:
        return request.user.pk if request.user.is_authenticated else None


# Every operation's throttles; one that sets its own lists these first.
API_THROTTLES: list[BaseThrottle] = [TokenThrottle(), SessionThrottle()]
