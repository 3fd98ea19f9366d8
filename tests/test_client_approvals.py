"""Human approvals from agent code (docs/client.md, "Approvals"; docs/api.md): the blocking
and the asyncio client, embedded and remote (against the real test server), on both
databases. The operator decides through the store function the dashboard calls
(agents/store/approvals.py); the dashboard's own tests are tests/e2e/test_approvals.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from statehouse_agents.models import Agent, Approval, OperatorAction
from statehouse_agents.store.approvals import decide_approval

from statehouse import ApprovalTimeoutError, AsyncStatehouse, Statehouse
from statehouse.errors import (
    AgentFinishedError,
    AlreadyExistsError,
    NotFoundError,
    ValidationError,
)
from statehouse.types import ApprovalDecision
from tests.factories import make_agent, run_async

from .conftest import make_token

# A bound on how long a decision takes to appear in a test (never reached when it works).
BOUND_SECONDS = 30.0


def pending_approval(agent_id: str) -> Approval:
    """The agent's pending request, once its asking call has made it (a bounded wait)."""
    deadline = time.monotonic() + BOUND_SECONDS
    while time.monotonic() < deadline:
        found = Approval.objects.pending().filter(agent__agent_id=agent_id).first()
        if found is not None:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{agent_id} never asked for a decision")


def decide_when_asked(agent_id: str, *, approve: bool, comment: str) -> threading.Thread:
    """An operator, on another thread, deciding the agent's request once it is made."""

    def operator() -> None:
        from django.db import connection

        try:
            approval = pending_approval(agent_id)
            decide_approval(approval_id=approval.pk, approve=approve, actor="olga", comment=comment)
        finally:
            connection.close()

    thread = threading.Thread(target=operator)
    thread.start()
    return thread


def assert_decided(decision: ApprovalDecision, *, status: str, comment: str, payload: Any) -> None:
    stored = Approval.objects.get(pk=decision.id)
    assert stored.decided_at is not None
    assert decision == ApprovalDecision(
        id=stored.pk,
        name=stored.name,
        status=status,
        approved=status == "approved",
        decided=True,
        decided_by="olga",
        decided_at=stored.decided_at.isoformat(),
        comment=comment,
        payload=payload,
    )


def test_request_approval_waits_for_the_operator_and_returns_the_decision(
    sh: Statehouse,
) -> None:
    make_agent(sh, "ask-1", status="running")
    operator = decide_when_asked("ask-1", approve=True, comment="go ahead")
    decision = sh.request_approval("ask-1", "deploy", {"to": "prod"}, timeout=BOUND_SECONDS)
    operator.join()
    assert_decided(decision, status="approved", comment="go ahead", payload={"to": "prod"})
    assert sh.status("ask-1") == "running"  # no longer waiting; its process goes on
    row = OperatorAction.objects.get(action="approve")
    assert (row.actor, row.agent_name, row.reason, row.before, row.after) == (
        "olga",
        "ask-1",
        "go ahead",
        {"status": "pending"},
        {"status": "approved"},
    )
    assert row.detail == {
        "approval": decision.id,
        "name": "deploy",
        "kind": "request",
        "resume_request": None,  # a live process waited for the answer
    }


def test_a_rejection_is_returned_with_its_comment(sh: Statehouse) -> None:
    make_agent(sh, "ask-2", status="running")
    operator = decide_when_asked("ask-2", approve=False, comment="not today")
    decision = sh.request_approval("ask-2", "drop-table", timeout=BOUND_SECONDS)
    operator.join()
    assert_decided(decision, status="rejected", comment="not today", payload={})


def test_request_approval_times_out_and_the_request_stays_open(sh: Statehouse) -> None:
    make_agent(sh, "ask-3")
    with pytest.raises(ApprovalTimeoutError, match="nobody decided 'go' for agent 'ask-3'") as e:
        sh.request_approval("ask-3", "go", {"n": 1}, timeout=0.3, poll_interval=0.05)
    approval_id = e.value.approval_id
    assert e.value.name == "go"
    pending = sh.get_approval("ask-3", approval_id)
    assert (pending.id, pending.status, pending.decided, pending.payload) == (
        approval_id,
        "pending",
        False,
        {"n": 1},
    )
    assert sh.status("ask-3") == "waiting"
    # Asked again (say, after a restart): the same request, still pending.
    with pytest.raises(ApprovalTimeoutError) as again:
        sh.request_approval("ask-3", "go", timeout=0)
    assert again.value.approval_id == approval_id
    decide_approval(approval_id=approval_id, approve=True, actor="olga", comment="ok")
    decision = sh.request_approval("ask-3", "go", timeout=0)
    assert_decided(decision, status="approved", comment="ok", payload={"n": 1})
    assert Approval.objects.count() == 1


def test_get_approval_with_wait_returns_once_decided(sh: Statehouse) -> None:
    make_agent(sh, "ask-4")
    with pytest.raises(ApprovalTimeoutError) as e:
        sh.request_approval("ask-4", "go", timeout=0)
    operator = decide_when_asked("ask-4", approve=False, comment="")
    decision = sh.get_approval("ask-4", e.value.approval_id, wait=BOUND_SECONDS - 5)
    operator.join()
    assert_decided(decision, status="rejected", comment="", payload={})


