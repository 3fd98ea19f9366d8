"""Faults in the middle of a commit (docs/contract.md §2: "a database outage is a StatehouseError,
never a half-applied transaction").

PostgreSQL: the server side of a client's connection is killed (`pg_terminate_backend`)
while its commit, or a resume worker's claim, waits on a row lock that this test holds
from a second connection. That makes the moment of the kill deterministic: the commit has
already inserted its commit row, versions and new records when it blocks. The client runs
in a child process; it must see a StatehouseError, nothing of the transaction may survive,
and its next call on the same client must work.

SQLite: a writer process is SIGKILLed at a random moment while it commits two-agent
transactions in a loop; the next process finds every transaction whole or absent, an
intact database file, and can write.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from statehouse_agents.models import Agent, Commit, Record, ResumeAttempt, ResumeRequest

from statehouse import Statehouse

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.multiprocess


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


class Pg:
    """Two independent psycopg connections to the test database (autocommit): `locker`
    holds row locks in an open transaction; `monitor` watches pg_stat_activity (outside any
    transaction, as PostgreSQL keeps one snapshot of it per transaction)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.locker = psycopg.connect(url, autocommit=True, connect_timeout=10)
        self.monitor = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def close(self) -> None:
        self.locker.close()
        self.monitor.close()


@pytest.fixture
def pg(test_database_url: str):  # type: ignore[no-untyped-def]
    if not _is_postgres():
        pytest.skip(
            "pg_terminate_backend and row locks from a second connection need PostgreSQL; "
            "SQLite has no server process to kill (see the SIGKILL test below)"
        )
    conn = Pg(test_database_url)
    try:
        yield conn
    finally:
        conn.close()


def _spawn(code: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate(timeout=10)
        raise AssertionError(f"child timed out\nstdout:\n{out}\nstderr:\n{err}") from None
    assert child.returncode == 0, f"child exited {child.returncode}\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def _wait_for_file(path: Path, child: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if child.poll() is not None:
            out, err = child.communicate(timeout=10)
            raise AssertionError(f"child ended early ({child.returncode})\n{out}\n{err}")
        time.sleep(0.02)
    child.kill()
    raise AssertionError(f"child did not write {path} within {timeout}s")


def _terminate_when_blocked(pg: Pg, backend_pid: int, timeout: float = 30) -> str:
    """Wait until `backend_pid` waits on a lock, then kill it from the server side.

    Returns the statement it was blocked in.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = pg.monitor.execute(
            "SELECT wait_event_type, state, query FROM pg_stat_activity WHERE pid = %s",
            (backend_pid,),
        ).fetchone()
        if row is not None and row[0] == "Lock" and row[1] == "active":
            killed = pg.monitor.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
            assert killed.fetchone() == (True,)
            return str(row[2])
        time.sleep(0.02)
    raise AssertionError(f"backend {backend_pid} never blocked on a lock")


# The child: sets up a client, reports its backend pid, then waits for the go file, so the
# test can take its lock first. It prints one JSON line of findings.
_CHILD_PRELUDE = """
import json, os, sys, time
from pathlib import Path
from statehouse import Statehouse, StatehouseError

pid_file, go_file = Path(sys.argv[1]), Path(sys.argv[2])
client = Statehouse()
client.health()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT pg_backend_pid()")
    backend = cursor.fetchone()[0]
pid_file.write_text(str(backend))
deadline = time.monotonic() + 30
while not go_file.exists() and time.monotonic() < deadline:
    time.sleep(0.01)

def describe(exc):
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "is_statehouse_error": isinstance(exc, StatehouseError),
        "message": str(exc),
    }
"""

COMMIT_CHILD = (
    _CHILD_PRELUDE
    + """
found = {}
try:
    with client.begin_transaction() as tx:
        tx.write("fault-a", "counter", {"n": 2})   # existing record: an UPDATE
        tx.write("fault-a", "fresh", {"n": 2})     # new record: an INSERT
        tx.write("fault-b", "counter", {"n": 2})   # a second agent
        tx.delete("fault-a", "scratch")
    found["error"] = None
except Exception as exc:
    found["error"] = describe(exc)
