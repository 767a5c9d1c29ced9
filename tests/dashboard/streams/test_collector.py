"""The web process collects its garbage once a wave of closed streams has passed."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from dashboard.streams.collector import WaveCollector


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


def _full_collections() -> int:
    return gc.get_stats()[2]["collections"]


@pytest.mark.asyncio
async def test_a_wave_of_closed_streams_is_collected_once_nobody_arrives() -> None:
    waves = WaveCollector(wave=3, quiet=0.2)
    before = _full_collections()
    for _ in range(3):
        waves.closed()
    await _until(lambda: waves.collections == 1)
    assert _full_collections() > before
    assert waves.closed_since == 0, "the next wave counts from zero"


@pytest.mark.asyncio
async def test_fewer_than_a_wave_collect_nothing() -> None:
    waves = WaveCollector(wave=3, quiet=0.01)
    waves.closed()
    waves.closed()
    assert waves._watching is None
    await asyncio.sleep(0.05)  # longer than the quiet time: nothing is waiting to run
    assert waves.collections == 0


@pytest.mark.asyncio
async def test_arrivals_put_the_collection_off_until_it_is_quiet() -> None:
    waves = WaveCollector(wave=1, quiet=0.3)
    waves.closed()
    started = time.monotonic()
    for _ in range(5):  # a stream opens every 0.1 s for half a second
        await asyncio.sleep(0.1)
        waves.opened()
        assert waves.collections == 0
    await _until(lambda: waves.collections == 1)
    assert time.monotonic() - started >= 0.5 + 0.3 - 0.05
