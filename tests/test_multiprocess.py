"""docs/contract.md §2 under real concurrency: several processes, one database."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from statehouse_agents.models import Agent, Commit

from statehouse import Statehouse

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 4
PER_PROCESS = 100

# Each child waits for the go file, so that all of them hit the database at once.
_PRELUDE = """
import os, sys, time
from statehouse import Statehouse, ConflictError

go = sys.argv[1]
client = Statehouse()
client.health()  # set Django up before the race starts
while not os.path.exists(go):
    time.sleep(0.005)
"""

INCREMENT = (
    _PRELUDE
    + """
conflicts = 0
for _ in range(int(sys.argv[2])):
    while True:
        state = client.get_state("counter-agent", "counter")
        try:
            with client.begin_transaction() as tx:
                tx.write(
                    agent_id="counter-agent",
                    key="counter",
                    value=state.value + 1,
                    expected_version=state.version,
                )
        except ConflictError:
            conflicts += 1
            continue
        break
client.close()
print(f"conflicts={conflicts}")
"""
)

BLIND = (
    _PRELUDE
    + """
for n in range(int(sys.argv[2])):
    with client.begin_transaction() as tx:
        tx.write(agent_id="shared-agent", key="log", value={"pid": os.getpid(), "n": n})
client.close()
print("ok")
"""
)

OWN_AGENT = (
    _PRELUDE
    + """
agent_id = sys.argv[2]
with client.begin_transaction() as tx:
    tx.write(agent_id=agent_id, key="task", value={"task": agent_id})
for n in range(int(sys.argv[3])):
    with client.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=f"step:{n}", value={"status": "done", "n": n})
        tx.write(agent_id=agent_id, key="progress", value=n)
        tx.write(agent_id=agent_id, key=f"note:{n:03d}", value={"by": agent_id, "n": n})
client.close()
print("ok")
"""
)


def run_children(
    code: str, argvs: list[list[str]], env: dict[str, str], tmp_path: Path, timeout: float = 90
) -> list[tuple[int, str, str]]:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(go), *argv],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    time.sleep(0.5)  # let them import and connect
    go.touch()
    deadline = time.monotonic() + timeout
    results = []
    try:
        for child in children:
            out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((child.returncode, out, err))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return results


def assert_all_succeeded(results: list[tuple[int, str, str]]) -> None:
    for returncode, out, err in results:
        assert "database is locked" not in err
        assert returncode == 0, f"child exited {returncode}\nstdout:\n{out}\nstderr:\n{err}"


def test_concurrent_compare_and_set_increments_lose_no_update(
    sh: Statehouse, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="counter-agent", key="counter", value=0, expected_version=0)

    results = run_children(
        INCREMENT, [[str(PER_PROCESS)] for _ in range(PROCESSES)], subprocess_env, tmp_path
    )
    assert_all_succeeded(results)

    total = PROCESSES * PER_PROCESS
    final = sh.get_state("counter-agent", "counter")
    assert (final.value, final.version, final.exists) == (total, total + 1, True)
    # Versions are never skipped nor reused: version v holds the value v - 1.
    seen = [sh.get_state_at_version("counter-agent", "counter", v) for v in range(1, total + 2)]
    assert [s.value for s in seen] == list(range(total + 1))
    assert [s.version for s in seen] == list(range(1, total + 2))
    stamps = [s.commit_ts for s in seen]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == total + 1
    ops = [(op.version, op.value) for ev in sh.replay("counter-agent") for op in ev.operations]
    assert ops == [(v, v - 1) for v in range(1, total + 2)]


def test_concurrent_blind_writes_to_one_key_all_commit_in_version_order(
    sh: Statehouse, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """Writers racing on one agent with no expectation: every write commits (on
    PostgreSQL one that lost the race for the agent's row is retried by the general path,
    not refused), versions are contiguous, and commit order is version order."""
    with sh.begin_transaction() as tx:
        tx.write(agent_id="shared-agent", key="log", value=None)
    results = run_children(
        BLIND, [[str(PER_PROCESS)] for _ in range(PROCESSES)], subprocess_env, tmp_path
    )
    assert_all_succeeded(results)

    total = PROCESSES * PER_PROCESS + 1
    seen = [sh.get_state_at_version("shared-agent", "log", v) for v in range(1, total + 1)]
    assert [s.version for s in seen] == list(range(1, total + 1))
    stamps = [s.commit_ts for s in seen]
    assert stamps == sorted(stamps) and len(set(stamps)) == total
    # Each writer's own writes keep their order.
    by_writer: dict[int, list[int]] = {}
    for state in seen[1:]:
        by_writer.setdefault(state.value["pid"], []).append(state.value["n"])
    assert sorted(by_writer.values()) == [list(range(PER_PROCESS))] * PROCESSES
    events = list(sh.replay("shared-agent"))
    assert [ev.commit_ts for ev in events] == stamps
    assert Agent.objects.get(agent_id="shared-agent").last_commit_ts == stamps[-1]


def test_processes_writing_different_agents_all_commit(
    sh: Statehouse, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    agents = [f"worker-{n}" for n in range(PROCESSES)]
    results = run_children(
        OWN_AGENT, [[a, str(PER_PROCESS)] for a in agents], subprocess_env, tmp_path
    )
    assert_all_succeeded(results)
    assert [out for _, out, _ in results] == ["ok\n"] * PROCESSES

    assert Commit.objects.count() == PROCESSES * (PER_PROCESS + 1)
    for agent_id in agents:
        keys = sh.list_keys(agent_id)
        assert len(keys) == 2 * PER_PROCESS + 2
        assert sh.list_keys(agent_id, prefix="note:") == [
            f"note:{n:03d}" for n in range(PER_PROCESS)
        ]
        assert sorted(sh.list_keys(agent_id, prefix="step:"), key=lambda k: int(k[5:])) == [
            f"step:{n}" for n in range(PER_PROCESS)
        ]
        progress = sh.get_state(agent_id, "progress")
        assert (progress.value, progress.version) == (PER_PROCESS - 1, PER_PROCESS)
        events = list(sh.replay(agent_id))
        assert len(events) == PER_PROCESS + 1
        assert [len(ev.operations) for ev in events] == [1] + [3] * PER_PROCESS
        assert {
            op.value["by"] for ev in events for op in ev.operations if op.key[:5] == "note:"
        } == {agent_id}
