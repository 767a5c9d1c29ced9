"""Every login path throttled by django-axes on the shared cache (Redis).

Failed attempts are counted per username and per client address (atomically: axes'
cache handler uses ``add``/``incr``); past ``AXES_FAILURE_LIMIT`` within the cool-off,
every path answers 429 with the lockout page, even to the right password:

- ``/accounts/login/`` and ``/admin/login/``: Django's forms call ``authenticate``,
  which axes watches (``AxesStandaloneBackend`` + ``AxesMiddleware``).
- ``/accounts/password_change/``: a wrong old password counts as a failed login of that
  user (it is one: a stolen session guessing the password).
- ``/accounts/password_reset/``: each request counts against the address, so the form
  cannot be used to mail-bomb or probe addresses faster than logins can be guessed.

Usernames are NFKC-normalised exactly as Django's ``UsernameField`` does, so look-alike
spellings of one account share its counter. The client address is ``REMOTE_ADDR``,
which ``ticker.server`` takes from ``X-Forwarded-For`` only when the peer is a trusted
proxy (``TRUSTED_PROXIES``). Unlock: ``manage.py axes_reset_username <name>`` or
``manage.py axes_reset_ip <address>`` (docs/deploy.md).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse


def client_address(request: HttpRequest) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the peer, or the client a trusted proxy named (ticker.server)."""
    return request.META.get("REMOTE_ADDR")


def normalized_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username as Django's login form sees it (``AXES_USERNAME_CALLABLE``)."""
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username") if request is not None else None
    if raw is None:
        return None
    return unicodedata.normalize("NFKC", str(raw))[:150]


class CountedPasswordChangeForm(PasswordChangeForm):
    """A wrong old password is reported as a failed login of that user."""

    def __init__(self, user: Any, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self) -> str:
        try:
            return super().clean_old_password()
        except Exception:
            user_login_failed.send(
                sender=__name__, credentials={"username": self.user.get_username()}, request=self.request
            )
            raise


class ThrottledPasswordChangeView(auth_views.PasswordChangeView):
    form_class = CountedPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        credentials = {"username": request.user.get_username()}
        if not AxesProxyHandler.is_allowed(request, credentials):
            return get_lockout_response(request, credentials)
        return super().post(request, *args, **kwargs)


class ThrottledPasswordResetView(auth_views.PasswordResetView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not AxesProxyHandler.is_allowed(request):
            return get_lockout_response(request)
        # Counted whatever the outcome: the form never says whether the address exists.
        user_login_failed.send(sender=__name__, credentials={}, request=request)
        return super().post(request, *args, **kwargs)
