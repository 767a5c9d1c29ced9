"""Personal API tokens: create, list, authenticate, revoke.

A token is ``tkr_`` followed by 43 URL-safe characters (256 random bits). Only its
SHA-256 is stored: a high-entropy secret needs no slow hash, and looking it up by its
hash means no secret is ever compared in Python. The first characters (``prefix``) are
kept in clear so a trader can tell tokens apart on the settings page.

Both doors use ``authenticate``: the HTTP API (``Authorization: Bearer``, in
``dashboard.api.auth``) and the WebSocket handshake (``dashboard.streams.token_auth``).
Revoking deletes the row and closes the streams opened with it (``token_group``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from dashboard.market.broadcast import publish_revoked, token_group
from dashboard.models import ApiToken

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "tkr_"  # noqa: S105 - the visible marker of every token, not a secret
# Characters of the token shown in lists: "tkr_" and 8 of the secret (48 bits: enough to
# tell a user's tokens apart, far too few to guess the rest).
VISIBLE_CHARS = 12
MAX_NAME = 40
MAX_EXPIRY_DAYS = 365
# last_used_at is a write per request otherwise; a minute's precision is plenty.
LAST_USED_PRECISION = dt.timedelta(minutes=1)


class TokenError(ValueError):
    """A refused token operation; ``code`` is the API error code, the message is safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class NewToken:
    """A just-created token: the row and the secret, which exists only here."""

    token: ApiToken
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def to_wire(token: ApiToken) -> dict[str, Any]:
    """A token as listed: never its secret nor its hash."""
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "read_only": token.read_only,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
    }


def list_for(user: AbstractBaseUser) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user))


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TokenError("bad_request", "a token needs a name")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise TokenError("bad_request", f"token names are at most {MAX_NAME} characters")
    return name


@transaction.atomic
def create(
    user: AbstractBaseUser, name: object, *, read_only: bool = False, expires_in_days: int | None = None
) -> NewToken:
    """A new token for ``user``; the returned secret is the only copy there will be."""
    name = _clean_name(name)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise TokenError("bad_request", f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}")
    # Counted under a row lock on the user so two parallel creates cannot pass the limit.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    if ApiToken.objects.filter(user=user).count() >= ApiToken.MAX_PER_USER:
        raise TokenError("bad_request", f"at most {ApiToken.MAX_PER_USER} tokens; revoke one first")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:VISIBLE_CHARS],
        token_hash=hash_secret(secret),
        read_only=read_only,
        expires_at=expires_at,
    )
    logger.info("user %s created API token %s (%s)", user.pk, token.pk, token.prefix)
    return NewToken(token, secret)


def authenticate(secret: str) -> ApiToken:
    """The live token whose secret this is (its user loaded), or a ``TokenError``.

    ``not_authenticated`` for an unknown, revoked or malformed secret, for an expired
    token and for a deactivated user alike: the caller answers 401 (HTTP) or 4401 (WS).
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise TokenError("not_authenticated", "invalid API token")
    token = ApiToken.objects.select_related("user").filter(token_hash=hash_secret(secret)).first()
    if token is None or not token.user.is_active:
        raise TokenError("not_authenticated", "invalid API token")
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenError("not_authenticated", "this API token has expired")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke(user: AbstractBaseUser, token_id: int) -> bool:
    """Delete one of ``user``'s tokens and close the streams opened with it."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        return False
    logger.info("user %s revoked API token %s", user.pk, token_id)
    # After the commit: a stream that reconnects at once must not find the token still there.
    transaction.on_commit(lambda: publish_revoked(token_group(token_id), "API token revoked"))
    return True
