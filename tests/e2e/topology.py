"""The scale-out topology of docs/deploy.md, on 127.0.0.1, for the scale test.

HAProxy (Debian's) in front of two Daphne processes; two Celery workers and one beat;
the channel layer sharded over two Redis servers; the Celery broker on its own Redis
database; PostgreSQL (Debian's) through DATABASE_URL.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.e2e.stack import (
    ROOT,
    TRADER,
    HttpSession,
    Process,
    answers,
    process_env,
    procfile_commands,
    tail_logs,
    wait_for,
)
from tests.postgres_server import PostgresServer
from ticker.embedded_redis import EmbeddedRedis, free_port

HAPROXY_CONFIG = """\
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # WebSockets live as long as the tunnel timeout allows.
    timeout tunnel 1h
    # A connection refused by a dead server is retried on another one.
    option redispatch
    retries 3

frontend ticker
    bind 127.0.0.1:{lb_port}
    # Clients cannot forge their address: Daphne runs with --proxy-headers behind us.
    http-request set-header X-Forwarded-For %[src]
    default_backend daphne

backend daphne
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
    http-response set-header X-Served-By %s
{servers}
"""


@dataclass
class Topology:
    """Every process of the scaled-out deployment, started and stopped together."""

    workdir: Path
    web_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    lb_port: int = field(default_factory=free_port)
    redis_servers: list[EmbeddedRedis] = field(default_factory=list)
    postgres: PostgresServer | None = None
    processes: dict[str, Process] = field(default_factory=dict)
    database_url: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}"

    def env(self) -> dict[str, str]:
        market, shard = self.redis_servers
        return process_env(
            self.workdir,
            REDIS_URL=market.url,
            CHANNEL_LAYER_REDIS_URLS=f"{market.url},{shard.url}",
            DATABASE_URL=self.database_url,
            # HAProxy on this address sets X-Forwarded-For: Daphne believes it, and only it.
            TRUSTED_PROXIES="127.0.0.1",
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in ("redis-a", "redis-b"):
            server = EmbeddedRedis(free_port(), self.workdir / name, persist=False)
            server.start()
            self.redis_servers.append(server)
        self.postgres = PostgresServer()
        self.postgres.start()
        self.database_url = self.postgres.create_database("ticker")
        env = self.env()
        manage = [sys.executable, str(ROOT / "manage.py")]
        for command in (["migrate", "--noinput"], ["load_demo"]):
            subprocess.run([*manage, *command], env=env, cwd=ROOT, check=True, capture_output=True)
        commands = procfile_commands()
        for i, port in enumerate(self.web_ports, start=1):
            self._start(f"web{i}", self.web_command(), {**env, "PORT": str(port)})
        for name in ("w1", "w2"):
            self._start(name, f"{commands['worker']} --hostname={name}@%h", env)
        self._start("beat", commands["beat"], env)
        config = self.workdir / "haproxy.cfg"
        servers = "\n".join(f"    server web{i} 127.0.0.1:{p} check" for i, p in enumerate(self.web_ports, start=1))
        config.write_text(HAPROXY_CONFIG.format(lb_port=self.lb_port, servers=servers))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        process = Process("haproxy", [haproxy, "-f", str(config), "-db"], self.workdir / "haproxy.log")
        self.processes["haproxy"] = process
        process.start(env)
        for port in self.web_ports:
            wait_for(lambda p=port: answers(f"http://127.0.0.1:{p}/healthz"), 30, f"Daphne on {port}")
        wait_for(lambda: answers(f"{self.base_url}/healthz"), 30, "HAProxy")
        market = redis.Redis.from_url(self.redis_servers[0].url)
        wait_for(lambda: market.exists("ticker:state:AAPL"), 30, "a producer")

    @staticmethod
    def web_command() -> str:
        """The Procfile's web command, trusting the balancer's X-Forwarded-For (docs/deploy.md)."""
        return procfile_commands()["web"].replace("ticker.asgi:application", "--proxy-headers ticker.asgi:application")

    def restart_web(self, index: int) -> None:
        """Start a killed Daphne again and wait until the balancer sends it traffic."""
        port = self.web_ports[index - 1]
        self._start(f"web{index}", self.web_command(), {**self.env(), "PORT": str(port)})
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), 30, f"Daphne on {port}")

    def _start(self, name: str, command: str, env: dict[str, str]) -> None:
        process = Process(name, ["/bin/sh", "-c", f"exec {command}"], self.workdir / f"{name}.log")
        self.processes[name] = process
        process.start(env)

    def session(self, username: str = TRADER[0], password: str = TRADER[1]) -> HttpSession:
        return HttpSession.logged_in(self.base_url, username, password)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        for server in self.redis_servers:
            server.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def logs(self) -> str:
        return tail_logs(self.processes.values(), lines=40)
