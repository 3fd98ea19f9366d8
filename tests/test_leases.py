"""Liveness (docs/contract.md §3): the lease a process takes when it runs an agent.

Children run with short leases (STATEHOUSE_LEASE_SECONDS); every wait polls with a
deadline, and the assertion is on what the database says, never on a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from statehouse_agents.models import Agent, Commit

from statehouse import Statehouse
from tests.factories import wait_until

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 1.0


def agent(agent_id: str = "a1") -> Agent:
    return Agent.objects.get(agent_id=agent_id)


@pytest.fixture
def spawn(subprocess_env: dict[str, str]) -> Iterator:  # type: ignore[type-arg]
    """Start a Python snippet with a short lease; killed at the end of the test."""
    started: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str, lease: float = LEASE_SECONDS) -> subprocess.Popen[str]:
        env = {**subprocess_env, "STATEHOUSE_LEASE_SECONDS": str(lease)}
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def held_by(pid: int, agent_id: str = "a1") -> bool:
    found = Agent.objects.filter(agent_id=agent_id, lease_pid=pid).annotate_status()
    return found.filter(status_value="running").exists()


HOLD = """
import sys, time
from statehouse import Statehouse
client = Statehouse()
client.start("a1", {"task": "hold"})
with client.begin_transaction() as tx:
    tx.write("a1", "step:0", {"status": "pending"})
time.sleep(float(sys.argv[1]))
with client.begin_transaction() as tx:
    tx.write("a1", "step:0", {"status": "done"})
