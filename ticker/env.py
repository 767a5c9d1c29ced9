"""Reading settings from the environment: small helpers that fail loudly on a bad value.

``ticker/settings.py`` reads every setting through these, so a malformed variable stops
the process at start with a message naming it, instead of misbehaving later.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name}={value} is outside [{minimum}, {maximum}]")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# The units a rate setting may name ("600/min"), as dashboard.api.auth reads them.
RATE_UNITS = frozenset({"s", "sec", "m", "min", "h", "hour", "d", "day"})


def env_rate(name: str, default: str) -> str:
    """A request rate "COUNT/UNIT" (e.g. "600/min"), refused at start if malformed."""
    raw = os.environ.get(name) or default
    count, _, unit = raw.partition("/")
    if not count.strip().isdigit() or int(count) < 1 or unit.strip().lower() not in RATE_UNITS:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate such as 600/min (units: s, min, h, day)")
    return raw


def redis_url_with_db(url: str, db: int) -> str:
    """The same Redis server as ``url`` but another logical database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def redis_db_of(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path else 0
