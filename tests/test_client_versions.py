"""docs/contract.md §2, versions: counting, tombstones, reading old versions, compare-and-set."""

from __future__ import annotations

from typing import Any

import pytest
from statehouse_agents.models import Commit, Version

from statehouse import ConflictError, NotFoundError, Statehouse, TransactionError


def write(sh: Statehouse, agent_id: str, key: str, value: Any, **kwargs: Any) -> int | None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=key, value=value, **kwargs)
    return tx.commit_ts


def delete(sh: Statehouse, agent_id: str, key: str, **kwargs: Any) -> int | None:
    with sh.begin_transaction() as tx:
        tx.delete(agent_id=agent_id, key=key, **kwargs)
    return tx.commit_ts


# --- counting ------------------------------------------------------------------------------


def test_first_write_is_version_1(sh: Statehouse) -> None:
    write(sh, "a1", "k", {"n": 0})
    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.exists) == ({"n": 0}, 1, True)


def test_version_grows_by_exactly_one_per_committed_write(sh: Statehouse) -> None:
    for n in range(1, 6):
        write(sh, "a1", "k", n)
        assert sh.get_state("a1", "k").version == n


def test_versions_count_per_record(sh: Statehouse) -> None:
    write(sh, "a1", "x", 1)
    write(sh, "a1", "x", 2)
    write(sh, "a1", "y", 1)
    write(sh, "a2", "x", 1)
    assert sh.get_state("a1", "x").version == 2
    assert sh.get_state("a1", "y").version == 1
    assert sh.get_state("a2", "x").version == 1


def test_aborted_and_conflicted_transactions_do_not_consume_versions(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value="aborted")
    tx.abort()
    with pytest.raises(ConflictError):
        write(sh, "a1", "k", "conflicted", expected_version=7)
    write(sh, "a1", "k", "v2")
    assert sh.get_state("a1", "k").version == 2
    assert sh.get_state_at_version("a1", "k", 2).value == "v2"


def test_never_written_key_reads_as_not_existing(sh: Statehouse) -> None:
    state = sh.get_state("nobody", "nothing")
    assert (state.value, state.version, state.commit_ts, state.exists) == (None, 0, 0, False)


# --- tombstones -----------------------------------------------------------------------------


def test_delete_leaves_tombstone(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    ts = delete(sh, "a1", "k")

    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.commit_ts, state.exists) == (None, 2, ts, False)


def test_list_keys_leaves_deleted_key_out(sh: Statehouse) -> None:
    write(sh, "a1", "keep", 1)
    write(sh, "a1", "gone", 1)
    delete(sh, "a1", "gone")
    assert sh.list_keys("a1") == ["keep"]
    assert [r.key for r in sh.scan_prefix("a1", "")] == ["keep"]


