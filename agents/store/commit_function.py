"""PostgreSQL: the common commit in one round trip, by the server-side function
`statehouse_commit` (migration 0001_squashed_0021_bulk_dashboard_indexes, as edited by
0002, 0003, 0004, 0006, 0007 and 0008; docs/architecture.md, "The commit function").

The common commit is a step of one agent: writes of its step keys and of other keys,
no deletes, no task or answer. The function reads the agent's row, checks expectations,
the lease and its fencing, and writes everything, the agent's row first and only as it
read it. Any other commit, and any check that fails, it hands back with nothing written
(`commit_ts` NULL), and the general path of `commit.py` runs (in the caller's
transaction, or in one of its own after a call sent in autocommit), raising the typed
error. So each rule and each message is written once, in Python, and the function only
repeats the common case.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from statehouse_agents.conventions import KeyKind, classify
from statehouse_agents.models import AgentState
from statehouse_agents.store import sql
from statehouse_agents.store.operations import CommitRequest, CommitResult, LeaseOwner, StagedOp
from statehouse_agents.store.projection import step_values

# What an agent's row must hold for the function to commit to it (JSON containment,
# `guarded columns @> guard`); otherwise the general path runs. A column that makes a
# step behave differently belongs here, so the function never bypasses its rule: a
# cancelled or paused agent (docs/operations.md) is not active, or has `paused_at` set.
# The function reads an idle agent (no task) as active: a step changes neither state
# (migration 0007_step_commits_without_a_task).
AGENT_GUARD: dict[str, Any] = {"state": AgentState.ACTIVE.value, "paused_at": None}

# The columns the function's guard reads from the row (its `jsonb_build_object`, cheaper
# than the whole row as JSON); a guard naming another would never match. A new column
# for AGENT_GUARD goes here and into the function (tests/test_commit_function.py).
GUARDED_COLUMNS = frozenset({"state", "paused_at", "lease_owner"})


def _guard(owner: LeaseOwner | None, leasing: bool) -> dict[str, Any]:
    """The guard of one call. A step commit goes through the function only for an active
    (or idle), unpaused agent whose lease this owner holds already: a cancelled, paused,
    finished or resuming agent, and the commit that takes the lease (which records its
    liveness handle, `lease_watch`), run the general path (docs/architecture.md, "The
    commit function")."""
    if not leasing:
        return {}
    return {**AGENT_GUARD, "lease_owner": owner.token if owner else ""}


_CALL = (
    "SELECT commit_ts, versions, lease_epoch FROM statehouse_commit("
    f"%s::uuid, %s::text, %s::text, %s::text[], {sql.VALUES_ARRAY}, %s::integer[], %s::jsonb, "
    "%s::boolean, %s::text, %s::text, %s::integer, %s::float8, %s::bigint, %s::jsonb)"
)


def handles(ops: Sequence[StagedOp]) -> bool:
    """Whether the function can commit `ops`: one agent, writes of step and other keys,
    each key once, one key per step number."""
    agent_id = ops[0].agent_id
    keys: set[str] = set()
    numbers: set[int] = set()
    for op in ops:
        if op.is_delete or op.agent_id != agent_id or op.key in keys:
            return False
        keys.add(op.key)
        meaning = classify(op.key)
        if meaning.kind is KeyKind.STEP:
            assert meaning.step_number is not None
            if meaning.step_number in numbers:
                return False
            numbers.add(meaning.step_number)
        elif meaning.kind is not KeyKind.OTHER:
            return False
    return True


def commit_in_one_call(*, request: CommitRequest) -> CommitResult | None:
    """Commit the request's ops (which `handles`) by one call; None when the function
    handed it back. The function takes no commit time: `request.at` is None."""
    ops, owner, txn_id = request.ops, request.owner, request.txn_id
    agent_id = ops[0].agent_id
    steps = []
    leasing = False
    for op in ops:
        meaning = classify(op.key)
        if meaning.kind is KeyKind.STEP:
            leasing = True
            values = step_values(op.value, where=f"agent {agent_id!r} key {op.key!r}")
            steps.append({"key": op.key, "number": meaning.step_number, **values})
    row = sql.fetchone(
        _CALL,
        [
            uuid.UUID(txn_id),
            request.namespace,
            agent_id,
            [op.key for op in ops],
            [op.value_json for op in ops],
            [op.expected_version for op in ops],
            json.dumps(steps),
            leasing,
            owner.token if owner else None,
            owner.host if owner else None,
            owner.pid if owner else None,
            request.lease_seconds,
            request.held.get(agent_id),
            json.dumps(_guard(owner, leasing)),
        ],
    )
    assert row is not None
    commit_ts, versions, lease_epoch = row
    if commit_ts is None:
        return None
    return CommitResult(
        commit_ts=int(commit_ts),
        txn_id=txn_id,
        versions={(agent_id, op.key): v for op, v in zip(ops, versions, strict=True)},
        leased={} if lease_epoch is None else {agent_id: int(lease_epoch)},
    )
