"""deploy/haproxy/haproxy.cfg reloads without refusing a connection, and an open WebSocket
outlives the reload.

HAProxy runs the shipped file in master-worker mode, as Debian's unit runs it
(``systemctl reload haproxy`` is a SIGUSR2 to the master), in front of a real ``python -m
ticker.server`` serving the small application of ``tests/test_server.py``. Plain requests
run back to back through the reload (certificate renewal is such a reload); none may fail.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.deploy_files import haproxy_config
from tests.e2e.stack import Process, answers
from tests.e2e.tls import self_signed
from tests.test_server import WebServer
from tests.waiting import wait_until
from ticker.embedded_redis import free_port

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, redis_server: Any) -> Iterator[WebServer]:
    with WebServer(tmp_path_factory.mktemp("reload")) as running:
        yield running


class Requests:
    """Plain HTTPS requests through the balancer, back to back on a thread, counted."""

    def __init__(self, url: str, context: Any) -> None:
        self.url, self.context = url, context
        self.ok = self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            if answers(self.url, self.context):
                self.ok += 1
            else:
                self.failed += 1

    def __enter__(self) -> Requests:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)


def test_a_reload_refuses_no_connection_and_keeps_open_websockets(web: WebServer, tmp_path: Path) -> None:
    pem, context = self_signed(tmp_path / "tls")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(free_port(), port, pem, [web.port, web.port], tmp_path / "haproxy"))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    master = Process("haproxy", [haproxy, "-W", "-db", "-f", str(config)], tmp_path / "haproxy.log")
    master.start({"PATH": "/usr/sbin:/usr/bin:/bin"})
    try:
        assert master.popen is not None
        url = f"https://127.0.0.1:{port}/"
        wait_until(lambda: answers(url, context), 30, "HAProxy")
        (old_worker,) = children(master.popen.pid)
        with connect(f"wss://127.0.0.1:{port}/", ssl=context, open_timeout=10) as ws:
            ws.recv(timeout=10)
            with Requests(url, context) as requests:
                wait_until(lambda: requests.ok >= 20, 30, "requests before the reload")
                os.kill(master.popen.pid, signal.SIGUSR2)
                new = wait_until(lambda: children(master.popen.pid) - {old_worker}, 30, "the new worker")
                before = requests.ok
                wait_until(lambda: requests.ok >= before + 50, 30, "requests after the reload")
            logger.info(
                "reload: %d requests answered, %d failed, worker %d -> %s",
                requests.ok,
                requests.failed,
                old_worker,
                new,
            )
            assert requests.failed == 0, master.log.read_text()
            # The old worker keeps the open WebSocket (until it closes, or hard-stop-after).
            assert old_worker in children(master.popen.pid)
            ws.ping().wait(10)
        wait_until(lambda: old_worker not in children(master.popen.pid), 30, "the old worker to leave once idle")
    finally:
        master.stop()
