"""Fixtures shared by the whole suite. The same tests run on SQLite and on PostgreSQL,
chosen by DATABASE_URL (unset: the embedded SQLite default)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statehouse import Statehouse

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow (a stress run or a long wait): pass --run-slow")
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
def sh(transactional_db: None, client_mode: str) -> Iterator[Statehouse]:
    """A client on the test database, embedded or remote (`client_mode`). Its writes
    really commit (transactional_db)."""
    client = Statehouse()
    assert client.mode == client_mode
    yield client
    client.close()


@pytest.fixture
def test_database_url(transactional_db: None) -> str:
    """A DATABASE_URL naming the test database, for subprocesses."""
    return database_url_of_test_db()


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
def lease_env(statehouse_knobs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Crash tests' settings: a 1 s lease, resumes due at once, two attempts; returns the
    environment for the children (tests/crashes.py)."""
    return statehouse_knobs(
        STATEHOUSE_LEASE_SECONDS=1,
        STATEHOUSE_RESUME_BACKOFF_SECONDS=0,
        STATEHOUSE_RESUME_MAX_ATTEMPTS=2,
    )


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


# --- the remote mode (docs/api.md) ---------------------------------------------------------
#
# The client contract tests run twice: against the embedded client, and against the remote
# client talking to a real server process. That server is gunicorn serving the product
# (statehouse_site.wsgi) on a free 127.0.0.1 port, on the test database, started once per
# session. Each remote test gets its own API token (the tables are emptied between
# tests); STATEHOUSE_URL and STATEHOUSE_TOKEN in the environment make every
# `Statehouse()` of the test, and of the children it starts, a remote client.

REMOTE_MODULES = {
    "test_client_reads",
    "test_client_transactions",
    "test_client_versions",
    "test_leases",
    "test_client_sdk",
    "test_client_async",
    "test_cli_sdk",
    "test_example_resume",
    "test_client_approvals",
    "test_langgraph_approvals",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "client_mode" in metafunc.fixturenames and module in REMOTE_MODULES:
        metafunc.parametrize("client_mode", ["embedded", "remote"], indirect=True)


def database_url_of_test_db() -> str:
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("STATEHOUSE_URL", "STATEHOUSE_TOKEN", "DJANGO_SETTINGS_MODULE")
    }
    env.update(DATABASE_URL=database_url, SECRET_KEY="test-only-not-a-secret", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def start_server(env: dict[str, str], *, workers: int = 2, threads: int = 4):  # type: ignore[no-untyped-def]
    """Start the web server serving the product on a free port; return (process, base
    URL). gunicorn, the default; `STATEHOUSE_TEST_WEB_SERVER=granian` runs the remote
    tests against granian instead, the product's other web server (docs/deploy.md, "The
    web server")."""
    from bench.remote_bench import serve

    server = os.environ.get("STATEHOUSE_TEST_WEB_SERVER", "gunicorn")
    return serve(env, workers=workers, threads=threads, server=server)


@pytest.fixture(scope="session")
def api_server(django_db_setup: None) -> Iterator[str]:
    """The base URL of a real server process on the test database."""
    process, url = start_server(server_env(database_url_of_test_db()))
    yield url
    stop_server(process)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop a server `start_server` (or bench's `serve`) started: gracefully, else killed."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_token(username: str = "agent", **options):  # type: ignore[no-untyped-def]
    """A user (made if needed) and an API token of theirs; return (token row, secret)."""
    from django.contrib.auth.models import User
    from statehouse_agents.store.tokens import create_token

    user, _created = User.objects.get_or_create(username=username)
    return create_token(user=user, **options)


@pytest.fixture
def api_token(transactional_db: None) -> str:
    """The secret of a read-write API token for every namespace."""
    return make_token()[1]


@pytest.fixture
def client_mode(request: pytest.FixtureRequest) -> str:
    """ "embedded", or "remote" in the modules of REMOTE_MODULES (both, parametrized)."""
    mode = getattr(request, "param", "embedded")
    if mode == "remote":
        url = request.getfixturevalue("api_server")
        token = request.getfixturevalue("api_token")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("STATEHOUSE_URL", url)
        monkeypatch.setenv("STATEHOUSE_TOKEN", token)
        env = request.getfixturevalue("subprocess_env")
        env.update(STATEHOUSE_URL=url, STATEHOUSE_TOKEN=token)
    return mode


# --- logged-in dashboard clients ----------------------------------------------------------


def _logged_in(user: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff(transactional_db: None) -> Any:
    """A dashboard client logged in as staff ("ops"): may act on agents."""
    from django.contrib.auth.models import User

    return _logged_in(User.objects.create_user("ops", password="x", is_staff=True))


@pytest.fixture
def viewer(transactional_db: None) -> Any:
    """A dashboard client logged in without staff rights ("viewer"): reads only."""
    from django.contrib.auth.models import User

    return _logged_in(User.objects.create_user("viewer", password="x"))


@pytest.fixture
def superuser(transactional_db: None) -> Any:
    """A dashboard client logged in as a superuser ("root"): the admin's every page."""
    from django.contrib.auth.models import User

    return _logged_in(User.objects.create_superuser("root", password="x"))
