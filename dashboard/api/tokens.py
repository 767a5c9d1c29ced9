"""Personal API tokens over HTTP: list, create (the secret shown once), revoke.

* ``GET /api/tokens/``: the user's tokens, never their secrets.
* ``POST /api/tokens/`` ``{"name": "script", "password": "…", "read_only": true, "expires_in_days": 30}``:
  201 with ``token``. ``password`` is the user's current one (403 when wrong, 429 after too
  many failures); without ``expires_in_days`` the token lives the longest allowed
  (``TICKER_API_TOKEN_MAX_DAYS``, 90 days), a longer one is a 400 naming the field.
* ``DELETE /api/tokens/<id>/``: 204; the streams opened with it close with 4401.

Tokens are managed from a logged-in session only. The rules live in ``dashboard.tokens``;
its ``TokenError`` becomes an ``ApiError`` with its status and field here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from dashboard import tokens
from dashboard.api.errors import NOT_FOUND_MESSAGE, ApiError, responses


class TokenOut(Schema):
    """A token as listed: never its secret."""

    id: int
    name: str
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    read_only: bool
    created_at: datetime
    expires_at: datetime = Field(description="when it stops working (at most TICKER_API_TOKEN_MAX_DAYS after creation)")
    last_used_at: datetime | None


class TokensOut(Schema):
    tokens: list[TokenOut]


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown this once, stored only as a hash")


class TokenIn(Schema):
    name: str = Field(max_length=tokens.MAX_NAME)
    password: str = Field(description="the user's current password: a session alone cannot make a token")
    read_only: bool = False
    expires_in_days: int | None = Field(
        None,
        ge=1,
        le=settings.API_TOKEN_MAX_DAYS,
        description="days until it stops working; empty: the longest allowed (TICKER_API_TOKEN_MAX_DAYS)",
    )


router = Router(tags=["tokens"])


def _session_only(request: HttpRequest) -> None:
    # A token must not mint or revoke tokens: a leaked one could otherwise outlive its revocation.
    if getattr(request, "api_token", None) is not None:
        raise ApiError(403, "forbidden", "tokens are managed from a logged-in session, not with a token")


@router.get("/", response=responses({200: TokensOut}), summary="The user's API tokens")
def list_tokens(request: HttpRequest) -> dict[str, Any]:
    return {"tokens": [tokens.to_wire(t) for t in tokens.list_for(request.user)]}


@router.post("/", response=responses({201: TokenCreated}, 400), summary="Create an API token")
def create_token(request: HttpRequest, payload: TokenIn) -> Status[dict[str, Any]]:
    """Returns the secret once, as ``token``; only its hash is kept. Needs the current password."""
    _session_only(request)
    try:
        tokens.confirm_password(request, payload.password)
        created = tokens.create(
            request.user, payload.name, read_only=payload.read_only, expires_in_days=payload.expires_in_days
        )
    except tokens.TokenError as err:
        raise ApiError(err.status, err.code, err.message, err.field) from None
    return Status(201, {**tokens.to_wire(created.token), "token": created.secret})


@router.delete("/{int:token_id}/", response=responses({204: None}, 404), summary="Revoke an API token")
def revoke_token(request: HttpRequest, token_id: int) -> Status[None]:
    """Deletes the token; streams opened with it close with 4401 (at once, or at the next access check)."""
    _session_only(request)
    if tokens.revoke(request.user, token_id) is None:
        raise ApiError(404, "not_found", NOT_FOUND_MESSAGE)
    return Status(204, None)
