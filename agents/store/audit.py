"""The audit log of operator actions (docs/contract.md §7).

Every action an operator takes (resume, cancel, pause, edit, a step decision, a token
made or revoked, …) writes its `OperatorAction` row here, inside the store transaction
of the action itself: the action and its record commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from statehouse_agents.models import Agent, OperatorAction
from statehouse_agents.store import sql

__all__ = ["SYSTEM", "ActionRecord", "record_action", "record_actions"]

# The actor of actions nobody in particular asked for (a command run without a name).
SYSTEM = "system"


def _check_in_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise AssertionError(
            "record_action must run inside the store transaction of the action it records"
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
    _check_in_transaction()
    if action not in OperatorAction.Action.values:
        raise ValueError(f"unknown operator action {action!r}")
    return OperatorAction.objects.create(
        actor=(actor or SYSTEM)[:255],
        at=sql.db_now(),
        agent=agent,
        namespace=agent.namespace if agent is not None else namespace,
        agent_name=agent.agent_id if agent is not None else agent_id,
        action=action,
        reason=reason,
        before=before,
        after=after,
        detail=detail or {},
    )


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One row of `record_actions`: the agent and what changed for it."""

    agent_pk: int
    namespace: str
    agent_id: str
    before: Any = None
    after: Any = None
    detail: dict[str, Any] = field(default_factory=dict)


def record_actions(
    *, actor: str, action: str, rows: Sequence[ActionRecord], reason: str = ""
) -> list[OperatorAction]:
    """Write the audit rows of one bulk action (one insert), in its transaction."""
    _check_in_transaction()
    if action not in OperatorAction.Action.values:
        raise ValueError(f"unknown operator action {action!r}")
    if not rows:
        return []
    now = sql.db_now()
    return OperatorAction.objects.bulk_create(
        [
            OperatorAction(
                actor=(actor or SYSTEM)[:255],
                at=now,
                agent_id=row.agent_pk,
                namespace=row.namespace,
                agent_name=row.agent_id,
                action=action,
                reason=reason,
                before=row.before,
                after=row.after,
                detail=row.detail,
            )
            for row in rows
        ]
    )
