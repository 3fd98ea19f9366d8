"""Settings come from the environment, with safe defaults and clear errors on nonsense."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PRODUCTION = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "SECRET_KEY": "x" * 60 + "-a-long-random-production-secret-for-tests",
    "ALLOWED_HOSTS": "statehouse.example.com",
    "STATEHOUSE_HTTPS": "true",
    "STATEHOUSE_STATIC_MANIFEST": "true",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DEBUG"))}
    clean.pop("SECRET_KEY", None)
    clean.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests only
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_in_production_mode() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_https_and_secret() -> None:
    env = {**PRODUCTION, "STATEHOUSE_HTTPS": "false", "SECRET_KEY": "short"}
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS
    assert "security.W009" in result.stderr + result.stdout  # weak SECRET_KEY


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "perhaps", "DEBUG='perhaps' is not a boolean"),
        ("STATEHOUSE_LEASE_SECONDS", "soon", "STATEHOUSE_LEASE_SECONDS='soon' is not a number"),
        ("STATEHOUSE_LEASE_SECONDS", "0", "must be at least 0.5"),
        ("STATEHOUSE_WORKER_CONCURRENCY", "2.5", "is not an integer"),
        ("STATEHOUSE_SQLITE_SYNCHRONOUS", "MAYBE", "use OFF, NORMAL, FULL or EXTRA"),
        ("STATEHOUSE_SQLITE_TIMEOUT", "forever", "STATEHOUSE_SQLITE_TIMEOUT='forever' is not a"),
        ("STATEHOUSE_SQLITE_TIMEOUT", "0", "STATEHOUSE_SQLITE_TIMEOUT='0' must be at least 0.1"),
        ("STATEHOUSE_WORKER_START", "frok", "STATEHOUSE_WORKER_START='frok': use fork or spawn"),
        ("STATEHOUSE_PG_PREPARE", "sometimes", "STATEHOUSE_PG_PREPARE='sometimes' is not a bool"),
        ("STATEHOUSE_MAX_VALUE_BYTES", "0", "STATEHOUSE_MAX_VALUE_BYTES='0' must be at least 1"),
        ("STATEHOUSE_MAX_VALUE_BYTES", "1MB", "STATEHOUSE_MAX_VALUE_BYTES='1MB' is not an int"),
        ("STATEHOUSE_RESUME_MAX_ATTEMPTS", "0", "STATEHOUSE_RESUME_MAX_ATTEMPTS='0' must be at"),
        ("STATEHOUSE_RESUME_BACKOFF_SECONDS", "-1", "STATEHOUSE_RESUME_BACKOFF_SECONDS='-1' must"),
        ("STATEHOUSE_STATIC_MANIFEST", "maybe", "STATEHOUSE_STATIC_MANIFEST='maybe' is not a"),
        ("STATEHOUSE_HTTPS", "2", "STATEHOUSE_HTTPS='2' is not a boolean"),
        ("STATEHOUSE_BEHIND_PROXY", "sure", "STATEHOUSE_BEHIND_PROXY='sure' is not a boolean"),
        ("STATEHOUSE_API_RATE_LIMIT", "lots", "STATEHOUSE_API_RATE_LIMIT='lots' is not an int"),
        ("STATEHOUSE_API_RATE_LIMIT", "0", "STATEHOUSE_API_RATE_LIMIT='0' must be at least 1"),
        ("STATEHOUSE_LOG_LEVEL", "loud", "STATEHOUSE_LOG_LEVEL='loud': use DEBUG, INFO,"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL='chatty': use DEBUG, INFO, WARNING"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml': use plain or json"),
        ("CONN_MAX_AGE", "-5", "CONN_MAX_AGE='-5' must be at least 0"),
        ("DATABASE_URL", "nonsense://x", "is not a database URL"),
    ],
)
def test_nonsense_in_the_environment_is_a_clear_error(name: str, value: str, message: str) -> None:
    result = manage("check", env={name: value, "STATEHOUSE_DATA_DIR": "/tmp/statehouse-settings"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_web_process_refuses_to_start_without_secret_key(database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    if database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    clean = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", "import statehouse_site.wsgi"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_client_needs_no_secret_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    code = "from statehouse import Statehouse; print(Statehouse().health())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_the_embedded_secret_key_is_made_once_and_kept_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from statehouse_site.env import embedded_secret_key

    first = embedded_secret_key(tmp_path)
    assert embedded_secret_key(tmp_path) == first
    assert len(first) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STATEHOUSE_LEASE_SECONDS", "30", "STATEHOUSE_LEASE_SECONDS='30' is not a number"),
        ("STATEHOUSE_WORKER_CONCURRENCY", 0, "STATEHOUSE_WORKER_CONCURRENCY=0 must be at least 1"),
        ("STATEHOUSE_MAX_VALUE_BYTES", 2.5, "STATEHOUSE_MAX_VALUE_BYTES=2.5 is not an integer"),
        ("STATEHOUSE_PG_PREPARE", "off", "STATEHOUSE_PG_PREPARE='off' is not a boolean"),
        ("STATEHOUSE_WORKER_START", "forkserver", "STATEHOUSE_WORKER_START='forkserver': use"),
        ("STATEHOUSE_RESUME_ENTRY_POINTS", ["research-*"], "entry 'research-*' is not 'pattern="),
        ("STATEHOUSE_RESUME_ENTRY_POINTS", "a=b:c", "STATEHOUSE_RESUME_ENTRY_POINTS='a=b:c' is"),
        ("STATEHOUSE_API_RATE_LIMIT", 0, "STATEHOUSE_API_RATE_LIMIT=0 must be at least 1"),
        ("STATEHOUSE_API_RATE_LIMIT", "120", "STATEHOUSE_API_RATE_LIMIT='120' is not an integer"),
        ("STATEHOUSE_BEHIND_PROXY", "yes", "STATEHOUSE_BEHIND_PROXY='yes' is not a boolean"),
    ],
)
def test_a_settings_module_with_nonsense_is_refused_by_the_accessor(
    settings, name: str, value: object, message: str
) -> None:  # type: ignore[no-untyped-def]
    """A deployment's own settings module (not the environment) gets the same errors."""
    from django.core.exceptions import ImproperlyConfigured
    from statehouse_agents.conf import get_settings

    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        get_settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_CONCURRENCY", "many", "WEB_CONCURRENCY='many' is not an integer"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY='0' must be at least 1"),
        ("STATEHOUSE_WEB_THREADS", "four", "STATEHOUSE_WEB_THREADS='four' is not an integer"),
    ],
)
def test_the_web_server_refuses_nonsense_in_its_settings(
    name: str, value: str, message: str
) -> None:
    """gunicorn reads its process and thread counts before Django starts (statehouse_site/
    gunicorn.py): nonsense stops it with the same error, not a ValueError traceback."""
    result = subprocess.run(
        [sys.executable, "-c", "import statehouse_site.gunicorn"],
        cwd=ROOT,
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_the_environment_reaches_the_accessor(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import django; django.setup(); from statehouse_agents.conf import get_settings; "
        "s = get_settings(); print(s.worker_start, s.pg_prepare, s.lease_seconds)"
    )
    env = {
        "STATEHOUSE_WORKER_START": "spawn",
        "STATEHOUSE_PG_PREPARE": "off",
        "STATEHOUSE_LEASE_SECONDS": "7.5",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = python(code, env=env)
    assert result.stdout.split() == ["spawn", "False", "7.5"], result.stderr


def test_sqlite_waits_for_the_lock_as_long_as_the_setting_says(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """STATEHOUSE_SQLITE_TIMEOUT is SQLite's busy timeout (no pragma overrides it)."""
    code = (
        "import django; django.setup(); from django.db import connection; "
        "print(connection.cursor().execute('PRAGMA busy_timeout').fetchone()[0])"
    )
    for seconds, millis in (("2.5", "2500"), (None, "30000")):
        env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
        if seconds:
            env["STATEHOUSE_SQLITE_TIMEOUT"] = seconds
        result = python(code, env=env)
        assert result.stdout.strip() == millis, result.stderr


def test_importing_the_settings_writes_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "not-yet"
    code = (
        "import django; django.setup(); from django.conf import settings; print(settings.DATA_DIR)"
    )
    result = python(code, env={"STATEHOUSE_DATA_DIR": str(data)})
    assert result.stdout.strip() == str(data), result.stderr
    assert not data.exists()
    # The first connection makes the folder of the SQLite file.
    code = "import django; django.setup(); from django.db import connection; connection.connect()"
    python(code, env={"STATEHOUSE_DATA_DIR": str(data)})
    assert (data / "statehouse.sqlite3").is_file()


@pytest.mark.parametrize("prepare", [False, True])
def test_pg_prepare_decides_whether_the_store_prepares_statements(sh, settings, prepare) -> None:  # type: ignore[no-untyped-def]
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite has no such setting")
    settings.STATEHOUSE_PG_PREPARE = prepare
    connection.close()  # a fresh session, with no statement prepared yet
    for n in range(3):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="prepare-check", key=f"k{n}", value=n)
        assert sh.get_state(agent_id="prepare-check", key=f"k{n}").value == n
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        (prepared,) = cursor.fetchone()
    assert (prepared > 0) is prepare


def python(code: str, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "STATEHOUSE_"))
    }
    clean["DJANGO_SETTINGS_MODULE"] = "statehouse_site.settings"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result
