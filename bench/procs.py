"""Child processes of a benchmark run: started in their own process group, always stopped.

Every process is started with ``start_new_session`` so that stopping it signals its
whole group (a ``sh -c exec`` wrapper, Celery's threads, anything it forked). Readiness
is polled against deadlines, never slept for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

logger = logging.getLogger(__name__)

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class ManagedProcess:
    """One child process (and its process group) with its output in a log file."""

    name: str
    argv: Sequence[str]
    log: Path
    cwd: Path
    env: Mapping[str, str]
    popen: subprocess.Popen[bytes] | None = None
    stdin_pipe: bool = False
    stdout_pipe: bool = False

    def start(self) -> ManagedProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as handle:
            self.popen = subprocess.Popen(  # noqa: S603 - argv built by the harness, no shell input
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.PIPE if self.stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.stdout_pipe else handle,
                stderr=handle,
                start_new_session=True,
            )
        logger.debug("started %s (pid %d): %s", self.name, self.popen.pid, " ".join(self.argv))
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} not started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
        if self.popen is None:
            return
        popen, self.popen = self.popen, None
        for stream in (popen.stdin, popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
        # Whatever is left of the group (a forked child that ignored SIGTERM) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessSampler:
    """CPU seconds and RSS of a set of processes (each with its children), read with psutil."""

    pids: dict[str, int]
    procs: dict[str, psutil.Process] = field(default_factory=dict)
    cpu0: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0
    peak_rss: dict[str, int] = field(default_factory=dict)
    host0: float = 0.0
    other_cpu_pct: float = 0.0
    host_cpu_pct: float = 0.0
    host_breakdown: dict[str, float] = field(default_factory=dict)
    times0: Any = None

    def __post_init__(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(psutil.Error):
                self.procs[name] = psutil.Process(pid)

    @staticmethod
    def _tree(proc: psutil.Process) -> list[psutil.Process]:
        try:
            return [proc, *proc.children(recursive=True)]
        except psutil.Error:
            return [proc]

    def _cpu(self, proc: psutil.Process) -> float:
        total = 0.0
        for member in self._tree(proc):
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                total += times.user + times.system
        return total

    @staticmethod
    def host_busy() -> float:
        """CPU seconds the whole machine has been busy (all cores, everything but idle and iowait)."""
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.cpu0 = {name: self._cpu(p) for name, p in self.procs.items()}
        self.host0 = self.host_busy()
        self.times0 = psutil.cpu_times()
        self.sample_rss()

    def sample_rss(self) -> dict[str, int]:
        now: dict[str, int] = {}
        for name, proc in self.procs.items():
            total = 0
            for member in self._tree(proc):
                with contextlib.suppress(psutil.Error):
                    total += member.memory_info().rss
            now[name] = total
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), total)
        return now

    def stop(self) -> dict[str, dict[str, float]]:
        """Per process: CPU seconds and % of one core since ``start``, RSS now and at peak (MiB)."""
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rss = self.sample_rss()
        host = max(self.host_busy() - self.host0, 0.0)
        out: dict[str, dict[str, float]] = {}
        for name, proc in self.procs.items():
            cpu = max(self._cpu(proc) - self.cpu0.get(name, 0.0), 0.0)
            out[name] = {
                "cpu_s": round(cpu, 3),
                "cpu_pct": round(100.0 * cpu / elapsed, 1),
                "rss_mib": round(rss.get(name, 0) / 2**20, 1),
                "peak_rss_mib": round(self.peak_rss.get(name, 0) / 2**20, 1),
            }
        ours = sum(v["cpu_s"] for v in out.values())
        # What else ran on the machine meanwhile (other test runs, the harness itself): it
        # competes for the same cores, so it is reported with every scenario.
        self.other_cpu_pct = round(100.0 * max(host - ours, 0.0) / elapsed, 1)
        self.host_cpu_pct = round(100.0 * host / elapsed, 1)
        times1 = psutil.cpu_times()
        self.host_breakdown = {
            f: round(100.0 * (getattr(times1, f) - getattr(self.times0, f)) / elapsed, 1)
            for f in times1._fields
            if f not in ("idle", "guest", "guest_nice")
        }
        return out


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system
