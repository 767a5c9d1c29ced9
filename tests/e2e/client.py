"""A recording WebSocket client for end-to-end tests: every frame kept with its arrival time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl as ssl_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from dashboard.market.protocol import CloseCode

SERVICE_RESTART = int(CloseCode.SERVICE_RESTART)


async def first_match(
    items: Callable[[], list[tuple[float, dict[str, Any]]]],
    changed: asyncio.Event,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float,
    after: float,
    what: str,
) -> tuple[float, dict[str, Any]]:
    """The first ``(arrival, item)`` after ``after`` matching ``predicate``, waiting on ``changed``."""
    deadline = time.monotonic() + timeout
    while True:
        for arrived, item in items():
            if arrived >= after and predicate(item):
                return arrived, item
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching {what} within {timeout} s")
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


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
        return await first_match(lambda: self.frames, self.changed, predicate, timeout, after, "frame")

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
        return await first_match(lambda: self.ticks(symbol), self.changed, predicate, timeout, after, f"{symbol} tick")


@dataclass
class ResumingClient:
    """A stream client that reconnects by itself and resumes with ``since``, like the browser's.

    Records every tick as ``(symbol, epoch, seq) -> tick`` and which server answered
    each connection (the balancer's ``X-Served-By`` header).
    """

    url: str
    headers: dict[str, str]
    symbols: list[str]
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    ticks: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    duplicates: list[tuple[str, str, int]] = field(default_factory=list)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)
    # The close code of each connection that ended (None: no close frame, e.g. refused or cut).
    close_codes: list[int | None] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    ssl: ssl_module.SSLContext | None = None
    # A loopback address of its own (127.0.1.x): a crowd of clients is not one address's
    # handshakes for the balancer's per-address limit.
    local_host: str | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        while True:
            code: int | None = None
            try:
                options: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
                if self.local_host is not None:
                    options["local_addr"] = (self.local_host, 0)
                async with connect(self.url, additional_headers=self.headers, open_timeout=5, **options) as ws:
                    self.servers.append(ws.response.headers.get("X-Served-By", "?"))
                    try:
                        await self._session(ws)
                    finally:
                        code = ws.close_code
                        self.close_codes.append(code)
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.frames.append((time.monotonic(), {"type": "_error", "error": repr(exc)}))
            except Exception as exc:  # websockets' ConnectionClosed and handshake errors
                self.frames.append((time.monotonic(), {"type": "_closed", "error": repr(exc)}))
            self.connected.clear()
            self.drops.append(time.monotonic())
            # As the browser does: after a server's restart close (1012) a random delay of up
            # to half a second, so that its clients do not all arrive elsewhere at once.
            await asyncio.sleep(random.uniform(0, 0.5) if code == SERVICE_RESTART else 0.2)

    async def _session(self, ws: ClientConnection) -> None:
        since = {s: p for s, p in self.positions.items() if p.get("epoch")}
        async for text in ws:
            frame = json.loads(text)
            self.frames.append((time.monotonic(), frame))
            self.changed.set()
            kind = frame["type"]
            if kind == "hello":
                request: dict[str, Any] = {"op": "subscribe", "id": 1, "symbols": self.symbols}
                if since:
                    request["since"] = since
                await ws.send(json.dumps(request))
                self.connected.set()
            elif kind == "snapshot":
                self.positions[frame["symbol"]] = {"epoch": frame["epoch"], "seq": frame["seq"]}
            elif kind == "ticks":
                self._apply(frame["data"])

    def _apply(self, ticks: list[dict[str, Any]]) -> None:
        for tick in ticks:
            pos = self.positions.get(tick["symbol"])
            if pos is None:
                continue
            key = (tick["symbol"], pos["epoch"], tick["seq"])
            if key in self.ticks:
                self.duplicates.append(key)
                continue
            if tick["seq"] != pos["seq"] + 1:
                self.gaps.append((tick["symbol"], pos["seq"], tick["seq"]))
            self.ticks[key] = tick
            pos["seq"] = tick["seq"]

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, after: float = 0.0):
        return await first_match(lambda: self.frames, self.changed, predicate, timeout, after, "frame")
