"""The embedded Valkey launcher never authenticates to a server it did not start.

Something already listening on its port (or taking it between the launcher's check and
its child's start) gets no connection, so never the password; the launcher's own child
is probed on its unix socket in the 0700 data directory.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ticker import embedded_redis
from ticker.embedded_redis import EmbeddedRedis, free_port

# How long the squatter waits for a connection between checks of its stop flag.
ACCEPT_POLL_SECONDS = 0.05


class Squatter:
    """A TCP listener on the launcher's port that records every byte it is sent."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, port))
        self.sock.listen()
        self.sock.settimeout(ACCEPT_POLL_SECONDS)
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def port() -> int:
    return free_port()


# A squatter on the loopback address, and one on every interface.
@pytest.fixture(params=["127.0.0.1", "0.0.0.0"])
def squatter(request: pytest.FixtureRequest, port: int) -> Iterator[Squatter]:
    listener = Squatter(request.param, port)
    yield listener
    listener.close()


def test_a_port_already_in_use_is_refused_without_connecting(squatter: Squatter, port: int, tmp_path: Path) -> None:
    server = EmbeddedRedis(port, tmp_path / "redis", hardened=True)
    with pytest.raises(RuntimeError, match=f"port {port} is in use"):
        server.start()
    assert (squatter.connections, squatter.received) == (0, b"")
    assert server.process is None


def test_a_port_taken_after_the_check_makes_the_child_fail_not_the_password_leak(
    port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race: the port was free when checked, a squatter binds it before the child does.
    squatter = Squatter("127.0.0.1", port)
    monkeypatch.setattr(embedded_redis, "port_is_free", lambda _port: True, raising=False)
    server = EmbeddedRedis(port, tmp_path / "redis", hardened=True)
    try:
        with pytest.raises(RuntimeError, match="valkey-server exited"):
            server.start()
    finally:
        server.stop()
        squatter.close()
    assert server.password
    assert server.password.encode() not in squatter.received
    assert squatter.connections == 0


def test_the_launcher_probes_its_own_child_on_a_private_socket(port: int, tmp_path: Path) -> None:
    server = EmbeddedRedis(port, tmp_path / "redis", hardened=True)
    server.start()
    try:
        assert oct(server.socket_path.stat().st_mode & 0o777) == "0o700"
        assert oct(server.data_dir.stat().st_mode & 0o777) == "0o700"
        assert server.ping()
        # Clients still reach it over TCP with the password.
        assert redis.Redis.from_url(server.url).ping()
    finally:
        server.stop()
    assert not server.ping()
    # Stopped, the port is free again: the same launcher starts again (a Redis restart).
    server.start()
    server.stop()
