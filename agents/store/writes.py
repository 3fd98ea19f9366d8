"""Every write of the store that must be atomic. One `transaction.atomic()` per operation.

A commit locks the rows of the agents it touches (in agent-id order, so two commits never
deadlock on each other), checks compare-and-set expectations and leases, then appends the
commit, the new versions, the current records and the agent/task/step projection, all in
one database transaction: the dashboard never disagrees with the store.
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.db.models.functions import Now
from django.utils import timezone
from statehouse_agents.conventions import KeyKind, classify, field_json, step_status, summarize
from statehouse_agents.models import Agent, Commit, Record, Step, Task, Version
from statehouse_agents.store import sql

from statehouse.errors import (
    ConflictError,
    LeaseHeldError,
    LeaseLostError,
    StatehouseError,
    ValidationError,
)

logger = logging.getLogger("statehouse.store")

_COMMIT = Commit._meta.db_table
_VERSION = Version._meta.db_table
_RECORD = Record._meta.db_table
_TASK = Task._meta.db_table
_STEP = Step._meta.db_table

T = TypeVar("T")

# SQLSTATEs after which the whole operation is safe to run again.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_MAX_RETRIES = 5


@dataclass(frozen=True, slots=True)
class StagedOp:
    """One staged write (`value_json` set) or delete (`value_json` None), already validated."""

    agent_id: str
    key: str
    value_json: str | None
    value: Any = None
    expected_version: int | None = None

    @property
    def is_delete(self) -> bool:
        return self.value_json is None


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """Who runs an agent: a random token per client, with host and pid for operators."""

    token: str
    host: str
    pid: int

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit_ts: int | None
    txn_id: str
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    leased: dict[str, int] = field(default_factory=dict)  # agent id -> lease epoch now held
    released: frozenset[str] = frozenset()


def commit(
    *,
    namespace: str,
    ops: Sequence[StagedOp],
    owner: LeaseOwner | None = None,
    lease_seconds: float = 30.0,
    txn_id: str | None = None,
    at: datetime | None = None,
    held: Mapping[str, int] | None = None,
) -> CommitResult:
    """Apply `ops` as one transaction, all or nothing. An empty transaction records nothing.

    `held` maps the agent ids whose lease this owner took earlier to the lease epoch it
    got: if another owner took an agent over since, the commit raises LeaseLostError.
    `at` overrides the commit time (imports of exported history keep their times).
    """
    txn_id = txn_id or str(uuid.uuid4())
    if not ops:
        return CommitResult(commit_ts=None, txn_id=txn_id)
    return run_atomic(
        lambda: _commit(
            namespace=namespace,
            ops=ops,
            owner=owner,
            lease_seconds=lease_seconds,
            txn_id=txn_id,
            at=at,
            held=held or {},
        ),
        what="commit",
    )


def renew_all_leases(*, owner: LeaseOwner, lease_seconds: float) -> int:
    """Extend every lease this owner holds; return how many it still holds."""
    return run_atomic(
        lambda: Agent.objects.filter(lease_owner=owner.token).update(
            lease_expires_at=Now() + timedelta(seconds=lease_seconds)
        ),
        what="lease renewal",
    )


def release_leases(
    *, owner: LeaseOwner, namespace: str | None = None, agent_id: str | None = None
) -> int:
    """Give up this owner's leases: all of them, or the one of `(namespace, agent_id)`."""
    held = Agent.objects.filter(lease_owner=owner.token)
    if agent_id is not None:
        held = held.filter(namespace=namespace, agent_id=agent_id)
    return run_atomic(
        lambda: held.update(**Agent.NO_LEASE),
        what="lease release",
    )


# --- internals ---------------------------------------------------------------------------


