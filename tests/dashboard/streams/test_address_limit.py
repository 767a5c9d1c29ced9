"""Handshakes no user answers for, limited per address before any lookup (``address_limit``).

Through the whole ASGI stack (``ticker.asgi.application``), with the client address set
in the scope as Daphne sets it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from dashboard.market.protocol import CloseCode
from dashboard.streams import address_limit
from dashboard.streams.address_limit import WINDOW_SECONDS, AddressLimiter
from dashboard.streams.session_auth import loader
from tests.dashboard.conftest import ORIGIN
from tests.dashboard.streams.test_token_auth import closed_with, handshake_headers
from ticker.asgi import application

LIMIT = 3
ATTACKER = "198.51.100.7"
NEIGHBOUR = "198.51.100.8"


@pytest.fixture(autouse=True)
def low_limit(settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_ANONYMOUS_HANDSHAKES_PER_MINUTE": LIMIT}


async def handshake(address: str, *, cookie: str | None = None, authorization: str | None = None) -> dict[str, Any]:
    """One handshake from ``address``: the first frame the server sent, and its close code
    (None for a stream left open)."""
    headers = handshake_headers(authorization, cookie=cookie, origin=ORIGIN)
    communicator = WebsocketCommunicator(application, "/ws/stream/", headers=headers)
    communicator.scope["client"] = [address, 50000]
    await communicator.connect(timeout=5)
    try:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return {"frame": None, "code": output["code"]}
        frame = json.loads(output["text"])
        return {"frame": frame, "code": await closed_with(communicator) if frame["type"] == "error" else None}
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_anonymous_handshakes_past_the_limit_are_refused_4429_per_address() -> None:
    for _ in range(LIMIT):
        assert (await handshake(ATTACKER))["code"] == CloseCode.NOT_AUTHENTICATED
    refused = await handshake(ATTACKER)
    assert refused["code"] == CloseCode.RATE_LIMITED
    assert refused["frame"]["code"] == "rate_limited"
    # The address next door has its own count.
    assert (await handshake(NEIGHBOUR))["code"] == CloseCode.NOT_AUTHENTICATED


@pytest.mark.django_db(transaction=True)
async def test_bearer_handshakes_count_and_a_refused_one_looks_nothing_up() -> None:
    for _ in range(LIMIT):
        assert (await handshake(ATTACKER, authorization="Bearer tkr_guess"))["code"] == CloseCode.NOT_AUTHENTICATED
    lookups = loader().lookups
    assert (await handshake(ATTACKER, authorization="Bearer tkr_guess"))["code"] == CloseCode.RATE_LIMITED
    assert (await handshake(ATTACKER, cookie="sessionid=made-up"))["code"] == CloseCode.RATE_LIMITED
    assert loader().lookups == lookups, "refused before the session lookup"


@pytest.mark.django_db(transaction=True)
async def test_sessions_naming_nobody_count_and_valid_ones_never(session_cookie: str) -> None:
    # A crowd of traders behind one address: none of their handshakes is counted.
    for _ in range(LIMIT * 3):
        opened = await handshake(ATTACKER, cookie=session_cookie)
        assert (opened["frame"]["type"], opened["code"]) == ("hello", None)
    for _ in range(LIMIT):
        assert (await handshake(ATTACKER, cookie="sessionid=made-up"))["code"] == CloseCode.NOT_AUTHENTICATED
    assert (await handshake(ATTACKER, cookie="sessionid=made-up"))["code"] == CloseCode.RATE_LIMITED
    # The price of a per-address limit before the lookup: now the valid session waits too.
    assert (await handshake(ATTACKER, cookie=session_cookie))["code"] == CloseCode.RATE_LIMITED


@pytest.mark.django_db(transaction=True)
async def test_an_ipv6_address_counts_as_its_64() -> None:
    for host in range(1, LIMIT + 1):
        await handshake(f"2001:db8:1:2::{host}")
    assert (await handshake("2001:db8:1:2:ffff::9"))["code"] == CloseCode.RATE_LIMITED
    assert (await handshake("2001:db8:1:3::1"))["code"] == CloseCode.NOT_AUTHENTICATED


def test_the_count_is_of_the_last_minute() -> None:
    clock = [0.0]
    limiter = AddressLimiter(2, clock=lambda: clock[0])
    limiter.charge("a")
    clock[0] = 30.0
    limiter.charge("a")
    assert limiter.blocked("a")
    clock[0] = WINDOW_SECONDS  # the first has left the window
    assert not limiter.blocked("a")


def test_addresses_with_nothing_left_in_the_window_are_forgotten(monkeypatch) -> None:
    monkeypatch.setattr(address_limit, "PRUNE_ABOVE", 100)
    clock = [0.0]
    limiter = AddressLimiter(2, clock=lambda: clock[0])
    for n in range(100):
        limiter.charge(f"10.0.{n // 256}.{n % 256}")
    clock[0] = WINDOW_SECONDS + 1
    limiter.charge("192.0.2.1")
    assert limiter.tracked() == 1