# The same client, next call: must work.
state = client.get_state("fault-a", "counter")
found["after_read"] = [state.value, state.version]
with client.begin_transaction() as tx:
    tx.write("fault-a", "counter", {"n": 3}, expected_version=state.version)
found["after_commit_ts"] = tx.commit_ts
client.close()
print(json.dumps(found))
"""
)


def _seed_commit_fixture(sh: Statehouse) -> list[tuple[str, str, Any, int, bool]]:
    with sh.begin_transaction() as tx:
        tx.write("fault-a", "counter", {"n": 1})
        tx.write("fault-a", "scratch", "temp")
        tx.write("fault-b", "counter", {"n": 1})
    return _snapshot(sh)


def _snapshot(sh: Statehouse) -> list[tuple[str, str, Any, int, bool]]:
    return [
        (agent, key, s.value, s.version, s.exists)
        for agent in ("fault-a", "fault-b")
        for key in ("counter", "fresh", "scratch")
        for s in [sh.get_state(agent, key)]
    ]


def _replay(sh: Statehouse, agent: str) -> list[tuple[int, list[tuple[str, Any, int]]]]:
    return [
        (e.commit_ts, [(op.key, op.value, op.version) for op in e.operations])
        for e in sh.replay(agent)
    ]


@pytest.mark.parametrize("locked", ["agent row", "record row"])
def test_backend_killed_mid_commit_leaves_nothing_and_client_recovers(
    sh: Statehouse, pg: Pg, subprocess_env: dict[str, str], tmp_path: Path, locked: str
) -> None:
    before = _seed_commit_fixture(sh)
    replay_before = {agent: _replay(sh, agent) for agent in ("fault-a", "fault-b")}
    commits_before = Commit.objects.count()
    pid_file, go_file = tmp_path / "pid", tmp_path / "go"
    child = _spawn(COMMIT_CHILD, subprocess_env, str(pid_file), str(go_file))
    try:
        backend = int(_wait_for_file(pid_file, child))
        lock_sql = {
            # Blocks the commit's first statement (SELECT … FOR UPDATE of its agents).
            "agent row": (
                f"SELECT id FROM {Agent._meta.db_table} WHERE agent_id = %s FOR UPDATE",
                ("fault-b",),
            ),
            # Blocks the commit late: after its commit row, versions and new records.
            "record row": (
                f"SELECT r.id FROM {Record._meta.db_table} r JOIN {Agent._meta.db_table} a "
                "ON a.id = r.agent_id WHERE a.agent_id = %s AND r.key = %s FOR UPDATE OF r",
                ("fault-a", "counter"),
            ),
        }[locked]
        with pg.locker.transaction():
            assert pg.locker.execute(*lock_sql).fetchone() is not None
            go_file.write_text("go")
            blocked_in = _terminate_when_blocked(pg, backend)
        found = _finish(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)

    # Where the commit was when its connection died: locking its agents, or mid-way.
    table = Agent._meta.db_table if locked == "agent row" else Record._meta.db_table
    # (the record row: blocked writing the record, late in the commit: on PostgreSQL the
    # commit writes its rows in one statement, a WITH of inserts and updates)
    verbs = ("UPDATE", "INSERT", "WITH") if locked == "record row" else ("SELECT",)
    assert table in blocked_in and blocked_in.lstrip().startswith(verbs), blocked_in
    error = found["error"]
    assert error is not None, "the commit of a killed connection must fail"
    assert error["is_statehouse_error"], error
    assert error["module"].startswith("statehouse"), error
    # Absent, not half-applied: every record and every replay as before the commit …
    assert found["after_read"] == [{"n": 1}, 1]
    assert found["after_commit_ts"] is not None
    after = _snapshot(sh)
    assert [row for row in after if row[:2] != ("fault-a", "counter")] == [
        row for row in before if row[:2] != ("fault-a", "counter")
    ]
    # … except the child's next commit, which worked on the same client.
    counter = sh.get_state("fault-a", "counter")
    assert (counter.value, counter.version) == ({"n": 3}, 2)
    assert _replay(sh, "fault-b") == replay_before["fault-b"]
    replay_a = _replay(sh, "fault-a")
    assert replay_a[:-1] == replay_before["fault-a"]
    assert replay_a[-1][1] == [("counter", {"n": 3}, 2)]
    assert Commit.objects.count() == commits_before + 1
    assert not Record.objects.filter(key="fresh").exists()


CLAIM_CHILD = (
    _CHILD_PRELUDE
    + """
