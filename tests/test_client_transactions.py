"""docs/contract.md §2, transactions: staged, applied at commit all or nothing, single use."""

from __future__ import annotations

import time
import uuid

import pytest
from statehouse_agents.models import Commit, Version

from statehouse import Statehouse, TransactionError


class Boom(Exception):
    pass


def history_of(sh: Statehouse, agent_id: str) -> list[tuple[str, object, int]]:
    return [(op.key, op.value, op.version) for ev in sh.replay(agent_id) for op in ev.operations]


def test_multi_key_commit_applies_every_write_and_delete(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="scratch", value={"tmp": True})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="task", value={"task": "t"})
        tx.write(agent_id="a1", key="step:0", value={"status": "pending"})
        tx.write(agent_id="a2", key="other", value=[1, 2, 3])
        tx.delete(agent_id="a1", key="scratch")

    assert sh.get_state("a1", "task").value == {"task": "t"}
    assert sh.get_state("a1", "step:0").value == {"status": "pending"}
    assert sh.get_state("a2", "other").value == [1, 2, 3]
    scratch = sh.get_state("a1", "scratch")
    assert (scratch.exists, scratch.value, scratch.version) == (False, None, 2)
    assert sh.list_keys("a1") == ["step:0", "task"]


def test_commit_returns_commit_ts_and_sets_it_on_the_transaction(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    commit_ts = tx.commit()
    assert isinstance(commit_ts, int)
    assert tx.commit_ts == commit_ts
    assert sh.get_state("a1", "k").commit_ts == commit_ts


def test_nothing_is_visible_before_commit(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    assert sh.get_state("a1", "k").exists is False
    assert sh.list_keys("a1") == []
    tx.commit()
    assert sh.get_state("a1", "k").value == 1


def test_exception_inside_with_aborts_and_reraises(sh: Statehouse) -> None:
    with pytest.raises(Boom), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="first", value=1)
        tx.write(agent_id="a2", key="second", value=2)
        raise Boom("half-way")

    assert sh.get_state("a1", "first").exists is False
    assert sh.get_state("a2", "second").exists is False
    assert sh.list_keys("a1") == []
    assert list(sh.replay("a1")) == []
    assert Commit.objects.count() == 0
    assert Version.objects.count() == 0
    with pytest.raises(TransactionError):
        tx.write(agent_id="a1", key="first", value=1)


def test_exception_inside_with_keeps_earlier_committed_state(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="old")
    with pytest.raises(Boom), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="new")
        tx.delete(agent_id="a1", key="k")
        raise Boom
    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.exists) == ("old", 1, True)


def test_abort_discards_staged_operations(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    tx.abort()
    assert sh.get_state("a1", "k").exists is False
    assert Commit.objects.count() == 0


def test_abort_is_idempotent(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    tx.abort()
    tx.abort()
    tx.abort()
    assert sh.get_state("a1", "k").exists is False


def test_abort_after_commit_leaves_the_commit_in_place(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    tx.commit()
    tx.abort()
    tx.abort()
    assert sh.get_state("a1", "k").value == 1


def test_abort_inside_with_block_then_clean_exit_commits_nothing(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=1)
        tx.abort()
    assert sh.get_state("a1", "k").exists is False
    assert Commit.objects.count() == 0


@pytest.mark.parametrize("ending", ["commit", "abort"])
@pytest.mark.parametrize(
    "use",
    [
        lambda tx: tx.write(agent_id="a1", key="late", value=1),
        lambda tx: tx.delete(agent_id="a1", key="late"),
        lambda tx: tx.commit(),
    ],
    ids=["write", "delete", "commit"],
)
def test_using_an_ended_transaction_raises_transaction_error(
    sh: Statehouse, ending: str, use
) -> None:  # type: ignore[no-untyped-def]
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value=1)
    getattr(tx, ending)()
    commits = Commit.objects.count()

    with pytest.raises(TransactionError):
        use(tx)

    assert Commit.objects.count() == commits
    assert sh.get_state("a1", "late").exists is False
    assert sh.get_state("a1", "k").exists is (ending == "commit")
    if ending == "commit":
        assert sh.get_state("a1", "k").version == 1


def test_commit_inside_with_block_then_clean_exit_commits_once(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=1)
        tx.commit()
    assert sh.get_state("a1", "k").version == 1
    assert len(list(sh.replay("a1"))) == 1


def test_commit_after_timeout_raises_and_applies_nothing(sh: Statehouse) -> None:
    tx = sh.begin_transaction(timeout_ms=20)
    tx.write(agent_id="a1", key="k", value=1)
    tx.write(agent_id="a2", key="k", value=2)
    time.sleep(0.08)

    with pytest.raises(TransactionError, match="timed out"):
        tx.commit()

    assert sh.get_state("a1", "k").exists is False
    assert sh.get_state("a2", "k").exists is False
    assert Commit.objects.count() == 0
    with pytest.raises(TransactionError):
        tx.commit()


def test_with_block_that_outlives_its_timeout_raises_and_applies_nothing(sh: Statehouse) -> None:
    with pytest.raises(TransactionError), sh.begin_transaction(timeout_ms=20) as tx:
        tx.write(agent_id="a1", key="k", value=1)
        time.sleep(0.08)
    assert sh.get_state("a1", "k").exists is False
    assert Commit.objects.count() == 0


def test_write_after_timeout_raises_transaction_error(sh: Statehouse) -> None:
    tx = sh.begin_transaction(timeout_ms=20)
    tx.write(agent_id="a1", key="k", value=1)
    time.sleep(0.08)
    with pytest.raises(TransactionError):
        tx.write(agent_id="a1", key="k2", value=2)
    with pytest.raises(TransactionError):
        tx.commit()
    assert sh.list_keys("a1") == []


def test_commit_within_timeout_succeeds(sh: Statehouse) -> None:
    with sh.begin_transaction(timeout_ms=60_000) as tx:
        tx.write(agent_id="a1", key="k", value=1)
    assert sh.get_state("a1", "k").value == 1


def test_later_write_to_same_key_replaces_earlier(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="first")
        tx.write(agent_id="a1", key="k", value="second")
        tx.write(agent_id="a1", key="k", value="third")

    state = sh.get_state("a1", "k")
    assert (state.value, state.version) == ("third", 1)
    assert history_of(sh, "a1") == [("k", "third", 1)]


def test_delete_after_write_in_same_transaction_leaves_tombstone_only(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="first")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="second")
        tx.delete(agent_id="a1", key="k")

    state = sh.get_state("a1", "k")
    assert (state.exists, state.version) == (False, 2)
    assert history_of(sh, "a1") == [("k", "first", 1), ("k", None, 2)]


def test_write_after_delete_in_same_transaction_wins(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="first")
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="k")
        tx.write(agent_id="a1", key="k", value="back")

    state = sh.get_state("a1", "k")
    assert (state.exists, state.value, state.version) == (True, "back", 2)


