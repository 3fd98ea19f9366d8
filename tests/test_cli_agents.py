"""`statehouse agents`: the agent listing of the command line, and the schema check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from statehouse import Statehouse
from statehouse.cli import main
from tests.conftest import ROOT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


@pytest.fixture
def fleet(sh: Statehouse) -> None:
    """research-1 completed, research-2 interrupted (2 done, 1 pending), ops-1 failed."""
    sh.start("research-1", {"task": "survey vector databases"})
    sh.finish("research-1", {"summary": "done"})
    with Statehouse() as crashed:
        crashed.start("research-2", {"task": "compare <b>queues</b>"})
        for n in range(2):
            with crashed.step("research-2", n, action="search") as step:
                step.result = n
        with crashed.begin_transaction() as tx:
            tx.write("research-2", "step:2", {"status": "pending"})
    sh.start("ops-1", {"task": "rotate keys"}, namespace="ops")
    sh.fail("ops-1", "vault sealed", namespace="ops")


def test_agents_lists_every_namespace_with_status_steps_and_task(capsys, fleet) -> None:  # type: ignore[no-untyped-def]
    status, out, err = run(capsys, "agents")
    assert (status, err) == (0, [])
    rows = sorted(line.split("\t") for line in out)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("default/research-1", "completed", "0 done, 0 pending", "survey vector databases"),
        ("default/research-2", "interrupted", "2 done, 1 pending", "compare <b>queues</b>"),
        ("ops/ops-1", "failed", "0 done, 0 pending", "rotate keys"),
    ]


def test_agents_filters_by_status_namespace_and_pattern(capsys, fleet) -> None:  # type: ignore[no-untyped-def]
    assert [
        line.split("\t")[0] for line in run(capsys, "agents", "--status", "interrupted")[1]
    ] == ["default/research-2"]
    assert [line.split("\t")[0] for line in run(capsys, "agents", "--namespace", "ops")[1]] == [
        "ops/ops-1"
    ]
    listed = run(capsys, "agents", "--agent", "research-*")[1]
    assert sorted(line.split("\t")[0] for line in listed) == [
        "default/research-1",
        "default/research-2",
    ]
    assert run(capsys, "agents", "--agent", "nobody-*") == (0, [], [])


def test_agents_json_lines(capsys, fleet) -> None:  # type: ignore[no-untyped-def]
    status, out, _ = run(capsys, "agents", "--json", "--status", "interrupted")
    assert status == 0
    row = json.loads(out[0])
    assert row["agent_id"] == "research-2"
    assert (row["status"], row["steps_done"], row["steps_pending"], row["last_step"]) == (
        "interrupted",
        2,
        1,
        2,
    )
    assert row["owner"] == ""


def test_agents_rejects_an_unknown_status_in_one_line(capsys, fleet) -> None:  # type: ignore[no-untyped-def]
    status, out, err = run(capsys, "agents", "--status", "sleeping")
    assert (status, out) == (2, [])
    assert len(err) == 1
    assert "unknown status 'sleeping'" in err[0]


@pytest.mark.django_db(transaction=True)
def test_client_on_a_postgresql_database_without_schema_names_the_command() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite creates its schema on first use")
    name = f"statehouse_empty_{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    server = f"{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    admin_url = f"postgresql://{server}/{db['NAME']}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        result = subprocess.run(
            [sys.executable, "-c", "from statehouse import Statehouse; Statehouse().health()"],
            env={**env, "DATABASE_URL": url},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert "SchemaMissingError" in result.stderr
        assert "python manage.py migrate" in result.stderr
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
