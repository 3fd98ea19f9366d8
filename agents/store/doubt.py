"""What a resume does with an agent's in-doubt steps (docs/operations.md, "In-doubt
steps"): their policy, read under the agent's row lock by every path that queues or
claims a resume (agents/store/resume.py).

`retry` steps need nothing: the resumed agent runs them again. `skip` steps are written
done (no result, `"skipped": true`) in the transaction of the resume itself, so the agent
continues after them. A `review` step refuses the resume until an operator decides it
(agents/store/decisions.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from statehouse_agents.conf import get_settings
from statehouse_agents.models import Step
from statehouse_agents.store.commit import commit
from statehouse_agents.store.operations import StagedOp

from statehouse.errors import StepReviewRequiredError
from statehouse.steps import DONE
from statehouse.validation import encode_value

__all__ = ["DoubtfulSteps", "ReviewHold", "doubtful_steps", "review_required", "skip_steps"]


@dataclass(frozen=True, slots=True)
class ReviewHold:
    """An agent held back from a resume by an in-doubt step with the policy `review`."""

    agent_pk: int
    namespace: str
    agent_id: str
    key: str
    number: int

    def __str__(self) -> str:
        agent = self.agent_id
        if self.namespace != "default":
            agent = f"{self.namespace}/{agent}"
        return f"{agent} (step {self.number} needs review)"


@dataclass(slots=True)
class DoubtfulSteps:
    """The pending `skip` and `review` steps of some agents, by agent pk."""

    review: dict[int, Step]
    skip: dict[int, list[Step]]


def doubtful_steps(agent_pks: Iterable[int]) -> DoubtfulSteps:
    """The pending steps with the policy `skip` or `review` of `agent_pks` (one query).

    Callers hold the agents' row locks and have checked that no process runs them, so
    these pending steps are in doubt (`StepQuerySet.in_doubt`).
    """
    found = DoubtfulSteps(review={}, skip={})
    pks = list(agent_pks)
    if not pks:
        return found
    steps = (
        Step.objects.filter(
            agent_id__in=pks,
            status=Step.Status.PENDING,
            policy__in=[Step.Policy.SKIP, Step.Policy.REVIEW],
        )
        .with_values()
        .order_by("agent_id", "number", "key")
    )
    for step in steps:
        if step.policy == Step.Policy.REVIEW:
            found.review.setdefault(step.agent_id, step)
        else:
            found.skip.setdefault(step.agent_id, []).append(step)
    return found


def review_required(step: Step, *, namespace: str, agent_id: str) -> StepReviewRequiredError:
    """The error refusing a resume of `agent_id` held by its review `step`."""
    return StepReviewRequiredError(
        f"agent {agent_id!r} has step {step.number} ({step.key!r}) in doubt with the policy "
        "'review': an operator must decide it on the agent page (run it again, mark it done "
        "or failed) before it can be resumed",
        agent_id=agent_id,
        key=step.key,
        number=step.number,
    )


def skipped_value(value: Any) -> dict[str, Any]:
    """The value a skipped step is written with: done, no result, `"skipped": true`."""
    kept = {k: v for k, v in value.items() if k not in ("result", "error")}
    return {**kept, "status": DONE, "result": None, "skipped": True}


def skip_steps(*, namespace: str, agent_id: str, steps: list[Step]) -> list[str]:
    """Write `steps` (pending, policy `skip`) done and skipped, as one versioned commit
    joining the caller's transaction; return their keys."""
    if not steps:
        return []
    max_bytes = get_settings().max_value_bytes
    ops = []
    for step in steps:
        before = json.loads(step.value_json) if step.value_json else {}
        value = skipped_value(before if isinstance(before, dict) else {})
        ops.append(
            StagedOp(
                agent_id=agent_id,
                key=step.key,
                value_json=encode_value(value, key=step.key, max_bytes=max_bytes),
                value=value,
                # The caller holds the agent's row lock: nothing wrote the step since.
                expected_version=step.version,
            )
        )
    commit(namespace=namespace, ops=ops)
    return [step.key for step in steps]
