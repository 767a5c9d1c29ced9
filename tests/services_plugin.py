"""Pytest plugin loaded before Django's settings (``-p tests.redis_plugin``).

Settings read ``REDIS_URL`` at import time, and pytest-django imports them before any
conftest runs; this module points the suite at a throwaway Redis on a free port
(started by the ``redis_server`` fixture) and keeps test state out of ``var/``.
"""

import os
import tempfile

from ticker.embedded_redis import free_port

TEST_REDIS_PORT = free_port()
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{TEST_REDIS_PORT}/0"
os.environ["TICKER_VAR_DIR"] = tempfile.mkdtemp(prefix="ticker-test-var-")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)
