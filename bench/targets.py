"""The three servers the benchmark measures, each started whole on 127.0.0.1 and stopped whole.

``TickerTarget`` is the product as production runs it: its own Redis, a migrated SQLite
database seeded with the benchmark symbols, and the Procfile's ``web`` (one or more
Daphne processes), ``worker`` (hosting the producer) and ``beat``. ``NaiveTarget`` is the
tutorial pattern under ``bench/naive``; ``FloorTarget`` the plain ``websockets``
broadcaster of ``bench/floor.py``. All three expose the same small interface to the
orchestrator: URLs and headers for the load client, the producer's current ``seq`` per
symbol (to measure its real rate), and the pids to sample.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import redis

from bench.procs import (
    BENCH_DIR,
    BIN,
    PYTHON,
    REPO,
    BenchRedis,
    ManagedProcess,
    base_env,
    free_port,
    http_ready,
    port_open,
    wait_for,
)

logger = logging.getLogger(__name__)


def symbol_names(count: int) -> list[str]:
    """S00, S01, ...: the same codes in every target."""
    width = max(2, len(str(count - 1)))
    return [f"S{i:0{width}d}" for i in range(count)]


class Target:
    """Common part: an embedded Redis, named processes, seq reading."""

    name = "target"
    seq_key = "{}"
    stream_path = "/ws/stream/"
    # The Redis channel the producer publishes batches on (for the publish-lag probe).
    probe_channel: str | None = None

    def __init__(self, workdir: Path, symbols: int) -> None:
        self.workdir = workdir / self.name
        self.symbols = symbol_names(symbols)
        self.redis: BenchRedis | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.web_ports: list[int] = []
        self.rate = 0.0
        self._client: redis.Redis | None = None

    # --- what the orchestrator uses ---------------------------------------------------

    def stream_urls(self, web_procs: int = 1) -> list[str]:
        return [f"ws://127.0.0.1:{port}{self.stream_path}" for port in self.web_ports[:web_procs]]

    def sync_urls(self, symbol: str, web_procs: int = 1) -> list[str]:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    def cookies(self) -> list[str]:
        """Cookie headers, one per simulated user (client i uses entry i modulo their number)."""
        return []

    def origin(self) -> str | None:
        return None

    def web_names(self, web_procs: int | None = None) -> list[str]:
        names = [n for n in self.processes if n.startswith("web")]
        return names if web_procs is None else names[:web_procs]

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.processes.items() if p.alive()}
        if self.redis is not None and self.redis.process.alive():
            out["redis"] = self.redis.pid
        return out

    def seqs(self) -> dict[str, int]:
        """The producer's latest ``seq`` per symbol, read from Redis."""
        client = self.market()
        values = client.mget([self.seq_key.format(s) for s in self.symbols])
        return {s: int(v or 0) for s, v in zip(self.symbols, values, strict=True)}

    def market(self) -> redis.Redis:
        if self._client is None:
            assert self.redis is not None
            self._client = redis.Redis.from_url(self.redis.url, socket_timeout=5, socket_connect_timeout=3)
        return self._client

    def measured_rate(self, seconds: float = 1.0) -> float:
        """Producer ticks/s over all symbols, from the seq progression over ``seconds``."""
        s0, t0 = self.seqs(), time.monotonic()
        time.sleep(seconds)  # a measurement interval, not a synchronisation
        s1, t1 = self.seqs(), time.monotonic()
        return sum(s1[s] - s0[s] for s in self.symbols) / (t1 - t0)

    def wait_rate(self, rate: float, timeout: float = 30.0) -> float:
        """Poll the measured producer rate until it is within 15 % of ``rate`` (or report what it is)."""
        deadline = time.monotonic() + timeout
        measured = 0.0
        while time.monotonic() < deadline:
            measured = self.measured_rate(1.0)
            if abs(measured - rate) <= 0.15 * rate:
                return measured
        logger.warning("%s producer runs at %.0f ticks/s, asked for %.0f", self.name, measured, rate)
        return measured

    def start(self, rate: float) -> None:
        raise NotImplementedError

    def set_rate(self, rate: float) -> None:
        raise NotImplementedError

    def restart_web(self) -> None:
        for name in self.web_names():
            process = self.processes[name]
            process.stop(timeout=5)
            process.start()
        self.wait_web()

    def wait_web(self) -> None:
        for port in self.web_ports:
            wait_for(lambda p=port: port_open(p), 30, f"{self.name} web on port {port}")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            try:
                process.stop(timeout=5)
            except Exception:
                logger.exception("stopping %s failed", process.name)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def logs(self, lines: int = 20) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail(lines)}" for n, p in self.processes.items())

    # --- helpers --------------------------------------------------------------------------

    def _start_redis(self) -> BenchRedis:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = BenchRedis(self.workdir)
        self.redis.start()
        return self.redis

    def _add(self, name: str, argv: Sequence[str], env: dict[str, str], cwd: Path) -> ManagedProcess:
        process = ManagedProcess(name, list(argv), self.workdir / f"{name}.log", cwd, env)
        self.processes[name] = process
        return process

    def _wait_producer(self) -> None:
        # Ticker first writes each new symbol's day of history (one symbol at a time, 1-2 s each).
        wait_for(lambda: all(self.seqs().values()), 300, f"{self.name}'s producer to tick every symbol", 0.2)


