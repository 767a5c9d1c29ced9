"""The scale-out topology of docs/deploy.md, on 127.0.0.1, for the scale test.

HAProxy (Debian's) in front of two Daphne processes; two Celery workers and one beat;
the channel layer sharded over two Valkey servers; the Celery broker on its own Redis
database; PostgreSQL (Debian's) through DATABASE_URL. HAProxy and Valkey run the shipped
``deploy/haproxy/haproxy.cfg`` and ``deploy/valkey/ticker.conf`` (``tests/e2e/deploy_files.py``:
only addresses, ports, paths and passwords substituted), so every URL carries a password.
The two Daphne processes are the file's first two servers (``web1``, ``web2``: one host's
ports 8001 and 8002); the other host's servers are dropped.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.e2e.deploy_files import ShippedValkey, haproxy_config
from tests.e2e.stack import (
    ROOT,
    TRADER,
    HttpSession,
    Process,
    answers,
    process_env,
    procfile,
    tail_logs,
    wait_for,
)
from tests.e2e.tls import self_signed
from tests.postgres_server import PostgresServer
from ticker.embedded_redis import free_port

FIRST_ADMIN = ("ops", "first-admin-pass-1")


@dataclass
class Topology:
    """Every process of the scaled-out deployment, started and stopped together."""

    workdir: Path
    web_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    lb_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    ssl_context: ssl.SSLContext | None = None
    redis_servers: list[ShippedValkey] = field(default_factory=list)
    postgres: PostgresServer | None = None
    processes: dict[str, Process] = field(default_factory=dict)
    database_url: str = ""
    # The tree every process and manage.py runs from: the repository, or a previous release's
    # (tests/e2e/test_upgrade.py); start_process runs one process from another tree.
    code_root: Path = ROOT

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.lb_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.lb_port}"

    def env(self) -> dict[str, str]:
        market, shard = self.redis_servers
        return process_env(
            self.workdir,
            REDIS_URL=market.url,
            CHANNEL_LAYER_REDIS_URLS=f"{market.url},{shard.url}",
            DATABASE_URL=self.database_url,
            # Production settings, as the guide has them.
            DEBUG="0",
            SECRET_KEY="topology-test-secret-key-" + "x" * 40,
            ALLOWED_HOSTS="127.0.0.1",
            # No mail server here: the log backend, chosen explicitly as production requires.
            TICKER_EMAIL_BACKEND="console",
            # HAProxy on this address sets X-Forwarded-For: Daphne believes it, and only it.
            TRUSTED_PROXIES="127.0.0.1",
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("redis-a", "redis-b"):
            server = ShippedValkey(self.workdir / name, password=secrets.token_urlsafe(24))
            server.start()
            self.redis_servers.append(server)
        self.postgres = PostgresServer()
        self.postgres.start()
        self.database_url = self.postgres.create_database("ticker")
        env = self.env()
        manage = [sys.executable, str(self.code_root / "manage.py")]
        # The guide's first deploy: migrate, the market, the first admin (then the demo accounts
        # the tests log in with).
        first_admin = {"DJANGO_SUPERUSER_USERNAME": FIRST_ADMIN[0], "DJANGO_SUPERUSER_PASSWORD": FIRST_ADMIN[1]}
        for command in (
            ["migrate", "--noinput"],
            ["load_demo", "--symbols-only"],
            ["createsuperuser", "--noinput", "--email", "ops@example.com"],
            ["load_demo"],
        ):
            subprocess.run(
                [*manage, *command], env={**env, **first_admin}, cwd=self.code_root, check=True, capture_output=True
            )
        for name in [f"web{i}" for i in range(1, len(self.web_ports) + 1)] + ["w1", "w2", "beat"]:
            self.start_process(name)
        config = self.workdir / "haproxy.cfg"
        pem, self.ssl_context = self_signed(self.workdir / "tls")
        config.write_text(haproxy_config(self.http_port, self.lb_port, pem, self.web_ports, self.workdir / "haproxy"))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        process = Process("haproxy", [haproxy, "-f", str(config), "-db"], self.workdir / "haproxy.log")
        self.processes["haproxy"] = process
        process.start(env)
        for port in self.web_ports:
            wait_for(lambda p=port: answers(f"http://127.0.0.1:{p}/healthz"), 30, f"Daphne on {port}")
        wait_for(lambda: answers(f"{self.base_url}/healthz", self.ssl_context), 30, "HAProxy")
        market = redis.Redis.from_url(self.redis_servers[0].url)

        # On a fresh market each symbol's history is generated before its series starts.
        def every_series_started() -> bool:
            held = [key.decode().split(":")[-1] for key in market.scan_iter("ticker:lease:*")]
            return len(held) >= 14 and all(market.exists(f"ticker:state:{s}") for s in held)

        wait_for(every_series_started, 120, "every demo symbol's history and series")

    @staticmethod
    def web_command() -> str:
        """The Procfile's web command (TRUSTED_PROXIES makes it read the balancer's headers)."""
        return procfile(ROOT)["web"]

    def start_process(self, name: str, root: Path | None = None) -> None:
        """Start ``name`` (``web1``, ``w1``, ``beat``...) as its Procfile entry of the release in
        ``root`` (default ``code_root``), from that tree (``python -m`` and Celery import from
        the working directory)."""
        root = root or self.code_root
        commands = procfile(root)
        env = self.env()
        if name.startswith("web"):
            command = commands["web"]
            env["PORT"] = str(self.web_ports[int(name.removeprefix("web")) - 1])
        elif name == "beat":
            command = commands["beat"]
        else:
            command = f"{commands['worker']} --hostname={name}@%h"
        self._start(name, command, env, root)

    def restart_web(self, index: int) -> None:
        """Start a killed Daphne again and wait until the balancer sends it traffic."""
        port = self.web_ports[index - 1]
        self.start_process(f"web{index}")
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, f"Daphne on {port}")

    def _start(self, name: str, command: str, env: dict[str, str], root: Path = ROOT) -> None:
        argv = ["/bin/sh", "-c", f"cd {shlex.quote(str(root))} && exec {command}"]
        process = Process(name, argv, self.workdir / f"{name}.log")
        self.processes[name] = process
        process.start(env)

    def session(self, username: str = TRADER[0], password: str = TRADER[1]) -> HttpSession:
        return HttpSession.logged_in(self.base_url, username, password, self.ssl_context)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for server in self.redis_servers:
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def logs(self) -> str:
        return tail_logs(self.processes.values(), lines=40)
