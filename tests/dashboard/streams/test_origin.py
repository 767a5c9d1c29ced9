"""The Origin rule: scheme, host and port of the site itself, checked before any consumer."""

from __future__ import annotations

import pytest

from dashboard.streams.origin import origin_allowed
from tests.dashboard.conftest import next_frame

HOSTS = ["127.0.0.1", "localhost", "ticker.example"]


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        ("http://localhost:8000", "localhost:8000", "http", True),
        ("http://localhost:9999", "localhost:8000", "http", False),  # another port of an allowed host
        ("http://localhost", "localhost:8000", "http", False),
        ("https://localhost:8000", "localhost:8000", "http", False),  # another scheme
        ("https://ticker.example", "ticker.example", "https", True),
        ("https://ticker.example:443", "ticker.example", "https", True),  # default port either way
        ("http://ticker.example", "ticker.example", "https", False),
        ("https://evil.example", "evil.example", "https", False),  # Host not an allowed host
        ("https://ticker.example.evil.example", "ticker.example", "https", False),
        ("null", "localhost:8000", "http", False),
        ("http://localhost:8000/path", "localhost:8000", "http", False),
        ("http://user@localhost:8000", "localhost:8000", "http", False),
        ("http://localhost:99999", "localhost:8000", "http", False),
    ],
)
def test_origin_must_be_the_sites_own(origin, host, scheme, allowed) -> None:
    assert origin_allowed(origin, host, scheme=scheme, allowed_hosts=HOSTS) is allowed


def test_extra_origins_are_exact() -> None:
    extra = ["https://desk.example:8443"]
    assert origin_allowed(
        "https://desk.example:8443", "ticker.example", scheme="https", allowed_hosts=HOSTS, extra=extra
    )
    assert not origin_allowed(
        "https://desk.example", "ticker.example", scheme="https", allowed_hosts=HOSTS, extra=extra
    )


@pytest.mark.parametrize("path", ["/ws/stream/", "/ws/symbols/AAA/"])
async def test_a_page_on_another_port_cannot_open_a_stream(connect, symbols, path) -> None:
    _, connected, _ = await connect(path, origin=b"http://127.0.0.1:9999")
    assert not connected
    communicator, connected, _ = await connect(path, origin=b"http://127.0.0.1")
    assert connected
    await next_frame(communicator, "hello")


async def test_no_origin_without_bearer_credentials_is_refused(connect, symbols) -> None:
    _, connected, _ = await connect("/ws/stream/", origin=None)
    assert not connected
