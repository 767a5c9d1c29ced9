"""Admission: the per-user connection limiter, and the ASGI wrapper around both stream routes."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator

from dashboard.streams.admission import ConnectionLimiter, StreamAdmission, limiter
from dashboard.streams.collector import collector


def test_open_streams_are_bounded_and_released() -> None:
    limiter = ConnectionLimiter(max_open=2, max_per_minute=100)
    assert limiter.acquire(1, now=0) is None
    assert limiter.acquire(1, now=0) is None
    assert "open connections" in limiter.acquire(1, now=0)
    assert limiter.acquire(2, now=0) is None, "other users are not affected"
    limiter.release(1)
    assert limiter.acquire(1, now=1) is None
    assert limiter.open_count(1) == 2


def test_connect_rate_window_slides() -> None:
    limiter = ConnectionLimiter(max_open=100, max_per_minute=2)
    assert limiter.acquire(1, now=0) is None
    assert limiter.acquire(1, now=30) is None
    assert "per minute" in limiter.acquire(1, now=59)
    assert limiter.acquire(1, now=61) is None


# --- the ASGI wrapper, around a stand-in consumer -------------------------------------


class _User:
    def __init__(self, pk: int | None) -> None:
        self.pk = pk
        self.is_authenticated = pk is not None


class _Consumer:
    """Accepts, then runs until the client leaves; ``fail`` makes its setup raise."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.ran = 0

    async def __call__(self, scope, receive, send) -> None:
        self.ran += 1
        assert (await receive())["type"] == "websocket.connect"
        if self.fail:
            raise RuntimeError("setup failed after admission")
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


@pytest.fixture
async def bounds(settings) -> ConnectionLimiter:
    settings.TICKER = {**settings.TICKER, "MAX_CONNECTIONS_PER_USER": 1, "MAX_CONNECTS_PER_MINUTE": 100}
    found = limiter()
    assert (found.max_open, found.max_per_minute) == (1, 100), "built from the settings in force"
    return found


async def _open(app, user: _User) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(app, "/ws/stream/")
    communicator.scope["user"] = user
    return communicator


async def test_not_logged_in_is_closed_4401_and_never_reaches_the_consumer(bounds) -> None:
    inner = _Consumer()
    communicator = await _open(StreamAdmission(inner, "stream"), _User(None))
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_output())["code"] == 4401
    assert inner.ran == 0


async def test_over_the_limit_gets_an_error_frame_then_4429(bounds) -> None:
    inner = _Consumer()
    app = StreamAdmission(inner, "stream")
    first = await _open(app, _User(7))
    assert (await first.connect())[0]
    second = await _open(app, _User(7))
    assert (await second.connect())[0]
    error = json.loads((await second.receive_output())["text"])
    assert (error["type"], error["code"]) == ("error", "rate_limited")
    assert (await second.receive_output())["code"] == 4429
    assert inner.ran == 1
    await first.disconnect()
    assert bounds.open_count(7) == 0, "released when the stream ended"


async def test_a_consumer_whose_setup_fails_releases_its_slot(bounds) -> None:
    app = StreamAdmission(_Consumer(fail=True), "symbol")
    communicator = await _open(app, _User(9))
    await communicator.send_input({"type": "websocket.connect"})
    with pytest.raises(RuntimeError):
        await communicator.wait(timeout=2)
    assert bounds.open_count(9) == 0


async def test_every_admitted_stream_is_counted_by_the_wave_collector(bounds) -> None:
    garbage = collector()
    before = garbage.closed_since
    app = StreamAdmission(_Consumer(), "stream")
    communicator = await _open(app, _User(11))
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    assert garbage.closed_since == before + 1


def test_a_stream_closed_for_abuse_costs_its_user_a_dozen_connects() -> None:
    limiter = ConnectionLimiter(max_open=100, max_per_minute=12)
    assert limiter.acquire(1, now=0) is None
    limiter.penalize(1, now=1)
    assert limiter.acquire(1, now=2) is None, "1 + 10 connects of the 12 counted"
    assert "per minute" in limiter.acquire(1, now=3)
    assert limiter.acquire(2, now=3) is None, "other users are not affected"
    assert limiter.acquire(1, now=62) is None, "the minute passes for the penalty too"
