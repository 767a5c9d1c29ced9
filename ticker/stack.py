"""`make run`: the whole stack in one command, kept alive by a real process supervisor.

Starts the embedded Valkey (hardened: password, dangerous commands disabled) when
``REDIS_URL`` is unset, migrates, loads the demo data, then runs the Procfile's
processes (web, worker, beat) under supervisord:

* a process that crashes is restarted at once while the others keep running;
* one that keeps failing to start (exits within ``STARTSECS``) is retried with a
  growing delay (1 s, 2 s, 3 s...) and given up after ``STARTRETRIES`` tries, which is
  reported here and in supervisord's log;
* Ctrl-C (or SIGTERM) stops every process, then Valkey.

Development defaults are explicit here: ``DEBUG=1`` and a generated ``SECRET_KEY`` (kept
across runs, so sessions survive a restart). What the processes get is also written to
``var/dev.env`` (``ticker/dev_env.py``), so ``manage.py`` and ``celery`` run by hand in the
checkout reach the same database and Redis with nothing exported. Everything lives under
``var/`` (0700; files 0600): the database, Valkey's data and password, supervisord's socket.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ticker import dev_env
from ticker.embedded_redis import EmbeddedRedis

logger = logging.getLogger("ticker.stack")

BASE_DIR = Path(__file__).resolve().parent.parent
STARTSECS = 3
STARTRETRIES = 3
# A generated development key: 67 URL-safe characters (Django's deploy check asks for 50).
SECRET_KEY_BYTES = 50
# DEBUG values that mean on, as ticker.env.env_bool reads them.
TRUE_VALUES = {"1", "true", "yes", "on"}


def procfile(path: Path) -> dict[str, str]:
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def supervisor_config(commands: dict[str, str], var_dir: Path) -> str:
    """supervisord's configuration for the Procfile's processes (environment inherited)."""
    sections = [
        "[supervisord]",
        "nodaemon=true",
        f"logfile={var_dir / 'supervisord.log'}",
        f"pidfile={var_dir / 'supervisord.pid'}",
        f"childlogdir={var_dir}",
        "",
        "[unix_http_server]",
        f"file={var_dir / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{var_dir / 'supervisor.sock'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    ]
    for name, command in commands.items():
        sections += [
            "",
            f"[program:{name}]",
            # Through a shell, as the Procfile means it (${PORT:-8000}); exec keeps the pid.
            f"command=/bin/sh -c {shlex.quote('exec ' + command)}",
            f"directory={BASE_DIR}",
            "autorestart=true",
            f"startsecs={STARTSECS}",
            f"startretries={STARTRETRIES}",
            "stopsignal=TERM",
            "stopwaitsecs=15",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            # Every process's output on this terminal.
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
        ]
    return "\n".join(sections) + "\n"


def private_var_dir(var_dir: Path) -> None:
    """``var/`` readable by its owner only: it holds the sessions, the data and a password."""
    os.umask(0o077)
    var_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(var_dir, 0o700)
    for path in var_dir.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def development_secret_key(var_dir: Path) -> str:
    """The key of the previous run (its sessions stay valid), else a new one."""
    return dev_env.read(var_dir).get("SECRET_KEY") or secrets.token_urlsafe(SECRET_KEY_BYTES)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    var_dir = Path(env.get("TICKER_VAR_DIR", BASE_DIR / "var"))
    private_var_dir(var_dir)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Metrics files of a previous run describe dead processes: start from an empty directory.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(var_dir / "prometheus")))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    redis_server: EmbeddedRedis | None = None
    supervisor: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if not env.get("REDIS_URL"):
            port = int(env.get("TICKER_EMBEDDED_REDIS_PORT", "6399"))
            logger.info(
                "starting the embedded Valkey on 127.0.0.1:%d (data and password in %s)", port, var_dir / "redis"
            )
            redis_server = EmbeddedRedis(port, var_dir / "redis", hardened=True)
            redis_server.start()
            env["REDIS_URL"] = redis_server.url
        if not env.get("SECRET_KEY") and env["DEBUG"].strip().lower() in TRUE_VALUES:
            env["SECRET_KEY"] = development_secret_key(var_dir)
        # Before any process starts: each reads it for what its environment leaves unset.
        logger.info("development settings for manage.py beside this run: %s", dev_env.write(var_dir, env))
        manage = [sys.executable, str(BASE_DIR / "manage.py")]
        logger.info("applying database migrations")
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=BASE_DIR)  # noqa: S603
        logger.info("loading the demo market and accounts")
        subprocess.run([*manage, "load_demo"], env=env, check=True, cwd=BASE_DIR)  # noqa: S603
        config = var_dir / "supervisord.conf"
        # TICKER_PROCFILE: another Procfile (the tests' crash-loop check uses one).
        commands = procfile(Path(env.get("TICKER_PROCFILE", BASE_DIR / "Procfile")))
        config.write_text(supervisor_config(commands, var_dir))
        env.setdefault("PORT", "8000")
        logger.info(
            "starting web, worker and beat under supervisord; open http://127.0.0.1:%s/ (Ctrl-C stops everything)",
            env["PORT"],
        )
        # Its own session: a Ctrl-C reaches this launcher only, which stops supervisord,
        # which stops its processes in order; none of them races it by exiting first.
        supervisor = subprocess.Popen(  # noqa: S603
            [os.path.join(bin_dir, "supervisord"), "-c", str(config)], env=env, cwd=BASE_DIR, start_new_session=True
        )
        return watch(supervisor, config, env)
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.terminate()
            supervisor.wait(30)
        if redis_server is not None:
            redis_server.stop()
            logger.info("embedded Valkey stopped")


def watch(supervisor: subprocess.Popen[bytes], config: Path, env: dict[str, str]) -> int:
    """Wait for supervisord, reporting any process it gave up on (a crash loop)."""
    ctl = [os.path.join(str(Path(sys.executable).parent), "supervisorctl"), "-c", str(config), "status"]
    reported: set[str] = set()
    while supervisor.poll() is None:
        time.sleep(2)
        status = subprocess.run(ctl, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        for line in status.stdout.splitlines():
            name, _, rest = line.partition(" ")
            if "FATAL" in rest and name not in reported:
                reported.add(name)
                logger.error(
                    "%s keeps crashing at start: gave up after %d tries (see above; `make run` again once fixed)",
                    name,
                    STARTRETRIES,
                )
    return supervisor.returncode


if __name__ == "__main__":
    sys.exit(main())
