"""Operator controls in a real browser (docs/operations.md): editing a key with a diff
preview, forking and comparing, approving and rejecting a waiting agent, with JavaScript
on (htmx swaps) and off (plain forms), and a user without staff rights refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent, Approval, Commit
from statehouse_agents.store.approvals import request_approval

from statehouse import Statehouse
from tests.e2e.conftest import PASSWORD, log_in
from tests.factories import make_agent, status_of

pytestmark = pytest.mark.django_db(transaction=True)


def _agent_with_plan(sh: Statehouse, agent_id: str) -> Agent:
    agent = make_agent(sh, agent_id, steps=2)
    with sh.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key="plan", value={"next": "search", "budget": 3})
    return agent


def test_edit_previews_the_diff_refuses_bad_json_and_saves(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = _agent_with_plan(sh, "editor-1")
    page.goto(live_server.url + agent.get_absolute_url())
    page.get_by_role("link", name="Edit plan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit key plan")
    editor = page.get_by_label("Value (JSON)")
    expect(editor).to_have_value('{\n  "next": "search",\n  "budget": 3\n}')

    editor.fill('{"next": "summarise", budget: 3}')
    page.get_by_role("button", name="Preview diff").click()
    expect(page.locator("#edit-panel .form-errors")).to_contain_text(
        "is not JSON: Expecting property name enclosed in double quotes at line 1, column 23"
    )
    expect(page.get_by_role("button", name="Save")).to_have_count(0)

    editor = page.get_by_label("Value (JSON)")
    editor.fill('{"next": "summarise", "budget": 3}')
    page.get_by_role("button", name="Preview diff").click()
    expect(page.locator(".diff-count-added")).to_have_text("+1 added")
    expect(page.locator("tr.diff-removed .diff-text")).to_have_text(['"next": "search"'])
    expect(page.locator("tr.diff-added .diff-text")).to_have_text(['"next": "summarise"'])
    assert sh.get_state("editor-1", "plan").version == 1  # a preview writes nothing

    page.get_by_role("button", name="Save").click()
    expect(page.locator("#reason-error, #edit-panel .form-errors")).to_contain_text(
        "Give a reason to save"
    )
    page.get_by_label("Reason").fill("the search API is down")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())
    state = sh.get_state("editor-1", "plan")
    expect(page.locator("#messages")).to_contain_text(f"Saved plan v2 (commit {state.commit_ts}).")
    assert state.value == {"next": "summarise", "budget": 3}


def test_fork_at_a_step_then_compare_it_with_its_source(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    source = make_agent(sh, "planner", steps=3)
    page.goto(live_server.url + source.get_absolute_url())
    page.get_by_label("New agent id").fill("planner-b")
    page.get_by_label("At step").fill("1")
    page.get_by_role("button", name="Fork").click()

    forked = Agent.objects.get(agent_id="planner-b")
    expect(page).to_have_url(live_server.url + forked.get_absolute_url())
    expect(page.locator("#messages")).to_contain_text("Forked planner as planner-b (3 keys")
    expect(page.locator("#forked-from")).to_contain_text("Forked from planner")
    expect(page.locator(".timeline > li")).to_have_count(2)

    page.get_by_role("link", name="Compare with it").click()
    expect(page).to_have_url(re.compile(rf"/agents/compare/\?a={source.pk}&b={forked.pk}$"))
    expect(page.locator("#differing")).to_have_text("1 differs")  # step 2: only the source
    expect(page.locator("#compare-step-2")).to_contain_text("no such step")
    expect(page.locator("#compare-step-0")).not_to_have_class("differs")


def test_approve_a_waiting_agent_from_the_overview_with_htmx(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "deployer")
    request_approval(
        namespace="default", agent_id="deployer", name="deploy", payload={"to": "prod"}
    )
    page.goto(live_server.url + "/")
    page.locator(".tile-waiting a").click()
    expect(page).to_have_url(re.compile(r"\?status=waiting$"))
    page.get_by_role("link", name="deployer", exact=True).click()

    live = page.locator("#agent-live")
    expect(live.locator(".status").first).to_contain_text("Waiting")
    expect(live.locator(".approval-pending")).to_contain_text('"to": "prod"')
    page.get_by_label("Comment").fill("checked the diff")
    page.evaluate("window.__marker = 1")
    live.get_by_role("button", name="Approve").click()

    expect(page.locator("#messages")).to_contain_text("Approved: 'deploy' of deployer.")
    expect(live.locator(".approval-pending")).to_have_count(0)
    expect(live.locator(".outcome-approved")).to_have_text("Approved")
    assert page.evaluate("window.__marker") == 1  # swapped in place, not reloaded
    stored = Approval.objects.get(agent=agent)
    assert (stored.status, stored.decided_by, stored.comment) == (
        "approved",
        "operator",
        "checked the diff",
    )
    assert status_of(agent) == "interrupted"


def test_reject_with_javascript_off(
    sh: Statehouse, no_js_page: Page, live_server: LiveServer
) -> None:
    page = no_js_page
    agent = make_agent(sh, "mailer")
    request_approval(namespace="default", agent_id="mailer", name="send")
    page.goto(live_server.url + agent.get_absolute_url())
    page.get_by_label("Comment").fill("wrong list")
    page.get_by_role("button", name="Reject").click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())
    expect(page.locator("#messages")).to_contain_text("Rejected: 'send' of mailer.")
    expect(page.locator(".outcome-rejected")).to_have_text("Rejected")
    assert Approval.objects.get(agent=agent).comment == "wrong list"


def test_non_staff_user_sees_no_controls_and_is_refused(
    sh: Statehouse, page: Page, live_server: LiveServer, django_user_model: Any
) -> None:
    django_user_model.objects.create_user("watcher", password=PASSWORD)
    agent = _agent_with_plan(sh, "guarded")
    approval = request_approval(namespace="default", agent_id="guarded", name="go")
    commits = Commit.objects.count()
    log_in(page, live_server.url, username="watcher")
    page.goto(live_server.url + agent.get_absolute_url())
    expect(page.locator(".approval-pending")).to_contain_text("waits for a decision")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Fork")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit plan")).to_have_count(0)

    response = page.goto(live_server.url + reverse("agents:edit", args=[agent.pk]) + "?key=plan")
    assert response is not None and response.status == 403
    # A forged POST with the user's own CSRF token is refused as well.
    token = page.context.cookies()[0]["value"] if page.context.cookies() else ""
    csrf = next((c["value"] for c in page.context.cookies() if c["name"] == "csrftoken"), token)
    answer = page.request.post(
        live_server.url + reverse("agents:decide", args=[approval.pk]),
        form={"decision": "approve", "csrfmiddlewaretoken": csrf},
        headers={"Referer": live_server.url + agent.get_absolute_url()},
    )
    assert answer.status == 403
    assert Approval.objects.get(pk=approval.pk).status == "pending"
    assert Commit.objects.count() == commits


def test_a_live_agent_blocked_in_request_approval_goes_on_after_approval(
    logged_in: Page, live_server: LiveServer, subprocess_env: dict[str, str], tmp_path: Any
) -> None:
    """A real process asks, waits (the agent shows as waiting) and finishes with the
    decision an operator gives in the browser."""
    import subprocess
    import sys
    import textwrap

    from tests.conftest import ROOT
    from tests.factories import wait_until

    code = textwrap.dedent(
        """
        from statehouse import Statehouse
        client = Statehouse()
        client.start("human-1", {"task": "deploy"})
        decision = client.request_approval(
            "human-1", "deploy", {"to": "prod"}, timeout=90, poll_interval=0.2
        )
        client.finish("human-1", {"approved": decision.approved, "comment": decision.comment})
        print("decided", decision.status, decision.decided_by)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=subprocess_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: Approval.objects.filter(agent__agent_id="human-1").exists(),
            timeout=60,
            what="the agent's approval request",
        )
        agent = Agent.objects.get(agent_id="human-1")
        assert status_of(agent) == "waiting"
        page = logged_in
        page.goto(live_server.url + agent.get_absolute_url())
        page.get_by_label("Comment").fill("go ahead")
        page.locator("#agent-live").get_by_role("button", name="Approve").click()
        expect(page.locator("#messages")).to_contain_text("Approved: 'deploy' of human-1.")
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert out.strip() == "decided approved operator"
    expect(page.locator("#agent-live .status").first).to_contain_text("Completed", timeout=10_000)
    assert status_of(agent) == "completed"
