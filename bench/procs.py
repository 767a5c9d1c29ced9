"""Child processes of a benchmark run: started in their own process group, always stopped.

Every process is started with ``start_new_session`` so that stopping it signals its
whole group (a ``sh -c exec`` wrapper, Celery's threads, anything it forked). Readiness
is polled against deadlines, never slept for. Also here: the environment children get
(``base_env``), the throwaway Redis every target starts (``BenchRedis``), and the
sampler of CPU and memory (``ProcessSampler``, its maths in ``bench.results``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis

from bench import results
from ticker.embedded_redis import SERVER_BINARY

logger = logging.getLogger(__name__)

# A sampling window shorter than this is treated as this long (no division by zero).
MIN_ELAPSED_S = 1e-6
# Resident memory counts as settled once it moves by no more than this fraction between samples...
RSS_SETTLED = 0.01
# ...taken this far apart.
RSS_INTERVAL_S = 0.5

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


BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BIN = Path(sys.executable).parent
PYTHON = sys.executable


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The harness's environment minus anything that would point a child at another setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_SETTINGS", "PYTEST_", "TICKER_", "DEMO_", "CELERY_", "REDIS_URL", "DATABASE_URL"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BenchRedis:
    """A throwaway Valkey server (the embedded one's binary) on 127.0.0.1, output in a log."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            SERVER_BINARY,
            *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)),
            *("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--loglevel", "warning"),
        ]
        self.process = ManagedProcess("redis", argv, workdir / "redis.log", self.dir, base_env({}))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process.start()
        wait_for(self.ping, 15, f"redis-server on port {self.port}")

    def stop(self) -> None:
        self.process.stop()


def port_open(port: int) -> bool:
    """True once something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ready(url: str) -> bool:
    """True once the server answers HTTP at all (any status)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - 127.0.0.1 only
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


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
        elapsed = max(time.monotonic() - self.t0, MIN_ELAPSED_S)
        rss = self.sample_rss()
        host = max(self.host_busy() - self.host0, 0.0)
        out: dict[str, dict[str, float]] = {}
        for name, proc in self.procs.items():
            cpu = max(self._cpu(proc) - self.cpu0.get(name, 0.0), 0.0)
            out[name] = results.process_usage(cpu, elapsed, rss.get(name, 0), self.peak_rss.get(name, 0))
        ours = sum(v["cpu_s"] for v in out.values())
        # What else ran on the machine meanwhile (other test runs, the harness itself): it
        # competes for the same cores, so it is reported with every scenario.
        self.other_cpu_pct = results.busy_pct(host - ours, elapsed)
        self.host_cpu_pct = results.busy_pct(host, elapsed)
        self.host_breakdown = results.host_breakdown(self.times0._asdict(), psutil.cpu_times()._asdict(), elapsed)
        return out


def machine_busy(seconds: float = 1.0) -> float:
    """Percent of one core the machine spends busy over ``seconds`` (a sampling interval) right now."""
    before = ProcessSampler.host_busy()
    time.sleep(seconds)  # the sampling interval
    return round(100.0 * (ProcessSampler.host_busy() - before) / seconds, 1)


def rss_of(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (0 when it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def stable_rss(pid: int, timeout: float = 10.0) -> int:
    """RSS of ``pid`` once it stops moving by more than ``RSS_SETTLED`` over half a second (bounded)."""
    deadline = time.monotonic() + timeout
    last = rss_of(pid)
    while time.monotonic() < deadline:
        time.sleep(RSS_INTERVAL_S)  # the sampling interval
        now = rss_of(pid)
        if abs(now - last) <= RSS_SETTLED * max(last, 1):
            return now
        last = now
    return last


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system
