"""docs/contract.md §2, reads: list_keys, scan_prefix, replay, health, version, life cycle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from statehouse import (
    ConflictError,
    Operation,
    ReplayEvent,
    Statehouse,
    StatehouseError,
    StateResult,
)


def write(sh: Statehouse, agent_id: str, key: str, value: Any, **kwargs: Any) -> int:
    with sh.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=key, value=value, **kwargs)
    assert tx.commit_ts is not None
    return tx.commit_ts


def write_many(sh: Statehouse, agent_id: str, items: dict[str, Any]) -> int:
    with sh.begin_transaction() as tx:
        for key, value in items.items():
            tx.write(agent_id=agent_id, key=key, value=value)
    assert tx.commit_ts is not None
    return tx.commit_ts


def flat(events: list[ReplayEvent]) -> list[tuple[int, str, Any, int, str]]:
    return [
        (ev.commit_ts, op.key, op.value, op.version, op.op) for ev in events for op in ev.operations
    ]


# --- list_keys --------------------------------------------------------------------------------


def test_list_keys_is_sorted(sh: Statehouse) -> None:
    keys = ["step:2", "b", "step:10", "C", "a", "task", "Z", "answer", "é", "日本"]
    write_many(sh, "a1", {k: 1 for k in keys})
    assert sh.list_keys("a1") == sorted(keys)
    assert sh.list_keys("a1") == [
        "C",
        "Z",
        "a",
        "answer",
        "b",
        "step:10",
        "step:2",
        "task",
        "é",
        "日本",
    ]


def test_list_keys_of_unknown_agent_is_empty(sh: Statehouse) -> None:
    assert sh.list_keys("nobody") == []
    assert sh.list_keys("nobody", prefix="step:") == []


def test_list_keys_is_per_agent(sh: Statehouse) -> None:
    write(sh, "a1", "mine", 1)
    write(sh, "a2", "yours", 1)
    assert sh.list_keys("a1") == ["mine"]
    assert sh.list_keys("a2") == ["yours"]


def test_list_keys_with_prefix(sh: Statehouse) -> None:
    write_many(sh, "a1", {"step:1": 1, "step:0": 0, "stepper": 2, "task": 3, "step/2": 4})
    assert sh.list_keys("a1", prefix="step:") == ["step:0", "step:1"]
    assert sh.list_keys("a1", prefix="step") == ["step/2", "step:0", "step:1", "stepper"]
    assert sh.list_keys("a1", prefix="task") == ["task"]
    assert sh.list_keys("a1", prefix="nothing") == []


def test_list_keys_with_empty_prefix_lists_everything(sh: Statehouse) -> None:
    write_many(sh, "a1", {"b": 1, "a": 2})
    assert sh.list_keys("a1", prefix="") == ["a", "b"]


def test_list_keys_prefix_is_case_sensitive(sh: Statehouse) -> None:
    write_many(sh, "a1", {"Step:1": 1, "step:1": 2, "STEP:1": 3})
    assert sh.list_keys("a1", prefix="step") == ["step:1"]
    assert sh.list_keys("a1", prefix="Step") == ["Step:1"]
    assert sh.list_keys("a1", prefix="STEP") == ["STEP:1"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a_", ["a_b"]),
        ("a%", ["a%b"]),
        ("50%", ["50%_off"]),
        ("%", ["%lead"]),
        ("_", ["_lead"]),
        ("a\\", ["a\\b"]),
        ("a[", ["a[b]"]),
    ],
)
def test_list_keys_prefix_wildcards_are_literal(
    sh: Statehouse, prefix: str, expected: list[str]
) -> None:
    keys = ["a_b", "axb", "a%b", "ab", "50%_off", "50xyoff", "500", "%lead", "_lead", "x"]
    keys += ["a\\b", "a[b]", "aab"]
    write_many(sh, "a1", {k: k for k in keys})
    assert sh.list_keys("a1", prefix=prefix) == expected
    assert [r.key for r in sh.scan_prefix("a1", prefix)] == expected


def test_list_keys_prefix_with_non_ascii_characters(sh: Statehouse) -> None:
    write_many(sh, "a1", {"日本:1": 1, "日本:2": 2, "日本": 0, "日:x": 3, "🦊fox": 4, "🦊": 5})
    assert sh.list_keys("a1", prefix="日本:") == ["日本:1", "日本:2"]
    assert sh.list_keys("a1", prefix="🦊f") == ["🦊fox"]
    assert sh.list_keys("a1", prefix="🦊") == ["🦊", "🦊fox"]


def test_list_keys_prefix_longer_than_every_key_matches_nothing(sh: Statehouse) -> None:
    write(sh, "a1", "step", 1)
    assert sh.list_keys("a1", prefix="step:0:extra") == []


# --- scan_prefix ---------------------------------------------------------------------------------


def test_scan_prefix_returns_state_results_in_key_order(sh: Statehouse) -> None:
    first = write_many(sh, "a1", {"step:2": {"n": 2}, "step:0": {"n": 0}, "task": "t"})
    second = write(sh, "a1", "step:1", {"n": 1})
    write(sh, "a1", "step:2", {"n": 22})
    third = write(sh, "a1", "step:2", {"n": 222})

    results = sh.scan_prefix("a1", "step:")
    assert all(isinstance(r, StateResult) for r in results)
    assert [(r.key, r.value, r.version, r.commit_ts, r.exists) for r in results] == [
        ("step:0", {"n": 0}, 1, first, True),
        ("step:1", {"n": 1}, 1, second, True),
        ("step:2", {"n": 222}, 3, third, True),
    ]
    assert {(r.agent_id, r.namespace) for r in results} == {("a1", "default")}


def test_scan_prefix_leaves_tombstones_out(sh: Statehouse) -> None:
    write_many(sh, "a1", {"p:1": 1, "p:2": 2})
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="p:1")
    assert [r.key for r in sh.scan_prefix("a1", "p:")] == ["p:2"]


def test_scan_prefix_of_unknown_agent_is_empty(sh: Statehouse) -> None:
    assert sh.scan_prefix("nobody", "x") == []


def test_scan_prefix_respects_namespace(sh: Statehouse) -> None:
    write(sh, "a1", "p:1", "default")
    with sh.begin_transaction(namespace="ns2") as tx:
        tx.write(agent_id="a1", key="p:2", value="ns2")
    assert [r.key for r in sh.scan_prefix("a1", "p:")] == ["p:1"]
    scanned = sh.scan_prefix("a1", "p:", namespace="ns2")
    assert [(r.key, r.value, r.namespace) for r in scanned] == [("p:2", "ns2", "ns2")]


# --- replay ------------------------------------------------------------------------------------


def test_replay_groups_a_transactions_operations_into_one_event(sh: Statehouse) -> None:
    write(sh, "a1", "gone", "x")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="task", value={"task": "t"})
        tx.write(agent_id="a1", key="step:0", value={"status": "pending"})
        tx.delete(agent_id="a1", key="gone")

    events = list(sh.replay("a1"))
    assert len(events) == 2
    event = events[1]
    assert isinstance(event, ReplayEvent)
    assert (event.txn_id, event.commit_ts, event.namespace, event.agent_id) == (
        tx.txn_id,
        tx.commit_ts,
        "default",
        "a1",
    )
    assert isinstance(event.committed_at, datetime)
    assert event.committed_at.tzinfo is not None
    assert all(isinstance(op, Operation) for op in event.operations)
    assert sorted((op.key, op.value, op.version, op.op) for op in event.operations) == [
        ("gone", None, 2, "delete"),
        ("step:0", {"status": "pending"}, 1, "write"),
        ("task", {"task": "t"}, 1, "write"),
    ]


def test_replay_orders_events_by_commit(sh: Statehouse) -> None:
    stamps = [write(sh, "a1", key, n) for n, key in enumerate(["z", "a", "m", "a"])]
    events = list(sh.replay("a1"))
    assert [ev.commit_ts for ev in events] == stamps
    assert flat(events) == [
        (stamps[0], "z", 0, 1, "write"),
        (stamps[1], "a", 1, 1, "write"),
        (stamps[2], "m", 2, 1, "write"),
        (stamps[3], "a", 3, 2, "write"),
    ]


def test_replay_excludes_other_agents(sh: Statehouse) -> None:
    mine = write(sh, "a1", "k", "mine")
    write(sh, "a2", "k", "theirs")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="shared", value=1)
        tx.write(agent_id="a2", key="shared", value=2)

    assert flat(list(sh.replay("a1"))) == [
        (mine, "k", "mine", 1, "write"),
        (tx.commit_ts, "shared", 1, 1, "write"),
    ]


def test_replay_excludes_other_namespaces(sh: Statehouse) -> None:
    here = write(sh, "a1", "k", "here")
    with sh.begin_transaction(namespace="elsewhere") as tx:
        tx.write(agent_id="a1", key="k", value="there")
    assert flat(list(sh.replay("a1"))) == [(here, "k", "here", 1, "write")]
    assert flat(list(sh.replay("a1", namespace="elsewhere"))) == [
        (tx.commit_ts, "k", "there", 1, "write")
    ]


def test_replay_excludes_aborted_and_conflicted_transactions(sh: Statehouse) -> None:
    first = write(sh, "a1", "k", "v1")
    aborted = sh.begin_transaction()
    aborted.write(agent_id="a1", key="k", value="aborted")
    aborted.abort()
    with pytest.raises(ValueError), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value="raised")
        raise ValueError
    with pytest.raises(ConflictError):
        write(sh, "a1", "k", "conflicted", expected_version=0)
    second = write(sh, "a1", "k", "v2")

    assert flat(list(sh.replay("a1"))) == [
        (first, "k", "v1", 1, "write"),
        (second, "k", "v2", 2, "write"),
    ]


def test_replay_start_ts_and_end_ts_are_both_inclusive(sh: Statehouse) -> None:
    t1, t2, t3 = (write(sh, "a1", "k", n) for n in range(3))

    def stamps(**bounds: int) -> list[int]:
        return [ev.commit_ts for ev in sh.replay("a1", **bounds)]

    assert stamps() == [t1, t2, t3]
    assert stamps(start_ts=t1, end_ts=t3) == [t1, t2, t3]  # as in the original SDK
    assert stamps(start_ts=t2) == [t2, t3]
    assert stamps(end_ts=t2) == [t1, t2]
    assert stamps(start_ts=t2, end_ts=t2) == [t2]
    assert stamps(start_ts=t3, end_ts=t2) == []
    assert stamps(start_ts=t3 + 1) == []
    assert stamps(end_ts=t1 - 1) == []


def test_replay_bounds_beyond_any_commit_ts(sh: Statehouse) -> None:
    t1 = write(sh, "a1", "k", 1)

    def stamps(**bounds: int) -> list[int]:
        return [ev.commit_ts for ev in sh.replay("a1", **bounds)]

    assert stamps(start_ts=-(2**70)) == [t1]
    assert stamps(start_ts=0, end_ts=2**63) == [t1]
    assert stamps(end_ts=2**80) == [t1]
    assert stamps(start_ts=2**63) == []
    assert stamps(start_ts=2**80, end_ts=2**81) == []
    assert stamps(end_ts=-1) == []
    assert stamps(end_ts=0) == []


def test_replay_of_unknown_agent_is_empty(sh: Statehouse) -> None:
    write(sh, "a1", "k", 1)
    assert list(sh.replay("nobody")) == []


def test_replay_is_a_lazy_iterator(sh: Statehouse, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    t1 = write(sh, "a1", "k", 1)
    t2 = write(sh, "a1", "k", 2)

    events = sh.replay("a1")
    assert isinstance(events, Iterator)
    assert iter(events) is events
    with django_assert_max_num_queries(2):
        first = next(events)
    assert (first.commit_ts, first.operations[0].value) == (t1, 1)
    second = next(events)
    assert (second.commit_ts, second.operations[0].value) == (t2, 2)
    with pytest.raises(StopIteration):
        next(events)


def test_replay_streams_long_history_across_pages(
    sh: Statehouse,
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    # 3 transactions of 1,500 operations: 4,500 rows, so pages of 2,000 rows end in the
    # middle of a transaction; each must still come out as one event, with no row lost
    # or repeated.
    per_txn = 1500
    keys = [f"k{n:05d}" for n in range(per_txn)]
    stamps = [write_many(sh, "big", {k: {"round": r, "k": k} for k in keys}) for r in range(3)]
    write(sh, "other", "k00000", "not mine")

    events = sh.replay("big")
    with django_assert_max_num_queries(2):
        first = next(events)
    rest = list(events)

    assert [ev.commit_ts for ev in [first, *rest]] == stamps
    for round_no, event in enumerate([first, *rest]):
        assert len(event.operations) == per_txn
        assert sorted((op.key, op.version) for op in event.operations) == [
            (k, round_no + 1) for k in keys
        ]
        assert all(op.value == {"round": round_no, "k": op.key} for op in event.operations)

    tail = list(sh.replay("big", start_ts=stamps[1]))
    assert [(ev.commit_ts, len(ev.operations)) for ev in tail] == [
        (stamps[1], per_txn),
        (stamps[2], per_txn),
    ]


def test_replay_streams_many_small_transactions(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        for n in range(2100):
            tx.write(agent_id="a1", key=f"seed:{n}", value=n)
    stamps = [write(sh, "a1", "counter", n) for n in range(5)]

    events = list(sh.replay("a1"))
    assert len(events) == 6
    assert len(events[0].operations) == 2100
    assert [(ev.commit_ts, [op.value for op in ev.operations]) for ev in events[1:]] == [
        (ts, [n]) for n, ts in enumerate(stamps)
    ]


# --- health, version, life cycle -------------------------------------------------------------


def test_health_is_ok(sh: Statehouse) -> None:
    assert sh.health() == "ok"


def test_version_is_a_pair_of_strings(sh: Statehouse) -> None:
    version = sh.version()
    assert isinstance(version, tuple)
    assert len(version) == 2
    assert all(isinstance(part, str) and part for part in version)


def test_client_is_a_context_manager(transactional_db: None) -> None:
    with Statehouse() as client:
        assert isinstance(client, Statehouse)
        write(client, "a1", "k", "v")
        assert client.get_state("a1", "k").value == "v"
    with pytest.raises(StatehouseError):
        client.get_state("a1", "k")
    client.close()  # idempotent

    with Statehouse() as again:
        assert again.get_state("a1", "k").value == "v"


def test_client_namespace_defaults_to_default(sh: Statehouse) -> None:
    assert sh.namespace == "default"
    write(sh, "a1", "k", 1)
    assert sh.get_state("a1", "k", namespace="default").value == 1
