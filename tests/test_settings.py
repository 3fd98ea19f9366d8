"""Settings come from the environment, with safe defaults and clear errors on nonsense."""

from __future__ import annotations

import os
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
