"""Production settings: secure by default, configured by environment only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY", "DEBUG", "EMAIL_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, check=False
    )


def test_production_settings_pass_check_deploy() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY="a-long-random-production-key-" + "x" * 40,
        ALLOWED_HOSTS="ticker.example.com",
        EMAIL_HOST="smtp.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_debug_off_without_secret_key_refuses_to_start() -> None:
    result = manage("check", DEBUG="0", ALLOWED_HOSTS="ticker.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_is_off_unless_asked_for() -> None:
    result = manage("check", ALLOWED_HOSTS="ticker.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr, "no DEBUG in the environment means production"


def production_settings(*names: str, **env: str) -> list[str]:
    """The named settings as a production process (``DEBUG=0``, mail configured) sees them."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        f"print(*(repr(getattr(s, n, None)) for n in {names!r}), sep='\\n')"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECRET_KEY", "DEBUG", "EMAIL_"))}
    production = {"DEBUG": "0", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "ticker.example.com"}
    production.update(EMAIL_HOST="smtp.example.com", DJANGO_SETTINGS_MODULE="ticker.settings")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**base, **production, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_production_sends_hsts_for_a_year_and_redirects_to_https() -> None:
    seen = production_settings("SECURE_HSTS_SECONDS", "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE")
    assert seen == ["31536000", "True", "True"]


def test_django_believes_x_forwarded_proto_only_behind_trusted_proxies() -> None:
    # ticker.server strips the header from any other peer; without a proxy, nobody sets it.
    assert production_settings("SECURE_PROXY_SSL_HEADER") == ["None"]
    behind = production_settings("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXIES="10.0.0.2")
    assert behind == ["('HTTP_X_FORWARDED_PROTO', 'https')"]


def test_production_never_prints_reset_links_to_the_log_unless_told_to() -> None:
    # No mail server and no choice: refused at start, not a reset link in the log later.
    refused = manage("check", DEBUG="0", SECRET_KEY="k" * 60, ALLOWED_HOSTS="ticker.example.com")
    assert refused.returncode != 0
    assert "set EMAIL_HOST" in refused.stderr
    assert production_settings("EMAIL_BACKEND") == ["'django.core.mail.backends.smtp.EmailBackend'"]
    chosen = production_settings("EMAIL_BACKEND", EMAIL_HOST="", TICKER_EMAIL_BACKEND="console")
    assert chosen == ["'django.core.mail.backends.console.EmailBackend'"]
    typo = manage("check", DEBUG="1", TICKER_EMAIL_BACKEND="consol")
    assert typo.returncode != 0
    assert "TICKER_EMAIL_BACKEND='consol'" in typo.stderr


def test_pages_carry_a_content_security_policy(client) -> None:
    policy = client.get("/accounts/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy


def test_bad_boolean_fails_loudly() -> None:
    result = manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_celery_accepts_json_only() -> None:
    from ticker.celery import app

    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.task_serializer == "json"


def test_channel_layer_broker_and_cache_never_share_a_redis_database(settings) -> None:
    from ticker.env import redis_db_of

    layer = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    databases = {
        "layer and market state": redis_db_of(layer),
        "celery broker": redis_db_of(settings.CELERY_BROKER_URL),
        "cache": redis_db_of(settings.CACHES["default"]["LOCATION"]),
    }
    assert len(set(databases.values())) == 3, databases


def test_json_log_lines() -> None:
    import json
    import logging

    from ticker.log_format import JsonFormatter

    record = logging.LogRecord("ticker.test", logging.WARNING, __file__, 1, "closing %s", ("x",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "ticker.test"
    assert entry["message"] == "closing x"


def test_log_format_is_validated() -> None:
    result = manage("check", LOG_FORMAT="xml", DEBUG="1")
    assert result.returncode != 0
    assert "LOG_FORMAT='xml'" in result.stderr


def test_a_malformed_rate_fails_loudly() -> None:
    # Not a 500 at the first throttled request: refused at start.
    result = manage("check", DEBUG="1", TICKER_API_SESSION_RATE="600/fortnight")
    assert result.returncode != 0
    assert "TICKER_API_SESSION_RATE='600/fortnight' is not a rate" in result.stderr
    assert manage("check", DEBUG="1", TICKER_ALERT_CREATE_RATE="5/h").returncode == 0


def test_make_runs_dev_env_file_is_development_and_the_environment_still_wins(tmp_path: Path) -> None:
    from ticker import dev_env

    dev_env.write(tmp_path, {"DEBUG": "1", "SECRET_KEY": "d" * 60})
    code = "import django; django.setup(); from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY[:3])"
    shell = manage("shell", "-c", code, TICKER_VAR_DIR=str(tmp_path))
    assert shell.stdout.split()[-2:] == ["True", "ddd"], shell.stderr
    production = manage(
        "check", DEBUG="0", ALLOWED_HOSTS="ticker.example.com", EMAIL_HOST="mx", TICKER_VAR_DIR=str(tmp_path)
    )
    assert production.returncode == 0, "DEBUG=0 from the environment, SECRET_KEY from the file"
    (tmp_path / dev_env.FILE_NAME).chmod(0o644)
    refused = manage("check", TICKER_VAR_DIR=str(tmp_path))
    assert refused.returncode != 0
    assert "must belong to this user with mode 0600" in refused.stderr


def test_secret_key_fallbacks_come_from_the_environment() -> None:
    # docs/operations.md's rotation: the new key in SECRET_KEY, the old ones here, comma-separated.
    assert production_settings("SECRET_KEY_FALLBACKS") == ["[]"]
    old = ["o" * 60, "p" * 60]
    assert production_settings("SECRET_KEY_FALLBACKS", SECRET_KEY_FALLBACKS=f" {old[0]}, {old[1]},") == [repr(old)]


def test_a_weak_fallback_key_fails_the_deploy_check() -> None:
    # Django's own check (security.W025): each fallback as long and varied as a key must be.
    production = {"DEBUG": "0", "ALLOWED_HOSTS": "ticker.example.com", "EMAIL_HOST": "mx"}
    production["SECRET_KEY"] = "new-production-key-" + "0123456789" * 5
    old = "old-production-key-" + "abcdefghij" * 5
    strong = manage("check", "--deploy", "--fail-level", "WARNING", **production, SECRET_KEY_FALLBACKS=old)
    weak = manage("check", "--deploy", "--fail-level", "WARNING", **production, SECRET_KEY_FALLBACKS="short")
    assert strong.returncode == 0, strong.stdout + strong.stderr
    assert weak.returncode != 0
    assert "SECRET_KEY_FALLBACKS[0]" in weak.stdout + weak.stderr
