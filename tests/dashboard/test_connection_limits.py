"""The per-user connection limiter on its own."""

from dashboard.connection_limits import ConnectionLimiter


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
