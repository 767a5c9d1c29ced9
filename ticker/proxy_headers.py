"""Who may set ``X-Forwarded-For``, and which client address it names.

Daphne's ``--proxy-headers`` believes ``X-Forwarded-For`` / ``-Port`` / ``-Proto`` from
anyone who can reach it, so any client could pick the address the login throttle counts
(``ticker/auth.py``). Here they are honoured only on connections from an address in
``TRUSTED_PROXIES`` (the ``TRUSTED_PROXIES`` setting), taking the entry the proxy itself
added (the last one). With trusted proxies configured the headers are read without
``--proxy-headers``.

A peer that is not a trusted proxy cannot pass those headers on either: ``screen``
removes every proxy-only header (``X-Forwarded-*``, ``Forwarded``, ``X-Real-IP``) from its
requests' and handshakes' scope, and undoes a ``Daphne-Root-Path`` it sent, so that nothing
downstream (Django's ``SECURE_PROXY_SSL_HEADER``, a view reading ``X-Forwarded-Host``) can
be told a client came over HTTPS or from elsewhere.

``install`` puts the parser in place in Daphne and ``ticker.server`` calls it at startup;
its server calls ``screen`` for every connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import daphne.http_protocol
import daphne.ws_protocol
from daphne.server import Server
from daphne.utils import parse_x_forwarded_for
from twisted.web.http_headers import Headers

# What Daphne's ``--proxy-headers`` reads: the client's address, port and scheme.
FORWARDED_HEADERS = ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto")

# Headers only a proxy may set (``X-Forwarded-*`` is matched by its prefix).
PROXY_ONLY_PREFIX = b"x-forwarded-"
PROXY_ONLY_HEADERS = frozenset({b"forwarded", b"x-real-ip"})

TRUSTED_PROXIES: frozenset[str] = frozenset()


def install(trusted: Iterable[str]) -> None:
    """Believe forwarded headers from ``trusted`` alone, in both of Daphne's protocols."""
    global TRUSTED_PROXIES
    TRUSTED_PROXIES = frozenset(trusted)
    # Both protocols look the function up in their own module, on every connection.
    daphne.http_protocol.parse_x_forwarded_for = daphne_parser
    daphne.ws_protocol.parse_x_forwarded_for = daphne_parser


def read_without_flag(server: Server) -> None:
    """With trusted proxies configured, read the forwarded headers even without ``--proxy-headers``."""
    if TRUSTED_PROXIES and not server.proxy_forwarded_address_header:
        (
            server.proxy_forwarded_address_header,
            server.proxy_forwarded_port_header,
            server.proxy_forwarded_proto_header,
        ) = FORWARDED_HEADERS


def trusted_forwarded_for(headers: Any, *names: Any, original_addr: Any = None, original_scheme: Any = None) -> Any:
    """Daphne's ``parse_x_forwarded_for``, applied only to a trusted proxy's connections."""
    if not original_addr or str(original_addr[0]) not in TRUSTED_PROXIES:
        return original_addr, original_scheme
    if isinstance(headers, Headers):
        headers = dict(headers.getAllRawHeaders())
    # The proxy appends (or sets) the address it saw: the last entry is the one to trust.
    headers = {name.lower(): value for name, value in headers.items()}
    forwarded = headers.get(b"x-forwarded-for")
    if forwarded is not None:
        value = forwarded[-1] if isinstance(forwarded, list) else forwarded
        headers[b"x-forwarded-for"] = value.split(b",")[-1].strip()
    return parse_x_forwarded_for(headers, *names, original_addr=original_addr, original_scheme=original_scheme)


def daphne_parser(headers: Any, *args: Any, **kwargs: Any) -> Any:
    """``trusted_forwarded_for`` called the way Daphne calls ``parse_x_forwarded_for``."""
    # Daphne passes the original address and scheme positionally after the three header names.
    names, rest = args[: len(FORWARDED_HEADERS)], list(args[len(FORWARDED_HEADERS) :])
    if rest:
        kwargs.setdefault("original_addr", rest.pop(0))
    if rest:
        kwargs.setdefault("original_scheme", rest.pop(0))
    return trusted_forwarded_for(headers, *names, **kwargs)


def peer_host(protocol: Any) -> str | None:
    """The address at the other end of a Daphne protocol's connection (whatever its headers say)."""
    transport = getattr(protocol, "transport", None)
    peer = transport.getPeer() if transport is not None else getattr(protocol, "client", None)
    host = getattr(peer, "host", None)
    return str(host) if host is not None else None


def proxy_only(name: bytes) -> bool:
    """Whether a (lower-case) header name is one that only a proxy may set."""
    return name.startswith(PROXY_ONLY_PREFIX) or name in PROXY_ONLY_HEADERS


def screen(scope: dict[str, Any], peer: str | None, root_path: str) -> None:
    """Unless ``peer`` is a trusted proxy, drop its proxy-only headers from ``scope`` and
    restore the server's own ``root_path`` (Daphne takes one from ``Daphne-Root-Path``)."""
    if peer is not None and peer in TRUSTED_PROXIES:
        return
    headers = scope.get("headers", [])
    if any(proxy_only(name) for name, _ in headers):
        # In place: the server keeps this list too (Daphne's ``clean_headers``), and a
        # screened copy beside it would be held for a stream's whole life.
        kept = [(name, value) for name, value in headers if not proxy_only(name)]
        if isinstance(headers, list):
            headers[:] = kept
        else:
            scope["headers"] = kept
    scope["root_path"] = root_path
