"""In-doubt steps (docs/operations.md, "In-doubt steps"; docs/contract.md §7) on SQLite and
PostgreSQL alike: step policies validated and projected, what a resume does with each
policy (retry, skip, review) on every path that queues or claims one, and the operator's
step decisions with their audit records; every refusal is a typed error that writes
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from statehouse_agents.models import (
    Agent,
    Commit,
    OperatorAction,
    Record,
    ResumeRequest,
    Step,
    Version,
)
from statehouse_agents.store.decisions import decide_step
from statehouse_agents.store.doubt import ReviewHold
from statehouse_agents.store.resume import (
    WorkerIdentity,
    claim_next,
    queue_auto_resume,
    register_entry_point,
    request_resume,
    request_resumes,
)

import statehouse
from statehouse import Statehouse
from statehouse._wire import error_body, error_from_body
from statehouse.errors import (
    NotResumableError,
    OperatorActionError,
    StepNotInDoubtError,
    StepReviewRequiredError,
    ValidationError,
)
from tests.factories import make_agent, status_of

pytestmark = pytest.mark.django_db(transaction=True)


def interrupted_with(agent_id: str, *steps: dict[str, Any]) -> Agent:
    """An interrupted agent whose steps 0, 1, … hold `steps`, written by a client that
    then closes (releasing the lease mid-run)."""
    writer = Statehouse()
    writer.start(agent_id, {"task": f"work of {agent_id}"})
    for n, value in enumerate(steps):
        with writer.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key=f"step:{n}", value=value)
    writer.close()
    return Agent.objects.get(agent_id=agent_id)


def counts() -> tuple[int, int, int, int]:
    return (
        Commit.objects.count(),
        Version.objects.count(),
        ResumeRequest.objects.count(),
        OperatorAction.objects.count(),
    )


def value_of(agent_id: str, key: str) -> Any:
    return Statehouse().get_state(agent_id, key).value


DONE = {"action": {"q": "search"}, "status": "done", "result": 1}
PENDING_REVIEW = {"action": {"q": "pay"}, "status": "pending", "policy": "review"}
PENDING_SKIP = {"action": {"q": "notify"}, "status": "pending", "policy": "skip"}
PENDING_RETRY = {"action": {"q": "fetch"}, "status": "pending"}


# --- policies -------------------------------------------------------------------------------


def test_step_helper_writes_the_policy_in_every_value_and_the_step_row(sh: Statehouse) -> None:
    sh.start("p-1", {"task": "t"})
    with sh.step("p-1", 0, action="charge", policy="review") as step:
        assert value_of("p-1", "step:0") == {
            "action": "charge",
            "status": "pending",
            "policy": "review",
        }
        step.result = "ok"
    with sh.step("p-1", 1, action="read"):
        pass
    assert value_of("p-1", "step:0") == {
        "action": "charge",
        "status": "done",
        "result": "ok",
        "policy": "review",
    }
    assert value_of("p-1", "step:1") == {"action": "read", "status": "done", "result": None}
    rows = dict(Step.objects.filter(agent__agent_id="p-1").values_list("key", "policy"))
    assert rows == {"step:0": "review", "step:1": "retry"}  # absent means retry


def test_an_unknown_policy_is_refused_naming_the_key_and_nothing_is_written(
    sh: Statehouse,
) -> None:
    sh.start("p-2", {"task": "t"})
    before = counts()
    with pytest.raises(ValidationError) as refused, sh.begin_transaction() as tx:
        tx.write(agent_id="p-2", key="step:0", value={"status": "pending", "policy": "maybe"})
    assert str(refused.value) == (
        "agent 'p-2' key 'step:0': 'policy' must be one of 'retry', 'skip', 'review' "
        "(absent means 'retry'), not 'maybe'"
    )
    assert counts() == before
    assert not Step.objects.filter(agent__agent_id="p-2").exists()
    with pytest.raises(ValidationError, match="'policy' must be one of 'retry', 'skip', 'review'"):
        sh.step("p-2", 0, action="x", policy="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"@statehouse.step: 'policy' must be one of"):
        statehouse.step(policy="later")  # type: ignore[call-overload]
    assert counts() == before


@statehouse.step(policy="skip")
def notify(who: str) -> str:
    return f"told {who}"


@statehouse.durable
def flow() -> str:
    return notify("ops")


def test_durable_step_records_its_policy(sh: Statehouse) -> None:
    assert flow.run("p-3", client=sh) == "told ops"
    assert Step.objects.get(agent__agent_id="p-3", number=0).policy == "skip"
    assert value_of("p-3", "step:0")["policy"] == "skip"


def test_in_doubt_names_the_pending_steps_of_agents_no_process_runs(sh: Statehouse) -> None:
    interrupted_with("d-1", DONE, PENDING_REVIEW)
    make_agent(sh, "d-running", status="running")  # its last step is pending, but it runs
    in_doubt = Step.objects.in_doubt().values_list("agent__agent_id", "key")
    assert list(in_doubt) == [("d-1", "step:1")]
    assert list(Step.objects.needing_review().values_list("agent__agent_id", flat=True)) == ["d-1"]
    running = Step.objects.get(agent__agent_id="d-running", status="pending")
    agent = Agent.objects.annotate_status().get(agent_id="d-running")
    assert running.is_in_doubt(agent) is False


def test_a_step_waiting_for_input_is_not_in_doubt(sh: Statehouse) -> None:
    interrupted_with("d-2", DONE, {"action": "ask", "status": "pending", "waiting": "input"})
    assert not Step.objects.in_doubt().filter(agent__agent_id="d-2").exists()
    step = Step.objects.with_values().get(agent__agent_id="d-2", key="step:1")
    assert step.is_in_doubt(Agent.objects.annotate_status().get(agent_id="d-2")) is False
    with pytest.raises(StepNotInDoubtError):
        decide_step(namespace="default", agent_id="d-2", key="step:1", decision="retry", actor="o")


# --- resume: skip ---------------------------------------------------------------------------


def test_resume_writes_skip_steps_done_and_skipped_then_queues(sh: Statehouse) -> None:
    agent = interrupted_with("s-1", DONE, {**PENDING_SKIP, "model": "m1", "tokens_in": 5})
    request, created = request_resume(
        namespace="default", agent_id="s-1", source="command", requested_by="ops"
    )
    assert created
    assert value_of("s-1", "step:1") == {
        "action": {"q": "notify"},
        "status": "done",
        "result": None,
        "skipped": True,
        "policy": "skip",
        "model": "m1",
        "tokens_in": 5,
    }
    step = Step.objects.get(agent=agent, key="step:1")
    assert (step.status, step.version, step.policy) == ("done", 2, "skip")
    assert status_of(agent) == "resuming"
    agent.refresh_from_db()
    assert (agent.steps_done, agent.steps_pending) == (2, 0)
    audit = OperatorAction.objects.get(action="resume")
    assert audit.detail == {"source": "command", "request": request.pk, "skipped_steps": ["step:1"]}
    # The agent continues after it: the skipped step is its last completed one.
    assert Statehouse().last_completed_step("s-1") == 1


def test_bulk_resume_skips_skip_steps_in_each_agent(sh: Statehouse) -> None:
    agents = [interrupted_with(f"s-b{i}", DONE, PENDING_SKIP) for i in range(2)]
    assert sum(request_resumes(agent_pks=[a.pk for a in agents], source="command")) == 2
    for agent in agents:
        assert Step.objects.get(agent=agent, key="step:1").status == "done"
        assert value_of(agent.agent_id, "step:1")["skipped"] is True


def test_retry_steps_are_left_pending_for_the_agent_to_run_again(sh: Statehouse) -> None:
    agent = interrupted_with("r-1", DONE, PENDING_RETRY)
    request_resume(namespace="default", agent_id="r-1", source="command")
    assert value_of("r-1", "step:1") == PENDING_RETRY
    assert Step.objects.get(agent=agent, key="step:1").version == 1


# --- resume: review -------------------------------------------------------------------------


def test_a_review_step_refuses_a_single_resume_and_writes_nothing(sh: Statehouse) -> None:
    interrupted_with("v-1", DONE, PENDING_SKIP, PENDING_REVIEW)
    before = counts()
    with pytest.raises(StepReviewRequiredError) as refused:
        request_resume(namespace="default", agent_id="v-1", source="dashboard")
    error = refused.value
    assert isinstance(error, NotResumableError)
    assert (error.agent_id, error.key, error.number) == ("v-1", "step:2", 2)
    assert str(error) == (
        "agent 'v-1' has step 2 ('step:2') in doubt with the policy 'review': an operator "
        "must decide it on the agent page (run it again, mark it done or failed) before it "
        "can be resumed"
    )
    assert counts() == before
    assert value_of("v-1", "step:1") == PENDING_SKIP  # not skipped either
    assert status_of(Agent.objects.get(agent_id="v-1")) == "interrupted"


def test_the_api_error_of_a_review_step_keeps_its_class_code_and_details() -> None:
    error = StepReviewRequiredError("held", agent_id="a", key="step:4", number=4)
    status, body = error_body(error)
    assert (status, body["code"], body["error"]) == (
        409,
        "step_review_required",
        error.__class__.__name__,
    )
    assert body["details"] == {"agent_id": "a", "key": "step:4", "number": 4}
    back = error_from_body(status, body)
    assert type(back) is StepReviewRequiredError
    assert (back.agent_id, back.key, back.number, str(back)) == ("a", "step:4", 4, "held")
    status, body = error_body(StepNotInDoubtError("not in doubt"))
    assert (status, body["code"]) == (409, "step_not_in_doubt")
    assert type(error_from_body(status, body)) is StepNotInDoubtError


def test_bulk_resume_reports_review_agents_as_skipped_and_resumes_the_others(
    sh: Statehouse,
) -> None:
    held = interrupted_with("v-b1", DONE, PENDING_REVIEW)
    free = interrupted_with("v-b2", DONE, PENDING_RETRY)
    needs_review: list[ReviewHold] = []
    queued = sum(
        request_resumes(agent_pks=[held.pk, free.pk], source="dashboard", needs_review=needs_review)
    )
    assert queued == 1
    assert needs_review == [ReviewHold(held.pk, "default", "v-b1", "step:1", 1)]
    assert str(needs_review[0]) == "v-b1 (step 1 needs review)"
    assert (status_of(held), status_of(free)) == ("interrupted", "resuming")
    assert list(ResumeRequest.objects.values_list("agent__agent_id", flat=True)) == ["v-b2"]


def test_automatic_resume_does_not_queue_an_agent_with_a_review_step(
    sh: Statehouse, settings: Any
) -> None:
    settings.STATEHOUSE_AUTO_RESUME = True
    for agent_id, steps in (("v-a1", (DONE, PENDING_REVIEW)), ("v-a2", (DONE, PENDING_SKIP))):
        interrupted_with(agent_id, *steps)
        register_entry_point(namespace="default", agent_id=agent_id, entry_point="m.agent:run")
    queued = {}
    for agent_id in ("v-a1", "v-a2"):
        with transaction.atomic():
            agent = Agent.objects.select_for_update().get(agent_id=agent_id)
            queued[agent_id] = queue_auto_resume(agent)
    assert queued == {"v-a1": False, "v-a2": True}
    assert value_of("v-a2", "step:1")["skipped"] is True
    assert list(ResumeRequest.objects.values_list("agent__agent_id", "source")) == [
        ("v-a2", "auto")
    ]


def test_a_worker_does_not_run_an_agent_that_stopped_at_a_review_step(sh: Statehouse) -> None:
    agent = interrupted_with("v-w1", DONE)
    request, _created = request_resume(namespace="default", agent_id="v-w1", source="command")
    # Before a worker claims it, a run of the agent writes a review step and dies.
    writer = Statehouse()
    with writer.begin_transaction() as tx:
        tx.write(agent_id="v-w1", key="step:1", value=PENDING_REVIEW)
    writer.close()
    worker = WorkerIdentity(name="w", host="h", pid=1)
    assert claim_next(worker=worker, lease_seconds=30) is None
    request.refresh_from_db()
    assert request.status == "cancelled"
    assert "step 1 ('step:1') in doubt with the policy 'review'" in request.last_error
    assert status_of(agent) == "interrupted"
    assert not agent.resume_attempts.exists()


def test_a_worker_skips_the_skip_steps_of_a_run_that_stopped_before_it_claims(
    sh: Statehouse,
) -> None:
    agent = interrupted_with("v-w2", DONE)
    request_resume(namespace="default", agent_id="v-w2", source="command")
    writer = Statehouse()
    with writer.begin_transaction() as tx:
        tx.write(agent_id="v-w2", key="step:1", value=PENDING_SKIP)
    writer.close()
    claim = claim_next(worker=WorkerIdentity(name="w", host="h", pid=1), lease_seconds=30)
    assert claim is not None and claim.agent_id == "v-w2"
    assert value_of("v-w2", "step:1")["skipped"] is True
    assert status_of(agent) == "resuming"


# --- decisions ------------------------------------------------------------------------------


def audit_row() -> dict[str, Any]:
    row = OperatorAction.objects.get(action="step_decision")
    assert row.at is not None
    return {
        "actor": row.actor,
        "agent": row.agent.agent_id if row.agent else None,
        "namespace": row.namespace,
        "agent_name": row.agent_name,
        "reason": row.reason,
        "before": row.before,
        "after": row.after,
        "detail": row.detail,
    }


def test_run_again_makes_the_step_retryable_and_lets_the_agent_resume(sh: Statehouse) -> None:
    interrupted_with("x-1", DONE, PENDING_REVIEW)
    result = decide_step(
        namespace="default",
        agent_id="x-1",
        key="step:1",
        decision="retry",
        actor="alice",
        reason="the payment API is idempotent",
    )
    after = {"action": {"q": "pay"}, "status": "pending", "policy": "retry"}
    state = Statehouse().get_state("x-1", "step:1")
    assert (state.value, state.version, state.commit_ts) == (after, 2, result.commit_ts)
    assert Step.objects.get(agent__agent_id="x-1", key="step:1").policy == "retry"
    assert audit_row() == {
        "actor": "alice",
        "agent": "x-1",
        "namespace": "default",
        "agent_name": "x-1",
        "reason": "the payment API is idempotent",
        "before": PENDING_REVIEW,
        "after": after,
        "detail": {
            "key": "step:1",
            "number": 1,
            "decision": "retry",
            "version": 2,
            "commit_ts": result.commit_ts,
        },
    }
    assert status_of(Agent.objects.get(agent_id="x-1")) == "interrupted"
    _request, created = request_resume(namespace="default", agent_id="x-1", source="dashboard")
    assert created


def test_mark_done_writes_the_result_entered_and_the_agent_continues_after_it(
    sh: Statehouse,
) -> None:
    agent = interrupted_with("x-2", DONE, PENDING_REVIEW)
    result = decide_step(
        namespace="default",
        agent_id="x-2",
        key="step:1",
        decision="done",
        actor="bob",
        reason="paid by hand",
        result_text='{"paid": true,\n "ref": "T-9"}',
    )
    after = {"action": {"q": "pay"}, "status": "done", "result": {"paid": True, "ref": "T-9"}}
    after["policy"] = "review"
    assert value_of("x-2", "step:1") == after
    agent.refresh_from_db()
    assert (agent.steps_done, agent.steps_pending) == (2, 0)
    assert audit_row() == {
        "actor": "bob",
        "agent": "x-2",
        "namespace": "default",
        "agent_name": "x-2",
        "reason": "paid by hand",
        "before": PENDING_REVIEW,
        "after": after,
        "detail": {
            "key": "step:1",
            "number": 1,
            "decision": "done",
            "version": 2,
            "commit_ts": result.commit_ts,
        },
    }
    assert Statehouse().last_completed_step("x-2") == 1
    assert request_resume(namespace="default", agent_id="x-2", source="dashboard")[1]


def test_mark_failed_writes_the_error_entered(sh: Statehouse) -> None:
    agent = interrupted_with("x-3", DONE, PENDING_REVIEW)
    result = decide_step(
        namespace="default",
        agent_id="x-3",
        key="step:1",
        decision="failed",
        actor="carol",
        error="  the card was declined  ",
    )
    after = {
        "action": {"q": "pay"},
        "status": "failed",
        "error": "the card was declined",
        "policy": "review",
    }
    assert value_of("x-3", "step:1") == after
    agent.refresh_from_db()
    assert (agent.steps_failed, agent.steps_pending) == (1, 0)
    assert audit_row() == {
        "actor": "carol",
        "agent": "x-3",
        "namespace": "default",
        "agent_name": "x-3",
        "reason": "",
        "before": PENDING_REVIEW,
        "after": after,
        "detail": {
            "key": "step:1",
            "number": 1,
            "decision": "failed",
            "version": 2,
            "commit_ts": result.commit_ts,
        },
    }


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"decision": "done", "result_text": "{paid: yes}"},
            ValidationError,
            "the result for 'step:1' is not JSON: Expecting property name enclosed in double "
            "quotes at line 1, column 2; nothing was written",
        ),
        (
            {"decision": "done", "result_text": "  "},
            ValidationError,
            "enter the result of 'step:1' as JSON",
        ),
        ({"decision": "done", "result_text": "NaN"}, ValidationError, "NaN is not a JSON value"),
        ({"decision": "failed", "error": " "}, ValidationError, "give an error message"),
        (
            {"decision": "maybe"},
            ValidationError,
            "decision must be one of 'retry', 'done', 'failed', not 'maybe'",
        ),
        ({"decision": "retry", "reason": "x" * 2001}, ValidationError, "at most 2000"),
        ({"decision": "retry", "key": "step:0"}, StepNotInDoubtError, "is not in doubt"),
        ({"decision": "retry", "key": "step:9"}, LookupError, "has no step 'step:9'"),
        ({"decision": "retry", "agent_id": "nobody"}, LookupError, "no agent 'nobody'"),
    ],
    ids=[
        "bad-json",
        "no-result",
        "nan",
        "no-error",
        "unknown",
        "long-reason",
        "done-step",
        "no-step",
        "no-agent",
    ],
)
def test_a_refused_decision_writes_nothing(
    sh: Statehouse, changes: dict[str, str], error: type[Exception], message: str
) -> None:
    interrupted_with("x-4", DONE, PENDING_REVIEW)
    before = counts()
    arguments = {
        "namespace": "default",
        "agent_id": "x-4",
        "key": "step:1",
        "actor": "dave",
        **changes,
    }
    with pytest.raises(error) as refused:
        decide_step(**arguments)  # type: ignore[arg-type]
    assert message in str(refused.value)
    assert counts() == before
    assert value_of("x-4", "step:1") == PENDING_REVIEW


def test_a_decision_on_a_running_agent_is_refused(sh: Statehouse) -> None:
    make_agent(sh, "x-5", status="running")
    pending = Step.objects.get(agent__agent_id="x-5", status="pending")
    before = counts()
    with pytest.raises(StepNotInDoubtError) as refused:
        decide_step(
            namespace="default",
            agent_id="x-5",
            key=pending.key,
            decision="done",
            actor="e",
            result_text="1",
        )
    assert isinstance(refused.value, OperatorActionError)
    assert str(refused.value) == (
        f"step {pending.number} ('{pending.key}') of agent 'x-5' is not in doubt: the step is "
        "pending and the agent running; only a pending step of an interrupted or failed agent "
        "can be decided"
    )
    assert counts() == before
    assert Record.objects.get(agent__agent_id="x-5", key=pending.key).version == 1


# --- the remote client ----------------------------------------------------------------------


def test_the_remote_client_writes_policies_and_gets_the_review_refusal(
    api_server: str, api_token: str
) -> None:
    remote = Statehouse(api_server, token=api_token)
    assert remote.mode == "remote"
    remote.start("rm-1", {"task": "t"})
    with remote.step("rm-1", 0, action="pay", policy="review"):
        pass
    refusal = "'policy' must be one of 'retry', 'skip', 'review'"
    with pytest.raises(ValidationError, match=refusal), remote.begin_transaction() as tx:
        tx.write(agent_id="rm-1", key="step:1", value={"status": "pending", "policy": "x"})
    with remote.begin_transaction() as tx:
        tx.write(agent_id="rm-1", key="step:1", value=PENDING_REVIEW)
    remote.close()  # its lease released: the agent is interrupted, step 1 in doubt
    assert Step.objects.get(agent__agent_id="rm-1", key="step:0").policy == "review"
    other = Statehouse(api_server, token=api_token)
    with pytest.raises(StepReviewRequiredError) as refused:
        other.request_resume("rm-1")
    other.close()
    assert (refused.value.agent_id, refused.value.key, refused.value.number) == (
        "rm-1",
        "step:1",
        1,
    )
    assert not ResumeRequest.objects.exists()
