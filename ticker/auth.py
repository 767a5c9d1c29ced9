"""Every login path throttled by django-axes on the shared cache (Redis).

Each failed attempt counts against three counters (OWASP's advice), each with its own
limit within the cool-off (``LOGIN_FAILURE_LIMITS``, ``LayeredLockoutHandler``):

- the (username, client address) pair, low (5): one source guessing one account;
- the address, higher (20): one source spraying many accounts;
- the username, higher still (50): many sources guessing one account.

Past any of them the paths it covers answer 429 with the lockout page, even to the right
password; so an attacker guessing a name from one address locks that pair, and the owner
still logs in from anywhere else. A success resets only its own pair, never the address
(a trader logging into their own account cannot clear their guesses at others).

- ``/accounts/login/`` and ``/admin/login/``: Django's forms call ``authenticate``,
  which axes watches (``AxesStandaloneBackend`` + ``AxesMiddleware``).
- ``/accounts/password_change/``: a wrong old password counts as a failed login of that
  user (it is one: a stolen session guessing the password).
- ``/accounts/password_reset/``: each request counts against the address, so the form
  cannot be used to mail-bomb or probe addresses faster than logins can be guessed.

Usernames are NFKC-normalised exactly as Django's ``UsernameField`` does, so look-alike
spellings of one account share its counter. The client address is ``REMOTE_ADDR``,
which ``ticker.server`` takes from ``X-Forwarded-For`` only when the peer is a trusted
proxy (``TRUSTED_PROXIES``); an IPv6 address counts as its /64, the block one host can
pick addresses from at will. Unlock with axes' own commands, which this handler makes
work on the cache: ``manage.py axes_reset`` (everything), ``axes_reset_username NAME``,
``axes_reset_ip ADDRESS``, ``axes_reset_ip_username ADDRESS NAME`` (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import unicodedata
from typing import Any, NamedTuple

from axes.conf import settings
from axes.handlers.cache import AxesCacheHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import (
    get_cache_timeout,
    get_client_ip_address,
    get_client_parameters,
    get_client_user_agent,
    get_client_username,
    get_lockout_response,
)
from axes.signals import user_locked_out
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

IPV6_GROUP_PREFIX = 64  # a subscriber's smallest allocation: one host picks any address in it
USERNAME_MAX_LENGTH = 150  # Django's User.username; longer input cannot name an account
DIGEST_CHARS = 32  # 128 bits of SHA-256: no two names or addresses collide in practice
COUNTER_PREFIX = "axes:"  # every lockout counter's cache key starts so (reset finds them by it)
SCAN_COUNT = 500  # keys per SCAN round trip when a reset looks counters up
PAIR = "username+ip_address"  # the one counter a success resets (a LOGIN_FAILURE_LIMITS name)


def address_group(address: str) -> str:
    """The unit an address is counted as: IPv4 as is, IPv6 by its /64, IPv4-mapped as the IPv4.

    Idempotent (a group maps to itself), so an operator may pass an address or its group
    to ``axes_reset_ip``; something that is no IP address at all is counted as given.
    """
    try:
        ip = ipaddress.ip_address(address.split("/", 1)[0])
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network((ip, IPV6_GROUP_PREFIX), strict=False))


def client_address(request: HttpRequest) -> str | None:
    """``AXES_CLIENT_IP_CALLABLE``: the peer, or the client a trusted proxy named (ticker.server), grouped."""
    address = request.META.get("REMOTE_ADDR")
    return address_group(address) if address else None


def canonical_username(raw: object) -> str:
    return unicodedata.normalize("NFKC", str(raw))[:USERNAME_MAX_LENGTH]


def normalized_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The username as Django's login form sees it (``AXES_USERNAME_CALLABLE``)."""
    raw = (credentials or {}).get("username")
    if raw is None:
        raw = request.POST.get("username") if request is not None else None
    if raw is None:
        return None
    return canonical_username(raw)


def _digest(name: str, value: str) -> str:
    canonical = canonical_username(value) if name == "username" else address_group(value)
    return f"{name}={hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_CHARS]}"


def counter_key(values: dict[str, str]) -> str:
    """The cache key of one counter, e.g. ``axes:username=<digest>:ip_address=<digest>``.

    Each value is digested on its own and named (unlike axes' one digest of the values run
    together), so a username can never share a counter with an address, and one pattern
    finds every counter of a username or an address. Digests keep names out of the cache.
    """
    return COUNTER_PREFIX + ":".join(
        _digest(name, values[name]) for name in ("username", "ip_address") if name in values
    )


class Counter(NamedTuple):
    """One counter an attempt is held to: its name in ``LOGIN_FAILURE_LIMITS``, cache key and limit."""

    name: str
    key: str
    limit: int


