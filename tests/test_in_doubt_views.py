"""In-doubt steps on the dashboard (docs/operations.md, "In-doubt steps"): the agent page's
badge and decision forms, the decision action's access rules (staff, POST, CSRF), its
answers with and without htmx, the resume and bulk-resume messages for agents held for
review, `resume_agents` and the agent page's query budget with many in-doubt steps."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from statehouse_agents.models import Agent, Commit, OperatorAction, ResumeRequest, Step, Version

from statehouse import Statehouse
from tests.factories import status_of
from tests.test_in_doubt import DONE, PENDING_RETRY, PENDING_REVIEW, interrupted_with, value_of

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def held(transactional_db: None) -> Agent:
    """An interrupted agent whose step 1 is in doubt with the policy review."""
    return interrupted_with("held", DONE, PENDING_REVIEW)


def decide_url(agent: Agent) -> str:
    return reverse("agents:decide-step", args=[agent.pk])


def written() -> tuple[int, int, int, int]:
    return (
        Commit.objects.count(),
        Version.objects.count(),
        OperatorAction.objects.count(),
        ResumeRequest.objects.count(),
    )


# --- the agent page -------------------------------------------------------------------------


def test_agent_page_shows_the_in_doubt_step_its_policy_and_the_decision_form(
    staff: Client, held: Agent
) -> None:
    html = staff.get(held.get_absolute_url()).content.decode()
    assert html.count('data-testid="in-doubt"') == 1
    assert "policy review" in html
    assert html.count(f'action="{decide_url(held)}"') == 1
    assert '<input type="hidden" name="key" value="step:1">' in html
    for decision, label in (
        ("retry", "Run again"),
        ("done", "Mark done"),
        ("failed", "Mark failed"),
    ):
        assert f'name="decision" value="{decision}"' in html and label in html
    assert 'data-testid="needs-review"' in html and "step 1 in doubt needs your decision" in html


def test_a_viewer_sees_the_badge_but_no_decision_form(viewer: Client, held: Agent) -> None:
    html = viewer.get(held.get_absolute_url()).content.decode()
    assert 'data-testid="in-doubt"' in html
    assert decide_url(held) not in html


def test_a_running_agents_pending_step_is_pending_not_in_doubt(
    sh: Statehouse, staff: Client
) -> None:
    sh.start("live", {"task": "t"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="live", key="step:0", value=PENDING_REVIEW)
    html = staff.get(Agent.objects.get(agent_id="live").get_absolute_url()).content.decode()
    assert '<span class="step-label">Pending</span>' in html
    assert 'data-testid="in-doubt"' not in html
    assert "agents/steps/decide" not in html


# --- the decision action --------------------------------------------------------------------


def test_staff_marks_a_step_done_without_javascript(staff: Client, held: Agent) -> None:
    response = staff.post(
        decide_url(held),
        {"key": "step:1", "decision": "done", "result": '{"paid": true}', "reason": "by hand"},
        follow=True,
    )
    assert response.redirect_chain == [(held.get_absolute_url(), 302)]
    html = response.content.decode()
    assert "step:1 of held marked done (v2, commit " in html
    assert value_of("held", "step:1") == {
        **PENDING_REVIEW,
        "status": "done",
        "result": {"paid": True},
    }
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.reason) == ("ops", "step_decision", "by hand")
    assert 'data-testid="in-doubt"' not in html


def test_htmx_decision_returns_the_live_part_and_the_message(staff: Client, held: Agent) -> None:
    response = staff.post(
        decide_url(held),
        {"key": "step:1", "decision": "retry"},
        HTTP_HX_TARGET="agent-live",
        **HTMX,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="agent-live"')
    assert "step:1 of held will run again" in html
    assert 'hx-swap-oob="true"' in html
    assert "policy retry" in html and 'data-testid="needs-review"' not in html
    assert value_of("held", "step:1")["policy"] == "retry"


def test_bad_json_is_refused_with_a_clear_message_and_nothing_written(
    staff: Client, held: Agent
) -> None:
    before = written()
    response = staff.post(
        decide_url(held), {"key": "step:1", "decision": "done", "result": "{oops"}, follow=True
    )
    html = response.content.decode()
    assert (
        "Not decided: the result for &#x27;step:1&#x27; is not JSON: Expecting property name"
        in html
    )
    assert written() == before
    assert value_of("held", "step:1") == PENDING_REVIEW


def test_a_decision_without_a_choice_is_refused(staff: Client, held: Agent) -> None:
    before = written()
    response = staff.post(decide_url(held), {"key": "step:1"}, follow=True)
    assert "Not decided: choose run again, mark done or mark failed." in response.content.decode()
    assert written() == before


def test_non_staff_is_refused_and_nothing_changes(viewer: Client, held: Agent) -> None:
    before = written()
    data = {"key": "step:1", "decision": "failed", "error": "declined"}
    refused = viewer.post(decide_url(held), data)
    assert refused.status_code == 403
    assert viewer.post(decide_url(held), data, **HTMX).status_code == 403
    assert written() == before
    assert value_of("held", "step:1") == PENDING_REVIEW


def test_anonymous_is_sent_to_login(client: Client, held: Agent) -> None:
    response = client.post(decide_url(held), {"key": "step:1", "decision": "retry"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert value_of("held", "step:1") == PENDING_REVIEW


def test_a_post_without_csrf_token_is_refused(held: Agent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    before = written()
    response = client.post(decide_url(held), {"key": "step:1", "decision": "retry"})
    assert response.status_code == 403
    assert written() == before


def test_get_is_not_allowed(staff: Client, held: Agent) -> None:
    assert staff.get(decide_url(held)).status_code == 405


# --- resume messages and the command --------------------------------------------------------


def test_resume_of_a_held_agent_says_which_step_needs_review(staff: Client, held: Agent) -> None:
    response = staff.post(reverse("agents:resume", args=[held.pk]), follow=True)
    html = response.content.decode()
    assert "Not resumed: agent &#x27;held&#x27; has step 1 (&#x27;step:1&#x27;) in doubt" in html
    assert not ResumeRequest.objects.exists()


def test_bulk_resume_reports_the_held_agents_and_resumes_the_others(
    staff: Client, held: Agent
) -> None:
    free = interrupted_with("free", DONE, PENDING_RETRY)
    response = staff.post(
        reverse("agents:bulk-resume"), {"agent": [str(held.pk), str(free.pk)]}, follow=True
    )
    html = response.content.decode()
    assert (
        "Resume requested for 1 agent. 1 skipped, needs review: held (step 1 needs review) "
        "(decide the step on the agent page)." in html
    )
    assert (status_of(held), status_of(free)) == ("interrupted", "resuming")


def test_resume_agents_dry_run_and_run_report_agents_held_for_review(held: Agent) -> None:
    interrupted_with("free", DONE, PENDING_RETRY)
    out = io.StringIO()
    call_command("resume_agents", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "default/free",
        "default/held: skipped, step 1 needs review",
        "dry run: 1 agent(s) would be queued for resume; 1 skipped: a step in doubt needs review",
    ]
    out = io.StringIO()
    call_command("resume_agents", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "matched": 2,
        "queued": 1,
        "skipped": 0,
        "needs_review": [
            {"namespace": "default", "agent_id": "held", "key": "step:1", "number": 1}
        ],
    }
    assert list(ResumeRequest.objects.values_list("agent__agent_id", flat=True)) == ["free"]


# --- query budget ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 50])
def test_agent_page_query_count_is_fixed_with_many_in_doubt_steps(
    staff: Client, n: int, django_assert_max_num_queries: Any
) -> None:
    writer = Statehouse()
    writer.start("many", {"task": "t"})
    with writer.begin_transaction() as tx:
        for i in range(n):
            policy = ("retry", "skip", "review")[i % 3]
            tx.write(
                agent_id="many", key=f"step:{i}", value={"status": "pending", "policy": policy}
            )
    writer.close()
    agent = Agent.objects.get(agent_id="many")
    staff.get(agent.get_absolute_url())  # warm the session
    with django_assert_max_num_queries(13):  # the agent page's budget (tests/test_views.py)
        html = staff.get(agent.get_absolute_url()).content.decode()
    assert html.count('data-testid="in-doubt"') == n
    assert html.count(f'action="{decide_url(agent)}"') == n


# --- the admin ------------------------------------------------------------------------------


def test_admin_filters_in_doubt_steps_and_runs_them_again(held: Agent) -> None:
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="x"))
    changelist = reverse("admin:agents_step_changelist")
    html = admin.get(changelist + "?in_doubt=review").content.decode()
    assert html.count('class="field-key"') == 1 and "step:1" in html
    steps = list(Step.objects.filter(agent=held).order_by("number").values_list("pk", flat=True))
    response = admin.post(
        changelist, {"action": "run_again", "_selected_action": steps}, follow=True
    )
    assert (
        "1 step(s) will run again; 1 skipped (not in doubt): held step:0"
        in response.content.decode()
    )
    assert value_of("held", "step:1") == {**PENDING_REVIEW, "policy": "retry"}
    action = OperatorAction.objects.get()
    assert (action.actor, action.action, action.reason, action.detail["decision"]) == (
        "root",
        "step_decision",
        "run again from the admin",
        "retry",
    )


def test_decide_step_command_decides_and_refuses_with_a_command_error(held: Agent) -> None:
    out = io.StringIO()
    call_command("decide_step", "held", "step:1", "--done", '{"ok": 1}', "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["decision"] == "done" and payload["version"] == 2
    assert value_of("held", "step:1") == {**PENDING_REVIEW, "status": "done", "result": {"ok": 1}}
    assert OperatorAction.objects.get().actor == "decide_step"
    with pytest.raises(CommandError) as refused:
        call_command("decide_step", "held", "step:1", "--retry")
    assert str(refused.value).startswith("not decided: step 1 ('step:1') of agent 'held' is not")
    assert OperatorAction.objects.count() == 1