def test_history_and_replay_keep_the_delete(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    delete(sh, "a1", "k")

    ops = [(op.key, op.value, op.version, op.op) for ev in sh.replay("a1") for op in ev.operations]
    assert ops == [("k", "v1", 1, "write"), ("k", None, 2, "delete")]
    assert sh.get_state_at_version("a1", "k", 1).value == "v1"


def test_write_after_delete_continues_the_version_count(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    delete(sh, "a1", "k")
    write(sh, "a1", "k", "v3")
    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.exists) == ("v3", 3, True)
    assert sh.list_keys("a1") == ["k"]


def test_delete_of_tombstone_adds_another_version(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    delete(sh, "a1", "k")
    delete(sh, "a1", "k")
    assert sh.get_state("a1", "k").version == 3
    assert sh.get_state_at_version("a1", "k", 3).exists is False


def test_delete_of_never_written_key_is_a_tombstone_at_version_1(sh: Statehouse) -> None:
    delete(sh, "a1", "k")
    state = sh.get_state("a1", "k")
    assert (state.exists, state.version) == (False, 1)
    assert sh.list_keys("a1") == []


# --- get_state_at_version -----------------------------------------------------------------


def test_get_state_at_version_returns_each_old_version(sh: Statehouse) -> None:
    stamps = [write(sh, "a1", "k", {"n": n}) for n in range(4)]
    for version in range(1, 5):
        old = sh.get_state_at_version("a1", "k", version)
        assert (old.value, old.version, old.commit_ts, old.exists) == (
            {"n": version - 1},
            version,
            stamps[version - 1],
            True,
        )


def test_get_state_at_version_of_tombstone_says_not_existing(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    ts = delete(sh, "a1", "k")
    write(sh, "a1", "k", "v3")
    tomb = sh.get_state_at_version("a1", "k", 2)
    assert (tomb.value, tomb.version, tomb.commit_ts, tomb.exists) == (None, 2, ts, False)
    assert sh.get_state_at_version("a1", "k", 3).value == "v3"


@pytest.mark.parametrize(
    ("agent_id", "key", "version"),
    [
        ("a1", "k", 3),  # past the latest
        ("a1", "k", 100),
        ("a1", "k", 2**31),
        ("a1", "k", 2**63),  # beyond any database integer
        ("a1", "k", 2**80),
        ("a1", "other", 1),  # key never written
        ("unknown-agent", "k", 1),
    ],
)
def test_get_state_at_version_that_never_existed_raises_not_found(
    sh: Statehouse, agent_id: str, key: str, version: int
) -> None:
    write(sh, "a1", "k", 1)
    write(sh, "a1", "k", 2)
    with pytest.raises(NotFoundError, match=key):
        sh.get_state_at_version(agent_id, key, version)


def test_get_state_at_version_respects_namespace(sh: Statehouse) -> None:
    write(sh, "a1", "k", "here")
    with pytest.raises(NotFoundError):
        sh.get_state_at_version("a1", "k", 1, namespace="elsewhere")


# --- compare-and-set -----------------------------------------------------------------------


def test_expected_version_zero_creates_a_missing_record(sh: Statehouse) -> None:
    write(sh, "a1", "k", "new", expected_version=0)
    assert sh.get_state("a1", "k").value == "new"


def test_expected_version_zero_fails_when_record_exists(sh: Statehouse) -> None:
    write(sh, "a1", "k", "old")
    with pytest.raises(ConflictError) as info:
        write(sh, "a1", "k", "new", expected_version=0)
    assert (info.value.agent_id, info.value.key, info.value.expected, info.value.actual) == (
        "a1",
        "k",
        0,
        1,
    )
    assert "'k'" in str(info.value)
    state = sh.get_state("a1", "k")
    assert (state.value, state.version) == ("old", 1)


def test_expected_version_zero_is_accepted_for_a_tombstone(sh: Statehouse) -> None:
    write(sh, "a1", "k", "old")
    delete(sh, "a1", "k")
    write(sh, "a1", "k", "reborn", expected_version=0)
    state = sh.get_state("a1", "k")
    assert (state.value, state.version, state.exists) == ("reborn", 3, True)


def test_expected_version_of_the_tombstone_is_accepted(sh: Statehouse) -> None:
    write(sh, "a1", "k", "old")
    delete(sh, "a1", "k")
    write(sh, "a1", "k", "reborn", expected_version=2)
    assert sh.get_state("a1", "k").version == 3


def test_matching_expected_version_commits(sh: Statehouse) -> None:
    write(sh, "a1", "k", 1)
    write(sh, "a1", "k", 2)
    write(sh, "a1", "k", 3, expected_version=2)
    delete(sh, "a1", "k", expected_version=3)
    state = sh.get_state("a1", "k")
    assert (state.version, state.exists) == (4, False)


@pytest.mark.parametrize("stale", [1, 3, 10])
def test_stale_expected_version_raises_conflict(sh: Statehouse, stale: int) -> None:
    write(sh, "a1", "k", "v1")
    write(sh, "a1", "k", "v2")
    with pytest.raises(ConflictError) as info:
        write(sh, "a1", "k", "lost update", expected_version=stale)
    assert (info.value.expected, info.value.actual) == (stale, 2)
    state = sh.get_state("a1", "k")
    assert (state.value, state.version) == ("v2", 2)


def test_expected_version_on_missing_record_raises_conflict(sh: Statehouse) -> None:
    with pytest.raises(ConflictError):
        write(sh, "a1", "k", "x", expected_version=1)
    assert sh.get_state("a1", "k").exists is False


def test_stale_delete_raises_conflict(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    write(sh, "a1", "k", "v2")
    with pytest.raises(ConflictError):
        delete(sh, "a1", "k", expected_version=1)
    assert sh.get_state("a1", "k").exists is True


def test_conflict_applies_nothing_of_the_transaction(sh: Statehouse) -> None:
    write(sh, "a1", "guarded", "v1")
    write(sh, "a1", "plain", "p1")
    commits = Commit.objects.count()
    versions = Version.objects.count()

    with pytest.raises(ConflictError), sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="plain", value="p2")
        tx.write(agent_id="a2", key="fresh", value="f1")
        tx.delete(agent_id="a1", key="gone-too")
        tx.write(agent_id="a1", key="guarded", value="v2", expected_version=0)
        tx.write(agent_id="a3", key="task", value={"task": "t"})

    assert sh.get_state("a1", "plain").value == "p1"
    assert sh.get_state("a1", "plain").version == 1
    assert sh.get_state("a1", "guarded").value == "v1"
    assert sh.get_state("a2", "fresh").exists is False
    assert sh.get_state("a3", "task").exists is False
    assert sh.get_state("a1", "gone-too").version == 0
    assert sh.list_keys("a2") == []
    assert list(sh.replay("a2")) == []
    assert Commit.objects.count() == commits
    assert Version.objects.count() == versions


def test_conflicted_transaction_cannot_be_reused(sh: Statehouse) -> None:
    write(sh, "a1", "k", "v1")
    tx = sh.begin_transaction()
    tx.write(agent_id="a1", key="k", value="v2", expected_version=0)
    with pytest.raises(ConflictError):
        tx.commit()
    with pytest.raises(TransactionError):
        tx.commit()


def test_concurrent_read_modify_write_loses_no_update(sh: Statehouse) -> None:
    write(sh, "a1", "counter", 0)
    seen_a = sh.get_state("a1", "counter")
    seen_b = sh.get_state("a1", "counter")
    write(sh, "a1", "counter", seen_a.value + 1, expected_version=seen_a.version)
    with pytest.raises(ConflictError):
        write(sh, "a1", "counter", seen_b.value + 1, expected_version=seen_b.version)
    retry = sh.get_state("a1", "counter")
    write(sh, "a1", "counter", retry.value + 1, expected_version=retry.version)
    state = sh.get_state("a1", "counter")
    assert (state.value, state.version) == (2, 3)


# --- namespaces ------------------------------------------------------------------------------


def test_namespaces_isolate_records(sh: Statehouse) -> None:
    blue = Statehouse(namespace="blue")
    green = Statehouse(namespace="green")
    try:
        write(blue, "a1", "k", "blue-1")
        write(blue, "a1", "k", "blue-2")
        write(green, "a1", "k", "green-1")

        assert (blue.get_state("a1", "k").value, blue.get_state("a1", "k").version) == (
            "blue-2",
            2,
        )
        assert (green.get_state("a1", "k").value, green.get_state("a1", "k").version) == (
            "green-1",
            1,
        )
        assert sh.get_state("a1", "k").exists is False
        assert sh.get_state("a1", "k", namespace="blue").value == "blue-2"
        assert sh.list_keys("a1") == []
        assert green.list_keys("a1") == ["k"]
        assert [op.value for ev in green.replay("a1") for op in ev.operations] == ["green-1"]
        assert list(sh.replay("a1")) == []
        with pytest.raises(NotFoundError):
            green.get_state_at_version("a1", "k", 2)
    finally:
        blue.close()
        green.close()


def test_expected_version_is_checked_within_the_namespace(sh: Statehouse) -> None:
    write(sh, "a1", "k", "default")
    with sh.begin_transaction(namespace="other") as tx:
        tx.write(agent_id="a1", key="k", value="other", expected_version=0)
    assert sh.get_state("a1", "k", namespace="other").version == 1
    assert sh.get_state("a1", "k").value == "default"