def test_same_key_in_different_agents_is_not_replaced(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=1)
        tx.write(agent_id="a2", key="k", value=2)
    assert sh.get_state("a1", "k").value == 1
    assert sh.get_state("a2", "k").value == 2


def test_empty_transaction_returns_none_and_records_no_event(sh: Statehouse) -> None:
    tx = sh.begin_transaction()
    assert tx.commit() is None
    with sh.begin_transaction():
        pass

    assert Commit.objects.count() == 0
    assert Version.objects.count() == 0


def test_empty_transaction_does_not_advance_commit_ts(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=1)
    with sh.begin_transaction():
        pass
    with sh.begin_transaction() as tx2:
        tx2.write(agent_id="a1", key="k", value=2)
    events = list(sh.replay("a1"))
    assert [ev.commit_ts for ev in events] == [tx.commit_ts, tx2.commit_ts]


def test_every_operation_of_a_transaction_shares_commit_ts_and_txn_id(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="x", value=1)
        tx.write(agent_id="a1", key="y", value=2)
        tx.delete(agent_id="a1", key="z")
        tx.write(agent_id="a2", key="x", value=3)

    assert tx.commit_ts is not None
    for agent_id, key in [("a1", "x"), ("a1", "y"), ("a1", "z"), ("a2", "x")]:
        assert sh.get_state(agent_id, key).commit_ts == tx.commit_ts
    (event_a1,) = list(sh.replay("a1"))
    (event_a2,) = list(sh.replay("a2"))
    assert event_a1.commit_ts == event_a2.commit_ts == tx.commit_ts
    assert event_a1.txn_id == event_a2.txn_id == tx.txn_id
    assert sorted((op.key, op.op) for op in event_a1.operations) == [
        ("x", "write"),
        ("y", "write"),
        ("z", "delete"),
    ]
    assert [(op.key, op.value) for op in event_a2.operations] == [("x", 3)]


def test_each_transaction_gets_its_own_txn_id_in_time_order(sh: Statehouse) -> None:
    ids = []
    for n in range(20):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key="k", value=n)
        ids.append(tx.txn_id)
    assert len(set(ids)) == 20
    assert [ev.txn_id for ev in sh.replay("a1")] == ids
    # UUIDs of version 7: each id sorts after the ones made before it, so the commit log's
    # txn_id index grows at its end (docs/architecture.md, "Transaction ids").
    assert {uuid.UUID(txn_id).version for txn_id in ids} == {7}
    assert sorted(ids) == ids


def test_commit_ts_grows_with_every_commit(sh: Statehouse) -> None:
    stamps = []
    for n in range(5):
        with sh.begin_transaction() as tx:
            tx.write(agent_id=f"agent-{n % 2}", key="k", value=n)
        stamps.append(tx.commit_ts)
    assert all(isinstance(ts, int) for ts in stamps)
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 5


def test_transaction_namespace_overrides_client_default(sh: Statehouse) -> None:
    with sh.begin_transaction(namespace="other") as tx:
        tx.write(agent_id="a1", key="k", value="there")
    assert tx.namespace == "other"
    assert sh.get_state("a1", "k").exists is False
    assert sh.get_state("a1", "k", namespace="other").value == "there"
