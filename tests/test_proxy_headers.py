"""X-Forwarded-* are believed only from a trusted proxy, and only the entry it added."""

from __future__ import annotations

import pytest
from twisted.web.http_headers import Headers

from ticker import server

NAMES = ("X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto")


@pytest.fixture
def balancer(monkeypatch) -> str:
    monkeypatch.setattr(server, "TRUSTED_PROXIES", frozenset({"10.0.0.2"}))
    return "10.0.0.2"


def test_a_trusted_proxy_names_the_client_and_only_its_own_entry_counts(balancer) -> None:
    # The client sent "6.6.6.6" itself; the proxy appended the address it really saw.
    headers = Headers({b"X-Forwarded-For": [b"6.6.6.6, 192.0.2.10"], b"X-Forwarded-Proto": [b"https"]})
    addr, scheme = server.trusted_forwarded_for(headers, *NAMES, original_addr=[balancer, 5555], original_scheme="http")
    assert (addr[0], scheme) == ("192.0.2.10", "https")


def test_anyone_else_keeps_their_own_address(balancer) -> None:
    headers = {b"x-forwarded-for": b"192.0.2.10", b"x-forwarded-proto": b"https"}
    addr, scheme = server.trusted_forwarded_for(headers, *NAMES, original_addr=["198.51.100.9", 4444])
    assert (addr, scheme) == (["198.51.100.9", 4444], None)


def test_daphnes_protocols_use_the_trusted_parser() -> None:
    import daphne.http_protocol
    import daphne.ws_protocol

    assert daphne.http_protocol.parse_x_forwarded_for is server._positional
    assert daphne.ws_protocol.parse_x_forwarded_for is server._positional
