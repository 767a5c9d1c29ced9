"""deploy/systemd's units start as systemd would start them, on a fresh host's layout.

Every unit (Valkey's, two web instances on their ports, two workers, beat) runs through
``tests/e2e/systemd_units.py``: an environment of only the unit's ``Environment=`` and an
``EnvironmentFile=`` made from ``deploy/env.example``, no shell, as an unprivileged user,
in the checkout, against Valkey's unit running ``deploy/valkey/ticker.conf`` (port, address,
directory and password substituted).
The web processes must answer ``/healthz`` on the address and port the unit gives them,
the workers must report ready under their own node names and produce ticks, beat must
start and write its schedule into the state directory. A unit written the honcho way
(``/bin/sh -lc``, whose login shell resets ``PATH``) must not start.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.e2e.deploy_files import DEPLOY, valkey_config
from tests.e2e.stack import ROOT, tail_logs
from tests.e2e.systemd_units import UnitRun, running, unprivileged_user
from tests.waiting import wait_until
from ticker.embedded_redis import SERVER_BINARY, free_port

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

# Any loopback address binds on Linux: one that is not 127.0.0.1 shows the unit listens
# on the HOST of its environment file (which overrides the unit's own default), only there.
WEB_HOST = "127.0.0.2"

# The unit the guide used to generate with `honcho export systemd` (one web process).
HONCHO_STYLE_UNIT = """\
[Service]
User=ticker
WorkingDirectory=/srv/ticker
Environment=PORT=%i
ExecStart=/bin/sh -lc 'python -m ticker.server -b ${HOST:-127.0.0.1} -p ${PORT:-8000} ticker.asgi:application'
Restart=always
Environment=PATH=/srv/ticker/.venv/bin:/usr/bin:/bin
EnvironmentFile=/etc/ticker/env
"""


def environment_file(values: dict[str, str]) -> str:
    """deploy/env.example with its settings given ``values``, as an operator fills it in."""
    lines, seen = [], set()
    for line in (DEPLOY / "env.example").read_text().splitlines():
        key = line.partition("=")[0]
        if not line.startswith("#") and "=" in line and key in values:
            line, _ = f"{key}={values[key]}", seen.add(key)
        lines.append(line)
    assert seen == set(values), f"deploy/env.example lacks {set(values) - seen}"
    active = [line for line in lines if line and not line.startswith("#")]
    assert not [line for line in active if "CHANGE-ME" in line], "every placeholder was replaced"
    return "\n".join(lines) + "\n"


@dataclass
class Host:
    """One host's units, their state directory, environment file and Valkey."""

    base: Path
    logs: Path
    valkey_url: str
    web_ports: tuple[int, int]
    units: dict[str, UnitRun]

    def unit(self, name: str, text: str | None = None) -> UnitRun:
        paths = {
            "/srv/ticker/.venv": sys.prefix,
            "/srv/ticker": str(ROOT),
            "/var/lib/ticker": str(self.base / "var"),
            "/etc/ticker/env": str(self.logs / "env"),
            "/usr/local/bin/valkey-server": SERVER_BINARY,
            "/var/lib/valkey": str(self.base / "valkey"),
            "/etc/valkey/ticker.conf": str(self.base / "valkey.conf"),
        }
        log = self.logs / f"{name}.log"
        state = self.base / ("valkey" if name == "valkey.service" else "var")
        return UnitRun(name, paths, state, log, text=text)

    def start_valkey(self, port: int, password: str) -> None:
        """valkey.service on deploy/valkey/ticker.conf, the config root's and readable by the
        server's group only (root:valkey 0640 in production)."""
        config = self.base / "valkey.conf"
        config.write_text(valkey_config(port, self.base / "valkey", password))
        unit = self.units["valkey.service"] = self.unit("valkey.service")
        os.chown(config, os.geteuid(), unit.user.pw_gid)
        config.chmod(0o640)
        unit.start()
        market = redis.Redis.from_url(self.valkey_url, socket_timeout=1)

        def answers() -> bool:
            assert unit.alive(), self.log("valkey.service")
            try:
                return bool(market.ping())
            except (redis.RedisError, OSError):
                return False

        wait_until(answers, 15, "valkey.service to answer")

    def log(self, name: str) -> str:
        return self.units[name].log.read_text(errors="replace")


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def get(port: int, path: str) -> int:
    """The status of a plain GET (no redirect followed: DEBUG=0 redirects pages to https)."""
    connection = http.client.HTTPConnection(WEB_HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return 0
    finally:
        connection.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    logs = tmp_path_factory.mktemp("units")
    # Outside pytest's 0700 temporary tree, so that the unprivileged user can reach its state.
    base = Path(tempfile.mkdtemp(prefix="ticker-units-"))
    base.chmod(0o755)
    password, valkey_port = secrets.token_urlsafe(24), free_port()
    valkey_url = f"redis://:{password}@127.0.0.1:{valkey_port}/0"
    web_ports = (free_port(), free_port())
    names = [f"ticker-web@{port}.service" for port in web_ports]
    names += ["ticker-worker@1.service", "ticker-worker@2.service", "ticker-beat.service"]
    running = Host(base, logs, valkey_url, web_ports, {})
    try:
        running.start_valkey(valkey_port, password)
        env = environment_file(
            {
                "SECRET_KEY": secrets.token_urlsafe(50),
                "ALLOWED_HOSTS": WEB_HOST,
                "TRUSTED_PROXIES": "127.0.0.1",
                "HOST": WEB_HOST,
                "DATABASE_URL": f"sqlite:///{base / 'var' / 'db.sqlite3'}",
                "REDIS_URL": valkey_url,
                "METRICS_TOKEN": secrets.token_urlsafe(32),
            }
        )
        # Root's and 0600, as /etc/ticker/env: read by "systemd" (this process), not the units.
        (logs / "env").write_text(env)
        (logs / "env").chmod(0o600)
        running.units.update({name: running.unit(name) for name in names})
        first = running.units[names[0]]
        first.prepare_state_directory()
        # The guide's first deploy, as the ticker user with the units' environment.
        for command in (["migrate", "--noinput"], ["load_demo", "--symbols-only"]):
            done = first.run([f"{sys.prefix}/bin/python", "manage.py", *command])
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        started = time.monotonic()
        for name in names:
            running.units[name].start()
        for port in web_ports:
            wait_until(lambda p=port: get(p, "/healthz") == 200, 60, f"ticker-web@{port} to answer /healthz")
        logger.info("both web units answered /healthz %.1f s after start", time.monotonic() - started)
        yield running
    except BaseException:
        logger.error("units' logs:\n%s", tail_logs_of(running))
        raise
    finally:
        # Valkey last, as systemd would order it (the Ticker units come After= the network).
        for unit in reversed(list(running.units.values())):
            unit.stop()
        shutil.rmtree(base, ignore_errors=True)


def tail_logs_of(host: Host) -> str:
    class Named:
        def __init__(self, name: str, log: Path) -> None:
            self.name, self.log = name, log

    return tail_logs([Named(name, unit.log) for name, unit in host.units.items()])  # type: ignore[list-item]


def test_systemd_itself_reads_every_shipped_unit_without_a_complaint(tmp_path: Path) -> None:
    """``systemd-analyze verify``: what the emulation would not notice (an unknown key, a bad
    value: systemd ignores those with a warning). The programs must exist, so the
    virtualenv and the Valkey binary stand at their production paths' place."""
    paths = {"/srv/ticker/.venv": sys.prefix, "/usr/local/bin/valkey-server": SERVER_BINARY}
    shipped = {
        "ticker-web@8001.service": DEPLOY / "systemd" / "ticker-web@.service",
        "ticker-worker@1.service": DEPLOY / "systemd" / "ticker-worker@.service",
        "ticker-beat.service": DEPLOY / "systemd" / "ticker-beat.service",
        "ticker.target": DEPLOY / "systemd" / "ticker.target",
        "valkey.service": DEPLOY / "valkey" / "valkey.service",
    }
    for name, source in shipped.items():
        text = source.read_text()
        for production, here in paths.items():
            text = text.replace(production, here)
        (tmp_path / name).write_text(text)
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    verified = subprocess.run(
        [analyze, "verify", "--man=no", *[f"./{name}" for name in shipped]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = (verified.stdout + verified.stderr).strip()
    assert verified.returncode == 0, complaints
    assert complaints == "", complaints


def test_every_unit_runs_as_the_unprivileged_user_from_its_environment(host: Host) -> None:
    user = unprivileged_user()
    for name, unit in host.units.items():
        assert unit.service()["User"] == ["valkey" if name == "valkey.service" else "ticker"]
        assert unit.alive(), f"{name} exited:\n{host.log(name)}"
        assert unit.popen is not None
        status = Path(f"/proc/{unit.popen.pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, flags=re.MULTILINE)
        assert uids, status
        assert {int(uids[1]), int(uids[2])} == {user.pw_uid}, f"{name} runs as {user.pw_name}"
        environ = Path(f"/proc/{unit.popen.pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environ if entry}
        # env -i: nothing of the test's own environment leaks in.
        assert "PYTEST_CURRENT_TEST" not in names, names
        assert "VIRTUAL_ENV" not in names, names


def test_web_units_listen_on_their_instance_port_at_the_environment_files_host(host: Host) -> None:
    for port in host.web_ports:
        assert get(port, "/healthz") == 200
        # The unit's default (127.0.0.1) is overridden by the file: nothing listens there.
        assert not listening("127.0.0.1", port), f"ticker-web@{port} also listens on 127.0.0.1"


def test_workers_start_under_their_own_node_names_and_produce(host: Host) -> None:
    hostname = socket.gethostname()
    for instance in (1, 2):
        name = f"ticker-worker@{instance}.service"
        wait_until(lambda n=name, i=instance: f"w{i}@{hostname} ready." in host.log(n), 60, f"{name} ready")
    market = redis.Redis.from_url(host.valkey_url, socket_timeout=5)
    wait_until(lambda: next(market.scan_iter("ticker:state:*"), None), 90, "a symbol's state written by a worker")


def test_beat_starts_and_writes_its_schedule_in_the_state_directory(host: Host) -> None:
    wait_until(lambda: "celery beat v" in host.log("ticker-beat.service"), 60, "beat's start banner")
    schedule = wait_until(lambda: next((host.base / "var").glob("celerybeat-schedule*"), None), 60, "beat's schedule")
    assert schedule.stat().st_uid == unprivileged_user().pw_uid
    assert host.units["ticker-beat.service"].alive(), host.log("ticker-beat.service")


def test_health_checks_are_not_in_the_access_log_other_requests_are(host: Host) -> None:
    port = host.web_ports[0]
    name = f"ticker-web@{port}.service"
    # Ready once a worker produces (a 503 before that is logged: a failing probe is news).
    wait_until(lambda: get(port, "/readyz") == 200, 60, "/readyz to answer 200")
    for _ in range(3):
        assert get(port, "/healthz") == 200
        assert get(port, "/readyz") == 200
    # DEBUG=0: the login page redirects a plain-HTTP request to https, and is logged.
    assert get(port, "/accounts/login/") == 301
    wait_until(lambda: '"GET /accounts/login/" 301' in host.log(name), 10, "the login request's access-log line")
    log = host.log(name)
    assert '"GET /healthz" 200' not in log, log
    assert '"GET /readyz" 200' not in log, log


def test_a_honcho_style_login_shell_unit_does_not_start(host: Host) -> None:
    port = free_port()
    unit = host.unit(f"ticker-web@{port}.service", text=HONCHO_STYLE_UNIT)
    host.units[unit.unit_name] = unit
    unit.start()
    assert unit.popen is not None
    code = unit.popen.wait(30)
    # /etc/profile resets PATH: "python: not found", 127 (or a system python without Django).
    assert code != 0, unit.log.read_text()
    assert not listening(WEB_HOST, port)
    assert not listening("127.0.0.1", port)
    logger.info("the honcho-style unit exited with %d: %s", code, unit.log.read_text().strip()[-200:])


def test_a_reload_replaces_the_web_process_on_its_port_without_refusing_a_connection(host: Host) -> None:
    """``systemctl reload ticker-web@PORT`` (ExecReload=, SIGHUP): a successor takes the port
    and becomes the unit's main process (MAINPID= on NOTIFY_SOCKET), the old one exits."""
    port = host.web_ports[1]
    unit = host.units[f"ticker-web@{port}.service"]
    old = unit.main_pid
    assert old is not None
    statuses: list[int] = []
    stopping = threading.Event()

    def probe() -> None:
        while not stopping.is_set():
            statuses.append(get(port, "/healthz"))

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        started = time.monotonic()
        unit.reload()
        wait_until(lambda: unit.main_pid != old, 30, "the successor to become the main process")
        wait_until(lambda: not running(old), 30, "the replaced process to exit")
        took = time.monotonic() - started
        count = len(statuses)
        wait_until(lambda: len(statuses) >= count + 5, 10, "probes after the replacement")
    finally:
        stopping.set()
        prober.join(10)
    logger.info("reload: main %d -> %s in %.2f s, %d probes, all 200", old, unit.main_pid, took, len(statuses))
    assert set(statuses) == {200}, statuses
    assert unit.alive(), host.log(unit.unit_name)


def test_every_unit_stops_on_its_kill_signal_within_its_stop_timeout(host: Host) -> None:
    # Valkey last, after every process that uses it.
    for name, unit in sorted(host.units.items(), key=lambda item: item[0] == "valkey.service"):
        if not unit.alive():
            continue
        took = unit.stop()
        assert took is not None, f"{name} did not exit within TimeoutStopSec:\n{host.log(name)}"
        logger.info("%s stopped %.2f s after SIGTERM", name, took)
    assert os.listdir(host.base / "var"), "the units kept their state in the state directory"
    # Valkey's AOF (appendonly yes) in its own state directory.
    assert list((host.base / "valkey").rglob("appendonly.aof*")), os.listdir(host.base / "valkey")
