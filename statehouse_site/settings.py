"""Django settings for Statehouse, read from the environment (see docs/configuration.md)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from statehouse_site.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_number,
    env_str,
)

SITE_DIR = Path(__file__).resolve().parent
BASE_DIR = SITE_DIR.parent
# A checkout (manage.py beside the packages) keeps its data in <repo>/data; an installed
# package in the user's data folder. The wheel carries templates/ and static/ inside
# statehouse_site; a checkout has them at its top level (docs/packaging.md).
CHECKOUT = (BASE_DIR / "manage.py").is_file()
_USER_DATA = Path(env_str("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "statehouse"
DATA_DIR = Path(env_str("STATEHOUSE_DATA_DIR") or (BASE_DIR / "data" if CHECKOUT else _USER_DATA))


def _shipped(name: str) -> Path:
    installed = SITE_DIR / name
    return installed if installed.is_dir() else BASE_DIR / name


DEBUG = env_bool("DEBUG", False)
DATABASE_URL = env_str("DATABASE_URL")

# SECRET_KEY comes from the environment; with DEBUG on, a throw-away development key.
# With DEBUG off and none set, web processes refuse to start (wsgi.py): every web host of
# a deployment must sign with the same key. `manage.py serve` (the embedded product of
# `make run`) generates one into the data folder and hands it to its web server. Agent
# processes, commands and the client never sign anything, so they need none.
SECRET_KEY = env_str("SECRET_KEY") or ("django-insecure-development-only-key" if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "template_partials",
    "ninja",  # the API docs page's own static files (no CDN)
    "axes",
    "statehouse_agents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "statehouse_site.urls"
WSGI_APPLICATION = "statehouse_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [_shipped("templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Statehouse -----------------------------------------------------------------------
STATEHOUSE_MAX_VALUE_BYTES = env_int("STATEHOUSE_MAX_VALUE_BYTES", 1024 * 1024, minimum=1)
STATEHOUSE_MAX_TRANSACTION_OPERATIONS = env_int(
    "STATEHOUSE_MAX_TRANSACTION_OPERATIONS", 100_000, minimum=1
)
STATEHOUSE_LEASE_SECONDS = env_number("STATEHOUSE_LEASE_SECONDS", 30.0, minimum=0.5)
STATEHOUSE_WORKER_CONCURRENCY = env_int("STATEHOUSE_WORKER_CONCURRENCY", 4, minimum=1)
STATEHOUSE_RESUME_MAX_ATTEMPTS = env_int("STATEHOUSE_RESUME_MAX_ATTEMPTS", 3, minimum=1)
STATEHOUSE_RESUME_BACKOFF_SECONDS = env_number(
    "STATEHOUSE_RESUME_BACKOFF_SECONDS", 5.0, minimum=0.0
)
# The HTTP API (docs/api.md): requests a minute per token, and the largest request body
# (one request commits a whole transaction).
STATEHOUSE_API_RATE_LIMIT = env_int("STATEHOUSE_API_RATE_LIMIT", 120_000, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("STATEHOUSE_API_MAX_BODY_BYTES", 256 * 1024 * 1024, minimum=1)
# "pattern=package.module:function" pairs; agent-id patterns are shell-style.
STATEHOUSE_RESUME_ENTRY_POINTS = env_list("STATEHOUSE_RESUME_ENTRY_POINTS")
STATEHOUSE_WORKER_START = env_choice(
    "STATEHOUSE_WORKER_START", "fork" if hasattr(os, "fork") else "spawn", ("fork", "spawn")
)
STATEHOUSE_PG_PREPARE = env_bool("STATEHOUSE_PG_PREPARE", True)
STATEHOUSE_PG_COMMIT_FUNCTION = env_bool("STATEHOUSE_PG_COMMIT_FUNCTION", True)
STATEHOUSE_SQLITE_TIMEOUT = env_number("STATEHOUSE_SQLITE_TIMEOUT", 30.0, minimum=0.1)
STATEHOUSE_SQLITE_SYNCHRONOUS = env_choice(
    "STATEHOUSE_SQLITE_SYNCHRONOUS", "FULL", ("OFF", "NORMAL", "FULL", "EXTRA"), upper=True
)
# A run longer than this is killed and its attempt recorded as timed out;
# "package.module:function=seconds" pairs override it per entry point.
STATEHOUSE_RESUME_TIMEOUT_SECONDS = env_number(
    "STATEHOUSE_RESUME_TIMEOUT_SECONDS", 3600.0, minimum=0.1
)
STATEHOUSE_RESUME_TIMEOUTS = env_list("STATEHOUSE_RESUME_TIMEOUTS")
# Crash detection (docs/operations.md, "Crash detection"): lease holders take a liveness
# handle (a PostgreSQL advisory lock, or a file lock under STATEHOUSE_LIVENESS_DIR), which
# the resume worker checks every STATEHOUSE_DETECT_INTERVAL seconds; with
# STATEHOUSE_AUTO_RESUME a crash seen so queues a resume of agents with an entry point.
STATEHOUSE_LIVENESS_HANDLES = env_bool("STATEHOUSE_LIVENESS_HANDLES", True)
STATEHOUSE_LIVENESS_DIR = env_str("STATEHOUSE_LIVENESS_DIR") or str(DATA_DIR / "liveness")
STATEHOUSE_DETECT_INTERVAL = env_number("STATEHOUSE_DETECT_INTERVAL", 0.5, minimum=0.05)
STATEHOUSE_AUTO_RESUME = env_bool("STATEHOUSE_AUTO_RESUME", False)
# How long a step of a paused agent waits to be unpaused before AgentPausedError.
STATEHOUSE_PAUSE_TIMEOUT_SECONDS = env_number(
    "STATEHOUSE_PAUSE_TIMEOUT_SECONDS", 3600.0, minimum=0.0
)
# `/metrics` (docs/metrics.md): a Bearer token, and the networks allowed without one.
STATEHOUSE_METRICS_TOKEN = env_str("STATEHOUSE_METRICS_TOKEN")
STATEHOUSE_METRICS_NETWORKS = env_list("STATEHOUSE_METRICS_NETWORKS", ["127.0.0.0/8", "::1/128"])
# Retention (docs/retention.md): finished agents keep their full history this many days,
# then only each key's final value; they are dropped after the second number of days
# (unset: never). The resume worker applies the policy every interval (0: never).
STATEHOUSE_RETENTION_FINISHED_DAYS = (
    env_number("STATEHOUSE_RETENTION_FINISHED_DAYS", 0.0, minimum=0.01)
    if env_str("STATEHOUSE_RETENTION_FINISHED_DAYS")
    else None
)
STATEHOUSE_RETENTION_DROP_DAYS = (
    env_number("STATEHOUSE_RETENTION_DROP_DAYS", 0.0, minimum=0.01)
    if env_str("STATEHOUSE_RETENTION_DROP_DAYS")
    else None
)
STATEHOUSE_RETENTION_INTERVAL_SECONDS = env_number(
    "STATEHOUSE_RETENTION_INTERVAL_SECONDS", 3600.0, minimum=0.0
)
STATEHOUSE_TEST_DB_SUFFIX = env_str("STATEHOUSE_TEST_DB_SUFFIX")

# --- Database -------------------------------------------------------------------------
DEFAULT_SQLITE_PATH = DATA_DIR / "statehouse.sqlite3"
DATABASE_URL = DATABASE_URL or f"sqlite:///{DEFAULT_SQLITE_PATH}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("CONN_MAX_AGE", 0))
except Exception as exc:  # dj-database-url raises several types for a malformed URL
    raise ImproperlyConfigured(
        f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}"
    ) from exc

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes write one file: WAL lets readers run beside the writer, IMMEDIATE
    # takes the write lock at BEGIN (so no upgrade deadlock ends in "database is locked"),
    # and the busy timeout (`timeout`, STATEHOUSE_SQLITE_TIMEOUT) makes writers queue
    # instead of failing. Our backend makes the file's folder on first connect.
    _db["ENGINE"] = "statehouse_site.sqlite3"
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": STATEHOUSE_SQLITE_TIMEOUT,
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            f"PRAGMA synchronous={STATEHOUSE_SQLITE_SYNCHRONOUS};"
            "PRAGMA foreign_keys=ON"
        ),
    }
    # Test databases: a file, so that subprocesses of the tests can open it too; a suffix
    # keeps concurrent test runs on one machine apart.
    _db["TEST"] = {"NAME": str(DATA_DIR / f"test-statehouse{STATEHOUSE_TEST_DB_SUFFIX}.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
    _db["TEST"] = {"NAME": f"test_statehouse{STATEHOUSE_TEST_DB_SUFFIX}"}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login lockout (django-axes, its database handler, so every web host sees the same
# failures): STATEHOUSE_LOGIN_FAILURE_LIMIT failed logins for one username from one address
# lock that pair out for STATEHOUSE_LOGIN_COOLOFF_MINUTES, on the dashboard's login and the
# admin's alike (docs/configuration.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("STATEHOUSE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(
    minutes=env_number("STATEHOUSE_LOGIN_COOLOFF_MINUTES", 15.0, minimum=0.01)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# The client address: REMOTE_ADDR, or behind STATEHOUSE_BEHIND_PROXY the address the proxy
# appended to X-Forwarded-For (statehouse_site/client_ip.py).
AXES_CLIENT_IP_CALLABLE = "statehouse_site.client_ip.client_ip"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [_shipped("static")]
# whitenoise serves static files in every mode, by default straight from the package (the
# finders), so no collected folder exists or is expected. Production may run
# `collectstatic` with STATEHOUSE_STATIC_MANIFEST=true for hashed, compressed,
# cache-forever files, collected into STATEHOUSE_STATIC_ROOT.
STATIC_MANIFEST = env_bool("STATEHOUSE_STATIC_MANIFEST", False)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
STATIC_ROOT = (
    Path(env_str("STATEHOUSE_STATIC_ROOT") or (BASE_DIR if CHECKOUT else DATA_DIR) / "staticfiles")
    if STATIC_MANIFEST
    else None
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security ----------------------------------------------------------------------------
# Behind HTTPS (production), STATEHOUSE_HTTPS=true turns on secure cookies, the redirect
# to HTTPS and HSTS; `manage.py check --deploy` is then clean (docs/deploy.md).
HTTPS = env_bool("STATEHOUSE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("SECURE_HSTS_PRELOAD", True)
STATEHOUSE_BEHIND_PROXY = env_bool("STATEHOUSE_BEHIND_PROXY", HTTPS)
if STATEHOUSE_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Logs: one line per record on stdout; LOG_FORMAT=json for log pipelines ----------------
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "statehouse_site.logs.JsonFormatter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": env_choice("LOG_FORMAT", "plain", ("plain", "json")),
        }
    },
    "root": {
        "handlers": ["stdout"],
        "level": env_choice("LOG_LEVEL", "WARNING", _LEVELS, upper=True),
    },
    "loggers": {
        "statehouse": {"level": env_choice("STATEHOUSE_LOG_LEVEL", "INFO", _LEVELS, upper=True)},
        "django.request": {"level": "ERROR"},
    },
}
