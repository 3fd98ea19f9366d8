"""Fixtures shared by the whole suite. The same tests run on SQLite and on PostgreSQL,
chosen by DATABASE_URL (unset: the embedded SQLite default)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from statehouse import Statehouse

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow stress run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _secret_key_for_tests() -> None:
    """With DEBUG off and no SECRET_KEY in the environment there is none (settings.py)."""
    from django.conf import settings

    if not settings._wrapped.SECRET_KEY:
        settings.SECRET_KEY = "test-only-not-a-secret"


@pytest.fixture
def sh(transactional_db: None) -> Iterator[Statehouse]:
    """A client on the test database. Its writes really commit (transactional_db)."""
    client = Statehouse()
    yield client
    client.close()


@pytest.fixture
def test_database_url(transactional_db: None) -> str:
    """A DATABASE_URL naming the test database, for subprocesses."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


@pytest.fixture
def subprocess_env(test_database_url: str) -> dict[str, str]:
    """Environment for a child process that uses the test database."""
    env = dict(os.environ)
    env["DATABASE_URL"] = test_database_url
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@pytest.fixture
def statehouse_knobs(monkeypatch: pytest.MonkeyPatch, settings, subprocess_env, test_database_url):  # type: ignore[no-untyped-def]
    """Set STATEHOUSE_* settings for this process and, through the environment, for every
    child it starts (workers' runs included); return the environment for children."""

    def apply(**knobs: float) -> dict[str, str]:
        monkeypatch.setenv("DATABASE_URL", test_database_url)  # the worker's children inherit it
        for name, value in knobs.items():
            monkeypatch.setenv(name, str(value))
            setattr(settings, name, value)
        return {**subprocess_env, **{name: str(value) for name, value in knobs.items()}}

    return apply


@pytest.fixture
def run_python(subprocess_env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Run a Python snippet in a fresh interpreter on the test database."""

    def run(
        code: str, *, timeout: float = 120, env: dict[str, str] | None = None, check: bool = True
    ):  # type: ignore[no-untyped-def]
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env={**subprocess_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"child exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run
