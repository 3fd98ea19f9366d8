"""Operator controls of an agent's run (docs/contract.md §7): cancel, pause, unpause.

Each is one transaction that locks the agent's row, changes its state and writes its
audit record (agents/store/audit.py). The agent's own process learns of them at its next
write of its task, a step or its answer, which reads the state in the same locked read of
the agent row as its lease (agents/store/commit.py): a cancelled agent's write raises
AgentCancelledError; a paused agent's write waits, polling with back-off, until it is
unpaused (or cancelled, or STATEHOUSE_PAUSE_TIMEOUT_SECONDS pass: AgentPausedError). A
resume run under a worker is stopped by the worker, which watches its claims' agents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from django.db.models.functions import Now
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, OperatorAction, ResumeRequest
from statehouse_agents.store.atomic import run_atomic, run_atomic_chunks
from statehouse_agents.store.audit import ActionRecord, record_action, record_actions
from statehouse_agents.store.locking import lock_rows, locked_agent

from statehouse.errors import (
    AgentCancelledError,
    AgentPausedError,
    OperatorActionError,
)

__all__ = [
    "PausedNow",
    "cancel_agent",
    "cancel_agents",
    "check_operator_controls",
    "pause_agent",
    "unpause_agent",
    "wait_while_paused",
]

T = TypeVar("T")
_FIRST_POLL = 0.05
_LONGEST_POLL = 1.0


# --- what a commit checks -----------------------------------------------------------------


class PausedNow(AgentPausedError):
    """Raised inside a commit of a paused agent's step; `commit` waits and tries again."""

    def timed_out(self, seconds: float) -> AgentPausedError:
        return AgentPausedError(
            f"agent {self.agent_id!r} is paused by an operator and was not unpaused within "
            f"{seconds:g} s (STATEHOUSE_PAUSE_TIMEOUT_SECONDS); nothing was written",
            agent_id=self.agent_id,
        )


def check_operator_controls(leasing: Iterable[str], agents: dict[str, Agent]) -> None:
    """Refuse a write of the task, a step or the answer of a cancelled or paused agent."""
    for agent_id in sorted(leasing):
        state = agents[agent_id].state
        if state == Agent.State.CANCELLED:
            raise AgentCancelledError(
                f"agent {agent_id!r} was cancelled by an operator; stop running it: "
                "nothing was written",
                agent_id=agent_id,
            )
        if state == Agent.State.PAUSED:
            raise PausedNow(f"agent {agent_id!r} is paused by an operator", agent_id=agent_id)


def wait_while_paused(paused: PausedNow, attempt: Callable[[], T]) -> T:
    """Run `attempt` again, with back-off, while it finds the agent paused."""
    limit = get_settings().pause_timeout_seconds
    deadline = time.monotonic() + limit
    pause = _FIRST_POLL
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise paused.timed_out(limit)
        time.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_POLL)
        try:
            return attempt()
        except PausedNow as again:
            paused = again


# --- the actions ----------------------------------------------------------------------------


def _refuse(agent: Agent, action: str, allowed: Sequence[str]) -> None:
    if agent.status_value not in allowed:
        raise OperatorActionError(
            f"agent {agent.agent_id!r} is {agent.status_value}; only "
            f"{', '.join(str(s) for s in allowed)} agents can be {action}; nothing was changed"
        )


def _cancel_fields(actor: str, reason: str) -> dict[str, object]:
    error = f"cancelled by {actor or 'an operator'}" + (f": {reason}" if reason else "")
    return {
        "state": Agent.State.CANCELLED,
        "finished_at": Now(),
        "paused_at": None,
        "paused_from": "",
        "error": error,
        **Agent.NO_LEASE,
    }


def _close_queued(agent_pks: list[int]) -> int:
    """Close the queued resumes of cancelled agents. A claimed one is left to its worker,
    which stops the run and settles it as cancelled (agents/worker.py)."""
    return (
        ResumeRequest.objects.queued()
        .filter(agent_id__in=agent_pks)
        .update(
            status=ResumeRequest.Status.CANCELLED,
            finished_at=Now(),
            last_error="the agent was cancelled",
        )
    )


# What an action did to its agent: the status after, and what its audit record's detail adds.
_Change = tuple[str, dict[str, object]]


