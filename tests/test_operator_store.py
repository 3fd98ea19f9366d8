"""The store functions behind the operator's edit, fork and approval actions
(agents/store/edits.py, forks.py, approvals.py), on SQLite and PostgreSQL alike: what
each writes, and that every refusal is a typed error that writes nothing."""

from __future__ import annotations

import pytest
from statehouse_agents.models import (
    Agent,
    Approval,
    Commit,
    OperatorAction,
    ResumeRequest,
    Step,
    Version,
)
from statehouse_agents.store.approvals import decide_approval, decision_of, request_approval
from statehouse_agents.store.edits import edit_key
from statehouse_agents.store.forks import fork_agent

from statehouse import Statehouse
from statehouse.errors import (
    AgentFinishedError,
    AlreadyDecidedError,
    AlreadyExistsError,
    ConflictError,
    LeaseHeldError,
    NotFoundError,
    NotResumableError,
    ValidationError,
)
from tests.factories import make_agent, status_of


def _counts() -> tuple[int, int, int, int, int]:
    return (
        Commit.objects.count(),
        Version.objects.count(),
        Agent.objects.count(),
        ResumeRequest.objects.count(),
        OperatorAction.objects.count(),
    )


def _audit_row(action: str) -> dict[str, object]:
    row = OperatorAction.objects.get(action=action)
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


# --- edit ---------------------------------------------------------------------------------


def test_edit_writes_a_new_version_with_the_value_entered(sh: Statehouse) -> None:
    make_agent(sh, "ed-1")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="ed-1", key="plan", value={"next": "search"})
    result = edit_key(
        namespace="default",
        agent_id="ed-1",
        key="plan",
        value_text='{"next": "summarise",\n "why": "search is down"}',
        expected_version=1,
        reason="search API is down",
        actor="alice",
    )
    state = sh.get_state("ed-1", "plan")
    assert (state.value, state.version, state.commit_ts) == (
        {"next": "summarise", "why": "search is down"},
        2,
        result.commit_ts,
    )
    assert result.before == {"next": "search"}
    assert result.after == {"next": "summarise", "why": "search is down"}
    assert result.version == 2
    assert _audit_row("edit") == {
        "actor": "alice",
        "agent": "ed-1",
        "namespace": "default",
        "agent_name": "ed-1",
        "reason": "search API is down",
        "before": {"next": "search"},
        "after": {"next": "summarise", "why": "search is down"},
        "detail": {"key": "plan", "version": 2, "commit_ts": result.commit_ts},
    }


def test_edit_of_a_step_moves_the_step_projection(sh: Statehouse) -> None:
    make_agent(sh, "ed-step", steps=2)  # step:1 pending
    edit_key(
        namespace="default",
        agent_id="ed-step",
        key="step:1",
        value_text='{"status": "done", "result": {"by": "hand"}}',
        expected_version=1,
        reason="done by hand",
        actor="alice",
    )
    step = Step.objects.with_values().get(agent__agent_id="ed-step", number=1)
    assert (step.status, step.result_json, step.version) == ("done", '{"by": "hand"}', 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{'a': 1}", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        ('{"a": NaN}', "is not JSON: NaN is not a JSON value"),
        ("   ", "is empty"),
        ('{"a": 1', "is not JSON: Expecting ',' delimiter at line 1, column 8"),
    ],
)
def test_edit_refuses_text_that_is_not_json_and_writes_nothing(
    sh: Statehouse, text: str, message: str
) -> None:
    make_agent(sh, "ed-bad")
    before = _counts()
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        edit_key(
            namespace="default",
            agent_id="ed-bad",
            key="task",
            value_text=text,
            expected_version=1,
            reason="fix",
            actor="alice",
        )
    assert _counts() == before
    assert sh.get_state("ed-bad", "task").version == 1


def test_edit_needs_a_reason(sh: Statehouse) -> None:
    make_agent(sh, "ed-why")
    with pytest.raises(ValidationError, match="give a reason"):
        edit_key(
            namespace="default",
            agent_id="ed-why",
            key="task",
            value_text="{}",
            expected_version=1,
            reason="  ",
            actor="alice",
        )
    assert sh.get_state("ed-why", "task").version == 1


