"""Renewals under write contention (docs/operations.md): with writers holding the database
for most of every second and a 3 s lease, two workers' live claims are late, never
recovered as lost, no attempt is retried, and no outcome contradicts its error."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from statehouse_agents.models import Agent, ResumeAttempt, ResumeRequest

from tests.agents_for_tests import ENTRY, read_lines
from tests.factories import wait_until
from tests.test_worker import ROOT, make_interrupted, processes, queue, start_worker_process  # noqa: F401

pytestmark = pytest.mark.multiprocess

LEASE_SECONDS = 3
HOG_SECONDS = 40

# Holds the write lock (SQLite) or a table lock every writer needs (PostgreSQL) for most
# of each second, until its deadline.
HOG = """
import sys, time
url, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
if url.startswith("sqlite"):
    import sqlite3
    db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60, isolation_level=None)
    lock = "BEGIN IMMEDIATE"
else:
    import psycopg
    db = psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True)
    lock = "BEGIN; LOCK TABLE agents_resumerequest, agents_agent IN EXCLUSIVE MODE"
while time.monotonic() < deadline:
    for statement in lock.split("; "):
        db.execute(statement)
    time.sleep(0.9)
    db.execute("COMMIT")
    time.sleep(0.02)
"""


def test_live_claims_under_contention_are_late_not_lost(
    statehouse_knobs,  # type: ignore[no-untyped-def]
    test_database_url: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],  # noqa: F811
) -> None:
    env = statehouse_knobs(
        STATEHOUSE_LEASE_SECONDS=LEASE_SECONDS,
        STATEHOUSE_RESUME_BACKOFF_SECONDS=0,
        STATEHOUSE_RESUME_MAX_ATTEMPTS=3,
    )
    agent_ids = [f"busy-{n}" for n in range(4)]
    for agent_id in agent_ids:
        task = {
            "task": "exclusive",
            "log": str(tmp_path / "runs.log"),
            "lock_dir": str(tmp_path),
            "run_seconds": 2 * LEASE_SECONDS,  # outlives the lease: renewals must land
        }
        make_interrupted(agent_id, f"{ENTRY}:exclusive", task)
        queue(agent_id)
    connection.close()
    for _ in range(3):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", HOG, test_database_url, str(HOG_SECONDS)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    workers = [start_worker_process(env, "--concurrency", "2") for _ in range(2)]
    processes.extend(workers)
    started = time.monotonic()
    wait_until(
        lambda: (
            Agent.objects.filter(agent_id__in=agent_ids).with_status(Agent.Status.COMPLETED).count()
            == 4
        ),
        timeout=150,
        interval=0.5,
        what="every agent to complete",
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, out
    assert time.monotonic() - started < 170

    attempts = list(ResumeAttempt.objects.order_by("agent_id", "number"))
    assert [(a.agent.agent_id, a.number, a.outcome, a.error) for a in attempts] == [
        (agent_id, 1, ResumeAttempt.Outcome.SUCCEEDED, "") for agent_id in agent_ids
    ]
    assert not [line for line in read_lines(tmp_path / "runs.log") if "overlap" in line]
    assert set(ResumeRequest.objects.values_list("status", flat=True)) == {"succeeded"}
