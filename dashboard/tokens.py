"""Personal API tokens: create, list, authenticate, revoke.

A token is ``tkr_`` followed by 43 URL-safe characters (256 random bits). Only its
SHA-256 is stored: a high-entropy secret needs no slow hash, and looking it up by its
hash means no secret is ever compared in Python. The first characters (``prefix``) are
kept in clear so a trader can tell tokens apart on the settings page.

A token is a credential derived from the password, so it never outlives the owner's
decisions: creating one asks for the current password (``confirm_password``, throttled
like every login path), none lives longer than ``settings.API_TOKEN_MAX_DAYS`` from its
creation (``expiry``: also for rows made before that bound, or before it was lowered),
and a password change or reset deletes them all (``revoke_all``, from
``dashboard.signals``).

Both doors use ``authenticate``: the HTTP API (``Authorization: Bearer``, in
``dashboard.api.auth``) and the WebSocket handshake (``dashboard.streams.token_auth``).
Revoking deletes the row and tells the streams opened with it to close (``token_group``);
a stream that misses that message is closed by the access audit
(``dashboard.streams.access``), which re-checks its token every interval.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from dashboard.market.broadcast import publish_revoked, token_group
from dashboard.models import ApiToken

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "tkr_"  # noqa: S105 - the visible marker of every token, not a secret
# Characters of the token shown in lists: "tkr_" and 8 of the secret (48 bits: enough to
# tell a user's tokens apart, far too few to guess the rest).
VISIBLE_CHARS = 12
MAX_NAME = 40
# A presented secret longer than this is refused unread (real ones are 47 characters).
MAX_SECRET_CHARS = 200
LOCKED_MESSAGE = "too many failed attempts: try again later"
# last_used_at is a write per request otherwise; a minute's precision is plenty.
LAST_USED_PRECISION = dt.timedelta(minutes=1)


class TokenError(ValueError):
    """A refused token operation: ``code`` is the API error code, the message is safe to
    show, ``field`` names the input at fault and ``status`` is the HTTP answer."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class NewToken:
    """A just-created token: the row and the secret, which exists only here."""

    token: ApiToken
    secret: str


@dataclass
class Revocation:
    """What revoking a token did: ``told`` is whether its streams were sent the close
    (None while the transaction that deletes the row has not committed yet)."""

    token_id: int
    told: bool | None = None

    def tell(self) -> None:
        self.told = publish_revoked(token_group(self.token_id), "API token revoked")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def max_days() -> int:
    """The longest a token may live, in days (``TICKER_API_TOKEN_MAX_DAYS``)."""
    return settings.API_TOKEN_MAX_DAYS


def expiry(token: ApiToken) -> dt.datetime:
    """When ``token`` stops working: its own expiry, never later than the maximum lifetime."""
    latest = token.created_at + dt.timedelta(days=max_days())
    return latest if token.expires_at is None else min(token.expires_at, latest)


def live(now: dt.datetime | None = None) -> QuerySet[ApiToken]:
    """The tokens not expired at ``now``, by the same rule as ``expiry``."""
    now = timezone.now() if now is None else now
    not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    return ApiToken.objects.filter(not_expired, created_at__gt=now - dt.timedelta(days=max_days()))


def to_wire(token: ApiToken) -> dict[str, Any]:
    """A token as listed: never its secret nor its hash; ``expires_at`` is when it stops working."""
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "read_only": token.read_only,
        "created_at": token.created_at,
        "expires_at": expiry(token),
        "last_used_at": token.last_used_at,
    }


def list_for(user: AbstractBaseUser) -> list[ApiToken]:
    return list(ApiToken.objects.filter(user=user))


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TokenError("bad_request", "a token needs a name", field="name")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise TokenError("bad_request", f"token names are at most {MAX_NAME} characters", field="name")
    return name


def _lifetime(expires_in_days: int | None) -> dt.timedelta:
    longest = max_days()
    if expires_in_days is None:
        return dt.timedelta(days=longest)
    if not 1 <= expires_in_days <= longest:
        message = f"expires_in_days must be between 1 and {longest} (the longest a token may live)"
        raise TokenError("bad_request", message, field="expires_in_days")
    return dt.timedelta(days=expires_in_days)


