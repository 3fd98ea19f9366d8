"""A LangGraph graph stopped at `interrupt()`, answered on the dashboard in a real browser
(docs/langgraph.md, "Interrupts answered by an operator"): the operator finds it under
Waiting, reads the interrupt's value, approves (htmx) or rejects (JavaScript off) with a
comment; the resume worker runs the graph on with the decision. A user without staff
rights is refused and nothing changes."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("langgraph")

from django.urls import reverse
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent, Approval, OperatorAction, ResumeRequest

from examples.langgraph_approval import start
from statehouse import Statehouse
from tests.crashes import run_worker_once
from tests.e2e.conftest import PASSWORD, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.multiprocess]

# The agent page polls every 3 s: room for two polls on a loaded machine.
POLL_TIMEOUT_MS = 10_000


def _stopped_graph(thread: str) -> Approval:
    with Statehouse() as client:
        start(client, thread, "prod")
    return Approval.objects.get(agent__agent_id=thread)


def _assert_audited(approval: Approval, *, action: str, comment: str) -> None:
    row = OperatorAction.objects.get(action=action)
    resume = ResumeRequest.objects.get(agent=approval.agent)
    assert (row.actor, row.namespace, row.agent_name, row.agent_id, row.reason) == (
        "operator",
        "default",
        approval.agent.agent_id,
        approval.agent.pk,
        comment,
    )
    assert (row.before, row.after) == (
        {"status": "pending"},
        {"status": "approved" if action == "approve" else "rejected"},
    )
    assert row.detail == {
        "approval": approval.pk,
        "name": approval.name,
        "kind": "interrupt",
        "resume_request": resume.pk,
    }
    assert resume.requested_by == "operator"


def test_approve_a_graph_stopped_at_interrupt_and_the_worker_finishes_it(
    logged_in: Page, live_server: LiveServer, lease_env: dict[str, str]
) -> None:
    page = logged_in
    approval = _stopped_graph("lg-deploy")
    page.goto(live_server.url + "/")
    page.locator(".tile-waiting a").click()
    expect(page).to_have_url(re.compile(r"\?status=waiting$"))
    page.get_by_role("link", name="lg-deploy", exact=True).click()

    live = page.locator("#agent-live")
    expect(live.locator(".status").first).to_contain_text("Waiting")
    pending = live.locator(".approval-pending")
    expect(pending).to_contain_text("LangGraph interrupt")
    expect(pending.get_by_label("Request")).to_contain_text('"question": "Deploy to prod?"')
    expect(pending.locator(".interrupt-answer")).to_contain_text('"approved": true|false')
    page.get_by_label("Comment").fill("window is open")
    page.evaluate("window.__marker = 1")
    live.get_by_role("button", name="Approve").click()

    expect(page.locator("#messages")).to_contain_text(
        f"Approved: '{approval.name}' of lg-deploy. Resume requested"
    )
    expect(live.locator(".status").first).to_have_text("↻ Resuming")
    assert page.evaluate("window.__marker") == 1  # swapped in place, not reloaded
    _assert_audited(approval, action="approve", comment="window is open")

    run_worker_once()

    expect(live.locator(".status").first).to_have_text("✓ Completed", timeout=POLL_TIMEOUT_MS)
    with Statehouse() as client:
        answer = client.get_state("lg-deploy", "answer").value
    assert answer["decision"] == {
        "approved": True,
        "comment": "window is open",
        "decided_by": "operator",
    }
    assert answer["log"][-1] == "deployed to prod (window is open)"


def test_reject_an_interrupt_with_javascript_off(
    no_js_page: Page, live_server: LiveServer, lease_env: dict[str, str]
) -> None:
    page = no_js_page
    approval = _stopped_graph("lg-hold")
    url = live_server.url + approval.agent.get_absolute_url()
    page.goto(url)
    page.get_by_label("Comment").fill("freeze until Monday")
    page.get_by_role("button", name="Reject").click()
    expect(page).to_have_url(url)
    expect(page.locator("#messages")).to_contain_text(f"Rejected: '{approval.name}' of lg-hold.")
    expect(page.locator(".outcome-rejected")).to_have_text("Rejected")
    _assert_audited(approval, action="reject", comment="freeze until Monday")

    run_worker_once()

    with Statehouse() as client:
        answer = client.get_state("lg-hold", "answer").value
    assert answer["decision"]["approved"] is False
    assert answer["log"][-1] == "not deployed to prod (freeze until Monday)"


def test_a_non_staff_user_cannot_answer_an_interrupt(
    page: Page, live_server: LiveServer, django_user_model: Any
) -> None:
    django_user_model.objects.create_user("watcher", password=PASSWORD)
    approval = _stopped_graph("lg-guarded")
    log_in(page, live_server.url, username="watcher")
    page.goto(live_server.url + approval.agent.get_absolute_url())
    expect(page.locator(".approval-pending")).to_contain_text("waits for a decision")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    answer = page.request.post(
        live_server.url + reverse("agents:decide", args=[approval.pk]),
        form={"decision": "approve", "comment": "me too", "csrfmiddlewaretoken": csrf},
        headers={"Referer": live_server.url + approval.agent.get_absolute_url()},
    )
    assert answer.status == 403
    stored = Approval.objects.get(pk=approval.pk)
    assert (stored.status, stored.decided_by, stored.comment) == ("pending", "", "")
    assert not OperatorAction.objects.filter(action__in=["approve", "reject"]).exists()
    assert not ResumeRequest.objects.exists()
    assert Agent.objects.with_status(Agent.Status.WAITING).get().agent_id == "lg-guarded"