class TickerTarget(Target):
    """Ticker itself: Redis, migrated SQLite, seeded symbols, the Procfile's processes."""

    name = "ticker"
    seq_key = "ticker:state:{}"
    # channels-redis's pub/sub layer: "<prefix>__group__<group>" (settings: CHANNEL_LAYER_PREFIX).
    probe_channel = "ticker__group__market"
    user = "bench"
    password = "bench-pass-1"  # noqa: S105 - a throwaway account in a throwaway database

    def __init__(self, workdir: Path, symbols: int, product: Path, web_procs: int = 1, users: int = 0) -> None:
        super().__init__(workdir, symbols)
        self.product = product
        self.web_procs = web_procs
        self.users = users
        self.cookie = ""
        self.session_keys: list[str] = []
        self.secret_key = secrets.token_urlsafe(50)  # one per run: the seeded sessions are signed with it

    def seqs(self) -> dict[str, int]:
        client = self.market()
        with client.pipeline(transaction=False) as pipe:
            for s in self.symbols:
                pipe.hget(self.seq_key.format(s), "seq")
            values = pipe.execute()
        return {s: int(v or 0) for s, v in zip(self.symbols, values, strict=True)}

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return base_env(
            {
                # Production settings (DEBUG off: no query log, no template debugging), reached
                # over plain HTTP on 127.0.0.1 as a TLS-terminating proxy would reach it.
                "DEBUG": "0",
                "SECRET_KEY": self.secret_key,
                "SECURE_SSL_REDIRECT": "0",
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "TICKER_ORIGIN_SCHEME": "http",
                # No mail server: production refuses the log backend unless chosen.
                "TICKER_EMAIL_BACKEND": "console",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "REDIS_URL": self.redis.url,
                "DATABASE_URL": f"sqlite:///{self.workdir / 'db.sqlite3'}",
                "TICKER_VAR_DIR": str(self.workdir / "var"),
                "LOG_LEVEL": os.environ.get("BENCH_SERVER_LOG_LEVEL", "INFO"),
                "PYTHONPATH": str(self.product),
                # Experiments: BENCH_SET_TICKER_GC_THRESHOLD0=0 sets TICKER_GC_THRESHOLD0=0 in Ticker.
                **{k.removeprefix("BENCH_SET_"): v for k, v in os.environ.items() if k.startswith("BENCH_SET_")},
            }
        )

    def procfile(self) -> dict[str, str]:
        commands = {}
        for line in (self.product / "Procfile").read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, command = line.split(":", 1)
                commands[name.strip()] = command.strip()
        return commands

    def seed(self, rate: float, *, user: bool = False) -> None:
        argv = [PYTHON, str(BENCH_DIR / "seed.py"), "--symbols", str(len(self.symbols)), "--rate", str(rate)]
        sessions = self.workdir / "sessions.json"
        if user:
            argv += ["--user", self.user, "--password", self.password]
            if self.users:
                argv += ["--sessions", str(self.users), "--sessions-out", str(sessions)]
        subprocess.run(argv, env=self.env(), cwd=self.product, check=True, capture_output=True, timeout=300)  # noqa: S603
        if user and self.users:
            self.session_keys = json.loads(sessions.read_text())

    def start(self, rate: float) -> None:
        self._start_redis()
        env = self.env()
        manage = [PYTHON, str(self.product / "manage.py")]
        migrate = [*manage, "migrate", "--noinput"]
        subprocess.run(migrate, env=env, cwd=self.product, check=True, capture_output=True, timeout=180)  # noqa: S603
        self.seed(rate, user=True)
        self.rate = rate
        commands = self.procfile()
        for i in range(self.web_procs):
            port = free_port()
            self.web_ports.append(port)
            web = ["/bin/sh", "-c", f"exec {commands['web']}"]
            self._add(f"web{i + 1}", web, {**env, "PORT": str(port)}, self.product)
        self._add("worker", ["/bin/sh", "-c", f"exec {commands['worker']}"], env, self.product)
        self._add("beat", ["/bin/sh", "-c", f"exec {commands['beat']}"], env, self.product)
        for process in self.processes.values():
            process.start()
        self.wait_web()
        self._wait_producer()
        self.cookie = self.login()

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            self.seed(rate)
            self.rate = rate

    def wait_web(self) -> None:
        for port in self.web_ports:
            wait_for(lambda p=port: http_ready(f"http://127.0.0.1:{p}/accounts/login/"), 60, f"Daphne on {port}", 0.1)

    def login(self) -> str:
        """Log in through the real login form; returns the Cookie header for WebSockets."""
        base = f"http://127.0.0.1:{self.web_ports[0]}"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(f"{base}/accounts/login/", timeout=10) as response:
            page = response.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if token is None:
            raise RuntimeError("the login page has no CSRF token")
        body = urllib.parse.urlencode(
            {"username": self.user, "password": self.password, "csrfmiddlewaretoken": token.group(1), "next": "/"}
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - 127.0.0.1 only
            f"{base}/accounts/login/", data=body, headers={"Referer": f"{base}/accounts/login/"}
        )
        with opener.open(request, timeout=10):
            pass
        cookies = {c.name: c.value for c in jar}
        if "sessionid" not in cookies:
            raise RuntimeError("login did not set a session cookie")
        return "; ".join(f"{k}={v}" for k, v in cookies.items())

    def sync_urls(self, symbol: str, web_procs: int = 1) -> list[str]:
        return [f"ws://127.0.0.1:{port}/ws/symbols/{symbol}/" for port in self.web_ports[:web_procs]]

    def headers(self) -> dict[str, str]:
        return {} if self.session_keys else {"Cookie": self.cookie}

    def cookies(self) -> list[str]:
        return [f"sessionid={key}" for key in self.session_keys]

    def origin(self) -> str | None:
        # The page's own origin for whichever Daphne a client reaches (scheme, host and port
        # must match): the load client fills it in per URL.
        return "same"