def confirm_password(request: HttpRequest, password: object) -> None:
    """Check the logged-in user's current password, or raise a ``TokenError`` (field ``password``).

    A session alone must not become a token, which would outlive the session (a borrowed
    browser, a stolen cookie). A wrong password counts as a failed login of that user, and
    a locked-out user is refused before the password is looked at, as on every login path
    (``ticker.auth``): the form must not be a faster way to guess passwords.
    """
    user = request.user
    credentials = {"username": user.get_username()}
    locked = TokenError("rate_limited", LOCKED_MESSAGE, field="password", status=429)
    if not AxesProxyHandler.is_allowed(request, credentials):
        raise locked
    stored = user.password
    if not isinstance(password, str) or not password or not user.check_password(password):
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if getattr(request, "axes_locked_out", False):
            # This failure reached a limit. The 429 is answered here, in the caller's shape
            # (the API's JSON error, the page's form): the flag would make AxesMiddleware
            # swap that answer for its HTML lockout page.
            request.axes_locked_out = False
            raise locked
        raise TokenError("forbidden", "the current password is wrong", field="password", status=403)
    if user.password != stored:
        # check_password upgraded the stored hash: keep this session valid, as a login would.
        update_session_auth_hash(request, user)


@transaction.atomic
def create(
    user: AbstractBaseUser, name: object, *, read_only: bool = False, expires_in_days: int | None = None
) -> NewToken:
    """A new token for ``user``; the returned secret is the only copy there will be.

    Without ``expires_in_days`` it lives the longest allowed (``max_days``). The caller
    has confirmed the password (``confirm_password``).
    """
    name = _clean_name(name)
    lifetime = _lifetime(expires_in_days)
    # Counted under a row lock on the user so two parallel creates cannot pass the limit.
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    if ApiToken.objects.filter(user=user).count() >= ApiToken.MAX_PER_USER:
        raise TokenError("bad_request", f"at most {ApiToken.MAX_PER_USER} tokens; revoke one first")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=secret[:VISIBLE_CHARS],
        token_hash=hash_secret(secret),
        read_only=read_only,
        expires_at=timezone.now() + lifetime,
    )
    logger.info("user %s created API token %s (%s)", user.pk, token.pk, token.prefix)
    return NewToken(token, secret)


def authenticate(secret: str) -> ApiToken:
    """The live token whose secret this is (its user loaded), or a ``TokenError``.

    ``not_authenticated`` for an unknown, revoked or malformed secret, for an expired
    token and for a deactivated user alike: the caller answers 401 (HTTP) or 4401 (WS).
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > MAX_SECRET_CHARS:
        raise TokenError("not_authenticated", "invalid API token", status=401)
    token = ApiToken.objects.select_related("user").filter(token_hash=hash_secret(secret)).first()
    if token is None or not token.user.is_active:
        raise TokenError("not_authenticated", "invalid API token", status=401)
    now = timezone.now()
    if expiry(token) <= now:
        raise TokenError("not_authenticated", "this API token has expired", status=401)
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke(user: AbstractBaseUser, token_id: int) -> Revocation | None:
    """Delete one of ``user``'s tokens and tell the streams opened with it to close.

    None when ``user`` has no such token. The close is sent after the commit (a stream
    that reconnects at once must not find the token still there), so in autocommit the
    returned ``told`` is already known.
    """
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    if not deleted:
        return None
    logger.info("user %s revoked API token %s", user.pk, token_id)
    revocation = Revocation(token_id)
    transaction.on_commit(revocation.tell)
    return revocation


def revoke_all(user_id: int, reason: str) -> int:
    """Delete every token of a user (their password changed); returns how many.

    The caller closes the user's streams, token streams included (``user_group``); the
    access audit closes any that miss it.
    """
    deleted, _ = ApiToken.objects.filter(user_id=user_id).delete()
    if deleted:
        logger.info("revoked the %d API tokens of user %s: %s", deleted, user_id, reason)
    return deleted
