"""docs/client.md, "Transaction size": large transactions commit whole on both databases;
the documented limit is enforced when an operation is staged."""

from __future__ import annotations

import uuid

import pytest
from statehouse_agents.models import Agent, Commit, Record, Step, Version

from statehouse import Statehouse, ValidationError

BIG = 100_000
AGENTS = 10


def stage_big(sh: Statehouse, round_: int) -> int | None:
    with sh.begin_transaction(timeout_ms=600_000) as tx:
        for i in range(BIG):
            agent = f"big-{i % AGENTS}"
            key = f"step:{i // AGENTS}" if i < 20 * AGENTS else f"k{i // AGENTS}"
            value = {"status": "done", "i": i} if key.startswith("step:") else {"i": i, "r": round_}
            tx.write(agent, key, value)
    return tx.commit_ts


def test_a_transaction_of_100000_operations_commits_whole_twice(sh: Statehouse) -> None:
    first = stage_big(sh, 1)
    second = stage_big(sh, 2)  # every key again: the commit reads 100,000 current versions

    assert first is not None and second is not None and second > first
    assert list(Commit.objects.order_by("pk").values_list("op_count", flat=True)) == [BIG, BIG]
    assert Version.objects.count() == 2 * BIG
    assert Record.objects.filter(version=2, commit_ts=second).count() == BIG
    last = sh.get_state(f"big-{(BIG - 1) % AGENTS}", f"k{(BIG - 1) // AGENTS}")
    assert (last.value, last.version, last.commit_ts) == ({"i": BIG - 1, "r": 2}, 2, second)
    assert len(sh.list_keys("big-3")) == BIG // AGENTS
    agent = Agent.objects.get(agent_id="big-0")
    assert (agent.steps_done, agent.last_step, agent.last_commit_ts) == (20, 19, second)
    assert Step.objects.filter(agent=agent, version=2).count() == 20
    assert [len(ev.operations) for ev in sh.replay("big-7")] == [BIG // AGENTS] * 2


def test_the_operation_limit_is_a_validation_error_at_staging(sh: Statehouse, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_MAX_TRANSACTION_OPERATIONS = 3
    tx = sh.begin_transaction()
    for key in ("a", "b", "c"):
        tx.write("a1", key, 1)
    tx.write("a1", "b", 2)  # the same key again replaces: still three operations
    with pytest.raises(ValidationError) as raised:
        tx.write("a1", "d", 1)
    assert "STATEHOUSE_MAX_TRANSACTION_OPERATIONS" in str(raised.value)
    assert "3 operations" in str(raised.value) and "'d'" in str(raised.value)
    with pytest.raises(ValidationError, match="STATEHOUSE_MAX_TRANSACTION_OPERATIONS"):
        tx.delete("a2", "x")
    assert tx.operations == [("a1", "a", "write"), ("a1", "c", "write"), ("a1", "b", "write")]
    assert Commit.objects.count() == 0  # nothing is written before commit
    tx.commit()
    assert sorted(sh.list_keys("a1")) == ["a", "b", "c"]
    assert sh.get_state("a1", "b").value == 2


def test_a_txn_id_sent_again_is_already_exists_and_applies_nothing(sh: Statehouse) -> None:
    from statehouse_agents.store.writes import StagedOp, commit

    from statehouse.errors import AlreadyExistsError

    txn_id = "e3e70682-c209-2cac-a29f-6fbed82c07cd"
    commit(namespace="default", ops=[StagedOp("a1", "k", '"one"')], txn_id=txn_id, durable=True)
    with pytest.raises(AlreadyExistsError, match=f"^transaction {txn_id} was already committed"):
        commit(namespace="default", ops=[StagedOp("a1", "k", '"two"')], txn_id=txn_id, durable=True)

    state = sh.get_state("a1", "k")
    assert (state.value, state.version) == ("one", 1)
    assert Commit.objects.count() == 1


def test_a_commit_without_a_txn_id_gets_one_in_time_order(sh: Statehouse) -> None:
    """What the store's own writes get (an operator's edit, a fork, an import with new
    ids): UUIDs of version 7, each sorting after the one before (docs/architecture.md,
    "Transaction ids")."""
    from statehouse_agents.store.writes import StagedOp, commit

    results = [
        commit(namespace="default", ops=[StagedOp("a1", "k", str(n))], durable=True)
        for n in range(10)
    ]
    ids = [result.txn_id for result in results]
    assert [
        str(txn_id) for txn_id in Commit.objects.order_by("pk").values_list("txn_id", flat=True)
    ] == ids
    assert {uuid.UUID(txn_id).version for txn_id in ids} == {7}
    assert sorted(ids) == ids