class NaiveTarget(Target):
    """The tutorial pattern of ``bench/naive``: sync consumer, core layer, per-tick ``group_send``."""

    name = "naive"
    seq_key = "naive:seq:{}"

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return base_env(
            {"DJANGO_SETTINGS_MODULE": "bench.naive.settings", "REDIS_URL": self.redis.url, "PYTHONPATH": str(REPO)}
        )

    def start(self, rate: float) -> None:
        self._start_redis()
        port = free_port()
        self.web_ports = [port]
        env = self.env()
        daphne = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "bench.naive.asgi:application"]
        self._add("web", daphne, env, REPO).start()
        self._start_producer(rate)
        wait_for(lambda: http_ready(f"http://127.0.0.1:{port}/"), 60, "naive Daphne", 0.1)
        self._wait_producer()

    def _start_producer(self, rate: float) -> None:
        argv = [PYTHON, "-m", "bench.naive.producer", "--rate", str(rate), "--symbols", str(len(self.symbols))]
        old = self.processes.pop("producer", None)
        if old is not None:
            old.stop()
        self._add("producer", argv, self.env(), REPO).start()
        self.rate = rate

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            self._start_producer(rate)

    def sync_urls(self, symbol: str, web_procs: int = 1) -> list[str]:
        return []


class FloorTarget(Target):
    """The plain ``websockets`` broadcaster of ``bench/floor.py`` and its producer."""

    name = "floor"
    seq_key = "floor:seq:{}"
    probe_channel = "floor:ticks"

    def env(self) -> dict[str, str]:
        return base_env({"PYTHONPATH": str(REPO)})

    def start(self, rate: float) -> None:
        redis_server = self._start_redis()
        port = free_port()
        self.web_ports = [port]
        argv = [PYTHON, "-m", "bench.floor", "serve", "--redis", redis_server.url, "--port", str(port)]
        self._add("web", [*argv, "--symbols", str(len(self.symbols))], self.env(), REPO).start()
        wait_for(lambda: port_open(port), 30, "the floor server")
        self._start_producer(rate)
        self._wait_producer()

    def _start_producer(self, rate: float) -> None:
        assert self.redis is not None
        argv = [PYTHON, "-m", "bench.floor", "produce", "--redis", self.redis.url, "--rate", str(rate)]
        old = self.processes.pop("producer", None)
        if old is not None:
            old.stop()
        self._add("producer", [*argv, "--symbols", str(len(self.symbols))], self.env(), REPO).start()
        self.rate = rate

    def set_rate(self, rate: float) -> None:
        if rate != self.rate:
            self._start_producer(rate)

    def sync_urls(self, symbol: str, web_procs: int = 1) -> list[str]:
        return []
