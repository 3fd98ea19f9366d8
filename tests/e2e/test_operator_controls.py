"""Operator controls in a real browser (docs/operations.md): pause, unpause and cancel
from the agent page (htmx, no reload; and with JavaScript off), bulk cancel with a dry
run, and a user without staff rights refused with nothing changed. Each is audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import OperatorAction

from statehouse import Statehouse
from tests.e2e.conftest import log_in
from tests.factories import make_agent, status_of

pytestmark = pytest.mark.django_db(transaction=True)
MARKER = "window.__statehouseE2E"


def _live_status(page: Page) -> Any:
    return page.locator("#agent-live .status").first


def test_pause_unpause_and_cancel_from_the_agent_page(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "controlled", status="interrupted")
    page.goto(live_server.url + agent.get_absolute_url())
    page.evaluate(f"{MARKER} = 'no reload'")
    live = page.locator("#agent-live")

    live.get_by_label("Reason to pause").fill("check the inputs")
    live.get_by_role("button", name="Pause", exact=True).click()
    expect(_live_status(page)).to_have_text("‖ Paused")
    expect(page.locator("#messages")).to_contain_text("Agent controlled paused.")
    expect(live.get_by_role("button", name="Pause", exact=True)).to_have_count(0)

    live.get_by_role("button", name="Unpause").click()
    expect(_live_status(page)).to_have_text("! Interrupted")

    live.get_by_label("Reason to cancel").fill("not needed any more")
    live.get_by_role("button", name="Cancel", exact=True).click()
    expect(_live_status(page)).to_have_text("⊘ Cancelled")
    expect(live.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
    expect(live.get_by_role("button", name="Resume")).to_have_count(0)
    actions = page.locator("section", has=page.get_by_role("heading", name="Operator actions"))
    expect(actions.locator("tbody tr")).to_have_count(3)
    expect(actions.locator("tbody tr").first).to_contain_text("not needed any more")
    assert page.evaluate(MARKER) == "no reload"
    assert status_of(agent) == "cancelled"
    rows = list(OperatorAction.objects.order_by("pk"))
    assert [(r.action, r.actor, r.reason) for r in rows] == [
        ("pause", "operator", "check the inputs"),
        ("unpause", "operator", ""),
        ("cancel", "operator", "not needed any more"),
    ]
    assert rows[2].before == {"status": "interrupted"}
    assert rows[2].after == {"status": "cancelled"}


def test_cancel_with_javascript_off(
    sh: Statehouse, browser: Browser, live_server: LiveServer, operator: Any
) -> None:
    agent = make_agent(sh, "plain", status="interrupted")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, live_server.url)
        page.goto(live_server.url + agent.get_absolute_url())
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.wait_for_url(live_server.url + agent.get_absolute_url())
        expect(_live_status(page)).to_have_text("⊘ Cancelled")
        expect(page.locator("#messages")).to_contain_text("Agent plain cancelled.")
    finally:
        context.close()
    assert status_of(agent) == "cancelled"
    assert OperatorAction.objects.get().action == "cancel"


def test_bulk_cancel_dry_run_then_for_real(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    first = make_agent(sh, "bulk-a", status="interrupted")
    second = make_agent(sh, "bulk-b", status="failed")
    left = make_agent(sh, "bulk-c", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))
    for agent in (first, second):
        page.get_by_role("checkbox", name=f"Select {agent}", exact=True).check()
    page.get_by_label("Dry run (cancel only)").check()
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator("#messages")).to_contain_text(
        "Dry run: 1 of 2 selected agent(s) would be cancelled (bulk-a)"
    )
    assert not OperatorAction.objects.exists()

    page.get_by_label("Dry run (cancel only)").uncheck()
    for agent in (first,):
        page.get_by_role("checkbox", name=f"Select {agent}", exact=True).check()
    page.get_by_role("button", name="Cancel selected").click()
    expect(page.locator("#messages")).to_contain_text("Cancelled 1 agent.")
    expect(page.locator(f"#agent-row-{first.pk} .status")).to_have_text("⊘ Cancelled")
    expect(page.locator(f"#agent-row-{left.pk} .status")).to_have_text("! Interrupted")
    assert [status_of(a) for a in (first, second, left)] == ["cancelled", "failed", "interrupted"]
    row = OperatorAction.objects.get()
    assert (row.action, row.actor, row.agent_name) == ("cancel", "operator", "bulk-a")
    assert row.detail == {"source": "dashboard", "bulk": True}


def test_a_user_without_staff_rights_is_refused_and_nothing_changes(
    sh: Statehouse, viewer_page: Page, live_server: LiveServer
) -> None:
    page = viewer_page
    agent = make_agent(sh, "guarded", status="interrupted")
    page.goto(live_server.url + agent.get_absolute_url())
    for name in ("Pause", "Cancel", "Resume"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    token = page.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")
    for action in ("cancel", "pause"):
        response = page.request.post(
            live_server.url + reverse(f"agents:{action}", args=[agent.pk]),
            headers={"X-CSRFToken": token, "Referer": live_server.url + "/"},
        )
        assert response.status == 403
    assert status_of(agent) == "interrupted"
    assert not OperatorAction.objects.exists()
