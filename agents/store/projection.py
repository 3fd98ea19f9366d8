"""The agent/task/step projection of the key conventions (docs/client.md, "Agents, tasks
and steps"), kept by the commit in the same database transaction as the store write.

`project` moves an agent (in memory) to what its keys now say and returns which of its
fields changed and the step rows to upsert; the commit writes them with the rest. The
rare writes (a task, a deleted step) are made here directly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statehouse_agents.conventions import KeyKind, classify, step_status, summarize
from statehouse_agents.models import Agent, Step, Task
from statehouse_agents.store import sql
from statehouse_agents.store.operations import Current, StagedOp

from statehouse.errors import ValidationError
from statehouse.steps import check_policy
from statehouse.validation import check_llm_metadata

_TASK = Task._meta.db_table
_STEP = Step._meta.db_table

# The columns of a step row that come from the step's value alone, and their PostgreSQL
# types; `step_values` computes them. Both commit paths write them: adding a column here
# also means adding it to the step INSERT of `statehouse_commit` (docs/architecture.md,
# "The commit function").
STEP_VALUE_COLUMNS: tuple[str, ...] = (
    "status",
    "model",
    "tokens_in",
    "tokens_out",
    "cost",
    "policy",
)
STEP_VALUE_TYPES: tuple[str, ...] = (
    "text",
    "text",
    "bigint",
    "bigint",
    "double precision",
    "text",
)

# The columns of a step row as `StepRow` holds them, and their PostgreSQL array types.
STEP_COLUMNS = (
    "agent_id",
    "key",
    "number",
    *STEP_VALUE_COLUMNS,
    "version",
    "started_at",
    "ended_at",
)
STEP_TYPES = ("bigint", "text", "int", *STEP_VALUE_TYPES, "int", "timestamptz", "timestamptz")

# A step written pending again after it ended is a re-run: it starts anew.
_ENDED = "(" + ", ".join(f"'{status.value}'" for status in Step.ENDED_STATUSES) + ")"
_UPDATED = ", ".join(f"{c} = excluded.{c}" for c in (*STEP_VALUE_COLUMNS, "version", "ended_at"))
STEP_CONFLICT = f"""
ON CONFLICT (agent_id, key) DO UPDATE SET {_UPDATED},
    started_at = CASE
        WHEN {_STEP}.status IN {_ENDED} AND excluded.status = '{Step.Status.PENDING.value}'
        THEN excluded.started_at ELSE {_STEP}.started_at END
"""


def step_values(value: Any, *, where: str) -> dict[str, Any]:
    """The step row's columns that its value decides (`STEP_VALUE_COLUMNS`), in that
    order; ValidationError naming `where` for LLM metadata of the wrong type or a policy
    that is not one of statehouse/steps.py's."""
    llm = check_llm_metadata(value, where=where)
    policy = check_policy(value, where=where)
    return {
        "status": step_status(value),
        "model": llm.get("model", ""),
        "tokens_in": llm.get("tokens_in"),
        "tokens_out": llm.get("tokens_out"),
        "cost": llm.get("cost"),
        "policy": policy,
    }


StepRow = tuple[Any, ...]

_COUNTERS: dict[str, str] = {
    Step.Status.DONE: "steps_done",
    Step.Status.PENDING: "steps_pending",
    Step.Status.FAILED: "steps_failed",
}


@dataclass(slots=True)
class Projection:
    changed: set[str] = field(default_factory=set)
    step_rows: list[StepRow] = field(default_factory=list)


def ends_run(ops: Sequence[StagedOp]) -> bool:
    """Whether the ops finish the agent (an `answer` or `failure` written)."""
    return any(classify(op.key).ends_run and not op.is_delete for op in ops)


