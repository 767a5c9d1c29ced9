"""A WebSocket application's input queue, lighter than the ``asyncio.Queue`` Daphne makes.

Daphne gives every connection an ``asyncio.Queue`` for the events it delivers (connect,
each client frame, disconnect): four deques, about 3 KiB, held for the connection's whole
life, for a queue with one writer (the protocol's ``put_nowait``) and one reader (the
application's ``receive``) that is empty nearly all the time. ``Inbox`` is that queue: a
list, created with the first event, and one future while the reader waits.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Inbox:
    """``put_nowait`` for the protocol, ``get`` for the application: first in, first out."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        # Events come a few at a time at most (a client's frames are rate-limited): a list's
        # pop(0) costs less here than a deque held per connection.
        return self._items.pop(0)

    def qsize(self) -> int:
        return len(self._items or ())

    def empty(self) -> bool:
        return not self._items
