"""In-doubt steps in a real browser (docs/operations.md, "In-doubt steps"): the badge
apart from plain pending, each step decision from the agent page (htmx, no reload; and
with JavaScript off), a bad JSON result refused, a review step blocking resume until
decided, and a user without staff rights refused with nothing changed. Each decision is
audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Locator, Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent, OperatorAction, ResumeRequest

from statehouse import Statehouse
from tests.e2e.conftest import log_in
from tests.factories import status_of

pytestmark = pytest.mark.django_db(transaction=True)
MARKER = "window.__statehouseE2E"

DONE = {"action": {"q": "search"}, "status": "done", "result": 1}
REVIEW = {"action": {"q": "pay 40 EUR"}, "status": "pending", "policy": "review"}


def held_agent(agent_id: str) -> Agent:
    """Interrupted (its client closed mid-run) with step 1 in doubt, policy review."""
    writer = Statehouse()
    writer.start(agent_id, {"task": f"work of {agent_id}"})
    for n, value in enumerate((DONE, REVIEW)):
        with writer.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key=f"step:{n}", value=value)
    writer.close()
    return Agent.objects.get(agent_id=agent_id)


def step_item(page: Page, number: int) -> Locator:
    return page.locator(".timeline > li").nth(number)


def value_of(agent_id: str, key: str) -> Any:
    return Statehouse().get_state(agent_id, key).value


def open_agent(page: Page, live_server: LiveServer, agent: Agent) -> None:
    page.goto(live_server.url + agent.get_absolute_url())
    page.evaluate(f"{MARKER} = 'no reload'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate(MARKER) == "no reload"


def test_the_in_doubt_badge_shows_apart_from_pending_with_the_policy(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    held = held_agent("payer")
    sh.start("live", {"task": "t"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="live", key="step:0", value=REVIEW)
    open_agent(page, live_server, held)
    item = step_item(page, 1)
    expect(item).to_have_class("step step-pending step-in-doubt")
    expect(item.get_by_test_id("in-doubt")).to_have_text("In doubt")
    expect(item).to_contain_text("policy review")
    expect(page.get_by_test_id("needs-review")).to_contain_text("step 1 in doubt needs")
    # A review step's decision form is open at once.
    expect(item.get_by_role("button", name="Run again")).to_be_visible()

    page.goto(live_server.url + Agent.objects.get(agent_id="live").get_absolute_url())
    expect(step_item(page, 0).locator(".step-label")).to_have_text("Pending")
    expect(page.get_by_test_id("in-doubt")).to_have_count(0)
    expect(page.get_by_role("button", name="Run again")).to_have_count(0)


def test_a_review_step_blocks_resume_until_run_again_is_decided(
    logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    held = held_agent("payer")
    open_agent(page, live_server, held)
    live = page.locator("#agent-live")

    live.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("#messages")).to_contain_text(
        "Not resumed: agent 'payer' has step 1 ('step:1') in doubt with the policy 'review'"
    )
    assert not ResumeRequest.objects.exists()

    item = step_item(page, 1)
    item.get_by_label("Reason").fill("the payment API is idempotent")
    item.get_by_role("button", name="Run again").click()
    expect(page.locator("#messages")).to_contain_text("step:1 of payer will run again")
    expect(step_item(page, 1)).to_contain_text("policy retry")
    expect(page.get_by_test_id("needs-review")).to_have_count(0)
    assert value_of("payer", "step:1") == {**REVIEW, "policy": "retry"}

    live.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator("#messages")).to_contain_text("Resume of payer requested")
    assert_not_reloaded(page)
    assert status_of(held) == "resuming"
    action = OperatorAction.objects.get(action="step_decision")
    assert (action.actor, action.agent_name, action.reason) == (
        "operator",
        "payer",
        "the payment API is idempotent",
    )
    assert (action.before, action.after) == (REVIEW, {**REVIEW, "policy": "retry"})
    assert action.detail["decision"] == "retry" and action.detail["key"] == "step:1"


def test_mark_done_with_a_result_and_a_bad_json_result_refused(
    logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    held_agent("payer")
    open_agent(page, live_server, Agent.objects.get(agent_id="payer"))
    item = step_item(page, 1)

    item.get_by_label("Result (JSON, to mark done)").fill("{paid: yes}")
    item.get_by_role("button", name="Mark done").click()
    expect(page.locator("#messages")).to_contain_text(
        "Not decided: the result for 'step:1' is not JSON: Expecting property name"
    )
    assert value_of("payer", "step:1") == REVIEW
    assert not OperatorAction.objects.exists()

    item = step_item(page, 1)
    item.get_by_label("Result (JSON, to mark done)").fill('{"paid": true, "ref": "T-9"}')
    item.get_by_label("Reason").fill("paid by hand")
    item.get_by_role("button", name="Mark done").click()
    expect(page.locator("#messages")).to_contain_text("step:1 of payer marked done")
    expect(step_item(page, 1)).to_have_class("step step-done")
    expect(step_item(page, 1).locator(".step-label")).to_have_text("Done")
    expect(page.get_by_test_id("in-doubt")).to_have_count(0)
    assert_not_reloaded(page)
    after = {**REVIEW, "status": "done", "result": {"paid": True, "ref": "T-9"}}
    assert value_of("payer", "step:1") == after
    action = OperatorAction.objects.get(action="step_decision")
    assert (action.actor, action.reason, action.before, action.after) == (
        "operator",
        "paid by hand",
        REVIEW,
        after,
    )


def test_mark_failed_with_javascript_off(
    browser: Browser, live_server: LiveServer, operator: Any
) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server.url)
    held = held_agent("payer")
    page.goto(live_server.url + held.get_absolute_url())
    item = step_item(page, 1)
    item.get_by_label("Error (to mark failed)").fill("the card was declined")
    item.get_by_role("button", name="Mark failed").click()
    expect(page).to_have_url(live_server.url + held.get_absolute_url())
    expect(page.locator("#messages")).to_contain_text("step:1 of payer marked failed")
    expect(step_item(page, 1)).to_have_class("step step-failed")
    expect(step_item(page, 1).locator(".step-error")).to_contain_text("the card was declined")
    context.close()
    after = {**REVIEW, "status": "failed", "error": "the card was declined"}
    assert value_of("payer", "step:1") == after
    action = OperatorAction.objects.get(action="step_decision")
    assert (action.actor, action.before, action.after, action.detail["decision"]) == (
        "operator",
        REVIEW,
        after,
        "failed",
    )


def test_a_user_without_staff_rights_is_refused_and_nothing_changes(
    viewer_page: Page, live_server: LiveServer
) -> None:
    page = viewer_page
    held = held_agent("payer")
    page.goto(live_server.url + held.get_absolute_url())
    expect(step_item(page, 1).get_by_test_id("in-doubt")).to_have_text("In doubt")
    for name in ("Run again", "Mark done", "Mark failed"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")
    for decision in ("retry", "done", "failed"):
        response = page.request.post(
            live_server.url + reverse("agents:decide-step", args=[held.pk]),
            headers={"X-CSRFToken": token, "Referer": live_server.url + "/"},
            form={"key": "step:1", "decision": decision, "result": "1", "error": "no"},
        )
        assert response.status == 403
    assert value_of("payer", "step:1") == REVIEW
    assert not OperatorAction.objects.exists()
    assert status_of(held) == "interrupted"