def test_edit_of_a_key_changed_meanwhile_is_a_conflict_and_writes_nothing(
    sh: Statehouse,
) -> None:
    make_agent(sh, "ed-race")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="ed-race", key="plan", value={"v": 1})
    with sh.begin_transaction() as tx:  # the agent wrote again after the editor opened
        tx.write(agent_id="ed-race", key="plan", value={"v": 2})
    before = _counts()
    with pytest.raises(ConflictError, match="expected version 1, but the record is at version 2"):
        edit_key(
            namespace="default",
            agent_id="ed-race",
            key="plan",
            value_text='{"v": "edited"}',
            expected_version=1,
            reason="fix",
            actor="alice",
        )
    assert _counts() == before
    assert sh.get_state("ed-race", "plan").value == {"v": 2}


def test_edit_of_a_missing_key_or_agent_is_not_found(sh: Statehouse) -> None:
    make_agent(sh, "ed-none")
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="ed-none", key="task")
    for agent_id, key in (("ed-none", "nope"), ("ed-none", "task"), ("nobody", "task")):
        with pytest.raises(NotFoundError):
            edit_key(
                namespace="default",
                agent_id=agent_id,
                key=key,
                value_text="{}",
                expected_version=1,
                reason="fix",
                actor="alice",
            )


def test_edit_of_a_step_of_a_running_agent_is_refused_by_its_lease(sh: Statehouse) -> None:
    make_agent(sh, "ed-live", status="running")
    with pytest.raises(LeaseHeldError, match="nothing was written"):
        edit_key(
            namespace="default",
            agent_id="ed-live",
            key="step:1",
            value_text='{"status": "done"}',
            expected_version=1,
            reason="fix",
            actor="alice",
        )
    assert sh.get_state("ed-live", "step:1").version == 1


# --- fork ---------------------------------------------------------------------------------


def _history(sh: Statehouse, agent_id: str) -> list[int]:
    """Write a history of four commits; return their commit_ts."""
    writer = Statehouse()
    stamps = [writer.start(agent_id, {"task": "t"})]
    for n in range(2):
        with writer.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key=f"step:{n}", value={"status": "done", "n": n})
            tx.write(agent_id=agent_id, key="notes", value={"after": n})
        stamps.append(sh.get_state(agent_id, "notes").commit_ts)
    with writer.begin_transaction() as tx:
        tx.delete(agent_id=agent_id, key="notes")
        tx.write(agent_id=agent_id, key="step:2", value={"status": "pending"})
    stamps.append(sh.get_state(agent_id, "step:2").commit_ts)
    writer.close()
    return [int(s) for s in stamps if s is not None]


def test_fork_at_a_step_copies_the_keys_as_they_stood_then(sh: Statehouse) -> None:
    _history(sh, "src")
    result = fork_agent(
        namespace="default", source_id="src", new_id="copy", step=0, actor="al", reason="retry"
    )
    assert sh.list_keys("copy") == ["notes", "step:0", "task"]
    assert sh.get_state("copy", "notes").value == {"after": 0}
    assert sh.get_state("copy", "step:0").version == 1
    forked = Agent.objects.get(agent_id="copy")
    assert forked.forked_from_id == Agent.objects.get(agent_id="src").pk
    assert forked.forked_at_ts == result.at_ts == sh.get_state("src", "step:0").commit_ts
    assert (result.keys, result.resume_request) == (3, None)
    assert status_of(forked) == "interrupted"
    assert (forked.steps_done, forked.steps_pending) == (1, 0)
    assert _audit_row("fork") == {
        "actor": "al",
        "agent": "copy",
        "namespace": "default",
        "agent_name": "copy",
        "reason": "retry",
        "before": None,
        "after": {"agent_id": "copy", "keys": 3},
        "detail": {"source": "src", "at_ts": result.at_ts, "step": 0, "resume_request": None},
    }


