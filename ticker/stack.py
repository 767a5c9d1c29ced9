"""`make run`: the whole stack in one command.

Starts the embedded Redis when ``REDIS_URL`` is unset, migrates, loads the demo data,
then runs the Procfile (web, worker, beat) under honcho. Ctrl-C stops all of it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ticker.embedded_redis import EmbeddedRedis
from ticker.settings import BASE_DIR, EMBEDDED_REDIS_PORT, VAR_DIR

logger = logging.getLogger("ticker.stack")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Metrics files of a previous run describe dead processes: start from an empty directory.
    metrics_dir = Path(env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus")))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    redis_server: EmbeddedRedis | None = None
    if not env.get("REDIS_URL"):
        redis_server = EmbeddedRedis(EMBEDDED_REDIS_PORT, VAR_DIR / "redis")
        redis_server.start()
        env["REDIS_URL"] = redis_server.url
    honcho: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: object) -> None:
        if honcho is not None and honcho.poll() is None:
            honcho.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        manage = [sys.executable, str(BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, cwd=BASE_DIR)  # noqa: S603
        subprocess.run([*manage, "load_demo"], env=env, check=True, cwd=BASE_DIR)  # noqa: S603
        port = env.get("PORT", "8000")
        logger.info("starting web, worker and beat; open http://127.0.0.1:%s/ (Ctrl-C stops everything)", port)
        honcho = subprocess.Popen(  # noqa: S603
            [os.path.join(bin_dir, "honcho"), "start", "-f", str(BASE_DIR / "Procfile"), "-p", port],
            env=env,
            cwd=BASE_DIR,
        )
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                # The terminal sent SIGINT to honcho too; wait for it to stop its children.
                continue
    finally:
        if honcho is not None and honcho.poll() is None:
            honcho.terminate()
            honcho.wait(15)
        if redis_server is not None:
            redis_server.stop()
            logger.info("embedded Redis stopped")


if __name__ == "__main__":
    sys.exit(main())
