"""The web process collects its garbage once a wave of closed streams has passed.

The collector's clock and sleep are injected: these tests move time by hand, so they
neither wait for real seconds nor depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import gc

from dashboard.streams.collector import WaveCollector


class FakeTime:
    """A monotonic clock the test advances; ``sleep`` returns once it has been advanced far enough."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        while self.now < until:
            self._moved.clear()
            await self._moved.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        self._moved.set()
        # A woken sleeper runs on the loop's next turns: give it those turns.
        for _ in range(5):
            await asyncio.sleep(0)


def _full_collections() -> int:
    return gc.get_stats()[2]["collections"]


def _collector(time: FakeTime, wave: int, quiet: float) -> WaveCollector:
    return WaveCollector(wave=wave, quiet=quiet, clock=time, sleep=time.sleep)


def test_a_collection_is_due_after_a_wave_and_a_quiet_moment() -> None:
    waves = WaveCollector(wave=2, quiet=2.0, clock=lambda: 0.0)
    waves.closed_since, waves.last_change = 1, 10.0
    assert not waves.due(20.0), "fewer than a wave"
    waves.closed_since = 2
    assert not waves.due(11.9)
    assert waves.quiet_for(11.5) == 0.5
    assert waves.due(12.0)


async def test_a_wave_of_closed_streams_is_collected_once_nobody_arrives() -> None:
    time = FakeTime()
    waves = _collector(time, wave=3, quiet=2.0)
    before = _full_collections()
    for _ in range(3):
        waves.closed()
    await time.advance(1.9)
    assert waves.collections == 0, "not quiet long enough yet"
    await time.advance(0.2)
    assert waves.collections == 1
    assert _full_collections() > before
    assert waves.closed_since == 0, "the next wave counts from zero"
    assert not waves.watching.running()


async def test_fewer_than_a_wave_collect_nothing() -> None:
    time = FakeTime()
    waves = _collector(time, wave=3, quiet=0.01)
    waves.closed()
    waves.closed()
    assert not waves.watching.running(), "nothing is waiting to run"
    await time.advance(60.0)
    assert waves.collections == 0


async def test_arrivals_put_the_collection_off_until_it_is_quiet() -> None:
    time = FakeTime()
    waves = _collector(time, wave=1, quiet=0.3)
    waves.closed()
    for _ in range(5):  # a stream opens every 0.1 s for half a second
        await time.advance(0.1)
        waves.opened()
        assert waves.collections == 0
    await time.advance(0.29)
    assert waves.collections == 0, "0.3 s have not passed since the last arrival"
    await time.advance(0.02)
    assert waves.collections == 1
