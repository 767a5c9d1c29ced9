"""The web process (``python -m ticker.server``): slow clients closed with 4408, proxy trust wired.

Each test talks to a real Daphne started as the Procfile starts it, serving
``tests.test_server:application`` (below), a small ASGI app that reports the client
address it was given and sends frames on request, so the server's policies are tested
without the market behind them. The full stack's slow-reader test is
``tests/e2e/test_hostile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from dashboard.market.protocol import CloseCode
from tests.e2e.rawws import RawWebSocket
from tests.e2e.stack import ROOT, Process, answers, process_env
from tests.waiting import wait_until
from ticker.embedded_redis import free_port
from ticker.proxy_headers import proxy_only
from ticker.slow_clients import text_frame

# What a flood sends: about 100 KB/s, filling a stalled reader's kernel buffers within
# seconds while what waits in the server at the close stays small enough to be read at
# once, paced so the reactor gets to write and to run Daphne's timeout checks in between.
FLOOD_FRAME = "x" * 1024
FLOOD_PAUSE_SECONDS = 0.01
# How often a test looks at the server's log: the close frame must be read within
# autobahn's 1 s close-handshake timeout of the line being written.
LOG_POLL_SECONDS = 0.01
# A raw client's receive buffer: small, so that a client that stops reading stalls at once.
STALLED_RCVBUF = 4096
# The shortest slow-client grace the settings allow (``TICKER_SLOW_CLIENT_SECONDS``).
SLOW_AFTER_SECONDS = 1
# The smallest outbound bound the settings allow (``TICKER_MAX_OUTBOUND_BYTES``)...
MIN_OUTBOUND_BYTES = 64 * 1024
# ...and one a flood does not reach before the grace ends (seconds of it, not minutes).
LARGE_OUTBOUND_BYTES = 256 * 1024 * 1024
# Daphne checks timeouts every 2 s, a closing client is dropped a few seconds later at the
# most; on 2 busy cores a few more.
CLOSE_DEADLINE_SECONDS = 20
# The client wrote the first entry itself; the balancer appended the address it saw.
FORWARDED_FOR = "6.6.6.6, 192.0.2.10"
# Every header only a proxy may set, and Daphne's own root-path header.
PROXY_SET = {
    "X-Forwarded-For": "192.0.2.10",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "443",
    "Forwarded": "for=192.0.2.10;proto=https",
    "X-Real-IP": "192.0.2.10",
    "Daphne-Root-Path": "/ticker",
}


# --- the application the test servers run ---------------------------------------------


async def application(scope: dict, receive: Any, send: Any) -> None:
    """HTTP: the client address, scheme, proxy-only headers and root path as JSON. WebSocket:
    those as the first frame, then
    ``{"sizes": [...]}`` gets one text frame of each size, ``{"flood": tag}`` frames until
    the client is gone (reported on stdout)."""
    forwarded = {name.decode(): value.decode() for name, value in scope["headers"] if proxy_only(name)}
    seen = json.dumps(
        {
            "client": scope.get("client"),
            "scheme": scope.get("scheme"),
            "forwarded": forwarded,
            "root_path": scope.get("root_path"),
        }
    )
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": seen.encode()})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": seen})
    message = await receive()
    if message["type"] != "websocket.receive":
        return
    request = json.loads(message["text"])
    if "flood" in request:
        await _flood(receive, send, request["flood"])
        return
    for size in request["sizes"]:
        await send({"type": "websocket.send", "text": text_of(size)})
    await receive()  # websocket.disconnect


async def _flood(receive: Any, send: Any, tag: str) -> None:
    gone = asyncio.ensure_future(receive())  # the client sends nothing more: this is its disconnect
    frames = 0
    while not gone.done():
        await send({"type": "websocket.send", "text": FLOOD_FRAME})
        frames += 1
        await asyncio.sleep(FLOOD_PAUSE_SECONDS)
    sys.stdout.write(f"flood {tag}: disconnected with {gone.result().get('code')} after {frames} frames\n")
    sys.stdout.flush()


def text_of(size: int) -> str:
    """A text of ``size`` bytes that says its size (a frame cut or joined would show)."""
    return f"{size}:".ljust(size, "x")[:size]


# --- the servers ------------------------------------------------------------------------


class WebServer:
    """``python -m ticker.server`` (the Procfile's web command) on a free port."""

    def __init__(self, workdir: Path, *daphne_args: str, **env: str) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "ticker.server", "-b", "127.0.0.1", "-p", str(self.port), *daphne_args]
        self.process = Process("web", [*argv, "tests.test_server:application"], workdir / "web.log")
        self.env = process_env(workdir, **env)

    def __enter__(self) -> WebServer:
        self.process.start(self.env)
        url = f"http://127.0.0.1:{self.port}/"
        try:
            wait_until(lambda: answers(url) or not self.process.alive(), 60, "the web server to answer")
            assert self.process.alive(), self.log()
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")

    def seen(self, headers: dict[str, str]) -> dict:
        """What the application was told about an HTTP request with ``headers``."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def seen_by_websocket(self, headers: dict[str, str]) -> dict:
        with connect(f"ws://127.0.0.1:{self.port}/", additional_headers=headers, compression=None) as ws:
            return json.loads(ws.recv(timeout=10))

    @contextlib.contextmanager
    def stalled_flood(self, tag: str) -> Iterator[RawWebSocket]:
        """A client that asks for a flood and stops reading."""
        client = RawWebSocket("127.0.0.1", self.port, f"/{tag}", {}, rcvbuf=STALLED_RCVBUF)
        try:
            assert client.status == 101
            client.send_text(json.dumps({"flood": tag}))
            yield client
        finally:
            client.close()

    def close_reason(self, client: RawWebSocket) -> str:
        """Why the server says it closed ``client`` with 4408, once it has."""
        line = self.wait_for_log(f"closing slow client 127.0.0.1:{client.local_port}", "the 4408 close")
        return line.split(f" with {CloseCode.TOO_SLOW:d}: ", 1)[1]

    def wait_for_log(self, text: str, what: str) -> str:
        """The log's first line holding ``text``, once it is there."""
        found = wait_until(
            lambda: next((line for line in self.log().splitlines() if text in line), None),
            CLOSE_DEADLINE_SECONDS,
            what,
            interval=LOG_POLL_SECONDS,
        )
        assert isinstance(found, str)
        return found


