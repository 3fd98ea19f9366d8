"""docs/client.md, "Durability": an acknowledged commit lasts whatever transaction the
caller has open; joining the caller's transaction is explicit and says it is not durable."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from statehouse_agents.models import Commit

from statehouse import Statehouse, TransactionError


class Boom(Exception):
    pass


def test_commit_inside_the_callers_transaction_is_refused_and_writes_nothing(
    sh: Statehouse,
) -> None:
    with transaction.atomic():
        tx = sh.begin_transaction()
        tx.write("a1", "k", {"n": 1})
        with pytest.raises(TransactionError, match=r"caller is open.*join=True.*nothing"):
            tx.commit()
    assert (sh.get_state("a1", "k").exists, Commit.objects.count()) == (False, 0)
    with pytest.raises(TransactionError, match="already aborted"):
        tx.commit()


def test_a_commit_after_the_callers_block_is_durable(sh: Statehouse) -> None:
    with pytest.raises(Boom), transaction.atomic():
        raise Boom
    with sh.begin_transaction() as tx:
        tx.write("a1", "k", {"n": 1})
    assert (tx.durable, tx.commit_ts) == (True, Commit.objects.get().pk)


def test_joined_commit_rolled_back_with_the_caller_leaves_nothing_and_no_reused_ts(
    sh: Statehouse,
) -> None:
    with sh.begin_transaction() as first:
        first.write("a1", "k", {"n": 1})
    with pytest.raises(Boom), transaction.atomic():
        joined = sh.begin_transaction(join=True)
        joined.write("a1", "k", {"n": 2})
        joined.write("a1", "step:0", {"status": "pending"})
        assert joined.commit() is None  # not acknowledged: not durable yet
        assert (joined.durable, joined.commit_ts) == (False, None)
        assert sh.get_state("a1", "k").value == {"n": 2}  # visible inside the caller's txn
        raise Boom

    assert (joined.durable, joined.commit_ts) == (False, None)
    state = sh.get_state("a1", "k")
    assert (state.value, state.version) == ({"n": 1}, 1)
    assert sh.list_keys("a1") == ["k"]
    with sh.begin_transaction() as after:
        after.write("a1", "step:0", {"status": "pending"})  # the rolled-back lease is no one's
    assert after.commit_ts is not None and first.commit_ts is not None
    assert after.commit_ts > first.commit_ts
    assert [ev.commit_ts for ev in sh.replay("a1")] == [first.commit_ts, after.commit_ts]


def test_joined_commit_is_one_unit_with_the_callers_writes(sh: Statehouse) -> None:
    with transaction.atomic():
        User.objects.create(username="callers-own-row")
        joined = sh.begin_transaction(join=True)
        joined.write("a1", "k", {"n": 1})
        joined.commit()
        assert not joined.durable
    assert joined.durable
    assert joined.commit_ts == Commit.objects.get().pk
    assert User.objects.filter(username="callers-own-row").exists()
    assert sh.get_state("a1", "k").commit_ts == joined.commit_ts


def test_join_without_an_open_transaction_is_refused(sh: Statehouse) -> None:
    tx = sh.begin_transaction(join=True)
    tx.write("a1", "k", 1)
    with pytest.raises(TransactionError, match="none is open"):
        tx.commit()
    assert Commit.objects.count() == 0
