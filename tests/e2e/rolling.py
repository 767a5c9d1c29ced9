"""A rolling restart of the topology as docs/upgrading.md has it, and what its clients saw.

Web processes one at a time, each replaced in place (SIGHUP: ``systemctl reload
ticker-web@PORT``) and waited for on ``/readyz``; then the workers one by one (SIGTERM, a
new one, its producer started). ``Watch`` samples, every 10 ms, how many clients are
disconnected at that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests.e2e.client import ResumingClient
from tests.e2e.stack import answers
from tests.e2e.topology import Topology
from tests.waiting import until

USERS_SCRIPT = """
from django.contrib.auth import get_user_model
User = get_user_model()
for name in {names!r}:
    if not User.objects.filter(username=name).exists():
        User.objects.create_user(name, password={password!r})
"""


def create_users(topology: Topology, names: list[str], password: str) -> None:
    manage = [sys.executable, str(topology.code_root / "manage.py"), "shell", "-c"]
    script = USERS_SCRIPT.format(names=names, password=password)
    subprocess.run([*manage, script], env=topology.env(), cwd=topology.code_root, check=True, capture_output=True)


@dataclass
class Watch:
    """The most clients disconnected at one moment, sampled every 10 ms."""

    clients: list[ResumingClient]
    most_disconnected: int = 0
    task: asyncio.Task[None] | None = None
    samples: int = field(default=0)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            down = sum(not c.connected.is_set() for c in self.clients)
            self.most_disconnected = max(self.most_disconnected, down)
            self.samples += 1
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def reload_web(topology: Topology, index: int) -> int:
    """SIGHUP web ``index``; returns its process group, where its successor now runs."""
    process = topology.processes[f"web{index}"]
    assert process.popen is not None
    old = process.popen
    os.kill(old.pid, signal.SIGHUP)
    assert await asyncio.to_thread(old.wait, 30) == 0, topology.logs()
    process.popen = None
    port = topology.web_ports[index - 1]
    await until(lambda: answers(f"http://127.0.0.1:{port}/readyz"), 30, f"the successor on {port} to be ready")
    return old.pid


async def restart_worker(topology: Topology, name: str) -> None:
    """SIGTERM a worker (its leases are released), start it again, wait for its producer."""
    await asyncio.to_thread(topology.processes[name].stop)
    log = topology.processes[name].log
    started_at = log.stat().st_size if log.exists() else 0
    topology.start_process(name)

    def producing() -> bool:
        return log.exists() and " started (window" in log.read_text(errors="replace")[started_at:]

    await until(producing, 30, f"{name}'s producer")


async def stop_groups(groups: list[int], ports: list[int]) -> None:
    """Stop the successors (outside the topology's bookkeeping) and wait for their ports."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)

    def closed() -> bool:
        return not any(answers(f"http://127.0.0.1:{port}/healthz") for port in ports)

    await until(closed, 20, "the successors to stop")


def longest_silence_ms(clients: list[ResumingClient], since_ms: int) -> dict[str, int]:
    """Per symbol, the longest time between two of its ticks (their own ``ts``) since ``since_ms``."""
    stamps: dict[str, set[int]] = {}
    for client in clients:
        for (symbol, _epoch, _seq), tick in client.ticks.items():
            if tick["ts"] >= since_ms:
                stamps.setdefault(symbol, set()).add(tick["ts"])
    return {
        symbol: max((b - a for a, b in itertools.pairwise(ordered)), default=0)
        for symbol, ordered in ((s, sorted(ts)) for s, ts in stamps.items())
    }


def now_ms() -> int:
    return int(time.time() * 1000)
