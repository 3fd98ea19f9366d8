"""The commit: staged operations applied as one database transaction, all or nothing.

Read top to bottom, `_commit` is the whole path: lock the agents' rows and read the
current versions (one statement), check compare-and-set expectations and leases, number
the new versions, move the agent/task/step projection, then write the commit, its
versions, the current records, the steps and the agents' rows (one statement on
PostgreSQL; on SQLite, whose write lock is held since BEGIN, a few in-process ones).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError
from django.db.models import Field
from statehouse_agents import metrics
from statehouse_agents.conf import get_settings
from statehouse_agents.conventions import classify
from statehouse_agents.models import Agent, Commit, Record, Step, Version, waits_for_input
from statehouse_agents.store import sql
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.commit_function import commit_in_one_call, handles
from statehouse_agents.store.leases import check_leases, clear_lease, take_lease
from statehouse_agents.store.locking import Records, lock_agents
from statehouse_agents.store.operations import CommitRequest, CommitResult, LeaseOwner, StagedOp
from statehouse_agents.store.operator import PausedNow, check_operator_controls, wait_while_paused
from statehouse_agents.store.projection import (
    STEP_COLUMNS,
    STEP_CONFLICT,
    STEP_TYPES,
    StepRow,
    ends_run,
    project,
)

from statehouse._ids import new_txn_id
from statehouse.errors import AlreadyExistsError, ConflictError, StatehouseError

_AGENT = Agent._meta.db_table
_COMMIT = Commit._meta.db_table
_VERSION = Version._meta.db_table
_RECORD = Record._meta.db_table
_STEP = Step._meta.db_table

# An agent's `last_activity_at` moves on at most once a second: it orders the dashboard
# (an indexed column), and leaving it alone between two steps of the same second keeps
# the update of the agent row in place (HOT on PostgreSQL) instead of touching every
# index (docs/client.md, "Liveness").
ACTIVITY_RESOLUTION = timedelta(seconds=1)


def commit(
    *,
    namespace: str,
    ops: Sequence[StagedOp],
    owner: LeaseOwner | None = None,
    lease_seconds: float = 30.0,
    txn_id: str | None = None,
    at: datetime | None = None,
    held: Mapping[str, int] | None = None,
    durable: bool = False,
) -> CommitResult:
    """Apply `ops` as one transaction, all or nothing. An empty transaction records nothing.

    `held` maps the agent ids whose lease this owner took earlier to the lease epoch it
    got: if another owner took an agent over since, the commit raises LeaseLostError.
    `at` overrides the commit time (imports of exported history keep their times).
    `durable=True` refuses to run inside an open transaction of the caller
    (TransactionError); otherwise a commit inside one joins it, and its result says it
    is not durable yet.
    """
    txn_id = txn_id or new_txn_id()
    if not ops:
        return CommitResult(commit_ts=None, txn_id=txn_id)
    from django.db import connection

    joined = not durable and connection.in_atomic_block
    started = time.perf_counter()

    request = CommitRequest(namespace, ops, owner, lease_seconds, txn_id, at, held or {})
    one_call = _one_call(request)

    def attempt() -> CommitResult:
        in_function = one_call
        if one_call and not connection.in_atomic_block and connection.get_autocommit():
            # Outside any transaction, the function's call is a transaction of its own:
            # the whole commit in one round trip, no BEGIN and no COMMIT of ours
            # (docs/architecture.md, "The commit function").
            result = run_atomic(
                lambda: commit_in_one_call(request=request), what="commit", statement=True
            )
            if result is not None:
                return result
            in_function = False  # handed back: the general path, in a transaction
        return run_atomic(
            lambda: _commit(request, one_call=in_function), what="commit", durable=durable
        )

    try:
        try:
            result = attempt()
        except PausedNow as paused:
            # A paused agent's step waits (outside any transaction of ours) until it is
            # unpaused, cancelled or the pause timeout passes (docs/operations.md).
            if joined:
                raise paused.timed_out(0.0) from None
            result = wait_while_paused(paused, attempt)
    except StatehouseError as exc:
        # A txn_id names one commit: sent again (a retried request), it applies nothing.
        if isinstance(exc.__cause__, IntegrityError) and "txn_id" in str(exc.__cause__):
            raise AlreadyExistsError(
                f"transaction {txn_id} was already committed; nothing was applied"
            ) from None
        raise
    metrics.observe_commit(time.perf_counter() - started)
    return replace(result, durable=False) if joined else result


def _one_call(request: CommitRequest) -> bool:
    """Whether the commit function can take the request (PostgreSQL, the common step)."""
    return (
        request.at is None
        and not sql.is_sqlite()
        and get_settings().pg_commit_function
        and handles(request.ops)
    )


def _commit(request: CommitRequest, *, one_call: bool) -> CommitResult:
    ops, owner, at = request.ops, request.owner, request.at
    if one_call:
        # The common step by the function, in the caller's transaction; None: handed
        # back, nothing written.
        result = commit_in_one_call(request=request)
        if result is not None:
            return result

    keys = list(dict.fromkeys(op.key for op in ops))
    agents, db_now, records = lock_agents(
        request.namespace, sorted({op.agent_id for op in ops}), keys
    )
    now = at or db_now

    _check_expectations(ops, records)
    leasing = {op.agent_id for op in ops if classify(op.key).takes_lease}
    # Read from the same locked row as the lease: costs nothing more (docs/contract.md §7).
    check_operator_controls(leasing, agents)
    check_leases(leasing, agents, owner, db_now, request.held)
    _count_lapsed_takeovers(leasing, agents, owner, db_now)

    versions = {
        (op.agent_id, op.key): _current_version(records, op.agent_id, op.key) + 1 for op in ops
    }

    by_agent: dict[str, list[StagedOp]] = {}
    for op in ops:
        by_agent.setdefault(op.agent_id, []).append(op)
    changed: dict[str, set[str]] = {}
    step_rows: list[StepRow] = []
    leased: dict[str, int] = {}
    released: set[str] = set()
    for agent_id, agent_ops in by_agent.items():
        agent = agents[agent_id]
        projection = project(agent, agent_ops, records, versions, now)
        fields = projection.changed
        step_rows += projection.step_rows
        if at is not None or now - agent.last_activity_at >= ACTIVITY_RESOLUTION:
            agent.last_activity_at = now
            fields.add("last_activity_at")
        if agent_id in leasing:
            if ends_run(agent_ops):
                fields |= clear_lease(agent)
                released.add(agent_id)
            elif owner is not None:
                fields |= take_lease(agent, owner, db_now, request.lease_seconds)
                leased[agent_id] = agent.lease_epoch
        changed[agent_id] = fields

    write = _write_sqlite if sql.is_sqlite() else _write_postgresql
    commit_ts = write(
        _Writes(request.txn_id, request.namespace, now, ops, versions, agents, changed, step_rows)
    )
    for agent in agents.values():
        agent.last_commit_ts = commit_ts

    return CommitResult(
        commit_ts=commit_ts,
        txn_id=request.txn_id,
        versions={(op.agent_id, op.key): versions[(op.agent_id, op.key)] for op in ops},
        leased=leased,
        released=frozenset(released),
    )


def _count_lapsed_takeovers(
    leasing: set[str], agents: Mapping[str, Agent], owner: LeaseOwner | None, now: datetime
) -> None:
    """Count the leases this commit takes over after they ran out (docs/metrics.md)."""
    if owner is None:
        return
    lapsed = sum(
        1
        for agent_id in leasing
        if agents[agent_id].lease_owner
        and agents[agent_id].lease_owner != owner.token
        and not agents[agent_id].lease_is_live(now)
    )
    if lapsed:
        metrics.record_lease_expiry(lapsed)


def _current_version(records: Records, agent_id: str, key: str) -> int:
    record = records.get((agent_id, key))
    return record.version if record else 0


def _check_expectations(ops: Sequence[StagedOp], records: Records) -> None:
    for op in ops:
        if op.expected_version is None:
            continue
        record = records.get((op.agent_id, op.key))
        actual = record.version if record else 0
        absent = record is None or record.deleted
        if op.expected_version == actual or (op.expected_version == 0 and absent):
            continue
        state = "does not exist" if record is None else f"is at version {actual}"
        if record is not None and record.deleted:
            state += " (deleted)"
        raise ConflictError(
            f"conflict on {op.agent_id!r}/{op.key!r}: expected version {op.expected_version}, "
            f"but the record {state}; nothing of this transaction was applied",
            agent_id=op.agent_id,
            key=op.key,
            expected=op.expected_version,
            actual=actual,
        )


# --- the writes -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Writes:
    """Everything a commit writes, decided before the first write."""

    txn_id: str
    namespace: str
    now: datetime
    ops: Sequence[StagedOp]
    versions: Mapping[tuple[str, str], int]
    agents: Mapping[str, Agent]
    changed: Mapping[str, set[str]]
    step_rows: list[StepRow]


def _unpack(w: _Writes) -> tuple[Any, ...]:
    return tuple(getattr(w, name) for name in w.__slots__)


_RECORD_CONFLICT = (
    "ON CONFLICT (agent_id, key) DO UPDATE SET version = excluded.version, "
    "commit_ts = excluded.commit_ts, deleted = excluded.deleted, "
    "updated_at = excluded.updated_at, waits_for_input = excluded.waits_for_input"
)
_PG_TYPES = {
    "CharField": "text",
    "TextField": "text",
    "BooleanField": "boolean",
    "IntegerField": "integer",
    "PositiveIntegerField": "integer",
    "BigIntegerField": "bigint",
    "PositiveBigIntegerField": "bigint",
    "DateTimeField": "timestamptz",
}


def _agent_fields(changed: Mapping[str, set[str]]) -> tuple[str, ...]:
    """The agent fields a commit updates: those that changed for any of its agents."""
    return tuple(sorted(set().union(*changed.values())))


def _agent_values(
    agents: Mapping[str, Agent], changed: Mapping[str, set[str]], fields: tuple[str, ...]
) -> list[list[Any]]:
    return [
        [agents[agent_id].pk, *(sql.db_value(getattr(agents[agent_id], f)) for f in fields)]
        for agent_id in changed
    ]


def _internal_type(name: str) -> str:
    return Agent._meta.get_field(name).get_internal_type()


@functools.cache
def _postgresql_sql(agent_fields: tuple[str, ...], with_steps: bool) -> str:
    """One statement writing the whole commit; arrays keep its text (and plan) the same
    for any number of operations, and its parameters few."""
    steps = ""
    if with_steps:
        columns = ", ".join(STEP_COLUMNS)
        arrays = ", ".join(f"%s::{t}[]" for t in STEP_TYPES)
        steps = (
            f", s AS (INSERT INTO {_STEP} ({columns}) SELECT * FROM unnest({arrays}) "
            f"AS x({columns}) WHERE TRUE {STEP_CONFLICT})"
        )
    names = ["id", *agent_fields]
    types = ["bigint", *(_PG_TYPES[_internal_type(f)] for f in agent_fields)]
    sets = ", ".join([f"{_column(f)} = x.{f}" for f in agent_fields] + ["last_commit_ts = c.id"])
    return (
        f"WITH c AS (INSERT INTO {_COMMIT} (txn_id, namespace, committed_at, op_count) "
        "VALUES (%s, %s, %s, %s) RETURNING id), "
        "o AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::integer[], "
        f"{sql.VALUES_ARRAY}, %s::boolean[], %s::boolean[]) "
        "AS o(agent_id, key, version, value_json, deleted, waits)), "
        f"v AS (INSERT INTO {_VERSION} (agent_id, key, version, commit_id, value_json, deleted) "
        "SELECT o.agent_id, o.key, o.version, c.id, o.value_json, o.deleted FROM c, o), "
        f"r AS (INSERT INTO {_RECORD} (agent_id, key, version, commit_ts, deleted, "
        "updated_at, waits_for_input) SELECT o.agent_id, o.key, o.version, c.id, o.deleted, "
        f"%s::timestamptz, o.waits FROM c, o WHERE TRUE {_RECORD_CONFLICT})"
        f"{steps}, "
        f"u AS (UPDATE {_AGENT} a SET {sets} FROM c, unnest("
        + ", ".join(f"%s::{t}[]" for t in types)
        + f") AS x({', '.join(names)}) WHERE a.id = x.id) "
        "SELECT id FROM c"
    )


def _write_postgresql(w: _Writes) -> int:
    txn_id, namespace, now, ops, versions, agents, changed, step_rows = _unpack(w)
    fields = _agent_fields(changed)
    params: list[Any] = [uuid.UUID(txn_id), namespace, now, len(ops)]
    params += [
        [agents[op.agent_id].pk for op in ops],
        [op.key for op in ops],
        [versions[(op.agent_id, op.key)] for op in ops],
        [op.value_json for op in ops],
        [op.is_delete for op in ops],
        [waits_for_input(op.value_json) for op in ops],
        now,
    ]
    if step_rows:
        params += [list(column) for column in zip(*step_rows, strict=True)]
    params += [list(column) for column in zip(*_agent_values(agents, changed, fields), strict=True)]
    row = sql.fetchone(_postgresql_sql(fields, bool(step_rows)), params)
    assert row is not None
    return int(row[0])


@functools.cache
def _sqlite_statements(agent_fields: tuple[str, ...]) -> tuple[str, str, str, str, str]:
    sets = ", ".join([f"{_column(f)} = %s" for f in agent_fields] + ["last_commit_ts = %s"])
    statements = (
        f"INSERT INTO {_COMMIT} (txn_id, namespace, committed_at, op_count) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        f"INSERT INTO {_VERSION} (agent_id, key, version, commit_id, value_json, deleted) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        f"INSERT INTO {_RECORD} (agent_id, key, version, commit_ts, deleted, updated_at, "
        f"waits_for_input) VALUES (%s, %s, %s, %s, %s, %s, %s) {_RECORD_CONFLICT}",
        f"INSERT INTO {_STEP} ({', '.join(STEP_COLUMNS)}) "
        f"VALUES ({sql.placeholders(len(STEP_COLUMNS))}) {STEP_CONFLICT}",
        f"UPDATE {_AGENT} SET {sets} WHERE id = %s",
    )
    insert_commit, insert_version, upsert_record, upsert_step, update_agent = map(
        sql.qmark, statements
    )
    return insert_commit, insert_version, upsert_record, upsert_step, update_agent


def _write_sqlite(w: _Writes) -> int:
    """The writes on sqlite3's connection itself, in-process statements under the write
    lock that BEGIN IMMEDIATE took."""
    return sql.on_sqlite(functools.partial(_sqlite_writes, w))


def _sqlite_writes(w: _Writes, db: Any) -> int:
    txn_id, namespace, now, ops, versions, agents, changed, step_rows = _unpack(w)
    fields = _agent_fields(changed)
    insert_commit, insert_version, upsert_record, upsert_step, update_agent = _sqlite_statements(
        fields
    )
    at = sql.db_datetime(now)
    (commit_ts,) = db.execute(
        insert_commit, [sql.db_uuid(txn_id), namespace, at, len(ops)]
    ).fetchone()
    rows = [
        (
            agents[op.agent_id].pk,
            op.key,
            versions[(op.agent_id, op.key)],
            commit_ts,
            op.value_json,
            op.is_delete,
        )
        for op in ops
    ]
    db.executemany(insert_version, rows)
    db.executemany(
        upsert_record,
        [
            (pk, key, version, ts, deleted, at, waits_for_input(value_json))
            for pk, key, version, ts, value_json, deleted in rows
        ],
    )
    if step_rows:
        db.executemany(upsert_step, step_rows)
    db.executemany(
        update_agent,
        [(*values, commit_ts, pk) for pk, *values in _agent_values(agents, changed, fields)],
    )
    return int(commit_ts)


def _column(name: str) -> str:
    """The column of one of the agent's concrete fields."""
    field = Agent._meta.get_field(name)
    assert isinstance(field, Field) and field.column
    return field.column
