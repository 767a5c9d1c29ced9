"""Waiting for a condition with a deadline: the suite's one poll helper, sync and async.

``wait_until`` (threads, plain tests) and ``until`` (coroutines) call a predicate every
``interval`` seconds until it returns something truthy, and return that value. When
``timeout`` passes first they raise ``AssertionError`` naming ``what`` and the timeout, so
a broken condition fails the test in seconds instead of hanging it until pytest's timeout.

Poll only what cannot be awaited: when an event, a queue or a frame can be waited on,
wait on it instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL = 0.05


def _timed_out(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = DEFAULT_INTERVAL) -> T:
    """Call ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timed_out(what, timeout, result)
        time.sleep(min(interval, remaining))


async def until(
    predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = DEFAULT_INTERVAL
) -> T:
    """``wait_until`` for coroutines: ``predicate`` may be sync or return an awaitable (an async
    function, ``lambda: asyncio.to_thread(...)``). An evaluation still running at the deadline
    is cancelled and the wait fails the same way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = "no evaluation finished"
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            scope = asyncio.timeout_at(deadline)
            try:
                async with scope:
                    result = await result
            except TimeoutError:
                if not scope.expired():
                    raise  # the predicate's own timeout, not the deadline
                raise _timed_out(what, timeout, last) from None
        if result:
            return result
        last = result
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _timed_out(what, timeout, result)
        await asyncio.sleep(min(interval, remaining))
