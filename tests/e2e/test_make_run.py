"""`make run` heals itself: supervisord restarts a crashed web, worker or beat while the
others keep running, gives up on a crash loop and says so, and Ctrl-C stops everything.
Beside it, Django's commands work in the checkout with nothing exported (``var/dev.env``).

Each run is in a copy of this checkout (its files as they are now, no ``var/``), started
as a developer would: no ``TICKER_VAR_DIR``, so its state is the copy's own ``var/``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
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
    """``python -m ticker.stack`` (what ``make run`` runs after setting up the venv) in ``checkout``."""

    workdir: Path
    checkout: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def var(self) -> Path:
        return self.checkout / "var"

    def supervisorctl(self, *args: str) -> str:
        conf = self.var / "supervisord.conf"
        command = [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(conf), *args]
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout

    def pid(self, name: str) -> int:
        return int(self.supervisorctl("pid", name).strip())

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def copy_checkout(dest: Path) -> Path:
    """This checkout's files (tracked and new, not ignored: no ``var/``, no venv) copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def make_run(workdir: Path, **extra: str) -> MadeRun:
    port = free_port()
    checkout = copy_checkout(workdir / "checkout")
    env = process_env(workdir, PORT=str(port), TICKER_EMBEDDED_REDIS_PORT=str(free_port()), **extra)
    # Exactly what a fresh `make run` in a checkout has: it picks its own Redis, database and DEBUG.
    for name in ("REDIS_URL", "DATABASE_URL", "CACHE_URL", "CHANNEL_LAYER_REDIS_URLS", "DEBUG", "SECRET_KEY"):
        env.pop(name, None)
    for name in ("TICKER_VAR_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)  # the checkout's own var/
    log = workdir / "make-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticker.stack"], cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    run = MadeRun(workdir, checkout, port, process, log)
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

    var = running.var
    assert oct(var.stat().st_mode & 0o777) == "0o700"
    for path in (var / "db.sqlite3", var / "redis" / "password", var / "redis" / "server.conf", var / "dev.env"):
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


def bare_manage(run: MadeRun, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ...`` in the run's checkout as a new terminal has it: nothing exported."""
    bare = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run.workdir), **env}
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=run.checkout, env=bare, capture_output=True, text=True, check=False)


def test_django_commands_beside_make_run_need_no_environment(running: MadeRun) -> None:
    admin = ("bare-admin", "bare-admin-pass-1")
    created = bare_manage(
        running,
        "createsuperuser",
        "--noinput",
        DJANGO_SUPERUSER_USERNAME=admin[0],
        DJANGO_SUPERUSER_PASSWORD=admin[1],
        DJANGO_SUPERUSER_EMAIL="dev@example.com",
    )
    assert created.returncode == 0, created.stderr
    # The running web knows the account: manage.py used make run's database.
    assert "Site administration" in HttpSession.logged_in(running.base_url, *admin).get("/admin/")

    status = bare_manage(running, "ticker_status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    # make run's Valkey, reached with its password: the live producer and its series are there.
    assert report["producers"], report
    assert any(row["symbol"] == "BTC-USD" and row["seq"] > 0 for row in report["symbols"]), report["symbols"]
    assert "***" in report["redis"]["url"]