def run_atomic(operation: Callable[[], T], *, what: str) -> T:
    """Run `operation` in one transaction; retry deadlocks; raise only StatehouseError."""
    for attempt in range(_MAX_RETRIES):
        try:
            with transaction.atomic():
                return operation()
        except StatehouseError:
            raise
        except OperationalError as exc:
            sqlstate = getattr(exc.__cause__, "sqlstate", None)
            if sqlstate in _RETRYABLE_SQLSTATES and attempt + 1 < _MAX_RETRIES:
                if transaction.get_connection().in_atomic_block:
                    raise StatehouseError(f"{what} failed: {exc}") from exc
                time.sleep(0.01 * (2**attempt))
                continue
            raise StatehouseError(f"{what} failed: database error: {exc}") from exc
        except IntegrityError as exc:
            raise StatehouseError(f"{what} failed: integrity error: {exc}") from exc
        except DatabaseError as exc:
            raise StatehouseError(f"{what} failed: database error: {exc}") from exc
    raise AssertionError("unreachable")


def _commit(
    *,
    namespace: str,
    ops: Sequence[StagedOp],
    owner: LeaseOwner | None,
    lease_seconds: float,
    txn_id: str,
    at: datetime | None,
    held: Mapping[str, int],
) -> CommitResult:
    keys = list(dict.fromkeys(op.key for op in ops))
    agents, now, found = lock_agents(namespace, sorted({op.agent_id for op in ops}), keys)
    lease_now, now = now, at or now
    wanted = {(op.agent_id, op.key) for op in ops}
    records = {ident: current for ident, current in found.items() if ident in wanted}

    _check_expectations(ops, agents, records)
    leasing = {op.agent_id for op in ops if classify(op.key).takes_lease}
    _check_leases(leasing, agents, owner, lease_now, held)

    commit_ts = _insert_commit(txn_id, namespace, now, len(ops))
    versions = _append_versions(commit_ts, ops, agents, records, now)

    leased: dict[str, int] = {}
    released: set[str] = set()
    for agent_id, agent in agents.items():
        agent_ops = [op for op in ops if op.agent_id == agent_id]
        changed = _project(agent, agent_ops, versions, now)
        agent.last_activity_at = now
        agent.last_commit_ts = commit_ts
        changed |= {"last_activity_at", "last_commit_ts"}
        if agent_id in leasing:
            if _ends_run(agent_ops):
                changed |= _clear_lease(agent)
                released.add(agent_id)
            elif owner is not None:
                changed |= _take_lease(agent, owner, lease_now + timedelta(seconds=lease_seconds))
                leased[agent_id] = agent.lease_epoch
        _update_agent(agent, changed)

    return CommitResult(
        commit_ts=commit_ts,
        txn_id=txn_id,
        versions={(op.agent_id, op.key): versions[(op.agent_id, op.key)] for op in ops},
        leased=leased,
        released=frozenset(released),
    )


_AGENT_FIELDS = [f for f in Agent._meta.concrete_fields]
_AGENT_DATETIMES = {f.attname for f in _AGENT_FIELDS if f.get_internal_type() == "DateTimeField"}
_AGENT_BOOLEANS = {f.attname for f in _AGENT_FIELDS if f.get_internal_type() == "BooleanField"}


@functools.cache
def _lock_sql(agent_count: int, key_count: int) -> str:
    """Lock the agents' rows and read, in the same statement, their records of `keys`."""
    columns = ", ".join(f"a.{f.column}" for f in _AGENT_FIELDS)
    records = (
        f"LEFT JOIN {_RECORD} r ON r.agent_id = a.id AND r.key IN ({sql.placeholders(key_count)}) "
        if key_count
        else f"LEFT JOIN {_RECORD} r ON 1 = 0 "
    )
    return (
        f"SELECT {columns}, {sql.now_sql()}, r.key, r.version, r.deleted "
        f"FROM {Agent._meta.db_table} a {records}"
        f"WHERE a.namespace = %s AND a.agent_id IN ({sql.placeholders(agent_count)}) "
        f"ORDER BY a.agent_id{sql.for_update(of='a')}"
    )


