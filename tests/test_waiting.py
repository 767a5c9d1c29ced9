"""The suite's poll helper: returns the predicate's value, fails at its deadline naming what it waited for."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.waiting import until, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "ready", 5, "the third call", interval=0.001) == "ready"
    assert next(calls) == 4, "called until truthy, then no more"


def test_wait_until_fails_at_its_deadline_naming_what_and_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0\.2 s waiting for the impossible"):
        wait_until(lambda: False, 0.2, "the impossible", interval=0.01)
    assert 0.2 <= time.monotonic() - started < 2


async def test_until_takes_a_sync_predicate() -> None:
    calls = itertools.count()
    assert await until(lambda: next(calls) == 2, 5, "the second call", interval=0.001) is True


async def test_until_awaits_what_the_predicate_returns() -> None:
    calls = itertools.count()

    async def ready() -> int:
        await asyncio.sleep(0)
        return max(next(calls) - 1, 0)

    assert await until(ready, 5, "a positive count", interval=0.001) == 1
    assert await until(lambda: asyncio.to_thread(lambda: "from a thread"), 5, "a thread's answer") == "from a thread"


async def test_until_fails_at_its_deadline() -> None:
    async def never() -> None:
        return None

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(AssertionError, match=r"timed out after 0\.2 s waiting for nothing"):
        await until(never, 0.2, "nothing", interval=0.01)
    assert 0.2 <= loop.time() - started < 2


async def test_until_cancels_a_predicate_still_running_at_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def stuck() -> bool:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return True

    with pytest.raises(AssertionError, match="waiting for a stuck check"):
        await until(stuck, 0.1, "a stuck check")
    assert cancelled.is_set()


async def test_a_timeout_inside_the_predicate_is_its_own_error() -> None:
    async def times_out() -> bool:
        raise TimeoutError("the predicate's own")

    with pytest.raises(TimeoutError, match="the predicate's own"):
        await until(times_out, 5, "anything")
