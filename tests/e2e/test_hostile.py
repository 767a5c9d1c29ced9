"""Hostile input against a live Daphne: oversized, binary, invalid, fragmented, floods, slow readers.

Whatever a client sends, it gets an error frame or a documented close code; never a
1011, never a dead server, never an effect on the other clients.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import statistics
import time
from collections.abc import Iterator

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.client import Recorder
from tests.e2e.lifecycle import started
from tests.e2e.rawws import OP_BINARY, OP_CONTINUATION, OP_TEXT, RawWebSocket
from tests.e2e.stack import Stack, wait_for

pytestmark = pytest.mark.e2e

DOCUMENTED_CLOSES = {1000, 1002, 1007, 1009, 4400, 4429}
FAST = [f"F{i:02d}" for i in range(40)]


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with 40 symbols ticking every 50 ms (800 ticks/s): enough to fill a stalled socket fast."""
    with started(
        Stack(tmp_path_factory.mktemp("busy"), fast_symbols=40, extra_env={"TICKER_SLOW_CLIENT_SECONDS": "3"})
    ) as running:
        yield running


def headers(stack: Stack) -> dict[str, str]:
    return {"Cookie": stack.login(), "Origin": stack.base_url}


def raw(stack: Stack, path: str = "/ws/stream/", **kwargs) -> RawWebSocket:
    client = RawWebSocket("127.0.0.1", stack.web_port, path, headers(stack), **kwargs)
    assert client.status == 101
    return client


def frames_of(client: RawWebSocket, timeout: float = 5.0) -> Iterator[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = client.read_frame(deadline - time.monotonic())
        if frame is None:
            return
        opcode, payload = frame
        if opcode == OP_TEXT:
            yield json.loads(payload)


def next_of(client: RawWebSocket, frame_type: str, timeout: float = 5.0) -> dict:
    for frame in frames_of(client, timeout):
        if frame["type"] == frame_type:
            return frame
    raise AssertionError(f"no {frame_type} frame")


def test_oversized_binary_and_invalid_frames_get_errors_and_the_socket_lives(stack_logs: Stack) -> None:
    client = raw(stack_logs)
    next_of(client, "hello")
    client.send_text(json.dumps({"op": "ping", "id": 1, "pad": "x" * 70_000}))
    assert next_of(client, "error")["code"] == "frame_too_large"
    client.send_frame(OP_BINARY, b"\x00\x01\x02")
    assert next_of(client, "error")["code"] == "bad_frame"
    client.send_text('{"op": "ping", "id": NaN}')
    assert next_of(client, "error")["code"] == "bad_frame"
    # Fragmented frames are reassembled into one message.
    client.send_frame(OP_TEXT, b'{"op": "pi', fin=False)
    client.send_frame(OP_CONTINUATION, b'ng", "id": 7}')
    assert next_of(client, "pong")["id"] == 7
    client.close()


def test_frame_over_the_transport_limit_is_dropped_by_daphne_not_the_app(stack_logs: Stack) -> None:
    client = raw(stack_logs)
    next_of(client, "hello")
    client.send_text(b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}')
    assert client.close_code(10) in {1009, None}
    assert stack_logs.web_ready()


def test_invalid_utf8_text_frame_is_a_protocol_close_not_a_crash(stack_logs: Stack) -> None:
    client = raw(stack_logs)
    next_of(client, "hello")
    client.send_frame(OP_TEXT, b'{"op":"ping","id":"\xff\xfe"}')
    assert client.close_code(10) in {1007, None}
    assert stack_logs.web_ready()


async def test_flood_is_closed_4429_and_other_clients_do_not_notice(stack_logs: Stack) -> None:
    async with Recorder(f"{stack_logs.ws_url}/ws/stream/", headers(stack_logs), subscribe=["BTC-USD"]) as watcher:
        async with connect(f"{stack_logs.ws_url}/ws/stream/", additional_headers=headers(stack_logs)) as flooder:
            for i in range(200):
                try:
                    await flooder.send(json.dumps({"op": "ping", "id": i}))
                except ConnectionClosed:
                    break
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(_drain(flooder), 10)
            assert closed.value.rcvd.code == 4429
        after = time.monotonic()
        await watcher.wait_for(lambda f: f["type"] == "ticks", timeout=5, after=after)
        seqs = [t["seq"] for _, t in watcher.ticks("BTC-USD")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def _drain(ws) -> None:
    while True:
        await ws.recv()


async def test_fuzzed_frames_never_crash_a_connection_or_the_server(stack_logs: Stack) -> None:
    rng = random.Random(20261125)

    def fuzz_frame() -> tuple[int, bytes]:
        kind = rng.randrange(8)
        if kind == 0:
            return OP_BINARY, os.urandom(rng.randrange(1, 200))
        if kind == 1:
            return OP_TEXT, "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 80))).encode()
        if kind == 2:
            depth = rng.choice([10, 500, 5000])
            return OP_TEXT, ("[" * depth + "]" * depth).encode()
        if kind == 3:
            return OP_TEXT, b'{"op":"subscribe","id":' + str(
                10 ** rng.randrange(10, 400)
            ).encode() + b',"symbols":["A"]}'
        if kind == 4:
            value = rng.choice([None, True, 1.5, -1, "x" * 100, [], {}, [1, "a"], {"a": {"b": []}}])
            field = rng.choice(["op", "id", "symbols", "since", "interval"])
            frame = {"op": rng.choice(["subscribe", "unsubscribe", "ping", "??"]), "id": 1, field: value}
            return OP_TEXT, orjson.dumps(frame)
        if kind == 5:
            return OP_TEXT, b'{"op":"subscribe","symbols":["AAPL"],"since":{"AAPL":{"epoch":"e","seq":1e999}}}'
        if kind == 6:
            return OP_TEXT, b'{"op":"ping","id":Infinity}'
        return OP_TEXT, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))

    closes: list[int | None] = []
    async with Recorder(f"{stack_logs.ws_url}/ws/stream/", headers(stack_logs), subscribe=["AAPL"]) as watcher:
        sent = 0
        while sent < 150:
            client = await asyncio.to_thread(raw, stack_logs)
            await asyncio.to_thread(next_of, client, "hello")
            code = None
            try:
                for _ in range(12):  # under the bad-frame budget, at most 15 frames/s
                    opcode, payload = fuzz_frame()
                    await asyncio.to_thread(client.send_frame, opcode, payload)
                    sent += 1
                    await asyncio.sleep(0.07)
                client.send_text(b'{"op":"ping","id":"alive?"}')
            except (ConnectionResetError, BrokenPipeError):
                pass  # the server closed it (e.g. 1007 for invalid UTF-8): read why below
            for frame in await asyncio.to_thread(lambda c=client: list(frames_of(c, 1.0))):
                if frame.get("type") == "pong":
                    code = 0
            if code is None:
                code = await asyncio.to_thread(client.close_code, 5)
            closes.append(code)
            client.close()
        assert 1011 not in closes
        assert set(closes) <= {0, None} | DOCUMENTED_CLOSES, closes
        seqs = [t["seq"] for _, t in watcher.ticks("AAPL")]
        assert len(seqs) > 5
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "the watcher never noticed"
    assert all(p.alive() for p in stack_logs.processes.values())
    assert "Traceback" not in stack_logs.processes["web"].log.read_text()