@pytest.fixture(scope="module")
def slow_after_server(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[WebServer]:
    """A short slow-client grace (and a bound out of reach); behind a balancer on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("web-slow-after")
    with WebServer(
        workdir,
        TICKER_SLOW_CLIENT_SECONDS=str(SLOW_AFTER_SECONDS),
        TICKER_MAX_OUTBOUND_BYTES=str(LARGE_OUTBOUND_BYTES),
        TRUSTED_PROXIES="127.0.0.1",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def byte_bound_server(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[WebServer]:
    """A small outbound bound and a grace that never ends a test; ``--proxy-headers`` given,
    but no trusted proxy."""
    workdir = tmp_path_factory.mktemp("web-byte-bound")
    with WebServer(
        workdir,
        "--proxy-headers",
        TICKER_SLOW_CLIENT_SECONDS="600",
        TICKER_MAX_OUTBOUND_BYTES=str(MIN_OUTBOUND_BYTES),
        TRUSTED_PROXIES="",
    ) as server:
        yield server


# --- slow clients -------------------------------------------------------------------------


def test_a_client_that_stops_reading_is_closed_4408_and_gets_the_close_frame(slow_after_server: WebServer) -> None:
    with slow_after_server.stalled_flood("reads-late") as client:
        assert slow_after_server.close_reason(client).startswith("write buffer full for")
        # Reading again now (within autobahn's 1 s close-handshake timeout), it gets what was
        # in flight, then the close frame.
        assert client.close_code(CLOSE_DEADLINE_SECONDS) == CloseCode.TOO_SLOW
    slow_after_server.wait_for_log("flood reads-late: disconnected", "the application's disconnect")


def test_a_client_that_never_reads_again_is_aborted_and_its_frames_counted(slow_after_server: WebServer) -> None:
    with slow_after_server.stalled_flood("never-reads") as client:
        slow_after_server.close_reason(client)
        # Not even the close frame gets through: the connection is aborted, the application
        # told, and the frames it sent meanwhile are reported, not dropped silently.
        slow_after_server.wait_for_log("flood never-reads: disconnected", "the application's disconnect")
        line = slow_after_server.wait_for_log(f"not delivered to 127.0.0.1:{client.local_port}", "the drop report")
        assert line.endswith("connection closing (too slow)")
    assert "Traceback" not in slow_after_server.log()


def test_pending_bytes_past_the_bound_close_the_client_at_once(byte_bound_server: WebServer) -> None:
    with byte_bound_server.stalled_flood("over-bound") as client:
        assert byte_bound_server.close_reason(client).startswith("outbound buffer over the limit")
        assert client.close_code(CLOSE_DEADLINE_SECONDS) == CloseCode.TOO_SLOW


# Daphne sends no frame for an empty text, so the shortest is one byte.
@pytest.mark.parametrize("sizes", [[1, 125], [126, 4096, 65535], [65536, 300_000]])
def test_text_frames_of_every_length_encoding_arrive_whole(slow_after_server: WebServer, sizes: list[int]) -> None:
    # Lengths up to 125 fit the header's byte, up to 65535 take 2 more bytes, beyond 8.
    url = f"ws://127.0.0.1:{slow_after_server.port}/"
    with connect(url, compression=None, max_size=None) as ws:
        ws.recv(timeout=10)  # what the application saw
        ws.send(json.dumps({"sizes": sizes}))
        assert [ws.recv(timeout=10) for _ in sizes] == [text_of(size) for size in sizes]


# --- proxy headers ------------------------------------------------------------------------


def test_a_trusted_proxy_names_the_client_on_http_and_websocket(slow_after_server: WebServer) -> None:
    headers = {"X-Forwarded-For": FORWARDED_FOR, "X-Forwarded-Proto": "https"}
    seen = slow_after_server.seen(headers)
    assert (seen["client"], seen["scheme"]) == (["192.0.2.10", 0], "https")
    assert slow_after_server.seen_by_websocket(headers)["client"][0] == "192.0.2.10"


def test_a_trusted_proxys_forwarded_headers_reach_the_application(slow_after_server: WebServer) -> None:
    for seen in (slow_after_server.seen(PROXY_SET), slow_after_server.seen_by_websocket(PROXY_SET)):
        # Daphne takes its root-path header out of the headers and into the scope.
        assert seen["forwarded"] == {name.lower(): value for name, value in PROXY_SET.items() if "Root" not in name}
        assert seen["root_path"] == "/ticker"


def test_without_trusted_proxies_proxy_headers_name_nobody(byte_bound_server: WebServer) -> None:
    # Daphne's --proxy-headers alone would believe any peer; here the peer stays the client.
    headers = {"X-Forwarded-For": FORWARDED_FOR, "X-Forwarded-Proto": "https"}
    seen = byte_bound_server.seen(headers)
    assert (seen["client"][0], seen["scheme"]) == ("127.0.0.1", "http")
    assert byte_bound_server.seen_by_websocket(headers)["client"][0] == "127.0.0.1"


def test_an_untrusted_peers_forwarded_headers_never_reach_the_application(byte_bound_server: WebServer) -> None:
    # Django's SECURE_PROXY_SSL_HEADER would believe that X-Forwarded-Proto: the request
    # must arrive as the peer sent it, minus every header only a proxy may set.
    for seen in (byte_bound_server.seen(PROXY_SET), byte_bound_server.seen_by_websocket(PROXY_SET)):
        assert seen["forwarded"] == {}
        assert seen["root_path"] == ""


# --- wiring ---------------------------------------------------------------------------------


def test_the_server_listens_with_a_deep_backlog(slow_after_server: WebServer) -> None:
    from ticker.server import LISTEN_BACKLOG

    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{slow_after_server.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    # For a listening socket ss's Send-Q is the backlog (capped by net.core.somaxconn).
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert int(listening[2]) == min(LISTEN_BACKLOG, somaxconn) > 50


def test_importing_the_server_changes_nothing_in_daphne() -> None:
    probe = (
        "import daphne.utils, daphne.http_protocol, daphne.ws_protocol, ticker.server; "
        "print(daphne.http_protocol.parse_x_forwarded_for is daphne.ws_protocol.parse_x_forwarded_for "
        "is daphne.utils.parse_x_forwarded_for)"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 4096, 65535, 65536, 300_000])
def test_our_text_frame_is_byte_for_byte_autobahns(size: int) -> None:
    from autobahn.twisted.websocket import WebSocketServerFactory

    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    prepared = WebSocketServerFactory().prepareMessage(payload, isBinary=False, doNotCompress=True)
    assert text_frame(payload) == prepared.payloadHybi


def test_a_stream_under_daphne_writes_its_text_frames_through_the_protocol() -> None:
    from daphne.server import Server

    from dashboard.streams.consumers import text_sender
    from ticker.slow_clients import BoundedWebSocketProtocol

    protocol = BoundedWebSocketProtocol.__new__(BoundedWebSocketProtocol)
    server = Server.__new__(Server)
    # What Daphne hands each application as its ASGI send (daphne.server.Server.create_application).
    assert text_sender(functools.partial(server.handle_reply, protocol)) == protocol.send_text

    async def other_server_send(message: dict[str, Any]) -> None: ...

    assert text_sender(other_server_send) is None
    assert text_sender(functools.partial(other_server_send)) is None


def test_an_open_stream_lets_go_of_the_http_channel_it_was_upgraded_from() -> None:
    from twisted.web.http import HTTPChannel

    from ticker.slow_clients import BoundedWebSocketProtocol

    class Transport:
        def __init__(self, producer: Any) -> None:
            self.producer = producer

        def unregisterProducer(self) -> None:
            self.producer = None

    protocol = BoundedWebSocketProtocol.__new__(BoundedWebSocketProtocol)
    protocol.transport = Transport(HTTPChannel())
    protocol._release_http_channel()
    assert protocol.transport.producer is None, "the channel, its request and headers can be collected"
    other = object()
    protocol.transport = Transport(other)
    protocol._release_http_channel()
    assert protocol.transport.producer is other, "a producer of someone else's is left alone"
