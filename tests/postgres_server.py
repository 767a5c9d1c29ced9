"""A throwaway PostgreSQL server from Debian's packages, for the PostgreSQL test runs.

PostgreSQL refuses to run as root; when the tests run as root the server runs as the
``postgres`` system user that Debian's package creates. ``make test`` installs the
package with apt-get when it is missing (see the Makefile's ``postgres`` target).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.waiting import wait_until
from ticker.embedded_redis import free_port


def postgres_bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (make postgres)")
    return Path(found[-1]).parent


class PostgresServer:
    """initdb, start, create databases, stop: one server on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="ticker-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # The server will not run as root: hand the directory to Debian's postgres user.
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgres://ticker@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "ticker",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                # A test database: durability traded for speed.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_until(self._accepts_connections, timeout, "postgres to accept connections", interval=0.1)
        except Exception:  # the deadline passed or the server exited: nothing left behind
            self.stop()
            raise

    def _accepts_connections(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()[-2000:]}")
        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
