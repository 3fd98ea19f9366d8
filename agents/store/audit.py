"""The audit log of operator actions (docs/contract.md §7).

Every action an operator takes (resume, cancel, pause, edit, a step decision, a token
made or revoked, …) writes its `OperatorAction` row here, inside the store transaction
of the action itself: the action and its record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from statehouse_agents.models import Agent, OperatorAction
from statehouse_agents.store import sql
from statehouse_agents.store.locking import AgentRow

__all__ = ["SYSTEM", "ActionRecord", "record_action", "record_actions"]

# The actor of actions nobody in particular asked for (a command run without a name).
SYSTEM = "system"


def _check(action: str) -> None:
    """An audit row is written in the transaction of the action it records, and names a
    known action."""
    if not transaction.get_connection().in_atomic_block:
        raise AssertionError(
            "record_action must run inside the store transaction of the action it records"
        )
    if action not in OperatorAction.Action.values:
        raise ValueError(f"unknown operator action {action!r}")


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One row of `record_actions`: the agent and what changed for it."""

    agent_pk: int | None
    namespace: str
    agent_id: str
    before: Any = None
    after: Any = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def status_change(cls, agent: AgentRow, status: str, detail: dict[str, Any]) -> ActionRecord:
        """The record of a bulk action that moved `agent` (as `lock_rows` read it) to
        `status`: the status before and after."""
        pk, namespace, agent_id, before = agent
        return cls(pk, namespace, agent_id, {"status": before}, {"status": status}, detail)


def _row(
    *, actor: str, action: str, reason: str, at: datetime, row: ActionRecord
) -> OperatorAction:
    """The audit row of one agent (or none) in one action, not saved yet."""
    return OperatorAction(
        actor=(actor or SYSTEM)[:255],
        at=at,
        agent_id=row.agent_pk,
        namespace=row.namespace,
        agent_name=row.agent_id,
        action=action,
        reason=reason,
        before=row.before,
        after=row.after,
        detail=row.detail,
    )


def record_action(
    *,
    actor: str,
    action: str,
    agent: Agent | None = None,
    namespace: str = "",
    agent_id: str = "",
    reason: str = "",
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
) -> OperatorAction:
    """Write one audit row; call it inside the transaction of the action it records.

    `agent` names the agent (its namespace and id are copied, so the row outlives it);
    `namespace`/`agent_id` name one without a row, or none for actions such as tokens.
    """
    _check(action)
    if agent is not None:
        namespace, agent_id = agent.namespace, agent.agent_id
    pk = agent.pk if agent is not None else None
    what = ActionRecord(pk, namespace, agent_id, before, after, detail or {})
    record = _row(actor=actor, action=action, reason=reason, at=sql.db_now(), row=what)
    record.agent = agent
    record.save(force_insert=True)
    return record


def record_actions(
    *, actor: str, action: str, rows: Sequence[ActionRecord], reason: str = ""
) -> list[OperatorAction]:
    """Write the audit rows of one bulk action (one insert), in its transaction."""
    _check(action)
    if not rows:
        return []
    now = sql.db_now()
    return OperatorAction.objects.bulk_create(
        [_row(actor=actor, action=action, reason=reason, at=now, row=row) for row in rows]
    )
