"""Every write of the store that must be atomic. One `transaction.atomic()` per operation.

A commit locks the rows of the agents it touches (in agent-id order, so two commits never
deadlock on each other), checks compare-and-set expectations and leases, then appends the
commit, the new versions, the current records and the agent/task/step projection, all in
one database transaction: the dashboard never disagrees with the store.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.db import DatabaseError, IntegrityError, OperationalError, transaction
from django.db.models import Max
from django.db.models.functions import Now
from django.utils import timezone

from agents.conventions import KeyKind, classify, field_json, step_status, summarize
from agents.models import Agent, Commit, Record, Step, Task, Version
from statehouse.errors import ConflictError, LeaseHeldError, StatehouseError

logger = logging.getLogger("statehouse.store")

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
    leased: frozenset[str] = frozenset()
    released: frozenset[str] = frozenset()


def commit(
    *,
    namespace: str,
    ops: Sequence[StagedOp],
    owner: LeaseOwner | None = None,
    lease_seconds: float = 30.0,
    txn_id: str | None = None,
    at: datetime | None = None,
) -> CommitResult:
    """Apply `ops` as one transaction, all or nothing. An empty transaction records nothing.

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


def release_leases(*, owner: LeaseOwner, agent_pks: Iterable[int] | None = None) -> int:
    """Give up this owner's leases (all of them, or those of `agent_pks`)."""
    held = Agent.objects.filter(lease_owner=owner.token)
    if agent_pks is not None:
        held = held.filter(pk__in=list(agent_pks))
    return run_atomic(
        lambda: held.update(lease_owner="", lease_host="", lease_pid=None, lease_expires_at=None),
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
    at: datetime | None = None,
) -> CommitResult:
    agents, now = lock_agents(namespace, sorted({op.agent_id for op in ops}))
    lease_now, now = now, at or now
    records = _current_records(agents, ops)

    _check_expectations(ops, agents, records)
    leasing = {op.agent_id for op in ops if classify(op.key).takes_lease}
    _check_leases(leasing, agents, owner, lease_now)

    log = Commit.objects.create(
        txn_id=txn_id, namespace=namespace, committed_at=now, op_count=len(ops)
    )
    versions = _append_versions(log, ops, agents, records, now)

    leased: set[str] = set()
    released: set[str] = set()
    for agent_id, agent in agents.items():
        agent_ops = [op for op in ops if op.agent_id == agent_id]
        changed = _project(agent, agent_ops, versions, now)
        agent.last_activity_at = now
        agent.last_commit_ts = log.pk
        changed |= {"last_activity_at", "last_commit_ts"}
        if agent_id in leasing:
            if _ends_run(agent_ops):
                changed |= _clear_lease(agent)
                released.add(agent_id)
            elif owner is not None:
                changed |= _take_lease(agent, owner, lease_now + timedelta(seconds=lease_seconds))
                leased.add(agent_id)
        agent.save(update_fields=sorted(changed))

    return CommitResult(
        commit_ts=log.pk,
        txn_id=txn_id,
        versions={(op.agent_id, op.key): versions[(op.agent_id, op.key)] for op in ops},
        leased=frozenset(leased),
        released=frozenset(released),
    )


def lock_agents(namespace: str, agent_ids: list[str]) -> tuple[dict[str, Agent], datetime]:
    """Lock (creating if needed) the agents' rows in id order; return them and the DB time."""

    def select() -> dict[str, Any]:
        rows = (
            Agent.objects.select_for_update()
            .filter(namespace=namespace, agent_id__in=agent_ids)
            .annotate(db_now=Now())
            .order_by("agent_id")
        )
        return {agent.agent_id: agent for agent in rows}

    agents = select()
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
        agents = select()
    now = _aware(next(iter(agents.values())).db_now)
    return agents, now


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # SQLite hands back text for expressions
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, timezone.utc)


def _current_records(
    agents: dict[str, Agent], ops: Sequence[StagedOp]
) -> dict[tuple[str, str], Record]:
    by_pk = {agent.pk: agent_id for agent_id, agent in agents.items()}
    wanted = {(op.agent_id, op.key) for op in ops}
    rows = Record.objects.filter(agent_id__in=list(by_pk), key__in={op.key for op in ops})
    found = {(by_pk[r.agent_id], r.key): r for r in rows}
    return {ident: rec for ident, rec in found.items() if ident in wanted}


def _check_expectations(
    ops: Sequence[StagedOp], agents: dict[str, Agent], records: dict[tuple[str, str], Record]
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
    leasing: set[str], agents: dict[str, Agent], owner: LeaseOwner | None, now: datetime
) -> None:
    for agent_id in sorted(leasing):
        agent = agents[agent_id]
        held_by_other = agent.lease_owner and (owner is None or agent.lease_owner != owner.token)
        if held_by_other and agent.lease_expires_at and agent.lease_expires_at > now:
            raise LeaseHeldError(
                f"agent {agent_id!r} is held by {agent.lease_host} pid {agent.lease_pid} "
                f"until {agent.lease_expires_at.isoformat()}; nothing was written",
                agent_id=agent_id,
                host=agent.lease_host,
                pid=agent.lease_pid,
                expires_at=agent.lease_expires_at,
            )