print("finished")
"""


def test_writing_task_step_or_answer_takes_the_lease_other_keys_do_not(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "notes", {"n": 1})
    assert (agent().lease_owner, sh.status("a1")) == ("", "idle")

    sh.start("a1", {"task": "t"})

    a = agent()
    assert (a.lease_host, a.lease_pid) == (socket.gethostname(), os.getpid())
    assert a.lease_expires_at > timezone.now()
    assert sh.status("a1") == "running"
    for key in ("step:3", "step/4"):
        with Statehouse() as other, other.begin_transaction() as tx:
            tx.write("b-" + key[-1], key, {"status": "pending"})
        assert agent("b-" + key[-1]).lease_owner == ""  # released by close()


def test_second_process_writing_the_agents_keys_is_refused(
    sh: Statehouse,
    run_python,  # type: ignore[no-untyped-def]
) -> None:
    sh.start("a1", {"task": "t"})
    expires = agent().lease_expires_at
    commits = Commit.objects.count()

    result = run_python(
        """
        from statehouse import Statehouse, LeaseHeldError, StatehouseError
        client = Statehouse()
        for key in ("task", "step:0", "step/1", "answer"):
            try:
                with client.begin_transaction() as tx:
                    tx.write("a1", key, {"status": "done"})
                    tx.write("a1", "scratch", 1)
            except LeaseHeldError as exc:
                assert isinstance(exc, StatehouseError)
                print(key, "|", exc, "|", exc.host, exc.pid, exc.expires_at.isoformat())
        with client.begin_transaction() as tx:
            tx.write("a1", "notes", {"by": "the other process"})
        print("notes written")
        """
    )

    lines = result.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines[:-1]] == ["task", "step:0", "step/1", "answer"]
    for line in lines[:-1]:
        _key, message, details = line.split(" | ")
        assert f"held by {socket.gethostname()} pid {os.getpid()}" in message
        assert f"until {expires.isoformat()}" in message
        assert "nothing was written" in message
        assert details == f"{socket.gethostname()} {os.getpid()} {expires.isoformat()}"
    assert lines[-1] == "notes written"
    # Nothing of the refused transactions: one commit more (the notes), no scratch key.
    assert Commit.objects.count() == commits + 1
    assert sh.list_keys("a1") == ["notes", "task"]
    assert sh.get_state("a1", "task").version == 1
    assert sh.status("a1") == "running"


def test_sigkilled_process_leaves_its_agent_interrupted_within_one_lease(
    sh: Statehouse,
    spawn,  # type: ignore[no-untyped-def]
) -> None:
    child = spawn(HOLD, "60")
    wait_until(
        lambda: held_by(child.pid) and sh.get_state("a1", "step:0").exists,
        timeout=60,
        what="the child to hold a1 at step 0",
    )

    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    killed = time.monotonic()
    wait_until(lambda: sh.status("a1") == "interrupted", timeout=LEASE_SECONDS + 10, interval=0.02)
    elapsed = time.monotonic() - killed

    assert elapsed <= LEASE_SECONDS + 0.5, f"interrupted only {elapsed:.2f}s after the kill"
    assert sh.get_state("a1", "step:0").value == {"status": "pending"}
    # The agent is free: another process runs it on.
    with sh.step("a1", 0) as step:
        step.result = "resumed"
    assert (sh.status("a1"), agent().lease_pid) == ("running", os.getpid())


@pytest.mark.parametrize("ending", ["client.close()", "pass  # atexit releases"])
def test_clean_exit_releases_the_lease_at_once(
    sh: Statehouse,
    run_python,  # type: ignore[no-untyped-def]
    ending: str,
) -> None:
    run_python(
        f"""
        from statehouse import Statehouse
        client = Statehouse(lease_seconds=600)
        client.start("a1", {{"task": "t"}})
        {ending}
        """
    )

    a = agent()
    assert (a.lease_owner, a.lease_pid, a.lease_expires_at) == ("", None, None)
    assert sh.status("a1") == "interrupted"


def test_finishing_releases_the_lease(sh: Statehouse, spawn) -> None:  # type: ignore[no-untyped-def]
    child = spawn(
        """
        import time
        from statehouse import Statehouse
        client = Statehouse(lease_seconds=600)
        client.start("a1", {"task": "t"})
        client.finish("a1", {"answer": 42})
        print("finished", flush=True)
        time.sleep(60)
        """
    )
    wait_until(lambda: sh.status("a1") == "completed", timeout=60)

    assert child.poll() is None  # still alive, yet it holds nothing
    assert agent().lease_owner == ""
    sh.start("a1", {"task": "again"})  # another process may run the agent at once
    assert sh.status("a1") == "running"


def test_renewal_keeps_a_long_running_agent_running(
    sh: Statehouse,
    spawn,  # type: ignore[no-untyped-def]
) -> None:
    child = spawn(HOLD, str(4 * LEASE_SECONDS))
    wait_until(
        lambda: held_by(child.pid) and sh.get_state("a1", "step:0").exists,
        timeout=60,
        what="the child to hold a1 at step 0",
    )
    first_expiry = agent().lease_expires_at

    checks, latest_expiry = 0, first_expiry
    deadline = time.monotonic() + 60
    while child.poll() is None and time.monotonic() < deadline:
        # Read the holder first: the child releases its lease only after writing step:0
        # done, so while step:0 is still pending the child must hold the agent.
        held = held_by(child.pid)
        if sh.get_state("a1", "step:0").value == {"status": "pending"}:
            assert held, f"the lease lapsed while the child ran ({agent().lease_expires_at})"
            checks += 1
            latest_expiry = max(latest_expiry, agent().lease_expires_at or latest_expiry)
        time.sleep(LEASE_SECONDS / 4)
    out, err = child.communicate(timeout=10)

    assert (child.returncode, out) == (0, "finished\n"), err
    assert checks >= 12  # it stayed running over ~4 lease durations
    assert agent().lease_owner == ""  # exit released it
    assert sh.get_state("a1", "step:0").value == {"status": "done"}
    assert (latest_expiry - first_expiry).total_seconds() >= 2 * LEASE_SECONDS  # renewed


def test_a_zombie_that_outlived_its_lease_is_stopped_at_its_next_step(
    sh: Statehouse,
    spawn,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    go = tmp_path / "go"
    child = spawn(
        """
        import os, sys, time
        from statehouse import Statehouse, LeaseHeldError
        client = Statehouse()
        client.start("a1", {"task": "t"})
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.02)
        try:
            with client.begin_transaction() as tx:
                tx.write("a1", "step:0", {"status": "done", "by": "zombie"})
        except LeaseHeldError as exc:
            print("refused:", exc.pid)
        """,
        str(go),
    )
    wait_until(lambda: held_by(child.pid), timeout=60, what="the child to hold a1")
    os.kill(child.pid, signal.SIGSTOP)  # frozen: it stops renewing
    try:
        wait_until(lambda: sh.status("a1") == "interrupted", timeout=LEASE_SECONDS + 10)
        with sh.step("a1", 0) as step:  # a new process takes the agent over
            step.result = "new owner"
    finally:
        os.kill(child.pid, signal.SIGCONT)
    go.touch()
    out, err = child.communicate(timeout=60)

    assert out == f"refused: {os.getpid()}\n", err
    assert sh.get_state("a1", "step:0").value["result"] == "new owner"
    assert agent().lease_pid == os.getpid()


def _expire_lease(agent_id: str) -> None:
    """What a stalled process sees: its lease ran out while it was not renewing."""
    Agent.objects.filter(agent_id=agent_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_process_that_lost_its_lease_is_fenced_even_once_the_lease_is_free(
    sh: Statehouse,
) -> None:
    sh.start("a1", {"task": "t"})
    _expire_lease("a1")
    # Another copy takes the agent over, then lets it go.
    with Statehouse() as other, other.step("a1", 0, action="x") as step:
        step.result = 1
    assert agent().lease_owner == ""

    from statehouse import LeaseLostError

    commits = Commit.objects.count()
    with (
        pytest.raises(LeaseLostError, match="was taken over since this process held it"),
        sh.begin_transaction() as tx,
    ):
        tx.write("a1", "step:1", {"status": "pending"})
    assert Commit.objects.count() == commits
    assert sh.get_state("a1", "step:1").exists is False

    with sh.begin_transaction() as tx:  # keys that take no lease stay open to it
        tx.write("a1", "notes", {"seen": True})

    sh.release("a1")  # an explicit decision to run it here again starts afresh
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "pending"})
    assert agent().lease_owner == sh.owner.token


def test_a_resume_claim_fences_the_run_that_crashed(sh: Statehouse) -> None:
    from statehouse_agents.store import resume

    from statehouse import LeaseLostError

    sh.start("a1", {"task": "t"})
    _expire_lease("a1")
    sh.request_resume("a1")
    worker = resume.WorkerIdentity(name="w", host=socket.gethostname(), pid=os.getpid())
    claim = resume.claim_next(worker=worker, lease_seconds=30)
    assert claim is not None
    resume.settle(claim=claim, exit_code=1, error="boom", retry=False)
    assert agent().lease_owner == ""

    with pytest.raises(LeaseLostError):
        sh.start("a1", {"task": "t"})


def test_the_same_process_keeps_its_agent_after_its_own_lease_lapsed(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    _expire_lease("a1")  # nobody else took it: a pause, not a takeover
    with sh.step("a1", 0, action="x") as step:
        step.result = 1
    assert agent().lease_owner == sh.owner.token
    assert agent().steps_done == 1
