"""An operator's decision on an in-doubt step (docs/contract.md §7, docs/operations.md,
"In-doubt steps"): run it again, mark it done with a result, or mark it failed.

A step is in doubt while it is pending and its agent is interrupted or failed: its action
may or may not have run. Each decision writes the step's new value as an ordinary
versioned commit (compare-and-set on the version the decision read, under the agent's row
lock) and its audit record, action "step_decision" with the value before and after, in one
transaction. A step that is not in doubt is refused with StepNotInDoubtError; bad input
with ValidationError. Either way nothing is written.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, get_args

from statehouse_agents.conf import get_settings
from statehouse_agents.models import OperatorAction, Step
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.edits import EditResult, check_reason, commit_audited
from statehouse_agents.store.locking import locked_agent

from statehouse.errors import NotFoundError, StepNotInDoubtError, ValidationError
from statehouse.steps import DONE, FAILED, RETRY
from statehouse.validation import check_identifier, encode_value

__all__ = ["DECISIONS", "Decision", "DecisionResult", "decide_step"]

# `retry`: run it again (its policy becomes `retry`, so a resume may run it); `done`: mark
# it done with the operator's result; `failed`: mark it failed with their error message.
Decision = Literal["retry", "done", "failed"]
DECISIONS: Final[tuple[Decision, ...]] = get_args(Decision)
MAX_ERROR = 10_000


# A decision is an operator's write of the step's value: what it returns is an edit's.
DecisionResult = EditResult


def decided_value(
    before: dict[str, Any], decision: Decision, *, result: Any = None, error: str = ""
) -> dict[str, Any]:
    """The step's value after `decision`: its action, policy and LLM metadata kept."""
    if decision == "retry":
        return {**before, "policy": RETRY}
    kept = {k: v for k, v in before.items() if k not in ("result", "error", "skipped")}
    if decision == "done":
        return {**kept, "status": DONE, "result": result}
    return {**kept, "status": FAILED, "error": error}


def _parse_result(text: str, *, key: str) -> Any:
    """The result an operator entered as JSON, or ValidationError saying what is wrong."""

    def refuse_constant(name: str) -> Any:
        raise ValidationError(f"the result for {key!r} is not JSON: {name} is not a JSON value")

    if not text.strip():
        raise ValidationError(
            f'enter the result of {key!r} as JSON (such as null, "ok" or {{}}) to mark it done'
        )
    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"the result for {key!r} is not JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}; nothing was written"
        ) from None


def decide_step(
    *,
    namespace: str,
    agent_id: str,
    key: str,
    decision: str,
    actor: str,
    reason: str = "",
    result_text: str = "",
    error: str = "",
) -> DecisionResult:
    """Decide the in-doubt step `key` of the agent; `result_text` (JSON) is the result of
    `done`, `error` the message of `failed`.

    Raises ValidationError (an unknown decision, bad JSON, no error message, a reason too
    long), NotFoundError (no such agent or step), StepNotInDoubtError (the agent runs, or
    the step is not pending): in every case nothing is written.
    """
    check_identifier("key", key)
    if decision not in DECISIONS:
        allowed = ", ".join(repr(d) for d in DECISIONS)
        raise ValidationError(f"decision must be one of {allowed}, not {decision!r}")
    reason = check_reason(reason, required=False)
    result: Any = None
    if decision == "done":
        result = _parse_result(result_text, key=key)
    error = (error or "").strip()
    if decision == "failed" and not error:
        raise ValidationError(f"give an error message to mark {key!r} failed")
    if len(error) > MAX_ERROR:
        raise ValidationError(f"the error message is {len(error)} characters; at most {MAX_ERROR}")
    max_bytes = get_settings().max_value_bytes

    def decide() -> DecisionResult:
        agent = locked_agent(namespace, agent_id)
        step = Step.objects.filter(agent=agent, key=key).with_values().first()
        if step is None:
            raise NotFoundError(f"agent {agent_id!r} has no step {key!r}")
        if not step.is_in_doubt(agent):
            raise StepNotInDoubtError(
                f"step {step.number} ({key!r}) of agent {agent_id!r} is not in doubt: the step "
                f"is {step.status} and the agent {agent.status_value}; only a pending step of "
                "an interrupted or failed agent can be decided"
            )
        before = json.loads(step.value_json) if step.value_json else {}
        after = decided_value(before, decision, result=result, error=error)
        return commit_audited(
            agent=agent,
            key=key,
            value=after,
            value_json=encode_value(after, key=key, max_bytes=max_bytes),
            expected_version=step.version,
            action=OperatorAction.Action.STEP_DECISION,
            actor=actor,
            reason=reason,
            before=before,
            detail={"number": step.number, "decision": decision},
        )

    return run_atomic(decide, what="step decision")