def _control(
    action: str,
    change: Callable[[Agent], _Change],
    namespace: str,
    agent_id: str,
    actor: str,
    reason: str,
    source: str,
) -> OperatorAction:
    """One operator action on one agent, in one transaction: lock the agent's row, `change`
    it (which refuses a status the action does not apply to) and write its audit record,
    with the status before and after; return the record."""

    def act() -> OperatorAction:
        agent = locked_agent(namespace, agent_id)
        status, detail = change(agent)
        return record_action(
            actor=actor,
            action=action,
            agent=agent,
            reason=reason,
            before={"status": agent.status_value},
            after={"status": status},
            detail={"source": source, **detail},
        )

    return run_atomic(act, what=action)


def cancel_agent(
    *, namespace: str, agent_id: str, actor: str, reason: str = "", source: str = "dashboard"
) -> OperatorAction:
    """Cancel one agent (a terminal status); return its audit record."""

    def cancel(agent: Agent) -> _Change:
        _refuse(agent, "cancelled", Agent.CANCELLABLE_STATUSES)
        Agent.objects.filter(pk=agent.pk).update(**_cancel_fields(actor, reason))
        return Agent.Status.CANCELLED.value, {"resumes_cancelled": _close_queued([agent.pk])}

    action = OperatorAction.Action.CANCEL
    return _control(action, cancel, namespace, agent_id, actor, reason, source)


def cancel_agents(
    *,
    agent_pks: Sequence[int],
    actor: str,
    reason: str = "",
    source: str = "command",
    selection: str = "",
) -> Iterable[int]:
    """Cancel many agents, a chunk per transaction; yield how many each cancelled.

    Agents `cancel_agent` refuses are skipped: finished ones (completed, failed,
    cancelled) and those waiting for a decision (`Agent.CANCELLABLE_STATUSES`). Each cancelled
    agent gets its own audit record, in its chunk's transaction; `selection` (the filters
    that chose the agents, in words) is kept in each record's detail.
    """
    detail: dict[str, object] = {"source": source, "bulk": True}
    if selection:
        detail["selection"] = selection

    def cancel_chunk(chunk: list[int]) -> int:
        found = lock_rows(Agent.objects.filter(pk__in=chunk).with_cancellable_status())
        pks = [row[0] for row in found]
        if not pks:
            return 0
        Agent.objects.filter(pk__in=pks).update(**_cancel_fields(actor, reason))
        _close_queued(pks)
        record_actions(
            actor=actor,
            action=OperatorAction.Action.CANCEL,
            reason=reason,
            rows=[
                ActionRecord.status_change(row, Agent.Status.CANCELLED.value, detail)
                for row in found
            ],
        )
        return len(found)

    return run_atomic_chunks(agent_pks, cancel_chunk, what="bulk cancel")


def pause_agent(
    *, namespace: str, agent_id: str, actor: str, reason: str = "", source: str = "dashboard"
) -> OperatorAction:
    """Pause one agent: its next step waits until it is unpaused."""

    def pause(agent: Agent) -> _Change:
        _refuse(agent, "paused", Agent.PAUSABLE_STATUSES)
        Agent.objects.filter(pk=agent.pk).update(
            state=Agent.State.PAUSED, paused_at=Now(), paused_from=agent.state
        )
        return Agent.Status.PAUSED.value, {}

    action = OperatorAction.Action.PAUSE
    return _control(action, pause, namespace, agent_id, actor, reason, source)


def unpause_agent(
    *, namespace: str, agent_id: str, actor: str, reason: str = "", source: str = "dashboard"
) -> OperatorAction:
    """Unpause one agent: it goes back to the state it was paused in."""

    def unpause(agent: Agent) -> _Change:
        _refuse(agent, "unpaused", (Agent.Status.PAUSED,))
        back = agent.paused_from or (Agent.State.ACTIVE if agent.has_task else Agent.State.IDLE)
        Agent.objects.filter(pk=agent.pk).update(state=back, paused_at=None, paused_from="")
        fresh = Agent.objects.filter(pk=agent.pk).annotate_status().get()
        paused_at = agent.paused_at
        return fresh.status_value, {"paused_at": paused_at.isoformat()} if paused_at else {}

    action = OperatorAction.Action.UNPAUSE
    return _control(action, unpause, namespace, agent_id, actor, reason, source)