async def test_slow_reader_is_closed_4408_while_a_fast_client_keeps_up(busy: Stack) -> None:
    async with Recorder(f"{busy.ws_url}/ws/stream/", headers(busy), subscribe=FAST) as fast:
        slow = await asyncio.to_thread(raw, busy, rcvbuf=4096)
        await asyncio.to_thread(next_of, slow, "hello")
        slow.send_text(json.dumps({"op": "subscribe", "id": 1, "symbols": FAST}))
        stopped_reading = time.monotonic()
        marker = f"closing slow client 127.0.0.1:{slow.local_port}"
        web_log = busy.processes["web"].log
        # Blocking waits run in a thread: the fast client's reader keeps running meanwhile.
        await asyncio.to_thread(wait_for, lambda: marker in web_log.read_text(), 15, "the slow client's close")
        closed_after = time.monotonic() - stopped_reading
        assert closed_after <= 10.0, f"closed {closed_after:.1f} s after it stopped reading"
        assert "with 4408" in web_log.read_text().split(marker, 1)[1].splitlines()[0]
        # The connection is released: reading now ends (after what was in flight).
        assert await asyncio.to_thread(slow.close_code, 15) in {4408, None}
        slow.close()
        # The fast client never lagged: no gap, and latency within the target.
        offset = time.time() - time.monotonic()
        window = [(arrived, t) for arrived, t in fast.ticks() if arrived >= stopped_reading]
        lags = [arrived + offset - t["ts"] / 1000 for arrived, t in window]
        assert len(window) > 1000
        p99 = statistics.quantiles(lags, n=100)[98]
        logging.getLogger(__name__).info(
            "slow client closed %.1f s after it stopped reading; fast client p99 %.0f ms over %d ticks",
            closed_after,
            p99 * 1000,
            len(window),
        )
        assert p99 <= 0.25, f"fast client p99 latency {p99:.3f} s"
        for symbol in FAST[:5]:
            seqs = [t["seq"] for _, t in fast.ticks(symbol)]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