def _append_versions(
    log: Commit,
    ops: Sequence[StagedOp],
    agents: dict[str, Agent],
    records: dict[tuple[str, str], Record],
    now: datetime,
) -> dict[tuple[str, str], int]:
    versions: dict[tuple[str, str], int] = {}
    new_versions: list[Version] = []
    new_records: list[Record] = []
    changed_records: list[Record] = []
    for op in ops:
        agent = agents[op.agent_id]
        record = records.get((op.agent_id, op.key))
        version = (record.version if record else 0) + 1
        versions[(op.agent_id, op.key)] = version
        new_versions.append(
            Version(
                agent=agent,
                key=op.key,
                version=version,
                commit=log,
                value_json=op.value_json,
                deleted=op.is_delete,
            )
        )
        if record is None:
            new_records.append(
                Record(
                    agent=agent,
                    key=op.key,
                    version=version,
                    commit_ts=log.pk,
                    value_json=op.value_json,
                    deleted=op.is_delete,
                    updated_at=now,
                )
            )
        else:
            record.version = version
            record.commit_ts = log.pk
            record.value_json = op.value_json
            record.deleted = op.is_delete
            record.updated_at = now
            changed_records.append(record)
    Version.objects.bulk_create(new_versions)
    if new_records:
        Record.objects.bulk_create(new_records)
    fields = ["version", "commit_ts", "value_json", "deleted", "updated_at"]
    if len(changed_records) == 1:
        record = changed_records[0]
        Record.objects.filter(pk=record.pk).update(**{f: getattr(record, f) for f in fields})
    elif changed_records:
        Record.objects.bulk_update(changed_records, fields)
    return versions


def _project(
    agent: Agent, ops: list[StagedOp], versions: dict[tuple[str, str], int], now: datetime
) -> set[str]:
    """Keep the agent, its task and steps in step with the keys written (CONTRACT §3)."""
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
        Task.objects.filter(agent=agent).delete()
        agent.has_task = False
        agent.task_summary = ""
        if agent.state == Agent.State.ACTIVE:
            agent.state = Agent.State.IDLE
        return {"has_task", "task_summary", "state"}
    summary = summarize(op.value)
    updated = Task.objects.filter(agent=agent).update(
        value_json=op.value_json, summary=summary, version=version, written_at=now
    )
    if not updated:
        Task.objects.create(
            agent=agent, value_json=op.value_json, summary=summary, version=version, written_at=now
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


def _project_steps(
    agent: Agent, ops: list[StagedOp], versions: dict[tuple[str, str], int], now: datetime
) -> set[str]:
    existing = {s.key: s for s in Step.objects.filter(agent=agent, key__in=[op.key for op in ops])}
    removed_max = False
    for op in ops:
        number = classify(op.key).step_number
        assert number is not None
        step = existing.get(op.key)
        if op.is_delete:
            if step is not None:
                _count(agent, step.status, -1)
                step.delete()
                del existing[op.key]
                removed_max |= number == agent.last_step
            continue
        status = step_status(op.value)
        ended = now if status in (Step.Status.DONE, Step.Status.FAILED) else None
        fields = {
            "status": status,
            "action_json": field_json(op.value, "action"),
            "result_json": field_json(op.value, "result"),
            "error_json": field_json(op.value, "error"),
            "version": versions[(op.agent_id, op.key)],
            "ended_at": ended,
        }
        if step is None:
            existing[op.key] = Step.objects.create(
                agent=agent, key=op.key, number=number, started_at=now, **fields
            )
        else:
            _count(agent, step.status, -1)
            if step.status in (Step.Status.DONE, Step.Status.FAILED) and status == "pending":
                fields["started_at"] = now  # a re-run of the step starts anew
            Step.objects.filter(pk=step.pk).update(**fields)
            step.status = status
        _count(agent, status, +1)
        if agent.last_step is None or number > agent.last_step:
            agent.last_step = number
    if removed_max:
        agent.last_step = Step.objects.filter(agent=agent).aggregate(n=Max("number"))["n"]
    return {"steps_done", "steps_pending", "steps_failed", "last_step"}


def _take_lease(agent: Agent, owner: LeaseOwner, expires_at: datetime) -> set[str]:
    agent.lease_owner = owner.token
    agent.lease_host = owner.host
    agent.lease_pid = owner.pid
    agent.lease_expires_at = expires_at
    return {"lease_owner", "lease_host", "lease_pid", "lease_expires_at"}


def _clear_lease(agent: Agent) -> set[str]:
    agent.lease_owner = ""
    agent.lease_host = ""
    agent.lease_pid = None
    agent.lease_expires_at = None
    return {"lease_owner", "lease_host", "lease_pid", "lease_expires_at"}