def test_fork_at_a_commit_ts_leaves_out_keys_deleted_by_then(sh: Statehouse) -> None:
    stamps = _history(sh, "src2")
    fork_agent(namespace="default", source_id="src2", new_id="late", at_ts=stamps[-1], actor="a")
    assert sh.list_keys("late") == ["step:0", "step:1", "step:2", "task"]
    fork_agent(namespace="default", source_id="src2", new_id="mid", at_ts=stamps[1], actor="a")
    assert sh.list_keys("mid") == ["notes", "step:0", "task"]


def test_fork_generates_an_id_and_queues_a_resume_when_asked(sh: Statehouse) -> None:
    _history(sh, "src3")
    result = fork_agent(namespace="default", source_id="src3", resume=True, actor="alice")
    assert result.agent.agent_id.startswith("src3-fork-")
    assert result.resume_request is not None
    request = ResumeRequest.objects.get(agent=result.agent)
    assert (request.status, request.requested_by, request.source) == (
        "queued",
        "alice",
        "dashboard",
    )
    assert status_of(result.agent) == "resuming"


def test_fork_refusals_write_nothing(sh: Statehouse) -> None:
    stamps = _history(sh, "src4")
    make_agent(sh, "taken")
    sh.finish("taken", {"done": True})
    before = _counts()
    cases: list[tuple[type[Exception], str, dict[str, object]]] = [
        (AlreadyExistsError, "already exists", {"new_id": "taken"}),
        (NotFoundError, "no agent 'ghost'", {"source_id": "ghost"}),
        (NotFoundError, "has no step 9", {"step": 9}),
        (ValidationError, "not both", {"step": 0, "at_ts": stamps[0]}),
        (ValidationError, "no live key as of commit_ts 1", {"at_ts": 1}),
        (ValidationError, "agent_id", {"new_id": "bad\x00id"}),
        (ValidationError, "not its source's", {"new_id": "src4"}),
    ]
    for error, message, overrides in cases:
        arguments: dict[str, object] = {"source_id": "src4", "new_id": "f", "actor": "a"}
        arguments.update(overrides)
        with pytest.raises(error, match=message):
            fork_agent(namespace="default", **arguments)  # type: ignore[arg-type]
    # A fork of a finished agent cannot be resumed: the whole fork is undone.
    with pytest.raises(NotResumableError):
        fork_agent(namespace="default", source_id="taken", new_id="f2", resume=True, actor="a")
    assert _counts() == before


# --- approvals ----------------------------------------------------------------------------


def test_request_approval_makes_the_agent_waiting_until_decided(sh: Statehouse) -> None:
    agent = make_agent(sh, "ap-1")
    approval = request_approval(
        namespace="default", agent_id="ap-1", name="deploy", payload={"to": "prod"}
    )
    assert status_of(agent) == "waiting"
    assert Agent.objects.with_status(Agent.Status.WAITING).count() == 1
    assert Agent.objects.status_counts()["waiting"] == 1
    again = request_approval(namespace="default", agent_id="ap-1", name="deploy")
    assert again.pk == approval.pk
    _decided, resume = decide_approval(
        approval_id=approval.pk, approve=True, actor="bob", comment="ship it"
    )
    assert resume is None  # no entry point registered: nothing could run it
    assert status_of(agent) == "interrupted"
    stored = Approval.objects.get(pk=approval.pk)
    assert (stored.status, stored.decided_by, stored.comment) == ("approved", "bob", "ship it")
    assert stored.decided_at is not None
    assert _audit_row("approve") == {
        "actor": "bob",
        "agent": "ap-1",
        "namespace": "default",
        "agent_name": "ap-1",
        "reason": "ship it",
        "before": {"status": "pending"},
        "after": {"status": "approved"},
        "detail": {
            "approval": approval.pk,
            "name": "deploy",
            "kind": "request",
            "resume_request": None,
        },
    }
    assert decision_of(stored) == {
        "id": approval.pk,
        "name": "deploy",
        "status": "approved",
        "approved": True,
        "decided": True,
        "decided_by": "bob",
        "decided_at": stored.decided_at.isoformat(),
        "comment": "ship it",
        "payload": {"to": "prod"},
    }
    # Asked again after a resume: the decision, at once.
    assert request_approval(namespace="default", agent_id="ap-1", name="deploy").pk == approval.pk