def project(
    agent: Agent,
    ops: Sequence[StagedOp],
    records: Mapping[tuple[str, str], Current],
    versions: Mapping[tuple[str, str], int],
    now: datetime,
) -> Projection:
    """Keep the agent, its task and steps in step with the keys written."""
    result = Projection()
    step_ops = [op for op in ops if classify(op.key).kind is KeyKind.STEP]
    if step_ops:
        # A live step record has its step row; the lock's read brought that row's status.
        existing: dict[str, str] = {}
        for op in step_ops:
            current = records.get((op.agent_id, op.key))
            if current is not None and current.step_status is not None:
                existing[op.key] = current.step_status
        _check_one_key_per_step(agent, step_ops, known=set(existing))
        _project_steps(agent, step_ops, existing, versions, now, result)
    for op in ops:
        kind = classify(op.key).kind
        if kind is KeyKind.TASK:
            result.changed |= _project_task(agent, op, versions[(op.agent_id, op.key)], now)
        elif kind in (KeyKind.ANSWER, KeyKind.FAILURE):
            result.changed |= _project_ending(agent, op, kind, now)
    # A process writing the agent's task or steps (and not finishing it) is running it.
    runs_it = any(classify(op.key).kind in (KeyKind.TASK, KeyKind.STEP) for op in ops)
    if runs_it and not ends_run(ops) and agent.has_task and agent.state != Agent.State.ACTIVE:
        agent.state = Agent.State.ACTIVE
        agent.finished_at = None
        result.changed |= {"state", "finished_at"}
    return result


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


def _count(agent: Agent, status: str | None, delta: int) -> None:
    name = _COUNTERS.get(status) if status is not None else None
    if name:
        setattr(agent, name, max(0, getattr(agent, name) + delta))


def _check_one_key_per_step(agent: Agent, ops: list[StagedOp], *, known: set[str]) -> None:
    """One step number is one step: `step:3`, `step:03` and `step/3` may not both be live
    (docs/client.md, steps). Refuse the commit, naming the key that holds the step.

    A key that already has its step row is that step's key, and a number above the
    agent's `last_step` (the highest number of its step rows, kept by every commit) has
    no row yet: only a new key of a number at or below it costs a look-up. An agent
    taking its steps in order never does."""
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
    last = agent.last_step
    new = {
        number: key
        for number, key in writes.items()
        if key not in known and last is not None and number <= last
    }
    if not new:
        return
    deleted = [op.key for op in ops if op.is_delete]
    row = sql.fetchone(
        f"SELECT number, key FROM {_STEP} WHERE agent_id = %s "
        f"AND number IN ({sql.placeholders(len(new))}) "
        f"AND key NOT IN ({sql.placeholders(len(new) + len(deleted))})",
        [agent.pk, *new, *new.values(), *deleted],
    )
    if row is not None:
        raise ValidationError(
            f"step {row[0]} of agent {agent.agent_id!r} is recorded under the key {row[1]!r}; "
            f"write that key, not {new[row[0]]!r} (one step number is one step)"
        )


def _project_steps(
    agent: Agent,
    ops: list[StagedOp],
    existing: dict[str, str],
    versions: Mapping[tuple[str, str], int],
    now: datetime,
    result: Projection,
) -> None:
    """Move the agent's step counters and last step, and stage the step rows, for the
    writes of its step keys; `existing`: the status of each of their steps that has a row
    now, by key."""
    before = (agent.steps_done, agent.steps_pending, agent.steps_failed, agent.last_step)
    at = sql.db_datetime(now)
    removed_max = False
    upserted: dict[str, StepRow] = {}
    for op in ops:
        number = classify(op.key).step_number
        assert number is not None
        old_status = existing.pop(op.key, None)
        _count(agent, old_status, -1)
        if op.is_delete:
            upserted.pop(op.key, None)
            if old_status is not None:
                sql.execute(
                    f"DELETE FROM {_STEP} WHERE agent_id = %s AND key = %s", [agent.pk, op.key]
                )
                removed_max |= number == agent.last_step
            continue
        values = step_values(op.value, where=f"agent {agent.agent_id!r} key {op.key!r}")
        status = values["status"]
        ended = at if status in Step.ENDED_STATUSES else None
        upserted[op.key] = (
            agent.pk,
            op.key,
            number,
            *values.values(),
            versions[(op.agent_id, op.key)],
            at,
            ended,
        )
        existing[op.key] = status
        _count(agent, status, +1)
        if agent.last_step is None or number > agent.last_step:
            agent.last_step = number
    if removed_max:
        row = sql.fetchone(f"SELECT max(number) FROM {_STEP} WHERE agent_id = %s", [agent.pk])
        numbers = [n for n in (row[0] if row else None, *(r[2] for r in upserted.values()))]
        known = [n for n in numbers if n is not None]
        agent.last_step = max(known) if known else None
    result.step_rows.extend(upserted.values())
    after = (agent.steps_done, agent.steps_pending, agent.steps_failed, agent.last_step)
    result.changed |= {
        name
        for name, old, new in zip(
            ("steps_done", "steps_pending", "steps_failed", "last_step"), before, after, strict=True
        )
        if old != new
    }