@dataclass(frozen=True, slots=True)
class _Current:
    version: int
    deleted: bool


def lock_agents(
    namespace: str, agent_ids: list[str], keys: Sequence[str] = ()
) -> tuple[dict[str, Agent], datetime, dict[tuple[str, str], _Current]]:
    """Lock (creating if needed) the agents' rows in id order; return them, the database
    time, and the current version of each of their records named in `keys`.

    On PostgreSQL the row locks order the commits of one agent (and its commit_ts); on
    SQLite the write lock taken at BEGIN IMMEDIATE serializes every commit anyway.
    """
    names = [f.attname for f in _AGENT_FIELDS]
    # On SQLite, one statement reads the records with the agents (the write lock is held
    # since BEGIN). Not on PostgreSQL: a statement that waited for a row lock re-reads the
    # locked row but not the joined ones, which would be the snapshot from before the
    # wait (stale versions); the records are read after the lock, in their own statement.
    joined = keys if sql.is_sqlite() else ()
    query = _lock_sql(len(agent_ids), len(joined))

    def select() -> tuple[dict[str, Agent], Any, dict[tuple[str, str], _Current]]:
        rows = sql.fetchall(query, [*joined, namespace, *agent_ids])
        agents: dict[str, Agent] = {}
        records: dict[tuple[str, str], _Current] = {}
        db_now = None
        width = len(names)
        for row in rows:
            agent_id = row[_AGENT_ID_COLUMN]
            if agent_id not in agents:
                agents[agent_id] = _agent_from_row(names, row[:width])
                db_now = row[width]
            key, version, deleted = row[width + 1 :]
            if key is not None:
                records[(agent_id, key)] = _Current(version, bool(deleted))
        return agents, db_now, records

    agents, db_now, records = select()
    if len(agents) < len(agent_ids):
        created = timezone.now()
        Agent.objects.bulk_create(
            [
                Agent(namespace=namespace, agent_id=a, created_at=created, last_activity_at=created)
                for a in agent_ids
                if a not in agents
            ],
            ignore_conflicts=True,
        )
        agents, db_now, records = select()
    if keys and not joined:
        records = _current_records(agents, keys)
    return agents, sql.to_datetime(db_now), records


def _current_records(
    agents: dict[str, Agent], keys: Sequence[str]
) -> dict[tuple[str, str], _Current]:
    by_pk = {agent.pk: agent_id for agent_id, agent in agents.items()}
    rows = sql.fetchall(
        f"SELECT agent_id, key, version, deleted FROM {_RECORD} "
        f"WHERE agent_id IN ({sql.placeholders(len(by_pk))}) "
        f"AND key IN ({sql.placeholders(len(keys))})",
        [*by_pk, *keys],
    )
    return {
        (by_pk[pk], key): _Current(version, bool(deleted)) for pk, key, version, deleted in rows
    }


_AGENT_ID_COLUMN = [f.attname for f in _AGENT_FIELDS].index("agent_id")


def _agent_from_row(names: list[str], values: Sequence[Any]) -> Agent:
    agent = Agent.from_db("default", names, values)
    for name in _AGENT_DATETIMES:
        value = getattr(agent, name)
        if value is not None:  # SQLite: naive UTC (or text); PostgreSQL: aware
            setattr(agent, name, sql.to_datetime(value))
    for name in _AGENT_BOOLEANS:
        setattr(agent, name, bool(getattr(agent, name)))
    return agent


@functools.cache
def _update_agent_sql(fields: tuple[str, ...]) -> str:
    columns = ", ".join(f"{Agent._meta.get_field(name).column} = %s" for name in fields)
    return f"UPDATE {Agent._meta.db_table} SET {columns} WHERE id = %s"


def _update_agent(agent: Agent, changed: set[str]) -> None:
    fields = tuple(sorted(changed))
    values = [sql.db_value(getattr(agent, name)) for name in fields]
    sql.execute(_update_agent_sql(fields), [*values, agent.pk])