def test_a_decision_queues_a_resume_of_a_stopped_agent_with_an_entry_point(
    sh: Statehouse,
) -> None:
    agent = make_agent(sh, "ap-2")
    sh.register_resume("ap-2", "tests.agents_for_tests:complete")
    approval = request_approval(namespace="default", agent_id="ap-2", name="go")
    _, resume = decide_approval(approval_id=approval.pk, approve=False, actor="bob")
    assert resume is not None
    assert ResumeRequest.objects.get(agent=agent).requested_by == "bob"
    assert status_of(agent) == "resuming"
    assert Approval.objects.get(pk=approval.pk).status == "rejected"
    row = OperatorAction.objects.get(action="reject")
    assert (row.actor, row.agent_name, row.reason, row.after, row.detail["resume_request"]) == (
        "bob",
        "ap-2",
        "",
        {"status": "rejected"},
        resume.pk,
    )


def test_deciding_twice_is_refused_and_changes_nothing(sh: Statehouse) -> None:
    make_agent(sh, "ap-3")
    approval = request_approval(namespace="default", agent_id="ap-3", name="go")
    decide_approval(approval_id=approval.pk, approve=True, actor="bob")
    with pytest.raises(AlreadyDecidedError, match="already approved by bob"):
        decide_approval(approval_id=approval.pk, approve=False, actor="carol")
    stored = Approval.objects.get(pk=approval.pk)
    assert (stored.status, stored.decided_by) == ("approved", "bob")
    assert OperatorAction.objects.filter(action__in=["approve", "reject"]).count() == 1
    with pytest.raises(NotFoundError):
        decide_approval(approval_id=approval.pk + 100, approve=True, actor="bob")


def test_approval_request_refusals(sh: Statehouse) -> None:
    make_agent(sh, "ap-4")
    make_agent(sh, "ap-done", status="completed")
    request_approval(namespace="default", agent_id="ap-4", name="first")
    with pytest.raises(AlreadyExistsError, match="already waits for the decision 'first'"):
        request_approval(namespace="default", agent_id="ap-4", name="second")
    with pytest.raises(AgentFinishedError, match="finished agent"):
        request_approval(namespace="default", agent_id="ap-done", name="x")
    with pytest.raises(ValidationError, match="not JSON"):
        request_approval(namespace="default", agent_id="ap-4", name="x", payload={1, 2})
    with pytest.raises(NotFoundError):
        request_approval(namespace="default", agent_id="ghost", name="x")
    assert Approval.objects.count() == 1


# --- the client ---------------------------------------------------------------------------


def test_client_request_approval_times_out_then_returns_the_decision_when_asked_again(
    sh: Statehouse,
) -> None:
    from statehouse import ApprovalTimeoutError

    make_agent(sh, "cl-1")
    with pytest.raises(ApprovalTimeoutError, match="nobody decided 'go'") as caught:
        sh.request_approval("cl-1", "go", {"n": 1}, timeout=0.2, poll_interval=0.05)
    pending = sh.get_approval("cl-1", caught.value.approval_id)
    assert (pending.status, pending.decided, pending.payload) == ("pending", False, {"n": 1})
    assert sh.status("cl-1") == "waiting"
    decide_approval(approval_id=caught.value.approval_id, approve=False, actor="bob", comment="no")
    decision = sh.request_approval("cl-1", "go", timeout=0)
    assert (decision.status, decision.approved, decision.decided_by, decision.comment) == (
        "rejected",
        False,
        "bob",
        "no",
    )
    with pytest.raises(ValidationError):
        sh.request_approval("cl-1", "go", timeout=-1)


def test_client_fork_returns_the_new_agent_id(sh: Statehouse) -> None:
    make_agent(sh, "cl-src", steps=3)
    new_id = sh.fork("cl-src", step=1)
    assert new_id.startswith("cl-src-fork-")
    assert sh.list_keys(new_id) == ["step:0", "step:1", "task"]
    assert sh.fork("cl-src", "cl-copy", resume=True) == "cl-copy"
    assert ResumeRequest.objects.get(agent__agent_id="cl-copy").source == "client"
