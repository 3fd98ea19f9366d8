"""Human approvals (docs/contract.md §7, docs/operations.md "Approvals").

request → pending (the agent shows as **waiting**) → approved | rejected

Asking records an `Approval` and sets `Agent.waiting_since` in one transaction under the
agent's row lock; deciding sets the decision, clears `waiting_since`, writes the audit
record and, when no live process waits for the answer (the agent stopped, or a LangGraph
graph stopped at `interrupt()`), queues a resume — all in one transaction. A name is asked
once per agent: asking again returns the same request, decided or not, so an agent that
stopped and was resumed gets the decision by asking again.
"""

from __future__ import annotations

import time
from typing import Any

from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, Approval, OperatorAction, ResumeRequest
from statehouse_agents.store import sql
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.audit import record_action
from statehouse_agents.store.edits import check_reason
from statehouse_agents.store.locking import locked_agent
from statehouse_agents.store.resume import request_resume, resolve_entry_point

from statehouse.errors import (
    AgentFinishedError,
    AlreadyDecidedError,
    AlreadyExistsError,
    NotFoundError,
    NotResumableError,
    ValidationError,
)
from statehouse.validation import check_identifier, encode_value


def request_approval(
    *,
    namespace: str,
    agent_id: str,
    name: str,
    payload: Any = None,
    kind: str = Approval.Kind.REQUEST,
) -> Approval:
    """Record that the agent waits for a decision named `name`; return the request.

    The same name asked again returns the existing request (pending or decided).
    ValidationError: a bad name, a payload that is not JSON or too large.
    AgentFinishedError: a completed or cancelled agent. AlreadyExistsError: another
    request of this agent is still pending.
    """
    check_identifier("name", name)
    if kind not in Approval.Kind.values:
        raise ValidationError(
            f"kind must be one of {', '.join(Approval.Kind.values)}, not {kind!r}"
        )
    payload = {} if payload is None else payload
    encode_value(payload, key=f"approval {name}", max_bytes=get_settings().max_value_bytes)

    def ask() -> Approval:
        agent = locked_agent(namespace, agent_id)
        existing = Approval.objects.filter(agent=agent, name=name).first()
        if existing is not None:
            return existing
        if agent.state in Agent.TERMINAL_STATES:
            raise AgentFinishedError(
                f"agent {agent_id!r} is {agent.state}; a finished agent cannot ask for approval"
            )
        pending = Approval.objects.pending().filter(agent=agent).first()
        if pending is not None:
            raise AlreadyExistsError(
                f"agent {agent_id!r} already waits for the decision {pending.name!r}; "
                "one request at a time"
            )
        now = sql.db_now()
        approval = Approval.objects.create(
            agent=agent, name=name, kind=kind, payload=payload, requested_at=now
        )
        Agent.objects.filter(pk=agent.pk).update(waiting_since=now)
        return approval

    return run_atomic(ask, what="approval request")


def get_approval(*, namespace: str, agent_id: str, approval_id: int) -> Approval:
    """One request of this agent, as stored now (NotFoundError when it is not the agent's)."""
    approval = (
        Approval.objects.filter(
            pk=approval_id, agent__namespace=namespace, agent__agent_id=agent_id
        )
        .select_related("agent")
        .first()
    )
    if approval is None:
        raise NotFoundError(f"agent {agent_id!r} has no approval request {approval_id}")
    return approval


# The longest a single wait for a decision may last (the API's long poll, docs/api.md).
MAX_WAIT_SECONDS = 30.0


def wait_for_decision(
    *,
    namespace: str,
    agent_id: str,
    approval_id: int,
    wait: float = 0.0,
    poll_interval: float = 1.0,
) -> Approval:
    """The request as stored once it is decided, or after `wait` seconds (at most
    MAX_WAIT_SECONDS) if it is still pending then; read every `poll_interval` seconds.

    Each read is its own query outside any transaction, so a decision committed meanwhile
    is seen on both databases."""
    if wait < 0 or wait > MAX_WAIT_SECONDS:
        raise ValidationError(f"wait must be 0 to {MAX_WAIT_SECONDS:g} seconds, not {wait}")
    if poll_interval <= 0:
        raise ValidationError(f"poll_interval must be more than 0 seconds, not {poll_interval}")
    deadline = time.monotonic() + wait
    approval = get_approval(namespace=namespace, agent_id=agent_id, approval_id=approval_id)
    while approval.is_pending and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(poll_interval, left))
        approval = get_approval(namespace=namespace, agent_id=agent_id, approval_id=approval_id)
    return approval


def decide_approval(
    *, approval_id: int, approve: bool, actor: str, comment: str = ""
) -> tuple[Approval, ResumeRequest | None]:
    """Approve or reject a pending request; return it and the resume queued, if any.

    AlreadyDecidedError when it was decided already (nothing changes); NotFoundError when
    there is no such request. A resume is queued when no live process waits for the
    answer and the agent has a resume entry point (a LangGraph interrupt always needs one).
    """
    comment = check_reason(comment, required=False, what="comment")

    def decide() -> tuple[Approval, ResumeRequest | None]:
        found = Approval.objects.filter(pk=approval_id).select_related("agent").first()
        if found is None:
            raise NotFoundError(f"no approval request {approval_id}")
        # Lock the agent's row first (the order every write of an agent takes), then
        # read the request again under that lock: two deciders cannot both win.
        agent = locked_agent(found.agent.namespace, found.agent.agent_id)
        approval = Approval.objects.select_for_update().get(pk=approval_id)
        if not approval.is_pending:
            raise AlreadyDecidedError(
                f"approval {approval.name!r} of {agent} was already {approval.status} by "
                f"{approval.decided_by or 'someone'}; nothing changed"
            )
        before = {"status": approval.status}
        approval.status = Approval.Status.APPROVED if approve else Approval.Status.REJECTED
        approval.decided_by = actor
        approval.decided_at = sql.db_now()
        approval.comment = comment
        approval.save(update_fields=["status", "decided_by", "decided_at", "comment"])
        Agent.objects.filter(pk=agent.pk).update(waiting_since=None)
        resume_request = _resume_if_nobody_waits(agent, approval, actor)
        record_action(
            actor=actor,
            action=OperatorAction.Action.APPROVE if approve else OperatorAction.Action.REJECT,
            agent=agent,
            reason=comment,
            before=before,
            after={"status": approval.status},
            detail={
                "approval": approval.pk,
                "name": approval.name,
                "kind": approval.kind,
                "resume_request": resume_request.pk if resume_request else None,
            },
        )
        return approval, resume_request

    return run_atomic(decide, what="approval decision")


def _resume_if_nobody_waits(agent: Agent, approval: Approval, actor: str) -> ResumeRequest | None:
    if agent.status_value != Agent.Status.WAITING or agent.lease_is_live(sql.db_now()):
        return None  # a live process polls for the answer (request_approval)
    if not resolve_entry_point(agent, get_settings()):
        return None  # nothing could run it: the operator resumes it by hand later
    try:
        request, _created = request_resume(
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            source=ResumeRequest.Source.DASHBOARD,
            requested_by=actor,
        )
    except NotResumableError:
        return None
    return request


def decision_of(approval: Approval) -> dict[str, Any]:
    """The decision as the client returns it (and a LangGraph interrupt's resume value)."""
    return {
        "id": approval.pk,
        "name": approval.name,
        "status": approval.status,
        "approved": approval.status == Approval.Status.APPROVED,
        "decided": approval.status != Approval.Status.PENDING,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "comment": approval.comment,
        "payload": approval.payload,
    }
