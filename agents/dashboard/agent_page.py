"""The agent page: status, lease, task, step timeline, resume attempts, operator actions
and current keys.

`agent_live` is the part an htmx poll refreshes while the agent may still change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.utils import timezone
from statehouse_agents.dashboard.audit_page import agent_actions, audit_url_for
from statehouse_agents.dashboard.formatting import (
    ShownValue,
    duration_text,
    json_text,
    pretty_json,
)
from statehouse_agents.dashboard.llm_usage import agent_usage
from statehouse_agents.dashboard.pager import Pager
from statehouse_agents.models import Agent, Record, Step

STEPS_SHOWN = 50
KEYS_PER_PAGE = 50
APPROVALS_SHOWN = 10


@dataclass(frozen=True)
class TimelineStep:
    step: Step
    action: str
    result: str
    error: str
    duration: str
    running_for: str
    # Pending while no process runs the agent (`Step.is_in_doubt`): its action may or
    # may not have run; an operator can decide it (docs/operations.md, "In-doubt steps").
    in_doubt: bool = False

    @property
    def status(self) -> str:
        return self.step.status

    @property
    def needs_review(self) -> bool:
        return self.in_doubt and self.step.policy == Step.Policy.REVIEW

    @property
    def marker(self) -> str:
        return Step.MARKERS.get(self.step.status, Step.MARKERS[Step.Status.UNKNOWN])


def agent_live(agent: Agent) -> dict[str, Any]:
    """The parts of the agent page that change while it runs: status, lease, steps, resumes."""
    total_steps = agent.steps_done + agent.steps_pending + agent.steps_failed
    steps = list(
        Step.objects.filter(agent=agent).with_values().order_by("-number", "-key")[:STEPS_SHOWN]
    )
    steps.reverse()
    now = timezone.now()
    timeline = [
        TimelineStep(
            step=step,
            action=json_text(step.action_json),
            result=json_text(step.result_json),
            error=json_text(step.error_json),
            duration=duration_text(step.duration),
            running_for="" if step.ended_at else duration_text(now - step.started_at),
            in_doubt=step.is_in_doubt(agent),
        )
        for step in steps
    ]
    attempts = list(agent.resume_attempts.order_by("-started_at", "-id")[:20])
    approvals = list(agent.approvals.order_by("-requested_at", "-id")[:APPROVALS_SHOWN])
    task = getattr(agent, "task", None) if agent.has_task else None
    return {
        "agent": agent,
        "task": task,
        "task_value": pretty_json(task.value_json) if task else "",
        "timeline": timeline,
        "steps_hidden": max(0, total_steps - len(timeline)),
        "attempts": [(attempt, duration_text(attempt.duration)) for attempt in attempts],
        "requests": list(agent.resume_requests.order_by("-requested_at", "-id")[:10]),
        "pending_approval": next((a for a in approvals if a.is_pending), None),
        "approvals": approvals,
        "resumable": agent.is_resumable,
        # The in-doubt review steps shown (pending steps are the agent's last ones): a
        # resume is refused until each is decided.
        "needs_review": [item for item in timeline if item.needs_review],
        "polling": agent.is_live,
        "lease_live": agent.lease_is_live(now),
        "actions": agent_actions(agent),
        "agent_audit_url": audit_url_for(agent),
        **agent_usage(agent),
    }


def agent_for_page(pk: int) -> Agent | None:
    return (
        Agent.objects.filter(pk=pk)
        .annotate_status()
        .annotate_waiting_for_input()
        .select_related("task", "forked_from")
        .first()
    )


def agent_detail(agent: Agent, *, keys_page: str | None) -> dict[str, Any]:
    records = Paginator(
        Record.objects.filter(agent=agent, deleted=False).with_values().order_by("key"),
        KEYS_PER_PAGE,
    )
    page = records.get_page(keys_page)
    keys = [(record, ShownValue.of(record.value_json)) for record in page.object_list]
    return {
        **agent_live(agent),
        "keys": keys,
        "keys_page": page,
        "keys_pager": Pager.of_page(
            page, label="Pages of keys", param="keys", anchor="#keys-heading"
        ),
    }
