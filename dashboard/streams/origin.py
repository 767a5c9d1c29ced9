"""Which pages may open a stream: the Origin must be this site's, scheme, host and port.

channels' ``AllowedHostsOriginValidator`` compares host names only, so a page served on
another port of an allowed host (``http://localhost:9999``) could open streams with the
user's cookie. Here the ``Origin`` must equal the site's own origin: the scheme the site
is served with (``https`` in production, see ``TICKER["ORIGIN_SCHEME"]``), and exactly the
host and port the browser connected to (its ``Host`` header, which must be an allowed
host), or be listed in ``TICKER["EXTRA_ORIGINS"]``.

Browsers always send ``Origin`` on a WebSocket handshake. A handshake without one comes
from a script, which could forge any Origin anyway: it is let through only when it
carries ``Authorization: Bearer`` credentials, which then decide (no ambient cookie can
be abused that way).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": "80", "https": "443"}


def _netloc(host: str, port: str, scheme: str) -> str:
    return host if not port or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"


def origin_allowed(
    origin: str, host_header: str, *, scheme: str, allowed_hosts: list[str], extra: list[str] = ()
) -> bool:
    """Whether a page at ``origin`` may open a stream on the site the browser reached as ``host_header``."""
    if origin in extra:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = str(parts.port) if parts.port is not None else ""
    except ValueError:
        return False
    if parts.scheme != scheme or not parts.hostname or parts.path or parts.query or parts.username:
        return False
    host, port = split_domain_port(host_header.lower())
    if not host or not validate_host(host, allowed_hosts):
        return False
    return _netloc(parts.hostname, origin_port, scheme) == _netloc(host, port, scheme)


class SameOriginValidator:
    """ASGI middleware around the WebSocket app: refuse (HTTP 403) handshakes from other origins."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        origin = host = authorization = None
        for name, value in scope.get("headers", []):
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        cfg = settings.TICKER
        if origin is None:
            allowed = bool(authorization and authorization.lower().startswith("bearer "))
        else:
            allowed = host is not None and origin_allowed(
                origin,
                host,
                scheme=cfg["ORIGIN_SCHEME"],
                allowed_hosts=settings.ALLOWED_HOSTS,
                extra=cfg["EXTRA_ORIGINS"],
            )
        if not allowed:
            await WebsocketDenier()(scope, receive, send)
            return
        await self.app(scope, receive, send)
