"""deploy/haproxy/haproxy.cfg, as shipped, limits stream handshakes per client address
and logs requests (not its health checks).

HAProxy (Debian's) runs the shipped configuration in front of a real ``python -m
ticker.server`` serving the small application of ``tests/test_server.py``; one address
opens handshakes until the balancer answers 429.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.deploy_files import HAPROXY_CONFIG, haproxy_config
from tests.e2e.stack import Process, answers
from tests.e2e.tls import self_signed
from tests.test_server import WebServer
from tests.waiting import wait_until
from ticker.embedded_redis import free_port

# HAProxy is one of the system packages `make test` installs: no skip when it is missing.
pytestmark = pytest.mark.e2e

# The shipped handshake limit and its window, read from the file itself.
LIMIT = int(re.search(r"sc_http_req_rate\(0\) gt (\d+)", HAPROXY_CONFIG.read_text())[1])
WINDOW_SECONDS = int(re.search(r"http_req_rate\((\d+)s\)", HAPROXY_CONFIG.read_text())[1])


class Balancer:
    """HAProxy with the shipped configuration, its first two servers the one test server."""

    def __init__(self, workdir: Path, web_port: int) -> None:
        self.port = free_port()
        pem, self.ssl_context = self_signed(workdir / "tls")
        config = workdir / "haproxy.cfg"
        config.write_text(haproxy_config(free_port(), self.port, pem, [web_port, web_port], workdir / "haproxy"))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.process = Process("haproxy", [haproxy, "-f", str(config), "-db"], workdir / "haproxy.log")

    def __enter__(self) -> Balancer:
        self.process.start({"PATH": "/usr/sbin:/usr/bin:/bin"})
        wait_until(lambda: answers(f"https://127.0.0.1:{self.port}/", self.ssl_context), 30, "HAProxy")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()

    def handshake(self) -> int:
        """The status of one WebSocket handshake through the balancer (101 when opened)."""
        try:
            with connect(f"wss://127.0.0.1:{self.port}/", ssl=self.ssl_context, open_timeout=10) as ws:
                ws.recv(timeout=10)
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[Balancer]:
    workdir = tmp_path_factory.mktemp("balancer")
    with WebServer(workdir) as web, Balancer(workdir, web.port) as running:
        yield running


def test_the_guides_balancer_refuses_a_handshake_flood_from_one_address(balancer: Balancer) -> None:
    started = time.monotonic()
    statuses = [balancer.handshake() for _ in range(LIMIT + 5)]
    assert time.monotonic() - started < WINDOW_SECONDS, "the flood fits in the balancer's window"
    assert statuses[:LIMIT] == [101] * LIMIT
    assert statuses[LIMIT:] == [429] * 5
    # Plain requests (the page, the API) are not counted.
    assert answers(f"https://127.0.0.1:{balancer.port}/", balancer.ssl_context)


def test_the_balancer_logs_requests_but_not_its_health_checks(balancer: Balancer) -> None:
    assert answers(f"https://127.0.0.1:{balancer.port}/?logged=1", balancer.ssl_context)

    def logged() -> str:
        return balancer.process.log.read_text(errors="replace")

    # option httplog: one line per request, with the server that answered.
    request = '"GET /?logged=1 HTTP/1.1"'
    line = wait_until(lambda: next((x for x in logged().splitlines() if request in x), None), 10, "the request log")
    assert re.search(r" ticker~ daphne/web[12] ", line), line
    # Both servers are checked every second; those checks are not requests and leave no line.
    assert "/healthz" not in logged()
