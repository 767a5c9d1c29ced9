"""A recording WebSocket client for end-to-end tests: every frame kept with its arrival time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


@dataclass
class Recorder:
    """Connects to a stream, optionally subscribes, and records frames until closed."""

    url: str
    headers: dict[str, str]
    subscribe: list[str] = field(default_factory=list)
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Recorder:
        self.ws = await connect(self.url, additional_headers=self.headers, max_size=2**22)
        self.task = asyncio.create_task(self._read())
        await self.wait_for(lambda f: f["type"] == "hello", timeout=10)
        if self.subscribe:
            await self.send({"op": "subscribe", "id": 1, "symbols": self.subscribe})
            await self.wait_for(lambda f: f["type"] in {"ack", "error"}, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if self.ws:
            await self.ws.close()

    async def _read(self) -> None:
        assert self.ws is not None
        async for text in self.ws:
            self.frames.append((time.monotonic(), json.loads(text)))
            self.changed.set()

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, after: float = 0.0
    ) -> tuple[float, dict[str, Any]]:
        """The first frame arriving after ``after`` (monotonic) that matches ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            for arrived, frame in self.frames:
                if arrived >= after and predicate(frame):
                    return arrived, frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def ticks(self, symbol: str | None = None, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [
            (arrived, tick)
            for arrived, frame in self.frames
            if frame["type"] == "ticks" and arrived >= after
            for tick in frame["data"]
            if symbol is None or tick["symbol"] == symbol
        ]

    async def wait_for_tick(
        self, symbol: str, predicate: Callable[[dict[str, Any]], bool], timeout: float, after: float
    ):
        deadline = time.monotonic() + timeout
        while True:
            for arrived, tick in self.ticks(symbol, after):
                if predicate(tick):
                    return arrived, tick
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching {symbol} tick within {timeout} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