def _check_expectations(
    ops: Sequence[StagedOp], agents: dict[str, Agent], records: dict[tuple[str, str], _Current]
) -> None:
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


def _check_leases(
    leasing: set[str],
    agents: dict[str, Agent],
    owner: LeaseOwner | None,
    now: datetime,
    held: Mapping[str, int],
) -> None:
    for agent_id in sorted(leasing):
        agent = agents[agent_id]
        live = agent.lease_expires_at is not None and agent.lease_expires_at > now
        holder = (
            f"{agent.lease_host} pid {agent.lease_pid} until {agent.lease_expires_at.isoformat()}"
            if live and agent.lease_expires_at
            else "nobody now (its lease expired)"
        )
        details = {
            "agent_id": agent_id,
            "host": agent.lease_host,
            "pid": agent.lease_pid,
            "expires_at": agent.lease_expires_at,
        }
        if agent_id in held and held[agent_id] != agent.lease_epoch:
            raise LeaseLostError(
                f"agent {agent_id!r} was taken over since this process held it (lease epoch "
                f"{agent.lease_epoch}, not {held[agent_id]}); it is held by {holder}. "
                "Stop running it: nothing was written",
                **details,  # type: ignore[arg-type]
            )
        held_by_other = agent.lease_owner and (owner is None or agent.lease_owner != owner.token)
        if held_by_other and live:
            raise LeaseHeldError(
                f"agent {agent_id!r} is held by {holder}; nothing was written",
                **details,  # type: ignore[arg-type]
            )


def _insert_commit(txn_id: str, namespace: str, now: datetime, op_count: int) -> int:
    row = sql.fetchone(
        f"INSERT INTO {_COMMIT} (txn_id, namespace, committed_at, op_count) "
        "VALUES (%s, %s, %s, %s) RETURNING id",
        [sql.db_uuid(txn_id), namespace, sql.db_datetime(now), op_count],
    )
    assert row is not None
    return int(row[0])


def _append_versions(
    commit_ts: int,
    ops: Sequence[StagedOp],
    agents: dict[str, Agent],
    records: dict[tuple[str, str], _Current],
    now: datetime,
) -> dict[tuple[str, str], int]:
    """Append a version per operation and move each record to it (an upsert)."""
    versions: dict[tuple[str, str], int] = {}
    version_rows: list[Any] = []
    record_rows: list[Any] = []
    updated_at = sql.db_datetime(now)
    for op in ops:
        agent_pk = agents[op.agent_id].pk
        record = records.get((op.agent_id, op.key))
        version = (record.version if record else 0) + 1
        versions[(op.agent_id, op.key)] = version
        version_rows += [agent_pk, op.key, version, commit_ts, op.value_json, op.is_delete]
        record_rows += [
            agent_pk,
            op.key,
            version,
            commit_ts,
            op.value_json,
            op.is_delete,
            updated_at,
        ]
    rows = len(ops)
    sql.execute(
        f"INSERT INTO {_VERSION} (agent_id, key, version, commit_id, value_json, deleted) "
        f"VALUES {', '.join(['(%s, %s, %s, %s, %s, %s)'] * rows)}",
        version_rows,
    )
    sql.execute(
        f"INSERT INTO {_RECORD} (agent_id, key, version, commit_ts, value_json, deleted, "
        f"updated_at) VALUES {', '.join(['(%s, %s, %s, %s, %s, %s, %s)'] * rows)} "
        "ON CONFLICT (agent_id, key) DO UPDATE SET version = excluded.version, "
        "commit_ts = excluded.commit_ts, value_json = excluded.value_json, "
        "deleted = excluded.deleted, updated_at = excluded.updated_at",
        record_rows,
    )
    return versions


