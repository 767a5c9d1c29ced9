"""The real stack for end-to-end tests: Redis, Daphne, a Celery worker and beat, on free ports.

Every process is started with its output in a log file and stopped (then killed if it
must be) at teardown; readiness is polled against deadlines, never slept for.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.waiting import wait_until
from ticker.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRADER = ("e2e-trader", "e2e-trader-pass-1")
ADMIN = ("e2e-admin", "e2e-admin-pass-1")


# The suite's poll helper, under the name the e2e modules import it by.
wait_for = wait_until


FAST_SYMBOLS_SCRIPT = """
from dashboard.models import Symbol
for i in range({count}):
    Symbol.objects.get_or_create(
        symbol=f"F{{i:02d}}", defaults=dict(name=f"Fast {{i}}", initial_price=100, tick_interval_ms={interval})
    )
"""


def procfile(root: Path) -> dict[str, str]:
    """The Procfile's commands of the release in ``root``."""
    commands = {}
    for line in (root / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def procfile_commands() -> dict[str, str]:
    """This repository's Procfile commands: what `make run` starts."""
    return procfile(ROOT)


def process_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """The environment of every server process a test starts, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "1",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TICKER_VAR_DIR": str(workdir / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"),
            "DEMO_TRADER_USERNAME": TRADER[0],
            "DEMO_TRADER_PASSWORD": TRADER[1],
            "DEMO_ADMIN_USERNAME": ADMIN[0],
            "DEMO_ADMIN_PASSWORD": ADMIN[1],
            **overrides,
        }
    )
    return env


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    """Whether ``url`` answers 200 right now."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def tail_logs(processes: Iterable[Process], lines: int = 60) -> str:
    """The last lines of each process's log, for a failing test's output."""
    parts = []
    for process in processes:
        text = process.log.read_text(errors="replace") if process.log.exists() else ""
        parts.append(f"----- {process.name} (last {lines} lines) -----\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(parts)


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.popen = None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self.popen = None


@dataclass
class Stack:
    """Redis, Daphne, worker and beat for one test session, in ``workdir``."""

    workdir: Path
    # Extra symbols F00, F01, ... ticking every 50 ms: load for slow-client and fan-out tests.
    fast_symbols: int = 0
    fast_interval_ms: int = 50
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    redis: EmbeddedRedis | None = None
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return process_env(
            self.workdir,
            REDIS_URL=self.redis.url,
            DATABASE_URL=f"sqlite:///{self.workdir / 'db.sqlite3'}",
            TICKER_WATCHDOG_SECONDS="1",
            **self.extra_env,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(free_port(), self.workdir / "redis", persist=False)
        self.redis.start()
        env = self.env()
        manage = [sys.executable, str(ROOT / "manage.py")]
        commands = [["migrate", "--noinput"], ["load_demo"]]
        if self.fast_symbols:
            commands.append(
                ["shell", "-c", FAST_SYMBOLS_SCRIPT.format(count=self.fast_symbols, interval=self.fast_interval_ms)]
            )
        for command in commands:
            subprocess.run([*manage, *command], env=env, cwd=ROOT, check=True, capture_output=True)
        # Exactly what `make run` starts: the Procfile's commands.
        for name, command in procfile_commands().items():
            self.add(name, ["/bin/sh", "-c", f"exec {command}"])
        env["PORT"] = str(self.web_port)
        for process in self.processes.values():
            process.start(env)
        wait_until(self.web_ready, 30, "Daphne to serve the login page")
        # On a fresh market each symbol's history is generated before it ticks (one at a
        # time, in random order, well under a second each): tests start once every symbol
        # the producer holds has its series (50 symbols take about 20 s on 2 busy cores).
        wait_until(self.all_series_started, 90, "every symbol's history and series (AAPL's included)")

    def all_series_started(self) -> bool:
        market = self.market()
        held = [key.decode().rsplit(":", 1)[1] for key in market.scan_iter("ticker:lease:*")]
        return "AAPL" in held and all(market.exists(f"ticker:state:{symbol}") for symbol in held)

    def add(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.workdir / f"{name}.log")
        self.processes[name] = process
        return process

    def web_ready(self) -> bool:
        return answers(f"{self.base_url}/accounts/login/")

    def market(self) -> redis.Redis:
        assert self.redis is not None
        return redis.Redis.from_url(self.redis.url, socket_timeout=5)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        if self.redis is not None:
            self.redis.stop()

    def logs(self) -> str:
        return tail_logs(self.processes.values())

    def login(self, username: str = TRADER[0], password: str = TRADER[1]) -> str:
        """Log in through the real login form; returns the Cookie header for WebSockets."""
        return self.session(username, password).cookie_header()

    def ensure_user(self, username: str, password: str) -> tuple[str, str]:
        """A trader account of its own for a test (created once, through manage.py)."""
        script = (
            "from django.contrib.auth import get_user_model\n"
            f"User = get_user_model()\nif not User.objects.filter(username={username!r}).exists():\n"
            f"    User.objects.create_user({username!r}, password={password!r})\n"
        )
        manage = [sys.executable, str(ROOT / "manage.py"), "shell", "-c", script]
        subprocess.run(manage, env=self.env(), cwd=ROOT, check=True, capture_output=True)
        return username, password

    def session(self, username: str = TRADER[0], password: str = TRADER[1]) -> HttpSession:
        return HttpSession.logged_in(self.base_url, username, password)

    def start_worker(self, name: str) -> Process:
        """Another worker like the Procfile's, under its own node name."""
        command = procfile_commands()["worker"]
        process = self.add(name, ["/bin/sh", "-c", f"exec {command} --hostname={name}@%h"])
        env = self.env()
        env["PORT"] = str(self.web_port)
        process.start(env)
        return process

    def lease_owner_pid(self, symbol: str) -> int | None:
        owner = self.market().get(f"ticker:lease:{symbol}")
        return int(owner.decode().split(":")[1]) if owner else None

    def kill_web(self) -> None:
        """kill -9 Daphne (a crash: no close frames reach the browsers)."""
        self.processes["web"].kill()

    def start_web(self) -> None:
        """Start Daphne again on the same port and wait until it serves pages."""
        env = self.env()
        env["PORT"] = str(self.web_port)
        self.processes["web"].start(env)
        wait_until(self.web_ready, 30, "Daphne to serve again after a restart")

    def restart_web(self) -> None:
        self.kill_web()
        self.start_web()

    def pause_web(self) -> None:
        """SIGSTOP Daphne: sockets stay open but nothing arrives (a hung server)."""
        popen = self.processes["web"].popen
        assert popen is not None
        os.killpg(popen.pid, signal.SIGSTOP)

    def resume_web(self) -> None:
        popen = self.processes["web"].popen
        assert popen is not None
        os.killpg(popen.pid, signal.SIGCONT)


class HttpSession:
    """A browser-like HTTP client: cookies, and CSRF tokens taken from the forms it loads."""

    def __init__(self, base_url: str, context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        self.last_url = ""

    @classmethod
    def logged_in(
        cls, base_url: str, username: str, password: str, context: ssl.SSLContext | None = None
    ) -> HttpSession:
        """A session logged in through the real login form."""
        session = cls(base_url, context)
        session.post_form("/accounts/login/", {"username": username, "password": password, "next": "/"})
        assert session.last_url == f"{base_url}/", f"login landed on {session.last_url}"
        assert "sessionid" in session.cookies(), "login set a session cookie"
        return session

    def cookies(self) -> dict[str, str]:
        return {c.name: c.value for c in self.jar}

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies().items())

    def get(self, path: str) -> str:
        with self.opener.open(f"{self.base_url}{path}", timeout=10) as response:
            self.last_url = response.url
            return response.read().decode()

    def post_form(self, path: str, fields: dict[str, object], form_path: str | None = None) -> str:
        """POST ``fields`` to ``path`` with the CSRF token of the page at ``form_path`` (default: ``path``)."""
        page = self.get(form_path or path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, f"{form_path or path} has a CSRF token"
        pairs: list[tuple[str, object]] = [("csrfmiddlewaretoken", token.group(1))]
        for key, value in fields.items():
            pairs += [(key, v) for v in value] if isinstance(value, list) else [(key, value)]
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=urllib.parse.urlencode(pairs).encode(),
            headers={"Referer": f"{self.base_url}{form_path or path}"},
        )
        with self.opener.open(request, timeout=10) as response:
            self.last_url = response.url
            return response.read().decode()