def test_approval_refusals_are_the_same_errors_in_every_mode(sh: Statehouse) -> None:
    make_agent(sh, "ask-5")
    make_agent(sh, "ask-done", status="completed")
    make_agent(sh, "ask-other")
    with pytest.raises(ApprovalTimeoutError) as e:
        sh.request_approval("ask-5", "first", timeout=0)
    with pytest.raises(AlreadyExistsError, match="already waits for the decision 'first'"):
        sh.request_approval("ask-5", "second", timeout=0)
    with pytest.raises(AgentFinishedError, match="is completed; a finished agent cannot ask"):
        sh.request_approval("ask-done", "x", timeout=0)
    with pytest.raises(NotFoundError, match="no agent 'ghost'"):
        sh.request_approval("ghost", "x", timeout=0)
    with pytest.raises(ValidationError, match="name"):
        sh.request_approval("ask-5", "", timeout=0)
    with pytest.raises(ValidationError, match="not JSON"):
        sh.request_approval("ask-5", "third", {1, 2}, timeout=0)
    other = f"'ask-other' has no approval request {e.value.approval_id}"
    with pytest.raises(NotFoundError, match=other):
        sh.get_approval("ask-other", e.value.approval_id)
    with pytest.raises(ValidationError, match="wait must be 0 to 30 seconds"):
        sh.get_approval("ask-5", e.value.approval_id, wait=31)
    with pytest.raises(ValidationError, match="timeout must be 0 or more seconds"):
        sh.request_approval("ask-5", "first", timeout=-1)
    assert list(Approval.objects.values_list("name", flat=True)) == ["first"]


# --- AsyncStatehouse ----------------------------------------------------------------------


def test_the_async_client_waits_for_the_decision(sh: Statehouse, client_mode: str) -> None:
    make_agent(sh, "aask-1", status="running")
    operator = decide_when_asked("aask-1", approve=True, comment="fine")

    async def ask() -> tuple[ApprovalDecision, ApprovalDecision]:
        async with AsyncStatehouse() as client:
            assert client.mode == client_mode
            decision = await client.request_approval(
                "aask-1", "spend", {"usd": 40}, timeout=BOUND_SECONDS, poll_interval=0.05
            )
            return decision, await client.get_approval("aask-1", decision.id)

    decision, read_again = run_async(ask())
    operator.join()
    assert_decided(decision, status="approved", comment="fine", payload={"usd": 40})
    assert read_again == decision


def test_the_async_client_times_out_and_refuses_as_the_blocking_one(sh: Statehouse) -> None:
    make_agent(sh, "aask-2")

    async def ask() -> dict[str, Exception]:
        caught: dict[str, Exception] = {}
        async with AsyncStatehouse() as client:
            for label, call in (
                ("timeout", client.request_approval("aask-2", "go", timeout=0.2)),
                ("second", client.request_approval("aask-2", "other", timeout=0)),
                ("ghost", client.request_approval("ghost", "go", timeout=0)),
                ("wait", client.get_approval("aask-2", 1, wait=-1)),
            ):
                try:
                    await call
                except Exception as exc:
                    caught[label] = exc
        return caught

    caught = run_async(ask())
    assert isinstance(caught["timeout"], ApprovalTimeoutError)
    assert str(caught["timeout"]).startswith("nobody decided 'go' for agent 'aask-2' within 0.2 s")
    assert isinstance(caught["second"], AlreadyExistsError)
    assert isinstance(caught["ghost"], NotFoundError)
    assert isinstance(caught["wait"], ValidationError)
    assert sh.status("aask-2") == "waiting"
    assert Approval.objects.get().name == "go"


# --- the HTTP API's scopes ----------------------------------------------------------------


def _ask(url: str, secret: str, namespace: str = "default") -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/agents/approvals",
        json={"namespace": namespace, "agent_id": "http-1", "name": "go", "payload": [1]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_asking_needs_a_write_token_of_the_namespace_and_reading_a_read_token(
    api_server: str, transactional_db: None
) -> None:
    with Statehouse() as sh:
        make_agent(sh, "http-1")
    _token, read_only = make_token("reader", read_only=True)
    _token, elsewhere = make_token("other", namespaces=["elsewhere"])
    _token, writer = make_token("writer", namespaces=["default"])

    refused = _ask(api_server, read_only)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert "is read-only" in refused.json()["message"]
    refused = _ask(api_server, elsewhere)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert "may not use namespace 'default'" in refused.json()["message"]
    assert Approval.objects.count() == 0
    assert Agent.objects.get(agent_id="http-1").waiting_since is None

    asked = _ask(api_server, writer)
    assert asked.status_code == 200, asked.text
    body = asked.json()
    approval = Approval.objects.get()
    assert body == {
        "id": approval.pk,
        "name": "go",
        "status": "pending",
        "approved": False,
        "decided": False,
        "decided_by": "",
        "decided_at": None,
        "comment": "",
        "payload": [1],
    }
    assert _ask(api_server, writer).json() == body  # asked again: the same request

    read = httpx.get(
        f"{api_server}/api/v1/agents/approvals/{approval.pk}",
        params={"agent_id": "http-1", "wait": 0},
        headers={"Authorization": f"Bearer {read_only}"},
        timeout=30,
    )
    assert (read.status_code, read.json()) == (200, body)
    too_long = httpx.get(
        f"{api_server}/api/v1/agents/approvals/{approval.pk}",
        params={"agent_id": "http-1", "wait": 31},
        headers={"Authorization": f"Bearer {read_only}"},
        timeout=30,
    )
    assert (too_long.status_code, too_long.json()["code"]) == (422, "validation")
    missing = httpx.get(
        f"{api_server}/api/v1/agents/approvals/{approval.pk + 1}",
        params={"agent_id": "http-1"},
        headers={"Authorization": f"Bearer {writer}"},
        timeout=30,
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
