"""A LangGraph graph stopped at `interrupt()` answered through approvals (docs/langgraph.md,
"Interrupts answered by an operator"): it shows as waiting with an Approval listing the
interrupt's value; the operator decides (the store function the dashboard calls); the
resume worker runs the thread's entry point in a subprocess, which resumes the graph with
`Command(resume=<the decision>)`; the graph finishes with the decision in its state.
Embedded and remote clients, both databases; the browser test is
tests/e2e/test_approvals.py."""

from __future__ import annotations

from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from statehouse_agents.models import Agent, Approval, OperatorAction, ResumeRequest
from statehouse_agents.store.approvals import decide_approval

from examples.langgraph_approval import ENTRY_POINT, build, start
from statehouse import Statehouse
from statehouse.langgraph import StatehouseSaver, invoke, resume_value
from tests.crashes import run_worker_once
from tests.factories import run_async


class Twice(TypedDict, total=False):
    answers: list[Any]


QUESTION = {"question": "Deploy to prod?", "target": "prod"}


def _stopped(sh: Statehouse, thread: str) -> Approval:
    start(sh, thread, "prod")
    approval = Approval.objects.get(agent__agent_id=thread)
    state = build(sh).get_state({"configurable": {"thread_id": thread}})
    (pending,) = state.interrupts
    assert (approval.name, approval.kind, approval.status, approval.payload) == (
        f"interrupt:{pending.id}",
        "interrupt",
        "pending",
        QUESTION,
    )
    return approval


def test_a_graph_stopped_at_interrupt_waits_for_a_decision_listing_its_value(
    sh: Statehouse,
) -> None:
    approval = _stopped(sh, "lg-ap-wait")
    assert sh.status("lg-ap-wait") == "waiting"
    assert list(
        Agent.objects.with_status(Agent.Status.WAITING).values_list("agent_id", flat=True)
    ) == ["lg-ap-wait"]
    assert list(Agent.objects.waiting_for_input().values_list("agent_id", flat=True)) == [
        "lg-ap-wait"
    ]
    # Resumed before anyone decided: it stops at the same interrupt, with the same request.
    invoke(build(sh), None, thread_id="lg-ap-wait")
    assert list(Approval.objects.values_list("pk", "status")) == [(approval.pk, "pending")]
    assert sh.status("lg-ap-wait") == "waiting"


@pytest.mark.multiprocess
@pytest.mark.parametrize("approve", [True, False], ids=["approved", "rejected"])
def test_the_decision_resumes_the_graph_through_the_worker_with_the_answer(
    sh: Statehouse, lease_env: dict[str, str], approve: bool
) -> None:
    thread = f"lg-ap-{'yes' if approve else 'no'}"
    approval = _stopped(sh, thread)
    _decided, resume = decide_approval(
        approval_id=approval.pk, approve=approve, actor="olga", comment="after the freeze"
    )
    assert resume is not None  # nothing runs the graph: the decision queues its resume
    assert ResumeRequest.objects.get(pk=resume.pk).requested_by == "olga"
    assert sh.status(thread) == "resuming"
    row = OperatorAction.objects.get(action="approve" if approve else "reject")
    assert (row.actor, row.agent_name, row.namespace, row.reason) == (
        "olga",
        thread,
        "default",
        "after the freeze",
    )
    assert (row.before, row.after) == (
        {"status": "pending"},
        {"status": "approved" if approve else "rejected"},
    )
    assert row.detail == {
        "approval": approval.pk,
        "name": approval.name,
        "kind": "interrupt",
        "resume_request": resume.pk,
    }

    run_worker_once()  # the entry point, in a supervised subprocess

    answer = {"approved": approve, "comment": "after the freeze", "decided_by": "olga"}
    assert sh.status(thread) == "completed"
    done = "deployed" if approve else "not deployed"
    assert sh.get_state(thread, "answer").value == {
        "target": "prod",
        "decision": answer,
        "log": ["plan: deploy to prod", f"{done} to prod (after the freeze)"],
    }
    assert not Agent.objects.with_status(Agent.Status.WAITING).exists()
    assert not Agent.objects.waiting_for_input().exists()


def test_resume_value_is_what_interrupt_returns() -> None:
    decision = {
        "id": 7,
        "name": "interrupt:x",
        "status": "rejected",
        "approved": False,
        "decided": True,
        "decided_by": "olga",
        "decided_at": "2026-12-05T18:00:00+00:00",
        "comment": "no",
        "payload": {},
    }
    assert resume_value(decision) == {"approved": False, "comment": "no", "decided_by": "olga"}
    assert ENTRY_POINT == "examples.langgraph_approval:resume"


def test_a_node_that_asks_twice_gets_each_decision_in_turn(sh: Statehouse) -> None:
    def ask_twice(state: Twice) -> dict[str, Any]:
        first = interrupt("first?")
        second = interrupt("second?")
        return {"answers": [first, second]}

    builder = StateGraph(Twice)
    builder.add_node("ask_twice", ask_twice)
    builder.add_edge(START, "ask_twice")
    builder.add_edge("ask_twice", END)
    graph = builder.compile(checkpointer=StatehouseSaver(sh))

    invoke(graph, {"answers": []}, thread_id="lg-twice")
    first = Approval.objects.get(agent__agent_id="lg-twice")
    assert first.payload == "first?"
    decide_approval(approval_id=first.pk, approve=True, actor="olga", comment="one")
    invoke(graph, None, thread_id="lg-twice")  # as the resume entry point does
    second = Approval.objects.pending().get(agent__agent_id="lg-twice")
    assert (second.payload, second.name != first.name) == ("second?", True)
    assert sh.status("lg-twice") == "waiting"
    decide_approval(approval_id=second.pk, approve=False, actor="olga", comment="two")
    result = invoke(graph, None, thread_id="lg-twice")
    assert result["answers"] == [
        {"approved": True, "comment": "one", "decided_by": "olga"},
        {"approved": False, "comment": "two", "decided_by": "olga"},
    ]
    assert sh.status("lg-twice") == "completed"


def test_ainvoke_asks_and_resumes_with_the_decision_too(sh: Statehouse) -> None:
    from statehouse.langgraph import ainvoke

    async def ask(state: Twice) -> dict[str, Any]:
        return {"answers": [interrupt({"spend": 40})]}

    builder = StateGraph(Twice)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile(checkpointer=StatehouseSaver(sh))

    run_async(ainvoke(graph, {"answers": []}, thread_id="lg-async"))
    approval = Approval.objects.get(agent__agent_id="lg-async")
    assert (approval.kind, approval.payload, sh.status("lg-async")) == (
        "interrupt",
        {"spend": 40},
        "waiting",
    )
    decide_approval(approval_id=approval.pk, approve=True, actor="olga", comment="")
    result = run_async(ainvoke(graph, None, thread_id="lg-async"))
    assert result["answers"] == [{"approved": True, "comment": "", "decided_by": "olga"}]
    assert sh.status("lg-async") == "completed"
