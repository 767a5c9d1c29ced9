"""The drain's schedule and bound, on Twisted's deterministic clock (the real stop: e2e/test_drain.py)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from twisted.internet.task import Clock

from ticker import drain as drain_module
from ticker.drain import Drain
from ticker.slow_clients import BoundedWebSocketProtocol


class FakeStream(BoundedWebSocketProtocol):
    """A WebSocket protocol that records the close frame it is asked to send."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = AutobahnProtocol.STATE_OPEN
        self.sent: list[tuple[float, int | None, bytes | None]] = []

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        self.sent.append((self.clock.seconds(), code, reasonUtf8))
        self.state = AutobahnProtocol.STATE_CLOSING


@dataclass
class FakePort:
    stopped: bool = False

    def stopListening(self) -> None:
        self.stopped = True


@dataclass
class FakeServer:
    connections: dict[Any, dict[str, Any]] = field(default_factory=dict)
    listening_ports: list[FakePort] = field(default_factory=lambda: [FakePort()])


class ClockReactor(Clock):
    stopped_at: float | None = None

    def stop(self) -> None:
        self.stopped_at = self.seconds()


@pytest.fixture
def reactor() -> ClockReactor:
    return ClockReactor()


def open_streams(reactor: ClockReactor, server: FakeServer, count: int) -> list[FakeStream]:
    streams = [FakeStream(reactor) for _ in range(count)]
    for stream in streams:
        server.connections[stream] = {"application_instance": None}
    return streams


def disconnect(server: FakeServer, stream: FakeStream) -> None:
    stream.state = AutobahnProtocol.STATE_CLOSED
    server.connections[stream]["disconnected"] = 1.0


def advance(reactor: ClockReactor, seconds: float, step: float = 0.005) -> None:
    for _ in range(round(seconds / step)):
        reactor.advance(step)


def test_streams_are_closed_1012_one_by_one_and_the_process_stops_once_they_are_gone(reactor: ClockReactor) -> None:
    server = FakeServer()
    streams = open_streams(reactor, server, 5)
    drain = Drain(server, reactor, bound_seconds=10, spread_seconds=2)
    drain.start()
    assert server.listening_ports[0].stopped
    advance(reactor, 0.2)
    times = [s.sent[0][0] for s in streams]
    assert [s.sent[0][1:] for s in streams] == [(1012, b"server restarting")] * 5
    # One per CLOSE_GAP_SECONDS (10 ms), not all at once.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g == pytest.approx(drain_module.CLOSE_GAP_SECONDS, abs=0.006) for g in gaps), times
    assert reactor.stopped_at is None, "streams still open: the process waits"
    for stream in streams:
        disconnect(server, stream)
    advance(reactor, 0.1)
    assert reactor.stopped_at is not None
    assert reactor.stopped_at < 0.4


def test_many_streams_are_closed_within_the_spread(reactor: ClockReactor) -> None:
    server = FakeServer()
    streams = open_streams(reactor, server, 1000)
    Drain(server, reactor, bound_seconds=10, spread_seconds=2).start()
    advance(reactor, 2.1, step=0.05)
    last = max(s.sent[0][0] for s in streams)
    assert 1.9 <= last <= 2.05  # the clock moves in 50 ms steps


def test_a_stream_that_never_goes_is_left_at_the_bound(reactor: ClockReactor) -> None:
    server = FakeServer()
    open_streams(reactor, server, 1)
    Drain(server, reactor, bound_seconds=3, spread_seconds=2).start()
    advance(reactor, 2.9, step=0.05)
    assert reactor.stopped_at is None
    advance(reactor, 0.2, step=0.05)
    assert reactor.stopped_at == pytest.approx(3.0, abs=0.06)


def test_a_stream_opened_during_the_drain_is_closed_too(reactor: ClockReactor) -> None:
    server = FakeServer()
    Drain(server, reactor, bound_seconds=10, spread_seconds=2).start()
    [late] = open_streams(reactor, server, 1)
    advance(reactor, 0.1)
    assert late.sent
    assert late.sent[0][1] == 1012


def test_an_application_still_finishing_holds_the_stop(reactor: ClockReactor) -> None:
    class Pending:
        finished = False

        def done(self) -> bool:
            return self.finished

    server = FakeServer()
    [stream] = open_streams(reactor, server, 1)
    application = Pending()
    server.connections[stream]["application_instance"] = application
    Drain(server, reactor, bound_seconds=10, spread_seconds=2).start()
    advance(reactor, 0.05)
    disconnect(server, stream)
    advance(reactor, 0.5)
    assert reactor.stopped_at is None, "its disconnect handler has not run yet"
    application.finished = True
    advance(reactor, 0.1)
    assert reactor.stopped_at is not None


def test_a_second_signal_stops_at_once(reactor: ClockReactor) -> None:
    server = FakeServer()
    open_streams(reactor, server, 3)
    drain = Drain(server, reactor, bound_seconds=10, spread_seconds=2)
    drain.start()
    drain.stop_now(15)
    assert reactor.stopped_at == 0
