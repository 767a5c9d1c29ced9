"""X-Forwarded-* are believed only from a trusted proxy, and only the entry it added.

The running server's wiring (the parser installed by ``python -m ticker.server``) is in
``tests/test_server.py``.
"""

from __future__ import annotations

import daphne.http_protocol
import daphne.ws_protocol
import pytest
from twisted.web.http_headers import Headers

from ticker import proxy_headers
from ticker.proxy_headers import FORWARDED_HEADERS as NAMES


@pytest.fixture
def balancer(monkeypatch) -> str:
    monkeypatch.setattr(proxy_headers, "TRUSTED_PROXIES", frozenset({"10.0.0.2"}))
    return "10.0.0.2"


@pytest.fixture
def daphne_parsers(monkeypatch) -> None:
    """Whatever ``install`` changes is put back after the test."""
    for module in (daphne.http_protocol, daphne.ws_protocol):
        monkeypatch.setattr(module, "parse_x_forwarded_for", module.parse_x_forwarded_for)
    monkeypatch.setattr(proxy_headers, "TRUSTED_PROXIES", proxy_headers.TRUSTED_PROXIES)


def test_a_trusted_proxy_names_the_client_and_only_its_own_entry_counts(balancer) -> None:
    # The client sent "6.6.6.6" itself; the proxy appended the address it really saw.
    headers = Headers({b"X-Forwarded-For": [b"6.6.6.6, 192.0.2.10"], b"X-Forwarded-Proto": [b"https"]})
    addr, scheme = proxy_headers.trusted_forwarded_for(
        headers, *NAMES, original_addr=[balancer, 5555], original_scheme="http"
    )
    assert (addr[0], scheme) == ("192.0.2.10", "https")


def test_anyone_else_keeps_their_own_address(balancer) -> None:
    headers = {b"x-forwarded-for": b"192.0.2.10", b"x-forwarded-proto": b"https"}
    addr, scheme = proxy_headers.trusted_forwarded_for(headers, *NAMES, original_addr=["198.51.100.9", 4444])
    assert (addr, scheme) == (["198.51.100.9", 4444], None)


def test_daphnes_positional_call_reaches_the_trusted_parser(balancer) -> None:
    # As daphne/http_protocol.py calls it: header names, then address and scheme.
    headers = Headers({b"X-Forwarded-For": [b"192.0.2.10"]})
    addr, scheme = proxy_headers.daphne_parser(headers, *NAMES, [balancer, 5555], "http")
    assert (addr[0], scheme) == ("192.0.2.10", "http")
    addr, _ = proxy_headers.daphne_parser(headers, *NAMES, ["198.51.100.9", 4444], "http")
    assert addr == ["198.51.100.9", 4444]


@pytest.mark.usefixtures("daphne_parsers")
def test_install_puts_the_trusted_parser_in_both_of_daphnes_protocols() -> None:
    proxy_headers.install(["10.0.0.2"])
    assert sorted(proxy_headers.TRUSTED_PROXIES) == ["10.0.0.2"]
    assert daphne.http_protocol.parse_x_forwarded_for is proxy_headers.daphne_parser
    assert daphne.ws_protocol.parse_x_forwarded_for is proxy_headers.daphne_parser
