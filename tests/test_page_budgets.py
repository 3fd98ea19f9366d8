"""Query budgets of the operator's pages (issue 13, "What it must show"): the overview with
its waiting count, the waiting tab, the storage page and the audit log run the same
number of queries with 1 row and with 50."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from statehouse_agents.models import Agent, OperatorAction
from statehouse_agents.store.approvals import request_approval
from statehouse_agents.store.operator import pause_agent, unpause_agent

from tests.factories import make_agents

# page name -> (url, queries); the same whatever the number of rows and the database.
PAGES: dict[str, tuple[str, int]] = {
    "overview": ("/", 11),
    "waiting-tab": ("/agents/?status=waiting", 5),
    "storage": ("/storage/", 7),
    "audit": ("/audit/", 3),
}


@pytest.fixture
def rows(request: pytest.FixtureRequest, transactional_db: None) -> int:
    """`n` agents waiting for a decision, each with two audit records (pause, unpause)."""
    n: int = request.param
    for agent in make_agents(n, prefix="w", steps=2):
        pause_agent(namespace=agent.namespace, agent_id=agent.agent_id, actor="ops")
        unpause_agent(namespace=agent.namespace, agent_id=agent.agent_id, actor="ops")
        request_approval(namespace=agent.namespace, agent_id=agent.agent_id, name="go")
    assert Agent.objects.with_status(Agent.Status.WAITING).count() == n
    assert OperatorAction.objects.count() == 2 * n
    return n


@pytest.mark.parametrize("rows", [1, 50], indirect=True)
@pytest.mark.parametrize("name", list(PAGES))
def test_query_count_is_fixed_at_1_and_50_rows(staff: Client, rows: int, name: str) -> None:
    url, budget = PAGES[name]
    staff.get(url)  # warm the session
    with CaptureQueriesContext(connection) as captured:
        response = staff.get(url)
    assert response.status_code == 200, response.content[:500]
    assert len(captured.captured_queries) == budget, [
        q["sql"][:120] for q in captured.captured_queries
    ]
