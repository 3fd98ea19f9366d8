"""A LangGraph thread killed mid-run, resumed by an operator in the browser.

The graph (examples/langgraph_agent.py) runs in a real subprocess, SIGKILLed after two of
its five nodes; the operator presses Resume on the agent page; a resume worker runs the
thread's entry point, which continues from the last checkpoint. Each node appends a line
to a side-effect file, so a node run twice would show (docs/langgraph.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langgraph")

from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import Agent

from examples.langgraph_agent import NODES
from statehouse import Statehouse
from tests.agents_for_tests import read_lines
from tests.crashes import kill_mid_run, run_worker_once

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.multiprocess]

# The agent page polls every 3 s: room for two polls on a loaded machine.
POLL_TIMEOUT_MS = 10_000


def test_a_killed_graph_resumed_from_its_page_finishes_without_rerunning_nodes(
    logged_in: Page, live_server: LiveServer, lease_env: dict[str, str], tmp_path: Path
) -> None:
    page = logged_in
    side = tmp_path / "effects.log"
    kill_mid_run("examples/langgraph_agent.py", "lg-page", side, lease_env, after=2)
    assert read_lines(side)[:2] == ["ran lg-page plan", "ran lg-page search"]
    agent = Agent.objects.get(agent_id="lg-page")

    page.goto(live_server.url + agent.get_absolute_url())
    live = page.locator("#agent-live")
    expect(live.locator(".status").first).to_have_text("! Interrupted")
    # Steps 0-2: the input, plan and search (a node killed before it wrote leaves no step).
    expect(live.locator(".facts")).to_contain_text("3 done")
    live.get_by_role("button", name="Resume").click()
    expect(live.locator(".status").first).to_have_text("↻ Resuming")

    run_worker_once()

    # The page polls while the agent can change, and stops once it has finished.
    expect(live.locator(".status").first).to_have_text("✓ Completed", timeout=POLL_TIMEOUT_MS)
    expect(live.locator(".facts")).to_contain_text("6 done · 0 pending · 0 failed")
    with Statehouse() as client:
        assert client.get_state("lg-page", "answer").value["log"] == list(NODES)
    nodes = [line.split()[-1] for line in read_lines(side)]
    assert sorted(nodes) == sorted(NODES), nodes
