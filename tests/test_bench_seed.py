"""bench/seed.py fills a PostgreSQL database with its raw INSERT ... SELECT statements,
which name every NOT NULL column themselves: this runs it small, so a new column the seed
does not know fails here and not in the 100,000-agent dashboard benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bench_url() -> Iterator[str]:
    if connection.vendor != "postgresql":
        pytest.skip("the seed is PostgreSQL's (generate_series)")
    db = settings.DATABASES["default"]
    name = f"bench_seed_check{settings.STATEHOUSE_TEST_DB_SUFFIX}"
    server = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_seed_fills_a_fresh_database_with_every_status(bench_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": bench_url}
    done = subprocess.run(
        [
            sys.executable,
            "bench/seed.py",
            "--database-url",
            bench_url,
            "--agents",
            "40",
            "--steps-per-agent",
            "3",
            "--no-big-agent",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["agents"], summary["steps"], summary["tasks"]) == (40, 120, 40)
    assert summary["statuses"] == {
        "completed": 24,
        "failed": 2,
        "interrupted": 8,
        "resuming": 2,
        "running": 4,
    }
