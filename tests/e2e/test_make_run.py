"""`make run` heals itself: supervisord restarts a crashed web, worker or beat while the
others keep running, gives up on a crash loop and says so, and Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.client import Recorder, ResumingClient
from tests.e2e.stack import ROOT, TRADER, HttpSession, answers, process_env, wait_for
from ticker.embedded_redis import free_port

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)


@dataclass
class MadeRun:
    """``python -m ticker.stack`` (what ``make run`` runs after setting up the venv)."""

    workdir: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def supervisorctl(self, *args: str) -> str:
        conf = self.workdir / "var" / "supervisord.conf"
        command = [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout

    def pid(self, name: str) -> int:
        return int(self.supervisorctl("pid", name).strip())

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def make_run(workdir: Path, **extra: str) -> MadeRun:
    port = free_port()
    env = process_env(workdir, PORT=str(port), TICKER_EMBEDDED_REDIS_PORT=str(free_port()), **extra)
    for name in ("REDIS_URL", "DATABASE_URL", "CACHE_URL", "CHANNEL_LAYER_REDIS_URLS", "DEBUG"):
        env.pop(name, None)  # exactly what a fresh `make run` has: it picks its own
    log = workdir / "make-run.log"
    workdir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticker.stack"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    run = MadeRun(workdir, port, process, log)
    wait_for(lambda: answers(f"{run.base_url}/readyz") or process.poll() is not None, 120, "make run ready")
    assert process.poll() is None, run.output()
    return run


def interrupt(run: MadeRun) -> None:
    """Ctrl-C: the launcher stops supervisord, which stops every process, then Valkey."""
    run.process.send_signal(signal.SIGINT)
    run.process.wait(60)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MadeRun]:
    run = make_run(tmp_path_factory.mktemp("make-run"))
    try:
        yield run
    finally:
        if run.process.poll() is None:
            interrupt(run)


async def test_a_killed_worker_is_restarted_and_ticks_continue_within_5_s(running: MadeRun) -> None:
    headers = {"Cookie": HttpSession.logged_in(running.base_url, *TRADER).cookie_header(), "Origin": running.base_url}
    web = running.pid("web")
    async with Recorder(f"ws://127.0.0.1:{running.port}/ws/stream/", headers, subscribe=["BTC-USD"]) as watcher:
        await watcher.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        os.kill(running.pid("worker"), signal.SIGKILL)
        killed_ms = time.time_ns() // 1_000_000
        killed = time.monotonic()
        arrived, _ = await watcher.wait_for_tick("BTC-USD", lambda t: t["ts"] > killed_ms, timeout=15, after=killed)
        logger.info("kill -9 worker: ticks resumed after %.2f s", arrived - killed)
        assert arrived - killed <= 5.0, f"ticks resumed {arrived - killed:.2f} s after the kill"
        assert not any(f["type"] == "_closed" for _, f in watcher.frames), "the trader stayed connected"
    assert running.pid("web") == web, "web untouched"
    wait_for(lambda: "RUNNING" in running.supervisorctl("status", "worker"), 10, "the worker RUNNING again")


async def test_a_killed_web_is_back_within_5_s_and_clients_resume_without_a_gap(running: MadeRun) -> None:
    headers = {"Cookie": HttpSession.logged_in(running.base_url, *TRADER).cookie_header(), "Origin": running.base_url}
    client = ResumingClient(f"ws://127.0.0.1:{running.port}/ws/stream/", headers, ["BTC-USD", "ETH-USD"])
    client.start()
    try:
        await asyncio.wait_for(client.connected.wait(), 10)
        await client.wait_for(lambda f: f["type"] == "ticks", timeout=10)
        old = running.pid("web")
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        await client.wait_for(lambda f: f["type"] == "ticks" and f.get("recovered"), timeout=15, after=killed)
        back, _ = await client.wait_for(lambda f: f["type"] == "ticks", timeout=15, after=killed)
        logger.info("kill -9 web: resumed and live after %.2f s", back - killed)
        assert back - killed <= 5.0, f"live again {back - killed:.2f} s after the kill"
        assert client.gaps == []
        assert client.duplicates == []
        assert running.pid("web") != old
    finally:
        await client.stop()


def test_a_crash_loop_is_given_up_and_reported_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text((ROOT / "Procfile").read_text() + "broken: sh -c 'echo starting; exit 3'\n")
    run = make_run(tmp_path / "run", TICKER_PROCFILE=str(procfile))
    try:
        wait_for(lambda: "broken keeps crashing at start: gave up" in run.output(), 60, "the crash loop reported")
        assert "FATAL" in run.supervisorctl("status", "broken")
        assert "RUNNING" in run.supervisorctl("status", "web"), "the others keep running"
        pids = [run.pid(name) for name in ("web", "worker", "beat")]
    finally:
        interrupt(run)
    assert run.process.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not answers(f"{run.base_url}/healthz")


def test_var_is_private_and_the_embedded_valkey_needs_its_password(running: MadeRun) -> None:
    import redis

    var = running.workdir / "var"
    assert oct(var.stat().st_mode & 0o777) == "0o700"
    for path in (var / "db.sqlite3", var / "redis" / "password", var / "redis" / "server.conf"):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    port = int((var / "redis" / "server.conf").read_text().split("port ")[1].split()[0])
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    password = (var / "redis" / "password").read_text().strip()
    client = redis.Redis(port=port, password=password)
    assert client.ping()
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.execute_command("CONFIG", "SET", "dir", "/tmp")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        client.flushall()
