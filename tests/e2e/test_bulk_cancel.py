"""Bulk cancel by the agent list's filters in a real browser (docs/operations.md, "Bulk
cancel"): from a filtered tab to the dry-run preview (how many, which agents), then the
confirmation; with JavaScript on and off. Finished and unmatched agents are untouched."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent, OperatorAction

from statehouse import Statehouse
from tests.e2e.conftest import log_in
from tests.factories import make_agent, status_of

pytestmark = pytest.mark.django_db(transaction=True)


def _fleet(sh: Statehouse) -> dict[str, Agent]:
    return {
        "night-a": make_agent(sh, "night-a"),
        "night-b": make_agent(sh, "night-b"),
        "night-done": make_agent(sh, "night-done", status="completed"),
        "day-a": make_agent(sh, "day-a"),
    }


def _cancel_from_the_list(page: Page, base_url: str) -> None:
    page.goto(base_url + reverse("agents:list") + "?status=interrupted")
    page.get_by_role("searchbox", name="Search").fill("night")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Cancel all 2 matching…").click()
    preview = page.locator("#cancel-preview")
    expect(preview).to_contain_text("Dry run: nothing has been cancelled yet")
    expect(page.locator("#cancel-matching-count")).to_have_text("2")
    expect(page.locator("#cancel-cancellable-count")).to_have_text("2")
    expect(preview.get_by_role("link", name="night-a")).to_be_visible()
    expect(preview.get_by_role("link", name="night-b")).to_be_visible()
    expect(preview.get_by_role("link", name="day-a")).to_have_count(0)
    assert not OperatorAction.objects.exists()
    page.get_by_label("Reason (kept in the audit log)").fill("nightly batch is wrong")
    page.get_by_role("button", name="Cancel 2 agents").click()
    expect(page.locator("#messages")).to_contain_text(
        "Cancelled 2 agents (status interrupted, matching “night”)."
    )


def _assert_cancelled(agents: dict[str, Agent]) -> None:
    assert {name: status_of(a) for name, a in agents.items()} == {
        "night-a": "cancelled",
        "night-b": "cancelled",
        "night-done": "completed",
        "day-a": "interrupted",
    }
    rows = list(OperatorAction.objects.order_by("agent_name"))
    assert [(r.action, r.actor, r.agent_name, r.reason) for r in rows] == [
        ("cancel", "operator", "night-a", "nightly batch is wrong"),
        ("cancel", "operator", "night-b", "nightly batch is wrong"),
    ]


def test_cancel_all_matching_with_a_dry_run_preview(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    agents = _fleet(sh)
    _cancel_from_the_list(logged_in, live_server.url)
    expect(logged_in.locator(f"#agent-row-{agents['night-a'].pk} .status")).to_have_count(0)
    _assert_cancelled(agents)


def test_cancel_all_matching_with_javascript_off(
    sh: Statehouse, browser: Browser, live_server: LiveServer, operator: Any
) -> None:
    agents = _fleet(sh)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, live_server.url)
        _cancel_from_the_list(page, live_server.url)
    finally:
        context.close()
    _assert_cancelled(agents)
