"""Django settings for Ticker, read from the environment in this one module.

Development: ``make run`` leaves the settings it gave its processes in ``var/dev.env``,
read here for any name the environment does not set (``ticker/dev_env.py``), so every
command of the checkout sees the same. Without that file the settings are production's:
``DEBUG`` off and ``SECRET_KEY`` required; everything else has a safe default or fails
loudly on a bad value.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from ticker import dev_env
from ticker.env import env_bool, env_int, env_list, env_rate, env_str, redis_db_of, redis_url_with_db

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("TICKER_VAR_DIR", BASE_DIR / "var"))
# Development state (SQLite file, beat schedule, demo credentials) lives here, git-ignored.
VAR_DIR.mkdir(parents=True, exist_ok=True)
# `make run`'s settings for the rest of the checkout (manage.py, celery); the environment wins.
dev_env.load(VAR_DIR)

# Prometheus's multiprocess directory (PROMETHEUS_MULTIPROC_DIR, default VAR_DIR/prometheus)
# is chosen in ticker/metrics.py: only long-running processes write it, not manage.py commands.

# The embedded Redis of `make run` listens here when REDIS_URL is unset.
EMBEDDED_REDIS_PORT = int(os.environ.get("TICKER_EMBEDDED_REDIS_PORT", "6399"))


# Off unless asked for: `make run` and the test suite set DEBUG=1 themselves.
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-never-used-with-debug-off"  # noqa: S105 - DEBUG only
# Earlier keys, comma-separated, still accepted when checking signatures (sessions, reset
# links) so a rotation logs nobody out; drop one once sessions signed with it have expired.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # daphne first so `manage.py runserver` serves the ASGI application.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # The API's docs page and its swagger-ui files (served locally, never from a CDN).
    "ninja",
    "axes",
    "dashboard",
    "workers",
]

MIDDLEWARE = [
    # Probes first: a balancer's plain-HTTP, Host-less health check must not be redirected.
    "ticker.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a lockout raised during authentication into the 429 lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses locked-out credentials before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "ticker.urls"
ASGI_APPLICATION = "ticker.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.ticker_preferences",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file in development: wait for the
    # writer instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    # Transactions take the write lock when they begin: a read-then-write transaction in
    # one process and a writer in another (candle flush, history backfill) then wait for
    # each other instead of one failing at once with "database is locked".
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the finders so a clean clone needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a commitment only the domain's owner can make (SECURE_HSTS_PRELOAD=1).
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# Content-Security-Policy on every page: scripts and everything else from this site only
# (the front end has no inline script); inline styles stay allowed because the chart
# library positions its elements with style attributes. WebSockets to this site only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Login throttling (django-axes, every login path: ticker/auth.py) ---------------
# Three counters per failure (OWASP): the (username, address) pair with a low limit, the
# address with a higher one (password spraying), the username with a higher one still
# (guessing from many addresses); each against its own limit, counted atomically in the
# shared cache (ticker.auth.LayeredLockoutHandler). A success resets only its own pair.
AXES_HANDLER = "ticker.auth.LayeredLockoutHandler"
AXES_FAILURE_LIMIT = env_int("TICKER_LOGIN_FAILURE_LIMIT", 5, minimum=1)
# The pair last: counted (and its expiry set) after the username's, it never expires first.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address", ["username", "ip_address"]]
_address_limit = env_int("TICKER_LOGIN_ADDRESS_LIMIT", 20, minimum=1)
_username_limit = env_int("TICKER_LOGIN_USERNAME_LIMIT", 50, minimum=1)
# A pair limit below the username's keeps one address from locking a name everywhere: from
# one address alone the name's counter lives as long as the pair's (the same failures touch
# both, and a locked pair's attempts are not counted), so it never passes the pair limit.
if _address_limit < AXES_FAILURE_LIMIT or _username_limit <= AXES_FAILURE_LIMIT:
    raise ImproperlyConfigured(
        "TICKER_LOGIN_FAILURE_LIMIT must be at most TICKER_LOGIN_ADDRESS_LIMIT and below TICKER_LOGIN_USERNAME_LIMIT"
        f", got {AXES_FAILURE_LIMIT}, {_address_limit}, {_username_limit}"
    )
# Limit of each entry of AXES_LOCKOUT_PARAMETERS, by its names joined with "+".
LOGIN_FAILURE_LIMITS = {
    "username+ip_address": AXES_FAILURE_LIMIT,
    "ip_address": _address_limit,
    "username": _username_limit,
}
AXES_COOLOFF_TIME = env_int("TICKER_LOGIN_COOLOFF_SECONDS", 600, minimum=1) / 3600  # hours
# Attempts refused by a lockout are not counted: hammering a locked pair adds nothing to its
# address's or username's counter, and cannot stretch the cool-off.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_USERNAME_CALLABLE = "ticker.auth.normalized_username"
# REMOTE_ADDR only (ticker.server rewrites it from X-Forwarded-For for trusted proxies
# alone), IPv6 grouped by /64.
AXES_CLIENT_IP_CALLABLE = "ticker.auth.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# Addresses of the load balancers allowed to set X-Forwarded-For / -Proto (ticker.server).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
if TRUSTED_PROXIES:
    # Only behind a balancer: ticker.server removes the header from every other peer's requests.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Password-reset mail: SMTP with EMAIL_HOST (or TICKER_EMAIL_BACKEND=smtp: a local MTA), the
# log in development; with DEBUG off the log only when chosen (reset links there are takeovers).
EMAIL_HOST = env_str("EMAIL_HOST", "")
_email = env_str("TICKER_EMAIL_BACKEND", "smtp" if EMAIL_HOST else "console" if DEBUG else "")
if _email not in {"smtp", "console"}:
    _wanted = "set EMAIL_HOST (reset mail) or TICKER_EMAIL_BACKEND=console (links in the log) when DEBUG is off"
    raise ImproperlyConfigured(f"TICKER_EMAIL_BACKEND={_email!r}: use smtp or console" if _email else _wanted)
EMAIL_BACKEND = f"django.core.mail.backends.{_email}.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ticker@localhost")

# --- Redis: one server, separate databases per job ---------------------------------
REDIS_URL = env_str("REDIS_URL", f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0")
_redis_db = redis_db_of(REDIS_URL)
# Market state (quotes, seq/epoch, leases) shares the channel layer's database;
# the Celery broker gets the next one so a broker flush never touches market state.
MARKET_REDIS_URL = redis_url_with_db(REDIS_URL, _redis_db)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", redis_url_with_db(REDIS_URL, _redis_db + 1))

# redis-py 8's defaults (5 s socket timeout, bounded pool) crash idle subscribers:
# set every timeout explicitly (see PRODUCT.md, "Traps").
REDIS_CONNECTION_OPTIONS = {
    "socket_connect_timeout": 3,
    "socket_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 15,
    "retry_on_timeout": True,
}

# Django's cache (login throttling) on its own database too.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", redis_url_with_db(REDIS_URL, _redis_db + 2)),
        "KEY_PREFIX": "ticker",
        "OPTIONS": {"socket_connect_timeout": 3, "socket_timeout": 5},
    }
}

CHANNEL_LAYERS = {
    "default": {
        # The pub/sub layer never drops silently (the core layer discards past `capacity`):
        # one subscription per group per process, fanned out locally.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # One or more Redis servers: groups and channels are sharded over them by name.
            "hosts": [
                {"address": url, **REDIS_CONNECTION_OPTIONS}
                for url in env_list("CHANNEL_LAYER_REDIS_URLS", [REDIS_URL])
            ],
            "prefix": env_str("CHANNEL_LAYER_PREFIX", "ticker"),
        },
    }
}

# --- Celery -------------------------------------------------------------------------
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "flush-candles": {
        "task": "workers.tasks.flush_candles",
        "schedule": float(env_int("TICKER_CANDLE_FLUSH_SECONDS", 2, minimum=1)),
    },
    "producer-watchdog": {
        "task": "workers.tasks.producer_watchdog",
        "schedule": float(env_int("TICKER_WATCHDOG_SECONDS", 10, minimum=1)),
    },
    "prune-candles": {
        "task": "workers.tasks.prune_candles",
        "schedule": float(env_int("TICKER_PRUNE_SECONDS", 60, minimum=1)),
    },
    "prune-alerts": {
        "task": "workers.tasks.prune_alerts",
        "schedule": float(env_int("TICKER_PRUNE_SECONDS", 60, minimum=1)),
    },
}

# --- Ticker -------------------------------------------------------------------------
TICKER = {
    # The producer publishes one batch per window: at most 1000/WINDOW_MS frames/s per client.
    "WINDOW_MS": env_int("TICKER_WINDOW_MS", 100, minimum=10, maximum=1000),
    # Run the price producer inside Celery workers (off for a task-only worker).
    "PRODUCER_ENABLED": env_bool("TICKER_PRODUCER_ENABLED", True),
    # A producer owns a symbol for this long unless it renews the lease.
    "LEASE_MS": env_int("TICKER_LEASE_MS", 3000, minimum=500),
    # How often the producer re-reads the symbol catalog from the database.
    "CATALOG_REFRESH_MS": env_int("TICKER_CATALOG_REFRESH_MS", 1000, minimum=100),
    # Ticks kept per symbol in Redis for snapshots and resume.
    "RECENT_TICKS": env_int("TICKER_RECENT_TICKS", 1200, minimum=10),
    # Simulated seconds per wall-clock second, so annual volatilities move prices visibly.
    "TIME_SCALE": float(env_int("TICKER_TIME_SCALE", 120, minimum=1)),
    # History generated for a symbol with none (first start, symbol added): this many hours
    # of candles from its own parameters, the same for the same seed (workers/backfill.py).
    "BACKFILL_HOURS": env_int("TICKER_BACKFILL_HOURS", 24, minimum=0, maximum=24 * 30),
    "BACKFILL_SEED": env_str("TICKER_BACKFILL_SEED", "ticker"),
    # How long stored candles of each interval are kept (None: for good); beat prunes the rest.
    "CANDLE_RETENTION_MS": {
        "5s": env_int("TICKER_KEEP_5S_HOURS", 6, minimum=1) * 3_600_000,
        "1m": env_int("TICKER_KEEP_1M_DAYS", 30, minimum=1) * 86_400_000,
        "5m": env_int("TICKER_KEEP_5M_DAYS", 365, minimum=1) * 86_400_000,
        "15m": None,
        "1h": None,
    },
    "HEARTBEAT_MS": env_int("TICKER_HEARTBEAT_MS", 5000, minimum=500),
    "MAX_FRAME_BYTES": env_int("TICKER_MAX_FRAME_BYTES", 64 * 1024, minimum=1024),
    "MAX_SYMBOLS_PER_CONNECTION": env_int("TICKER_MAX_SYMBOLS", 200, minimum=1),
    "MAX_CLIENT_FRAMES_PER_SECOND": env_int("TICKER_MAX_CLIENT_RATE", 20, minimum=1),
    # Symbols one connection may follow the order book of (each costs a snapshot and a frame a window).
    "MAX_DEPTH_SYMBOLS": env_int("TICKER_MAX_DEPTH_SYMBOLS", 10, minimum=1),
    # A client whose socket stays full this long is closed with 4408 (see ticker/slow_clients.py).
    "SLOW_CLIENT_SECONDS": env_int("TICKER_SLOW_CLIENT_SECONDS", 5, minimum=1),
    "MAX_OUTBOUND_BYTES": env_int("TICKER_MAX_OUTBOUND_BYTES", 4 * 1024 * 1024, minimum=64 * 1024),
    # SIGTERM: streams are closed with 1012 over DRAIN_SPREAD_MS (so their reconnects do not
    # all land on the other processes at once), and the process exits when they are gone or
    # after DRAIN_SECONDS (see ticker/drain.py); systemd's TimeoutStopSec must be longer.
    "DRAIN_SECONDS": env_int("TICKER_DRAIN_SECONDS", 10, minimum=1),
    "DRAIN_SPREAD_MS": env_int("TICKER_DRAIN_SPREAD_MS", 2000, minimum=0),
    # The web process's young-generation GC threshold (0: CPython's 700); see ticker/gc_tuning.py.
    "GC_THRESHOLD0": env_int("TICKER_GC_THRESHOLD0", 7000, minimum=0),
    # Streams one user may hold open, and open per minute, in one server process.
    "MAX_CONNECTIONS_PER_USER": env_int("TICKER_MAX_CONNECTIONS_PER_USER", 20, minimum=1),
    "MAX_CONNECTS_PER_MINUTE": env_int("TICKER_MAX_CONNECTS_PER_MINUTE", 120, minimum=1),
    # Stream handshakes per client address per minute, per process, that no user answers for
    # (anonymous, any bearer token, a session naming nobody); beyond, 4429 before any lookup.
    "MAX_ANONYMOUS_HANDSHAKES_PER_MINUTE": env_int("TICKER_MAX_ANONYMOUS_HANDSHAKES_PER_MINUTE", 60, minimum=1),
    # Price alerts a trader may have waiting to fire at once (the API refuses more).
    "MAX_ALERTS_PER_USER": env_int("TICKER_MAX_ALERTS_PER_USER", 100, minimum=1),
    # Alerts a trader may have stored in all, fired ones included; past it a new alert
    # replaces the oldest fired one already seen (dashboard/alert_services.py).
    "MAX_KEPT_ALERTS_PER_USER": env_int("TICKER_MAX_KEPT_ALERTS_PER_USER", 1000, minimum=1),
    # Fired alerts are deleted by beat this many days after they fired, seen or not.
    "ALERT_RETENTION_DAYS": env_int("TICKER_ALERT_RETENTION_DAYS", 30, minimum=1),
    # Stream handshakes must come from the site's own origin: this scheme, the Host the
    # browser reached (an allowed host) with its port. https wherever TLS is on.
    "ORIGIN_SCHEME": env_str("TICKER_ORIGIN_SCHEME", "http" if DEBUG else "https"),
    # Symbol reads (a snapshot, or a resume of at most MAX_RESUME_TICKS missed ticks) one
    # user's subscribes may cause per second in one web process, and the burst allowed.
    "READS_PER_SECOND": env_int("TICKER_READS_PER_SECOND", 50, minimum=1),
    "READ_BURST": env_int("TICKER_READ_BURST", 400, minimum=1),
    "MAX_RESUME_TICKS": env_int("TICKER_MAX_RESUME_TICKS", 250, minimum=1),
    # How often each web process re-checks its streams' users, sessions (expiry, auth hash)
    # and API tokens (revoked, expired): what no signal announces, or a close message that
    # was lost. Three queries per check per process.
    "ACCESS_CHECK_SECONDS": env_int("TICKER_ACCESS_CHECK_SECONDS", 5, minimum=1),
    # Other exact origins (scheme://host[:port]) allowed to open streams, e.g. a separate front end.
    "EXTRA_ORIGINS": env_list("TICKER_EXTRA_ORIGINS", []),
}

# Requests per API token (Authorization: Bearer) per period, e.g. "600/min"; over it: 429.
API_TOKEN_RATE = env_rate("TICKER_API_TOKEN_RATE", "600/min")
# The longest a personal API token lives, in days from its creation (ten years at most).
API_TOKEN_MAX_DAYS = env_int("TICKER_API_TOKEN_MAX_DAYS", 90, minimum=1, maximum=3650)
# The same per user for calls with the browser session (dashboard.api.auth.SessionThrottle).
API_SESSION_RATE = env_rate("TICKER_API_SESSION_RATE", "600/min")
# Price alerts one user may create per period, by session and tokens together.
ALERT_CREATE_RATE = env_rate("TICKER_ALERT_CREATE_RATE", "20/min")

# Bearer token for /metrics (staff sessions need none); unset means staff only.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Logging ------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use plain or json")
LOGGING = {
    "version": 1,
    # Keep Celery's and Daphne's own loggers alive (a False here silences task errors).
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
        "json": {"()": "ticker.log_format.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "daphne": {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL},
        # Housekeeping runs every few seconds: log its tasks only when they fail.
        **{
            name: {"level": "WARNING" if LOG_LEVEL == "INFO" else LOG_LEVEL}
            for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
        },
    },
}
