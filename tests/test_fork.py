"""A client survives fork() (docs/client.md, processes): each child gets its own database
connection and its own lease identity, and the parent goes on unharmed."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
from statehouse_agents.models import Agent

from statehouse import LeaseHeldError, Statehouse

pytestmark = pytest.mark.multiprocess

_inherited: dict[str, Statehouse] = {}  # the parent's client, as the children see it


def _in_child(n: int) -> dict[str, Any]:
    client = _inherited["client"]
    reads = [client.get_state("forked", "counter").value for _ in range(20)]
    try:
        with client.step("forked", 100 + n):
            pass
        second_copy = "wrote"
    except LeaseHeldError:
        second_copy = "refused"
    client.start(f"child-{n}", {"task": n})  # a lease of its own
    agent = Agent.objects.get(agent_id=f"child-{n}")
    client.finish(f"child-{n}", {"n": n})
    return {
        "reads": reads,
        "pid": os.getpid(),
        "token": client.owner.token,
        "lease": (agent.lease_owner, agent.lease_pid),
        "second_copy": second_copy,
    }


def test_a_fork_pool_of_4_children_reads_and_the_parent_commits_after(sh: Statehouse) -> None:
    sh.start("forked", {"task": "parent's agent"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="forked", key="counter", value=1)
    parent_token = sh.owner.token
    _inherited["client"] = sh
    try:
        with multiprocessing.get_context("fork").Pool(4) as pool:
            results = pool.map_async(_in_child, range(8)).get(timeout=120)
    finally:
        _inherited.clear()

    assert [r["reads"] for r in results] == [[1] * 20] * 8
    assert {r["second_copy"] for r in results} == {"refused"}  # the parent holds "forked"
    for result in results:
        assert result["pid"] != os.getpid()
        assert result["token"] != parent_token
        assert result["lease"] == (result["token"], result["pid"])
    assert len({r["token"] for r in results}) == len({r["pid"] for r in results})

    # The parent goes on: its next commit, its reads, its lease.
    with sh.begin_transaction() as tx:
        tx.write(agent_id="forked", key="counter", value=2)
    assert sh.get_state("forked", "counter").value == 2
    with sh.step("forked", 0) as step:
        step.result = "parent"
    agent = Agent.objects.get(agent_id="forked")
    assert (agent.lease_owner, agent.lease_pid) == (parent_token, os.getpid())
    assert agent.steps_done == 1
    assert sh.status("forked") == "running"


def test_one_child_then_the_parents_next_commit(sh: Statehouse) -> None:
    """With one child, the parent's next commit once failed: `prepared statement "_pg3_4"
    already exists` (the child had prepared it on the parent's connection)."""
    with sh.begin_transaction() as tx:
        tx.write(agent_id="solo", key="counter", value=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for n in range(5):
                assert sh.get_state("solo", "counter").value == 1
                with sh.begin_transaction() as tx:
                    tx.write(agent_id="solo", key=f"child-{n}", value=n)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for n in range(5):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="solo", key="counter", value=n + 2)
        assert sh.get_state("solo", "counter").value == n + 2
    assert sh.list_keys("solo") == [
        "child-0",
        "child-1",
        "child-2",
        "child-3",
        "child-4",
        "counter",
    ]