def _project(
    agent: Agent, ops: list[StagedOp], versions: dict[tuple[str, str], int], now: datetime
) -> set[str]:
    """Keep the agent, its task and steps in step with the keys written (docs/contract.md §3)."""
    changed: set[str] = set()
    step_ops = [op for op in ops if classify(op.key).kind is KeyKind.STEP]
    if step_ops:
        changed |= _project_steps(agent, step_ops, versions, now)
    for op in ops:
        kind = classify(op.key).kind
        if kind is KeyKind.TASK:
            changed |= _project_task(agent, op, versions[(op.agent_id, op.key)], now)
        elif kind in (KeyKind.ANSWER, KeyKind.FAILURE):
            changed |= _project_ending(agent, op, kind, now)
    # A process writing the agent's task or steps (and not finishing it) is running it.
    runs_it = any(classify(op.key).kind in (KeyKind.TASK, KeyKind.STEP) for op in ops)
    if runs_it and not _ends_run(ops) and agent.has_task and agent.state != Agent.State.ACTIVE:
        agent.state = Agent.State.ACTIVE
        agent.finished_at = None
        changed |= {"state", "finished_at"}
    return changed


def _ends_run(ops: Sequence[StagedOp]) -> bool:
    return any(classify(op.key).ends_run and not op.is_delete for op in ops)


def _project_ending(agent: Agent, op: StagedOp, kind: KeyKind, now: datetime) -> set[str]:
    """`answer` completes the agent, `failure` fails it; deleting either reopens it."""
    ending = Agent.State.COMPLETED if kind is KeyKind.ANSWER else Agent.State.FAILED
    if op.is_delete:
        if agent.state != ending:
            return set()
        agent.state = Agent.State.ACTIVE if agent.has_task else Agent.State.IDLE
        agent.finished_at = None
        return {"state", "finished_at"}
    agent.state = ending
    agent.finished_at = now
    agent.error = "" if kind is KeyKind.ANSWER else _error_text(op.value)
    return {"state", "finished_at", "error"}


def _error_text(value: Any) -> str:
    if isinstance(value, dict) and "error" in value:
        value = value["error"]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _project_task(agent: Agent, op: StagedOp, version: int, now: datetime) -> set[str]:
    if op.is_delete:
        sql.execute(f"DELETE FROM {_TASK} WHERE agent_id = %s", [agent.pk])
        agent.has_task = False
        agent.task_summary = ""
        if agent.state == Agent.State.ACTIVE:
            agent.state = Agent.State.IDLE
        return {"has_task", "task_summary", "state"}
    summary = summarize(op.value)
    sql.execute(
        f"INSERT INTO {_TASK} (agent_id, value_json, summary, version, written_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (agent_id) DO UPDATE SET "
        "value_json = excluded.value_json, summary = excluded.summary, "
        "version = excluded.version, written_at = excluded.written_at",
        [agent.pk, op.value_json, summary, version, sql.db_datetime(now)],
    )
    agent.has_task = True
    agent.task_summary = summary
    if agent.state == Agent.State.IDLE:
        agent.state = Agent.State.ACTIVE
    return {"has_task", "task_summary", "state"}


_COUNTERS = {
    Step.Status.DONE: "steps_done",
    Step.Status.PENDING: "steps_pending",
    Step.Status.FAILED: "steps_failed",
}


def _count(agent: Agent, status: str, delta: int) -> None:
    name = _COUNTERS.get(status)  # type: ignore[call-overload]
    if name:
        setattr(agent, name, max(0, getattr(agent, name) + delta))


# A step written pending again after it ended is a re-run: it starts anew.
_UPSERT_STEP = f"""
INSERT INTO {_STEP} (agent_id, key, number, status, action_json, result_json, error_json,
                     version, started_at, ended_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (agent_id, key) DO UPDATE SET
    status = excluded.status, action_json = excluded.action_json,
    result_json = excluded.result_json, error_json = excluded.error_json,
    version = excluded.version, ended_at = excluded.ended_at,
    started_at = CASE
        WHEN {_STEP}.status IN ('done', 'failed') AND excluded.status = 'pending'
        THEN excluded.started_at ELSE {_STEP}.started_at END
"""


