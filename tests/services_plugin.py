"""Pytest plugin loaded before Django's settings (``-p tests.services_plugin``).

Settings read ``REDIS_URL`` and ``DATABASE_URL`` at import time, and pytest-django
imports them before any conftest runs. This module points the suite at a throwaway
Redis on a free port (started by the ``redis_server`` fixture), keeps test state out of
``var/``, and with ``TICKER_TEST_DATABASE=postgres`` starts a throwaway PostgreSQL
(Debian's) for the whole run so the suite runs against it instead of SQLite.
"""

import atexit
import os
import tempfile

from ticker.embedded_redis import free_port

TEST_REDIS_PORT = free_port()
# The suite runs the development configuration (production refuses to start without a SECRET_KEY).
os.environ.setdefault("DEBUG", "1")
os.environ["REDIS_URL"] = f"redis://127.0.0.1:{TEST_REDIS_PORT}/0"
os.environ["TICKER_VAR_DIR"] = tempfile.mkdtemp(prefix="ticker-test-var-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(os.environ["TICKER_VAR_DIR"], "prometheus")
for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "CHANNEL_LAYER_REDIS_URLS"):
    os.environ.pop(name, None)

if os.environ.get("TICKER_TEST_DATABASE") == "postgres":
    from tests.postgres_server import PostgresServer

    _postgres = PostgresServer()
    _postgres.start()
    atexit.register(_postgres.stop)
    # pytest-django creates and drops its test_ticker database on this server.
    os.environ["DATABASE_URL"] = _postgres.url("ticker")