import os, socket
from statehouse_agents.store import resume
from statehouse_agents.store.resume import WorkerIdentity

worker = WorkerIdentity(name="fault-worker", host=socket.gethostname(), pid=os.getpid())
found = {}
try:
    claim = resume.claim_next(worker=worker, lease_seconds=60)
    found["error"] = None
    found["first"] = claim.agent_id if claim else None
except Exception as exc:
    found["error"] = describe(exc)
found["queued_after_error"] = [
    r.status for r in resume.ResumeRequest.objects.filter(agent__agent_id="fault-resume")
]
claim = resume.claim_next(worker=worker, lease_seconds=60)
found["second"] = claim.agent_id if claim else None
again = resume.claim_next(worker=worker, lease_seconds=60)
found["third"] = again.agent_id if again else None
print(json.dumps(found))
"""
)


def test_backend_killed_mid_claim_leaves_the_request_claimable_once(
    sh: Statehouse, pg: Pg, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    runner = Statehouse()
    runner.start("fault-resume", {"task": "resume me"})
    runner.close()  # releases its lease: the agent is interrupted
    assert sh.status("fault-resume") == "interrupted"
    request_pk = sh.request_resume("fault-resume", requested_by="test_faults")
    agent_pk = Agent.objects.get(agent_id="fault-resume").pk

    pid_file, go_file = tmp_path / "pid", tmp_path / "go"
    child = _spawn(CLAIM_CHILD, subprocess_env, str(pid_file), str(go_file))
    try:
        backend = int(_wait_for_file(pid_file, child))
        with pg.locker.transaction():
            pg.locker.execute(
                f"SELECT id FROM {Agent._meta.db_table} WHERE id = %s FOR UPDATE", (agent_pk,)
            )
            go_file.write_text("go")
            blocked_in = _terminate_when_blocked(pg, backend)
        found = _finish(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)

    assert Agent._meta.db_table in blocked_in and "FOR UPDATE" in blocked_in
    error = found["error"]
    assert error is not None and error["is_statehouse_error"], found
    assert error["module"].startswith("statehouse"), error
    assert found["queued_after_error"] == [ResumeRequest.Status.QUEUED]
    assert found["second"] == "fault-resume"  # claimable again, by the same process …
    assert found["third"] is None  # … and exactly once
    request = ResumeRequest.objects.get(pk=request_pk)
    assert request.status == ResumeRequest.Status.CLAIMED
    assert request.attempts == 1
    assert ResumeAttempt.objects.filter(request=request).count() == 1


def test_claim_skips_a_locked_request_and_claims_it_once_released(sh: Statehouse, pg: Pg) -> None:
    """A request row locked by another connection (another worker's claim in flight) is
    skipped, not waited for and not claimed twice; released, it is claimed exactly once."""
    import socket

    from statehouse_agents.store import resume
    from statehouse_agents.store.resume import WorkerIdentity

    runner = Statehouse()
    runner.start("fault-skip", {"task": "resume me"})
    runner.close()
    request_pk = sh.request_resume("fault-skip")
    worker = WorkerIdentity(name="fault-worker", host=socket.gethostname(), pid=os.getpid())
    with pg.locker.transaction():
        pg.locker.execute(
            f"SELECT id FROM {ResumeRequest._meta.db_table} WHERE id = %s FOR UPDATE",
            (request_pk,),
        )
        started = time.monotonic()
        assert resume.claim_next(worker=worker, lease_seconds=60) is None
        assert time.monotonic() - started < 5  # SKIP LOCKED: it did not wait
    claim = resume.claim_next(worker=worker, lease_seconds=60)
    assert claim is not None and claim.request_pk == request_pk
    assert resume.claim_next(worker=worker, lease_seconds=60) is None
    assert ResumeAttempt.objects.filter(request_id=request_pk).count() == 1


# --- SQLite: SIGKILL of a writer mid-commit ------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from statehouse import Statehouse

progress = Path(sys.argv[1])
client = Statehouse()
start = client.get_state("pair-x", "a").value or 0
n = start
while n < start + 100_000:
    n += 1
    with client.begin_transaction() as tx:
        tx.write("pair-x", "a", n)
        tx.write("pair-y", "b", n)
        tx.write("pair-x", f"slot:{n % 7}", {"n": n, "pad": "x" * (n % 500)})
        if n % 5 == 0:
            tx.delete("pair-y", f"gone:{n % 3}")
        else:
            tx.write("pair-y", f"gone:{n % 3}", [n])
    if n == start + 1:
        progress.write_text("started")
"""

CHECK = """
import json, sqlite3, sys
from statehouse import Statehouse
from django.db import connection

client = Statehouse()
client.health()
found = {}
with connection.cursor() as cursor:
    cursor.execute("PRAGMA integrity_check")
    found["integrity"] = [row[0] for row in cursor.fetchall()]
a, b = client.get_state("pair-x", "a"), client.get_state("pair-y", "b")
found["a"], found["b"] = [a.value, a.version], [b.value, b.version]
broken, pairs_x, pairs_y = [], [], []
for agent, keys in (("pair-x", {"a"}), ("pair-y", {"b"})):
    for event in client.replay(agent):
        written = {op.key: op.value for op in event.operations}
        if set(written) == {"after-check"}:
            continue  # an earlier check's own write
        if not keys <= written.keys() or len(event.operations) != 2:
            broken.append([agent, event.commit_ts, sorted(written)])
        elif agent == "pair-x":
            pairs_x.append(written["a"])
        else:
            pairs_y.append(written["b"])
found["broken"] = broken
# Both agents saw the same transactions, numbered without a gap.
found["pairs_match"] = pairs_x == pairs_y == list(range(1, len(pairs_x) + 1))
found["events"] = sum(1 for _ in client.replay("pair-x"))
with client.begin_transaction() as tx:   # a new process can write
    tx.write("pair-x", "after-check", {"ok": True})
found["wrote"] = tx.commit_ts
client.close()
print(json.dumps(found))
"""


def test_sigkill_mid_commit_leaves_sqlite_consistent(
    sh: Statehouse, subprocess_env: dict[str, str], run_python: Any, tmp_path: Path
) -> None:
    if _is_postgres():
        pytest.skip("SIGKILL of a SQLite writer: PostgreSQL is covered by the tests above")
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    last = 0
    for trial in range(5):
        progress = tmp_path / f"progress-{trial}"
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(progress)],
            env=subprocess_env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not progress.exists():
                assert child.poll() is None, f"writer died: {child.communicate(timeout=10)[1]}"
                assert time.monotonic() < deadline, "writer never started"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.8))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL, f"seed {seed}: writer ended by itself"

        found = json.loads(run_python(CHECK, timeout=120).stdout.strip().splitlines()[-1])
        context = f"seed {seed} trial {trial}: {found}"
        assert found["integrity"] == ["ok"], context
        assert found["a"][0] == found["b"][0] and found["a"][1] == found["b"][1], context
        assert found["a"][0] > last, context  # the writer got on, and kept what it committed
        assert found["broken"] == [] and found["pairs_match"], context
        # One event per committed pair (each earlier check added one more to pair-x).
        assert found["events"] == found["a"][1] + trial, context
        assert found["wrote"] is not None, context
        last = found["a"][0]


# --- the load test, briefly ------------------------------------------------------------------


@pytest.mark.slow
def test_short_load_test_passes_its_checks(
    transactional_db: None, subprocess_env: dict[str, str], test_database_url: str
) -> None:
    """bench/load_test.py for 10 s on the test database: agents, crashes, resumes, dashboard."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load_test.py"),
            "--seconds",
            "10",
            "--drain",
            "45",
            "--database-url",
            test_database_url,
        ],
        env=subprocess_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    assert "OK: no lost or duplicated step" in result.stdout, report
    assert "transactions" in result.stdout and "p95" in result.stdout, report
