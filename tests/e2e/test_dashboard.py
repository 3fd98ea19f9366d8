"""The operator's dashboard in a real browser: login, the live agent list, resuming one
agent or several without a page reload, the step timeline, key history diffs, the strict
Content-Security-Policy, escaping, and every page read and navigated with JavaScript off.

Data is written through the real client (`sh`, whose writes commit); the live server reads
it from the same test database. Waits are `expect(...)` with a timeout, never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Locator, Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent

from statehouse import Statehouse
from tests.e2e.conftest import BrowserProblems
from tests.factories import make_agent, status_of

pytestmark = pytest.mark.django_db(transaction=True)

# The agent table and the agent page poll every 3 s: leave room for two polls and a slow
# machine, without ever sleeping.
POLL_TIMEOUT_MS = 10_000
SCREENSHOTS = Path("test-results") / "dashboard"
MARKER = "window.__statehouseE2E"
EVIL = "<script>window.__pwned = 1</script>"


# --- factories ----------------------------------------------------------------------------


def write_step(client: Statehouse, agent_id: str, number: int, status: str, **extra: Any) -> None:
    value = {"action": {"tool": "search", "n": number}, "status": status, **extra}
    with client.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=f"step:{number}", value=value)


def make_stepped_agent(agent_id: str) -> Agent:
    """An interrupted agent with a done, a failed and a pending step and a 3-version key.

    Written by its own client, which then closes: the lease is released mid-run.
    """
    writer = Statehouse()
    writer.start(agent_id, {"task": f"summarise the reports for {agent_id}"})
    write_step(writer, agent_id, 0, "done", result={"found": 12})
    write_step(writer, agent_id, 1, "failed", error="TimeoutError: the search API timed out")
    write_step(writer, agent_id, 2, "pending")
    for value in ({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}, {"a": 1, "c": 5}):
        with writer.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key="doc", value=value)
    writer.close()
    return Agent.objects.get(agent_id=agent_id)


# --- helpers ------------------------------------------------------------------------------


def row(page: Page, agent: Agent) -> Locator:
    return page.locator(f"#agent-row-{agent.pk}")


def status_in(locator: Locator) -> Locator:
    return locator.locator(".status").first


def set_marker(page: Page) -> None:
    """Put a value on `window`: it survives htmx swaps and is gone after any page load."""
    page.evaluate(f"{MARKER} = 'no reload'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate(MARKER) == "no reload", "the page was reloaded"


# --- login and the list -------------------------------------------------------------------


def test_login_shows_the_interrupted_agent_on_overview_and_list(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    interrupted = make_agent(sh, "report-writer", status="interrupted")
    make_agent(sh, "mailer", status="completed")
    page.reload()
    recent = page.locator(
        "section", has=page.get_by_role("heading", name="Interrupted most recently")
    )
    expect(recent.get_by_role("link", name="report-writer")).to_be_visible()
    expect(page.locator(".tile-interrupted .tile-count")).to_have_text("1")

    page.get_by_role("link", name="All interrupted agents").click()
    expect(page).to_have_url(re.compile(r"/agents/\?status=interrupted$"))
    expect(row(page, interrupted)).to_be_visible()
    expect(status_in(row(page, interrupted))).to_have_text("! Interrupted")
    expect(page.locator(".tab-interrupted")).to_have_attribute("aria-current", "page")
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.get_by_text("shown of 1")).to_be_visible()


def test_resume_button_changes_the_row_to_resuming_without_a_reload(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "report-writer", status="interrupted")
    other = make_agent(sh, "crawler", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))
    expect(status_in(row(page, agent))).to_have_text("! Interrupted")
    set_marker(page)

    row(page, agent).get_by_role("button", name="Resume").click()

    expect(status_in(row(page, agent))).to_have_text("↻ Resuming")
    expect(row(page, agent)).to_have_class(re.compile(r"\brow-resuming\b"))
    expect(row(page, agent).get_by_role("button", name="Resume")).to_have_count(0)
    expect(row(page, agent).get_by_role("checkbox")).to_have_count(0)
    expect(page.locator("#messages")).to_contain_text("Resume of report-writer requested")
    expect(status_in(row(page, other))).to_have_text("! Interrupted")
    assert_not_reloaded(page)
    assert status_of(agent) == "resuming"
    assert status_of(other) == "interrupted"


def test_bulk_resume_of_two_checked_agents(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    first = make_agent(sh, "batch-a", status="interrupted")
    second = make_agent(sh, "batch-b", status="failed")
    left = make_agent(sh, "batch-c", status="interrupted")
    running = make_agent(sh, "batch-d", status="running")
    page.goto(live_server.url + reverse("agents:list"))
    expect(row(page, running).get_by_role("checkbox")).to_have_count(0)  # not resumable
    set_marker(page)

    for agent in (first, second):
        box = page.get_by_role("checkbox", name=f"Select {agent}", exact=True)
        box.check()
        expect(box).to_be_checked()
    page.get_by_role("button", name="Resume selected").click()

    expect(page.locator("#messages")).to_contain_text("Resume requested for 2 agents.")
    for agent in (first, second):
        expect(status_in(row(page, agent))).to_have_text("↻ Resuming")
    expect(status_in(row(page, left))).to_have_text("! Interrupted")
    expect(page.locator("#agent-table input[name='agent']:checked")).to_have_count(0)
    expect(page.locator(".tab-resuming .tab-count")).to_have_text("2")
    assert_not_reloaded(page)
    assert [status_of(a) for a in (first, second, left)] == ["resuming", "resuming", "interrupted"]


def test_select_all_checks_every_resumable_agent(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    make_agent(sh, "batch-a", status="interrupted")
    make_agent(sh, "batch-b", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))

    page.get_by_role("checkbox", name="Select every resumable agent").check()

    expect(page.locator("#agent-table input[name='agent']:checked")).to_have_count(2)


# --- live refresh -------------------------------------------------------------------------


def test_list_refreshes_itself_when_agents_change(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    running = make_agent(sh, "worker-1", status="running")
    interrupted = make_agent(sh, "worker-2", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))
    expect(status_in(row(page, running))).to_have_text("▶ Running")
    expect(status_in(row(page, interrupted))).to_have_text("! Interrupted")
    set_marker(page)

    sh.finish("worker-1", {"answer": 42})
    sh.request_resume("worker-2", requested_by="e2e test")

    expect(status_in(row(page, running))).to_have_text("✓ Completed", timeout=POLL_TIMEOUT_MS)
    expect(status_in(row(page, interrupted))).to_have_text("↻ Resuming", timeout=POLL_TIMEOUT_MS)
    expect(page.locator(".tab-completed .tab-count")).to_have_text("1")
    expect(page.locator(".tab-running .tab-count")).to_have_text("0")
    assert_not_reloaded(page)


def test_list_refresh_keeps_checked_boxes(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "keeper", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))
    box = page.get_by_role("checkbox", name=f"Select {agent}", exact=True)
    box.check()
    set_marker(page)

    # Change something the next poll must show, then wait for it: the box is still checked.
    make_agent(sh, "newcomer", status="interrupted")
    expect(page.get_by_role("link", name="newcomer", exact=True)).to_be_visible(
        timeout=POLL_TIMEOUT_MS
    )
    expect(box).to_be_checked()
    assert_not_reloaded(page)


def test_box_checked_while_a_poll_is_in_flight_stays_checked(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "late-pick", status="interrupted")
    page.goto(live_server.url + reverse("agents:list"))
    box = page.get_by_role("checkbox", name=f"Select {agent}", exact=True)
    expect(box).to_be_visible()

    # Hold the next poll: it left with no box checked, so the table it brings has none.
    polls = re.compile(r".*/agents/(\?.*)?$")
    held: list[Any] = []
    page.route(polls, lambda route: held.append(route))
    with page.expect_request(polls, timeout=POLL_TIMEOUT_MS):
        pass
    for _ in range(100):  # let the route handler run (bounded; pumps Playwright's loop)
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the table did not poll"

    box.check()  # the operator picks the agent while the poll is on its way
    page.evaluate("document.getElementById('agent-table').dataset.stale = '1'")
    held[0].continue_()
    page.unroute(polls)  # later polls go through

    expect(page.locator("#agent-table[data-stale]")).to_have_count(0, timeout=POLL_TIMEOUT_MS)
    expect(box).to_be_checked()


def test_agent_page_refreshes_itself_until_the_agent_finishes(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "live-one", status="running", steps=1)
    page.goto(live_server.url + agent.get_absolute_url())
    live = page.locator("#agent-live")
    expect(status_in(live)).to_have_text("▶ Running")
    expect(page.locator(".timeline > li")).to_have_count(1)
    set_marker(page)

    write_step(sh, "live-one", 1, "done", result={"ok": True})
    expect(page.locator(".timeline > li")).to_have_count(2, timeout=POLL_TIMEOUT_MS)
    sh.finish("live-one", {"answer": "done"})
    expect(status_in(live)).to_have_text("✓ Completed", timeout=POLL_TIMEOUT_MS)
    # A finished agent cannot change any more: the fragment comes back without its trigger.
    expect(page.locator("#agent-live[hx-trigger]")).to_have_count(0)
    assert_not_reloaded(page)


# --- agent page and key history -----------------------------------------------------------


def test_agent_page_distinguishes_done_failed_and_pending_steps(
    logged_in: Page, live_server: LiveServer, transactional_db: None
) -> None:
    page = logged_in
    agent = make_stepped_agent("analyst")
    page.goto(live_server.url + reverse("agents:list"))
    page.get_by_role("link", name="analyst", exact=True).click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())
    expect(page.get_by_role("heading", level=1)).to_have_text("Agent analyst")
    expect(status_in(page.locator("#agent-live"))).to_have_text("! Interrupted")

    steps = page.locator(".timeline > li")
    expect(steps).to_have_count(3)
    # The agent is interrupted: its pending step is in doubt (docs/operations.md).
    expected = [
        ("step-done", "Done", "✓"),
        ("step-failed", "Failed", "✕"),
        ("step-pending step-in-doubt", "In doubt", "…"),
    ]
    for index, (classes, label, marker) in enumerate(expected):
        step = steps.nth(index)
        expect(step).to_have_class(f"step {classes}")
        expect(step.locator(".step-title strong")).to_have_text(f"Step {index}")
        expect(step.locator(".step-label")).to_have_text(label)
        expect(step.locator(".step-marker")).to_have_text(marker)
    expect(steps.nth(0)).to_contain_text("took")
    expect(steps.nth(1).locator(".step-error")).to_contain_text("the search API timed out")
    expect(steps.nth(2)).to_contain_text("not ended")
    expect(page.locator(".facts")).to_contain_text("1 done · 1 pending · 1 failed")

    # A result is folded away until asked for.
    result = steps.nth(0).locator("details", has_text="Result")
    expect(result.locator("pre")).not_to_be_visible()
    result.locator("summary").click()
    expect(result.locator("pre")).to_contain_text('"found": 12')


def test_agent_page_resume_button_swaps_the_live_part(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent = make_agent(sh, "report-writer", status="interrupted")
    page.goto(live_server.url + agent.get_absolute_url())
    set_marker(page)

    page.locator("#agent-live").get_by_role("button", name="Resume").click()

    expect(status_in(page.locator("#agent-live"))).to_have_text("↻ Resuming")
    expect(page.locator("#messages")).to_contain_text("Resume of report-writer requested")
    resumes = page.locator("section", has=page.get_by_role("heading", name="Resumes"))
    expect(resumes.locator("tbody tr")).to_have_count(1)
    expect(resumes.locator("tbody tr")).to_contain_text("operator")
    assert_not_reloaded(page)


def test_key_history_lists_versions_and_diffs_two_of_them(
    logged_in: Page, live_server: LiveServer, transactional_db: None
) -> None:
    page = logged_in
    agent = make_stepped_agent("analyst")
    page.goto(live_server.url + agent.get_absolute_url())
    page.get_by_role("link", name="History of doc").click()
    expect(page).to_have_url(re.compile(r"/history/\?key=doc$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Key doc")

    # By default: the newest version against the one before it.
    # v2 {"a": 1, "b": 3, "c": 4} -> v3 {"a": 1, "c": 5}
    expect(page.locator("#diff-heading")).to_contain_text("Changes from v2 to v3")
    expect(page.locator(".diff-count-added")).to_have_text("+1 added")
    expect(page.locator(".diff-count-removed")).to_have_text("\u22122 removed")
    expect(page.locator("tr.diff-removed .diff-text")).to_have_text(['"b": 3,', '"c": 4'])
    expect(page.locator("tr.diff-added .diff-text")).to_have_text(['"c": 5'])
    expect(page.locator("tr.diff-context .diff-text")).to_contain_text(['"a": 1,'])
    expect(page.locator("pre.json-full")).to_contain_text('"c": 5')

    versions = page.locator("section", has=page.get_by_role("heading", name="Versions"))
    expect(versions.locator("tbody tr")).to_have_count(3)
    expect(versions.locator("tbody tr td:first-child")).to_have_text(["v3 shown", "v2", "v1"])

    # Any two versions, through the form: v1 {"a": 1, "b": 2} -> v2.
    page.get_by_label("From version").fill("1")
    page.get_by_label("To version").fill("2")
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(re.compile(r"a=1&b=2"))
    expect(page.locator("#diff-heading")).to_contain_text("Changes from v1 to v2")
    expect(page.locator("tr.diff-removed .diff-text")).to_have_text(['"b": 2'])
    expect(page.locator("tr.diff-added .diff-text")).to_have_text(['"b": 3,', '"c": 4'])
    expect(page.locator("tr.diff-removed .diff-sign")).to_contain_text(["removed"])
    expect(page.locator("tr.diff-added .diff-sign").first).to_contain_text("added")
    expect(versions.locator("tr[aria-current='true']")).to_contain_text("v2")

    # And the link from a version to its diff with the one before.
    versions.get_by_role("link", name="Diff with v2").click()
    expect(page.locator("#diff-heading")).to_contain_text("Changes from v2 to v3")


# --- CSP, escaping --------------------------------------------------------------------------


def test_every_page_works_under_the_csp_without_script_errors(
    sh: Statehouse, logged_in: Page, live_server: LiveServer, browser_problems: BrowserProblems
) -> None:
    page = logged_in
    agent = make_stepped_agent("analyst")
    make_agent(sh, "worker-1", status="running")
    history = reverse("agents:key-history", args=[agent.pk]) + "?key=doc"
    urls = [
        reverse("agents:overview"),
        reverse("agents:list"),
        reverse("agents:list") + "?status=interrupted",
        agent.get_absolute_url(),
        history,
        history + "&a=1&b=3",
        reverse("agents:replay", args=[agent.pk]),
    ]
    for url in urls:
        response = page.goto(live_server.url + url)
        assert response is not None and response.ok, url
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp, url
        # The bundled htmx ran, and so did our own script (it un-hides "select all").
        page.wait_for_function("() => window.htmx !== undefined")
        # The stylesheet applied: the skip link waits off screen until focused.
        expect(page.locator(".skip-link")).not_to_be_in_viewport()
        assert browser_problems == [], url

    page.goto(live_server.url + reverse("agents:list"))
    expect(page.locator(".js-select-all")).to_be_visible()

    # A poll and an action (htmx requests carrying the CSRF header) also run cleanly.
    with page.expect_response(
        lambda r: r.request.headers.get("hx-request") == "true" and r.request.method == "GET",
        timeout=POLL_TIMEOUT_MS,
    ) as poll:
        pass
    assert poll.value.ok
    page.locator(f"#agent-row-{agent.pk}").get_by_role("button", name="Resume").click()
    expect(status_in(row(page, agent))).to_have_text("↻ Resuming")
    assert browser_problems == []


def test_script_tags_and_quotes_in_data_show_as_text(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    agent_id = "evil-<b>\"quoted\"&'single'"
    agent = make_agent(sh, agent_id, task={"task": EVIL}, status="interrupted")
    for n in (1, 2):
        with sh.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key=EVIL, value={"v": EVIL, "q": f'say "hi" {n}'})

    page.goto(live_server.url + reverse("agents:overview"))
    expect(page.get_by_role("link", name=agent_id, exact=True).first).to_be_visible()
    expect(page.locator("td[data-label='Key'] code", has_text="__pwned").first).to_have_text(EVIL)

    page.goto(live_server.url + reverse("agents:list"))
    expect(row(page, agent).locator(".agent-link")).to_have_text(agent_id)
    expect(row(page, agent).locator(".col-task")).to_contain_text(EVIL)

    page.goto(live_server.url + reverse("agents:list") + "?q=%3Cscript%3E")
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("<script>")
    expect(page.locator("tbody tr")).to_have_count(1)

    page.get_by_role("link", name=agent_id, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Agent {agent_id}")
    expect(page.locator("#agent-live pre.json").first).to_contain_text(EVIL)
    keys = page.locator("table.table-keys tbody tr", has=page.locator("th", has_text="__pwned"))
    expect(keys.locator("th code")).to_have_text(EVIL)
    expect(keys.locator("pre.json")).to_contain_text('"q": "say \\"hi\\" 2"')

    keys.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Key {EVIL}")
    expect(page).to_have_title(re.compile(re.escape(EVIL)))
    expect(page.locator("tr.diff-removed .diff-text")).to_have_text(['"q": "say \\"hi\\" 1",'])
    expect(page.locator("tr.diff-added .diff-text")).to_have_text(['"q": "say \\"hi\\" 2",'])

    # Nothing from the data became markup or ran.
    expect(page.locator("script", has_text="__pwned")).to_have_count(0)
    expect(page.locator("main b")).to_have_count(0)
    assert page.evaluate("window.__pwned") is None


# --- without JavaScript ---------------------------------------------------------------------


def test_pages_read_and_navigate_with_javascript_off(
    sh: Statehouse, no_js_page: Page, live_server: LiveServer
) -> None:
    page = no_js_page
    agent = make_stepped_agent("analyst")
    other = make_agent(sh, "crawler", status="interrupted")
    page.goto(live_server.url + reverse("agents:overview"))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(page).to_have_url(live_server.url + reverse("agents:list"))
    expect(status_in(row(page, agent))).to_have_text("! Interrupted")
    expect(page.locator(".js-select-all")).to_be_hidden()  # needs JavaScript

    page.locator(".tab-interrupted").click()
    expect(page).to_have_url(re.compile(r"\?status=interrupted$"))
    page.get_by_role("link", name="analyst", exact=True).click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())
    expect(page.locator(".timeline > li")).to_have_count(3)
    expect(page.locator(".timeline > li.step-pending .step-label")).to_have_text("In doubt")

    page.get_by_role("link", name="History of doc").click()
    expect(page.locator("#diff-heading")).to_contain_text("Changes from v2 to v3")
    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="analyst").click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())

    # Actions are plain forms: POST, then a redirect back with the message.
    page.locator("#agent-live").get_by_role("button", name="Resume").click()
    expect(page).to_have_url(live_server.url + agent.get_absolute_url())
    expect(page.locator("#messages")).to_contain_text("Resume of analyst requested")
    expect(status_in(page.locator("#agent-live"))).to_have_text("↻ Resuming")

    page.get_by_role("navigation", name="Breadcrumbs").get_by_role("link", name="Agents").click()
    page.get_by_role("checkbox", name=f"Select {other}", exact=True).check()
    page.get_by_role("button", name="Resume selected").click()
    expect(page).to_have_url(live_server.url + reverse("agents:list"))
    expect(page.locator("#messages")).to_contain_text("Resume requested for 1 agent.")
    expect(status_in(row(page, other))).to_have_text("↻ Resuming")


# --- screenshots for review -----------------------------------------------------------------


def test_screenshots_of_the_main_pages(
    sh: Statehouse, logged_in: Page, live_server: LiveServer
) -> None:
    """Full-page screenshots under test-results/dashboard/, for a person to look at."""
    page = logged_in
    agent = make_stepped_agent("analyst")
    make_agent(sh, "worker-1", status="running")
    make_agent(sh, "mailer", status="completed")
    make_agent(sh, "crawler", status="failed")
    make_agent(sh, "batch-7", status="resuming")
    make_agent(sh, "scheduler", status="idle")
    make_agent(sh, "report-writer", status="interrupted")
    pages = {
        "overview": reverse("agents:overview"),
        "agent-list": reverse("agents:list"),
        "agent-page": agent.get_absolute_url(),
        "key-history": reverse("agents:key-history", args=[agent.pk]) + "?key=doc&a=1&b=3",
    }
    for name, url in pages.items():
        page.goto(live_server.url + url)
        expect(page.locator("main h1")).to_be_visible()
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        assert path.stat().st_size > 10_000, name