class LayeredLockoutHandler(AxesCacheHandler):
    """axes' cache handler with a limit per counter (``AXES_HANDLER``, axes' documented hook).

    axes holds every counter of ``AXES_LOCKOUT_PARAMETERS`` to one ``AXES_FAILURE_LIMIT``
    and resets them all on a success, and its cache handler cannot reset by a username
    alone or everything. This one holds each to its limit in ``LOGIN_FAILURE_LIMITS``,
    resets only the (username, address) pair on a success, and resets any counters
    (``axes_reset*`` commands). Counting stays axes' (``add``, then atomic ``incr``).
    """

    def counters(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> list[Counter]:
        """This attempt's counters; one needing a value the attempt lacks (no username) is skipped."""
        username = get_client_username(request, credentials)
        address = get_client_ip_address(request)
        params = get_client_parameters(username, address, get_client_user_agent(request), request, credentials)
        counters = []
        for values in params:
            if not all(values.values()):
                continue
            name = "+".join(values)
            try:
                limit = settings.LOGIN_FAILURE_LIMITS[name]
            except KeyError:
                raise ImproperlyConfigured(f"LOGIN_FAILURE_LIMITS has no limit for {name!r}") from None
            counters.append(Counter(name, counter_key(values), limit))
        return counters

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        counts = self.cache.get_many([counter.key for counter in self.counters(request, credentials)])
        return max(counts.values(), default=0)

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        if not settings.AXES_LOCK_OUT_AT_FAILURE:
            return False
        counters = self.counters(request, credentials)
        counts = self.cache.get_many([counter.key for counter in counters])
        return any(counts.get(counter.key, 0) >= counter.limit for counter in counters)

    def _count(self, key: str, timeout: int | None) -> int:
        if self.cache.add(key, 1, timeout):
            return 1
        try:
            count = self.cache.incr(key)
        except ValueError:  # expired between add and incr: this failure starts it again
            return 1 if self.cache.add(key, 1, timeout) else self.cache.incr(key)
        self.cache.touch(key, timeout)  # the cool-off runs from the last failure
        return count

    def user_login_failed(
        self, sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            log.error("AXES: a login failure without a request cannot be counted")
            return
        if request.axes_locked_out:  # refused by a lockout before any password was checked: not counted
            self._locked_out(request, credentials)
            return
        if self.is_whitelisted(request, credentials):
            return
        timeout = get_cache_timeout(request)
        counts = [(counter, self._count(counter.key, timeout)) for counter in self.counters(request, credentials)]
        request.axes_failures_since_start = max((count for _, count in counts), default=0)
        reached = [counter.name for counter, count in counts if count >= counter.limit]
        log.warning(
            "AXES: login failure on %s; counts %s",
            request.axes_path_info,
            ", ".join(f"{counter.name} {count}/{counter.limit}" for counter, count in counts),
        )
        if settings.AXES_LOCK_OUT_AT_FAILURE and reached:
            log.warning("AXES: locked out by %s", ", ".join(reached))
            self._locked_out(request, credentials)

    def _locked_out(self, request: HttpRequest, credentials: dict[str, Any]) -> None:
        request.axes_locked_out = True
        request.axes_credentials = credentials
        username = get_client_username(request, credentials)
        user_locked_out.send("axes", request=request, username=username, ip_address=request.axes_ip_address)

    def user_logged_in(self, sender: object, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        """A success clears its own (username, address) pair, nothing else."""
        if not settings.AXES_RESET_ON_SUCCESS:
            return
        credentials = {settings.AXES_USERNAME_FORM_FIELD: user.get_username()}
        pairs = [counter.key for counter in self.counters(request, credentials) if counter.name == PAIR]
        self.cache.delete_many(pairs)

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """Delete the counters naming ``username`` and/or ``ip_address`` (both: their pair; neither: all)."""
        user = _digest("username", username) if username else None
        address = _digest("ip_address", ip_address) if ip_address else None
        if user and address and not ip_or_username:
            patterns = [f"{user}:{address}"]
        elif user or address:
            patterns = [f"{user}*"] * bool(user) + [f"*{address}"] * bool(address)
        else:
            patterns = ["*"]
        client = self.cache._cache.get_client(write=True)  # the cache API cannot list keys; its writable Redis can
        keys = {
            key
            for pattern in patterns
            for key in client.scan_iter(match=self.cache.make_key(COUNTER_PREFIX + pattern), count=SCAN_COUNT)
        }
        deleted = client.delete(*keys) if keys else 0
        log.info("AXES: reset %d lockout counters", deleted)
        return deleted


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
            return get_lockout_response(request, credentials=credentials)
        return super().post(request, *args, **kwargs)


class ThrottledPasswordResetView(auth_views.PasswordResetView):
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not AxesProxyHandler.is_allowed(request):
            return get_lockout_response(request)
        # Counted whatever the outcome: the form never says whether the address exists.
        user_login_failed.send(sender=__name__, credentials={}, request=request)
        return super().post(request, *args, **kwargs)