def _project_steps(
    agent: Agent, ops: list[StagedOp], versions: dict[tuple[str, str], int], now: datetime
) -> set[str]:
    keys = list(dict.fromkeys(op.key for op in ops))
    _check_one_key_per_step(agent, ops)
    existing: dict[str, str] = dict(
        sql.fetchall(  # type: ignore[arg-type]
            f"SELECT key, status FROM {_STEP} "
            f"WHERE agent_id = %s AND key IN ({sql.placeholders(len(keys))})",
            [agent.pk, *keys],
        )
    )
    at = sql.db_datetime(now)
    removed_max = False
    for op in ops:
        number = classify(op.key).step_number
        assert number is not None
        old_status = existing.get(op.key)
        if op.is_delete:
            if old_status is not None:
                _count(agent, old_status, -1)
                sql.execute(
                    f"DELETE FROM {_STEP} WHERE agent_id = %s AND key = %s", [agent.pk, op.key]
                )
                del existing[op.key]
                removed_max |= number == agent.last_step
            continue
        status = step_status(op.value)
        ended = at if status in (Step.Status.DONE, Step.Status.FAILED) else None
        sql.execute(
            _UPSERT_STEP,
            [
                agent.pk,
                op.key,
                number,
                status,
                field_json(op.value, "action"),
                field_json(op.value, "result"),
                field_json(op.value, "error"),
                versions[(op.agent_id, op.key)],
                at,
                ended,
            ],
        )
        if old_status is not None:
            _count(agent, old_status, -1)
        existing[op.key] = status
        _count(agent, status, +1)
        if agent.last_step is None or number > agent.last_step:
            agent.last_step = number
    if removed_max:
        row = sql.fetchone(f"SELECT max(number) FROM {_STEP} WHERE agent_id = %s", [agent.pk])
        agent.last_step = row[0] if row else None
    return {"steps_done", "steps_pending", "steps_failed", "last_step"}


def _check_one_key_per_step(agent: Agent, ops: list[StagedOp]) -> None:
    """One step number is one step: `step:3`, `step:03` and `step/3` may not both be live
    (docs/client.md, steps). Refuse the commit, naming the key that holds the step."""
    writes: dict[int, str] = {}
    for op in ops:
        number = classify(op.key).step_number
        if op.is_delete or number is None:
            continue
        other = writes.setdefault(number, op.key)
        if other != op.key:
            raise ValidationError(
                f"keys {other!r} and {op.key!r} both name step {number} of agent "
                f"{agent.agent_id!r}; write one key per step"
            )
    if not writes:
        return
    deleted = [op.key for op in ops if op.is_delete]
    row = sql.fetchone(
        f"SELECT number, key FROM {_STEP} WHERE agent_id = %s "
        f"AND number IN ({sql.placeholders(len(writes))}) "
        f"AND key NOT IN ({sql.placeholders(len(writes) + len(deleted))})",
        [agent.pk, *writes, *writes.values(), *deleted],
    )
    if row is not None:
        raise ValidationError(
            f"step {row[0]} of agent {agent.agent_id!r} is recorded under the key {row[1]!r}; "
            f"write that key, not {writes[row[0]]!r} (one step number is one step)"
        )


def _take_lease(agent: Agent, owner: LeaseOwner, expires_at: datetime) -> set[str]:
    if agent.lease_owner != owner.token:
        agent.lease_epoch += 1  # a new holder: fence off every earlier one
    agent.lease_owner = owner.token
    agent.lease_host = owner.host
    agent.lease_pid = owner.pid
    agent.lease_expires_at = expires_at
    return {"lease_owner", "lease_host", "lease_pid", "lease_expires_at", "lease_epoch"}


def _clear_lease(agent: Agent) -> set[str]:
    for name, value in Agent.NO_LEASE.items():
        setattr(agent, name, value)
    return set(Agent.NO_LEASE)
