"""Login with a brake on password guessing: failed attempts are counted per username and
per client address in the cache (Redis); past the limit the form answers 429 until the
window expires, whatever the password.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)


def _key(kind: str, value: str) -> str:
    # Hashed: usernames and addresses stay out of the cache's key space in clear.
    return f"login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def _keys(request: HttpRequest) -> list[tuple[str, int]]:
    cfg = settings.TICKER
    username = str(request.POST.get("username", "")).strip().lower()[:150]
    address = request.META.get("REMOTE_ADDR", "")
    return [
        (_key("user", username), cfg["LOGIN_FAILURES_PER_USER"]),
        (_key("address", address), cfg["LOGIN_FAILURES_PER_ADDRESS"]),
    ]


def is_locked(request: HttpRequest) -> bool:
    try:
        counts = cache.get_many([key for key, _ in _keys(request)])
    except Exception as exc:
        # The cache being down must not lock everyone out (nor let anyone in unchecked:
        # the password check still runs).
        logger.warning("login throttle unavailable: %r", exc)
        return False
    return any(counts.get(key, 0) >= limit for key, limit in _keys(request))


def record_failure(request: HttpRequest) -> None:
    window = settings.TICKER["LOGIN_WINDOW_SECONDS"]
    try:
        for key, _ in _keys(request):
            if not cache.add(key, 1, timeout=window):
                cache.incr(key)
    except Exception as exc:
        logger.warning("login failure not counted: %r", exc)


class ThrottledLoginView(LoginView):
    """Django's login view, refusing (429) once too many attempts failed."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if is_locked(request):
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, "Too many failed attempts. Wait a few minutes, then try again.")
            logger.warning("login refused: too many failures for this username or address")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        record_failure(self.request)
        return super().form_invalid(form)
