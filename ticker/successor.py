"""Replace a web process in place: SIGHUP starts its successor, which then retires it.

A restart (stop, then start) leaves a port closed for as long as a new process takes to
start, so behind a balancer the old process's clients must move to another process, and
again when that one restarts: two reconnects for half of them in a rolling restart. A
replacement on the same port moves each client once, to the new process:

1. on SIGHUP (``systemctl reload ticker-web@8001``: ``ExecReload=/bin/kill -HUP $MAINPID``)
   the running process starts ``python -m ticker.server`` with its own arguments and
   environment, in ``TICKER_HOME`` (the release directory, so a reload after an upgrade
   runs the new code) or its own working directory;
2. the successor binds the same port beside it (``SO_REUSEPORT``, ``ticker/listen.py``)
   and, once listening, tells systemd it is now the service's main process
   (``MAINPID=`` over ``NOTIFY_SOCKET``, when set) and sends its predecessor SIGTERM;
3. the predecessor drains (``ticker/drain.py``): it stops listening, so every new
   connection reaches the successor, and sends its streams elsewhere with 1012.

A successor that fails before it listens (a bad release, Redis unreachable) exits: the
predecessor keeps serving and logs its exit status. A SIGHUP while a successor is
starting is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

logger = logging.getLogger(__name__)

PREDECESSOR_ENV = "TICKER_PREDECESSOR_PID"
CHECK_SECONDS = 0.5


def notify_systemd(message: str) -> None:
    """Send ``message`` to systemd's notification socket, if this runs under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.connect(address)
        sock.sendall(message.encode())


def retire_predecessor() -> None:
    """In a successor that listens now: become the main process and stop the one replaced."""
    raw = os.environ.pop(PREDECESSOR_ENV, "")
    if not raw:
        return
    predecessor = int(raw)
    notify_systemd(f"MAINPID={os.getpid()}")
    try:
        os.kill(predecessor, signal.SIGTERM)
    except ProcessLookupError:
        logger.warning("predecessor %d already gone", predecessor)
        return
    logger.info("listening beside process %d: sent it SIGTERM to drain", predecessor)


class Successor:
    """The SIGHUP handler of a running web process: start its replacement, watch it start."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.child: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.reactor.callFromThread(self.start))

    def start(self) -> None:
        if self.child is not None and self.child.poll() is None:
            logger.info("SIGHUP ignored: successor %d is starting", self.child.pid)
            return
        argv = [sys.executable, "-m", "ticker.server", *sys.argv[1:]]
        home = os.environ.get("TICKER_HOME") or os.getcwd()
        env = {**os.environ, PREDECESSOR_ENV: str(os.getpid())}
        # Its output goes where ours goes (the journal); it outlives us by design.
        self.child = subprocess.Popen(argv, cwd=home, env=env)  # noqa: S603 - our own command line
        logger.info("SIGHUP: started successor %d in %s", self.child.pid, home)
        self.reactor.callLater(CHECK_SECONDS, self._check)

    def _check(self) -> None:
        # Until it sends SIGTERM (and this process drains), a successor that exits has failed.
        if self.child is None:
            return
        status = self.child.poll()
        if status is None:
            self.reactor.callLater(CHECK_SECONDS, self._check)
            return
        logger.error("successor %d exited with status %d before taking over: still serving", self.child.pid, status)
        self.child = None
