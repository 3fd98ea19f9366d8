"""Bulk cancel by the agent list's filters (docs/operations.md, "Bulk cancel"): the
dashboard's dry-run preview and confirmation, the `cancel_agents` command and the
`statehouse cancel_agents` command line with resume_agents' selection options. Filters
select exactly the right agents, finished ones are never touched, a dry run writes
nothing, a user without staff rights is refused, and each cancelled agent is audited."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from statehouse_agents.dashboard import cancel_page
from statehouse_agents.models import Agent, OperatorAction

from statehouse import Statehouse, cli
from tests.factories import make_agent, make_agents, status_of

URL = "agents:cancel-matching"


@pytest.fixture
def fleet(sh: Statehouse) -> dict[str, Agent]:
    """Agents of every kind the filters must tell apart."""
    agents = {a.agent_id: a for a in make_agents(3, prefix="batch")}
    agents["other-int"] = make_agent(sh, "other-int")
    agents["batch-done"] = make_agent(sh, "batch-done", status="completed")
    agents["batch-failed"] = make_agent(sh, "batch-failed", status="failed")
    agents["batch-team"] = make_agent(sh, "batch-team", namespace="team")
    agents["batch-idle"] = make_agent(sh, "batch-idle", status="idle")
    return agents


def _statuses(agents: dict[str, Agent]) -> dict[str, str]:
    return {name: status_of(agent) for name, agent in sorted(agents.items())}


def _preview(client: Client, **params: str) -> Any:
    return client.get(reverse(URL), params)


def _upto(response: Any) -> str:
    return str(response.context["page"].upto)


# --- the dashboard: preview (dry run) -------------------------------------------------------


def test_preview_counts_and_lists_exactly_the_filtered_agents_and_writes_nothing(
    staff: Client, fleet: dict[str, Agent]
) -> None:
    before = _statuses(fleet)
    response = _preview(staff, status="interrupted", q="batch", namespace="default")
    assert response.status_code == 200
    page = response.context["page"]
    assert (page.matching, page.cancellable) == (3, 3)
    assert sorted(a.agent_id for a in page.agents) == ["batch-000", "batch-001", "batch-002"]
    assert page.upto == max(fleet[f"batch-00{i}"].pk for i in range(3))
    html = response.content.decode()
    assert "Dry run: nothing has been cancelled yet" in html
    assert "Cancel 3 agents" in html
    assert not OperatorAction.objects.exists()
    assert _statuses(fleet) == before


def test_preview_of_all_statuses_leaves_out_finished_agents(
    staff: Client, fleet: dict[str, Agent]
) -> None:
    page = _preview(staff, q="batch").context["page"]
    # batch-000..002, batch-done, batch-failed, batch-team, batch-idle match the search;
    # the completed and the failed one would not be cancelled.
    assert (page.matching, page.cancellable) == (7, 5)
    assert sorted(a.agent_id for a in page.agents) == [
        "batch-000",
        "batch-001",
        "batch-002",
        "batch-idle",
        "batch-team",
    ]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"status": "completed"}, "Agents that are completed cannot be cancelled"),
        ({"status": "nonsense"}, "Unknown status nonsense."),
        ({"q": "x" * 201}, "Search for at most 200 characters (an agent id or words of its task)."),
    ],
)
def test_preview_refuses_bad_filters_with_400(
    staff: Client, fleet: dict[str, Agent], params: dict[str, str], problem: str
) -> None:
    response = _preview(staff, **params)
    assert response.status_code == 400
    assert len(response.context["page"].problem) == 1
    assert response.context["page"].problem[0].startswith(problem)
    assert "Nothing was cancelled" in response.content.decode()


def test_list_page_links_to_the_preview_with_its_filters(
    staff: Client, fleet: dict[str, Agent]
) -> None:
    response = staff.get(reverse("agents:list"), {"status": "interrupted", "q": "batch"})
    page = response.context["page"]
    assert page.cancel_matching_url == reverse(URL) + "?status=interrupted&q=batch"
    assert 'id="cancel-matching"' in response.content.decode()
    assert "Cancel all 4 matching…" in response.content.decode()
    finished = staff.get(reverse("agents:list"), {"status": "completed"})
    assert 'id="cancel-matching"' not in finished.content.decode()


# --- the dashboard: the cancel --------------------------------------------------------------


def test_confirmed_cancel_changes_exactly_the_previewed_agents_and_audits_each(
    staff: Client, fleet: dict[str, Agent]
) -> None:
    preview = _preview(staff, status="interrupted", q="batch", namespace="default")
    response = staff.post(
        reverse(URL),
        {
            "status": "interrupted",
            "q": "batch",
            "namespace": "default",
            "upto": _upto(preview),
            "reason": "bad prompt",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == (
        reverse("agents:list") + "?status=interrupted&q=batch&namespace=default"
    )
    assert _statuses(fleet) == {
        "batch-000": "cancelled",
        "batch-001": "cancelled",
        "batch-002": "cancelled",
        "batch-done": "completed",
        "batch-failed": "failed",
        "batch-idle": "idle",
        "batch-team": "interrupted",
        "other-int": "interrupted",
    }
    rows = list(OperatorAction.objects.order_by("agent_name"))
    assert [
        (r.actor, r.action, r.namespace, r.agent_name, r.agent_id, r.reason, r.before, r.after)
        for r in rows
    ] == [
        (
            "ops",
            "cancel",
            "default",
            f"batch-00{i}",
            fleet[f"batch-00{i}"].pk,
            "bad prompt",
            {"status": "interrupted"},
            {"status": "cancelled"},
        )
        for i in range(3)
    ]
    selection = "status interrupted, matching “batch”, in namespace default"
    assert all(
        r.detail == {"source": "dashboard", "bulk": True, "selection": selection} for r in rows
    )
    assert all(r.at is not None for r in rows)
    page = staff.get(response["Location"])
    assert f"Cancelled 3 agents ({selection})." in page.content.decode()


def test_agents_newer_than_the_preview_are_not_cancelled(
    staff: Client, sh: Statehouse, fleet: dict[str, Agent]
) -> None:
    preview = _preview(staff, status="interrupted", q="batch")
    late = make_agent(sh, "batch-late")
    staff.post(reverse(URL), {"status": "interrupted", "q": "batch", "upto": _upto(preview)})
    assert status_of(late) == "interrupted"
    assert OperatorAction.objects.count() == 4  # batch-000..002 and batch-team


def test_cancel_without_a_preview_or_by_get_writes_nothing(
    staff: Client, fleet: dict[str, Agent]
) -> None:
    before = _statuses(fleet)
    response = staff.post(reverse(URL), {"status": "interrupted"})
    assert response.status_code == 400
    assert response.context["page"].problem == [
        "Preview the agents first: the cancel acts on what the preview showed."
    ]
    response = staff.post(reverse(URL), {"status": "completed", "upto": "999999"})
    assert response.status_code == 400
    assert staff.put(reverse(URL)).status_code == 405
    assert _statuses(fleet) == before
    assert not OperatorAction.objects.exists()


def test_more_than_the_dashboards_limit_is_refused(
    staff: Client, fleet: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cancel_page, "MAX_CANCEL_MATCHING", 2)
    monkeypatch.setattr("statehouse_agents.dashboard.MAX_CANCEL_MATCHING", 2)
    preview = _preview(staff, status="interrupted")
    assert "use <code>manage.py cancel_agents</code>" in preview.content.decode()
    response = staff.post(reverse(URL), {"status": "interrupted", "upto": _upto(preview)})
    assert response.status_code == 400
    assert response.context["page"].problem == [
        "More than 2 agents match; narrow the filters or use `manage.py cancel_agents`. "
        "Nothing was cancelled."
    ]
    assert not OperatorAction.objects.exists()
    assert not Agent.objects.with_status(Agent.Status.CANCELLED).exists()


def test_non_staff_is_refused_preview_and_cancel_and_nothing_changes(
    viewer: Client, client: Client, fleet: dict[str, Agent]
) -> None:
    before = _statuses(fleet)
    assert _preview(viewer, status="interrupted").status_code == 403
    response = viewer.post(reverse(URL), {"status": "interrupted", "upto": "999999"})
    assert response.status_code == 403
    anonymous = client.post(reverse(URL), {"status": "interrupted", "upto": "999999"})
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert _statuses(fleet) == before
    assert not OperatorAction.objects.exists()
    listing = viewer.get(reverse("agents:list"), {"status": "interrupted"})
    assert 'id="cancel-matching"' not in listing.content.decode()


def test_cancel_needs_a_csrf_token(fleet: dict[str, Agent]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops2", password="x", is_staff=True))
    response = client.post(reverse(URL), {"status": "interrupted", "upto": "999999"})
    assert response.status_code == 403
    assert not OperatorAction.objects.exists()


@pytest.mark.parametrize("rows", [1, 50])
def test_preview_query_count_is_fixed(
    staff: Client, rows: int, django_assert_num_queries: Any
) -> None:
    make_agents(rows, prefix="q")
    # session, user; the three reads of the preview (matching, cancellable, the rows)
    with django_assert_num_queries(5):
        response = _preview(staff, status="interrupted")
    assert response.context["page"].cancellable == rows


# --- the command and the command line -------------------------------------------------------


def test_cancel_agents_command_uses_resume_agents_selection_options(
    fleet: dict[str, Agent],
) -> None:
    out = io.StringIO()
    call_command(
        "cancel_agents", "--status", "interrupted", "--namespace", "default",
        "--agent", "batch-*", "--dry-run", "--json", stdout=out,
    )  # fmt: skip
    payload = json.loads(out.getvalue())
    assert payload == {
        "matched": 3,
        "dry_run": True,
        "agents": [{"namespace": "default", "agent_id": f"batch-00{i}"} for i in range(3)],
    }
    assert not OperatorAction.objects.exists()
    out = io.StringIO()
    call_command("cancel_agents", "--status", "idle", "--idle-for", "0s", stdout=out)
    assert out.getvalue().strip() == "1 of 1 matching agent(s) cancelled"
    assert status_of(fleet["batch-idle"]) == "cancelled"
    row = OperatorAction.objects.get()
    assert (row.actor, row.agent_name, row.before, row.after, row.detail) == (
        "cancel_agents",
        "batch-idle",
        {"status": "idle"},
        {"status": "cancelled"},
        {"source": "command", "bulk": True},
    )


def test_statehouse_command_line_runs_cancel_agents(
    fleet: dict[str, Agent], capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["cancel_agents", "--agent", "batch-00*", "--limit", "2", "--json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out) == {"matched": 2, "cancelled": 2, "skipped": 0}
    assert Agent.objects.with_status(Agent.Status.CANCELLED).count() == 2
    assert status_of(fleet["other-int"]) == "interrupted"
