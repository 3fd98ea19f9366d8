"""Django settings for Statehouse, read from the environment (see docs/configuration.md)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from statehouse_site.env import (
    env_bool,
    env_int,
    env_list,
    env_number,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STATEHOUSE_DATA_DIR", str(BASE_DIR / "data")))

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
        "DIRS": [BASE_DIR / "templates"],
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
    # and the busy timeout makes writers queue instead of failing.
    _synchronous = env_str("STATEHOUSE_SQLITE_SYNCHRONOUS", "FULL").upper()
    if _synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ImproperlyConfigured(
            f"STATEHOUSE_SQLITE_SYNCHRONOUS={_synchronous!r}: use OFF, NORMAL, FULL or EXTRA"
        )
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env_number("STATEHOUSE_SQLITE_TIMEOUT", 30.0, minimum=0.1),
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            f"PRAGMA synchronous={_synchronous};"
            "PRAGMA foreign_keys=ON;"
            "PRAGMA busy_timeout=30000"
        ),
    }
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
# Test databases: a file (SQLite) so that subprocesses of the tests can open it too; a
# suffix keeps concurrent test runs on one machine apart.
_test_suffix = env_str("STATEHOUSE_TEST_DB_SUFFIX")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _db["TEST"] = {"NAME": str(DATA_DIR / f"test-statehouse{_test_suffix}.sqlite3")}
    # SQLite creates files, not folders: make the data folder (a fresh clone has none) and
    # the database's own folder, so that `make run` and the tests start anywhere.
    for _folder in (DATA_DIR, Path(str(_db["NAME"])).parent):
        _folder.mkdir(parents=True, exist_ok=True)
else:
    _db["TEST"] = {"NAME": f"test_statehouse{_test_suffix}"}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Statehouse -----------------------------------------------------------------------
STATEHOUSE_MAX_VALUE_BYTES = env_int("STATEHOUSE_MAX_VALUE_BYTES", 1024 * 1024, minimum=1)
STATEHOUSE_LEASE_SECONDS = env_number("STATEHOUSE_LEASE_SECONDS", 30.0, minimum=0.5)
STATEHOUSE_WORKER_CONCURRENCY = env_int("STATEHOUSE_WORKER_CONCURRENCY", 4, minimum=1)
STATEHOUSE_RESUME_MAX_ATTEMPTS = env_int("STATEHOUSE_RESUME_MAX_ATTEMPTS", 3, minimum=1)
STATEHOUSE_RESUME_BACKOFF_SECONDS = env_number(
    "STATEHOUSE_RESUME_BACKOFF_SECONDS", 5.0, minimum=0.0
)
# "pattern=package.module:function" pairs; agent-id patterns are shell-style.
STATEHOUSE_RESUME_ENTRY_POINTS = env_list("STATEHOUSE_RESUME_ENTRY_POINTS")
# A run longer than this is killed and its attempt recorded as timed out;
# "package.module:function=seconds" pairs override it per entry point.
STATEHOUSE_RESUME_TIMEOUT_SECONDS = env_number(
    "STATEHOUSE_RESUME_TIMEOUT_SECONDS", 3600.0, minimum=0.1
)
STATEHOUSE_RESUME_TIMEOUTS = env_list("STATEHOUSE_RESUME_TIMEOUTS")

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
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# whitenoise serves static files in every mode. Production runs `collectstatic` and sets
# STATEHOUSE_STATIC_MANIFEST=true for hashed, compressed, cache-forever files.
STATIC_MANIFEST = env_bool("STATEHOUSE_STATIC_MANIFEST", False)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
if not STATIC_MANIFEST:  # files come from the finders; no collected folder is expected
    warnings.filterwarnings("ignore", message="No directory at", module="whitenoise.base")
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
            "formatter": "json" if env_str("LOG_FORMAT", "plain") == "json" else "plain",
        }
    },
    "root": {"handlers": ["stdout"], "level": env_str("LOG_LEVEL", "WARNING").upper()},
    "loggers": {
        "statehouse": {"level": env_str("STATEHOUSE_LOG_LEVEL", "INFO").upper()},
        "django.request": {"level": "ERROR"},
    },
}
