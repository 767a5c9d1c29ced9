"""The API tokens settings page: create, name and revoke personal tokens with plain forms.

The page works without JavaScript: creating a token answers with the page itself,
showing the secret once (it is never stored, so it cannot be shown again).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import tokens

EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request: HttpRequest) -> HttpResponse:
    created: tokens.NewToken | None = None
    error = ""
    status = 200
    if request.method == "POST":
        expiry = request.POST.get("expires_in_days", "")
        try:
            days = int(expiry) if expiry else None
            created = tokens.create(
                request.user,
                request.POST.get("name", ""),
                read_only=request.POST.get("read_only") == "on",
                expires_in_days=days,
            )
        except ValueError as err:  # TokenError, or a non-numeric expiry
            error = err.message if isinstance(err, tokens.TokenError) else "choose an expiry from the list"
            status = 400
    context = {
        "tokens": tokens.list_for(request.user),
        "created": created,
        "error": error,
        "expiry_choices": EXPIRY_CHOICES,
        "max_name": tokens.MAX_NAME,
    }
    response = render(request, "dashboard/tokens.html", context, status=status)
    # The one page that ever shows a secret: keep it out of every cache.
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    if tokens.revoke(request.user, token_id):
        messages.success(request, "Token revoked; the streams opened with it are closed.")
    else:
        messages.error(request, "No such token.")
    return redirect("dashboard:tokens")
