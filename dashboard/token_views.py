"""The API tokens settings page: create, name and revoke personal tokens with plain forms.

The page works without JavaScript: creating a token answers with the page itself,
showing the secret once (it is never stored, so it cannot be shown again). Creating one
asks for the current password, as the API does (``dashboard.tokens.confirm_password``).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import tokens

# Lifetimes offered besides the longest allowed, which is always offered and chosen by default.
SHORTER_LIFETIMES_DAYS = (7, 30, 90, 365)


def expiry_choices() -> list[tuple[str, str]]:
    """The lifetimes the form offers, none past ``TICKER_API_TOKEN_MAX_DAYS``."""
    longest = tokens.max_days()
    days = sorted({d for d in SHORTER_LIFETIMES_DAYS if d < longest} | {longest})
    return [(str(d), f"{d} days") for d in days]


def _create(request: HttpRequest) -> tokens.NewToken:
    expiry = request.POST.get("expires_in_days", "")
    if not expiry.isdecimal() or not expiry.isascii():
        raise tokens.TokenError("bad_request", "choose an expiry from the list", field="expires_in_days")
    tokens.confirm_password(request, request.POST.get("password", ""))
    return tokens.create(
        request.user,
        request.POST.get("name", ""),
        read_only=request.POST.get("read_only") == "on",
        expires_in_days=int(expiry),
    )


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    created: tokens.NewToken | None = None
    error = ""
    status = 200
    if request.method == "POST":
        try:
            created = _create(request)
        except tokens.TokenError as err:
            error, status = err.message, err.status
    choices = expiry_choices()
    context = {
        "tokens": [tokens.to_wire(t) for t in tokens.list_for(request.user)],
        "created": created,
        "error": error,
        "expiry_choices": choices,
        "default_expiry": choices[-1][0],
        "max_name": tokens.MAX_NAME,
        "max_days": tokens.max_days(),
    }
    response = render(request, "dashboard/tokens.html", context, status=status)
    # The one page that ever shows a secret: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


def revoked_message(revocation: tokens.Revocation) -> str:
    """What revoking did, as far as this process knows: the message is the close's, not its delivery."""
    later = f"any stream that misses it is closed within {settings.TICKER['ACCESS_CHECK_SECONDS']} s (the access check)"
    if revocation.told:
        return f"Token revoked: it is refused from now on. Its open streams were sent a close; {later}."
    if revocation.told is False:
        return f"Token revoked: it is refused from now on. The close could not be broadcast; {later}."
    return f"Token revoked: it is refused from now on. Its open streams will be sent a close; {later}."


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    revocation = tokens.revoke(request.user, token_id)
    if revocation is not None:
        messages.success(request, revoked_message(revocation))
    else:
        messages.error(request, "No such token.")
    return redirect("dashboard:tokens")
