"""The operator's edit, fork, compare and approval pages over HTTP: staff only, POST with
CSRF, without JavaScript (redirects) and with htmx (fragments), bad input answered with a
clear message and nothing written, and query budgets fixed at 1 and 50 rows."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from statehouse_agents.models import Agent, Approval, Commit, ResumeRequest
from statehouse_agents.store.approvals import request_approval

from statehouse import Statehouse
from tests.factories import make_agent, status_of

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def agent(sh: Statehouse) -> Agent:
    found = make_agent(sh, "op-1", steps=2)
    with sh.begin_transaction() as tx:
        tx.write(agent_id="op-1", key="plan", value={"next": "search", "n": 1})
    return found


def edit_url(agent: Agent) -> str:
    return reverse("agents:edit", args=[agent.pk])


def _post_edit(client: Client, agent: Agent, **data: Any) -> Any:
    body = {"key": "plan", "expected_version": "1", "reason": "", "action": "preview", **data}
    return client.post(edit_url(agent), body)


# --- access --------------------------------------------------------------------------------


def test_non_staff_is_refused_every_action_and_nothing_changes(
    viewer: Client, agent: Agent, sh: Statehouse
) -> None:
    approval = request_approval(namespace="default", agent_id="op-1", name="go")
    commits = Commit.objects.count()
    answers = [
        viewer.get(edit_url(agent) + "?key=plan"),
        _post_edit(viewer, agent, value='{"x": 1}', reason="r", action="save"),
        viewer.post(reverse("agents:fork", args=[agent.pk]), {"new_id": "f"}),
        viewer.post(reverse("agents:decide", args=[approval.pk]), {"decision": "approve"}),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert Commit.objects.count() == commits
    assert not Agent.objects.filter(agent_id="f").exists()
    assert Approval.objects.get(pk=approval.pk).status == "pending"
    page = viewer.get(agent.get_absolute_url()).content.decode()
    assert "Approve" not in page and ">Fork<" not in page and ">Edit<" not in page


def test_actions_need_a_csrf_token(agent: Agent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops2", password="x", is_staff=True))
    approval = request_approval(namespace="default", agent_id="op-1", name="go")
    assert _post_edit(client, agent, value="{}", reason="r", action="save").status_code == 403
    assert client.post(reverse("agents:fork", args=[agent.pk])).status_code == 403
    assert client.post(reverse("agents:decide", args=[approval.pk])).status_code == 403
    assert Approval.objects.get(pk=approval.pk).status == "pending"


def test_edit_and_fork_and_decide_refuse_get(staff: Client, agent: Agent) -> None:
    assert staff.get(reverse("agents:fork", args=[agent.pk])).status_code == 405
    assert staff.get(reverse("agents:decide", args=[1])).status_code == 405


# --- edit ----------------------------------------------------------------------------------


def test_editor_shows_the_current_value_and_version(staff: Client, agent: Agent) -> None:
    html = staff.get(edit_url(agent) + "?key=plan").content.decode()
    assert "&quot;next&quot;: &quot;search&quot;" in html
    assert 'name="expected_version" value="1"' in html
    assert staff.get(edit_url(agent) + "?key=nope").status_code == 404


def test_preview_shows_the_diff_and_writes_nothing(staff: Client, agent: Agent) -> None:
    commits = Commit.objects.count()
    response = _post_edit(staff, agent, value='{"next": "summarise", "n": 1}')
    html = response.content.decode()
    assert response.status_code == 200
    assert "+1 added" in html and "\u22121 removed" in html
    assert "&quot;next&quot;: &quot;summarise&quot;" in html
    assert 'value="save"' in html
    assert Commit.objects.count() == commits


def test_invalid_json_is_refused_with_where_it_is_wrong(
    staff: Client, agent: Agent, sh: Statehouse
) -> None:
    response = _post_edit(staff, agent, value='{"next": }', reason="r", action="save")
    assert response.status_code == 400
    assert "is not JSON: Expecting value at line 1, column 10" in response.content.decode()
    assert sh.get_state("op-1", "plan").version == 1


def test_save_needs_a_reason(staff: Client, agent: Agent, sh: Statehouse) -> None:
    response = _post_edit(staff, agent, value='{"n": 2}', action="save")
    assert response.status_code == 400
    assert "Give a reason to save" in response.content.decode()
    assert sh.get_state("op-1", "plan").version == 1


def test_save_commits_and_redirects_to_the_agent(
    staff: Client, agent: Agent, sh: Statehouse
) -> None:
    response = _post_edit(staff, agent, value='{"n": 2}', reason="retry cheaper", action="save")
    assert response.status_code == 302
    assert response["Location"] == agent.get_absolute_url()
    state = sh.get_state("op-1", "plan")
    assert (state.value, state.version) == ({"n": 2}, 2)
    html = staff.get(agent.get_absolute_url()).content.decode()
    assert f"Saved plan v2 (commit {state.commit_ts})." in html


def test_save_with_htmx_redirects_through_the_header(staff: Client, agent: Agent) -> None:
    body = {"key": "plan", "expected_version": "1", "value": "[1]", "reason": "r"}
    response = staff.post(edit_url(agent), {**body, "action": "save"}, **HTMX)
    assert (response.status_code, response["HX-Redirect"]) == (204, agent.get_absolute_url())
    preview = staff.post(
        edit_url(agent), {**body, "action": "preview"}, HTTP_HX_TARGET="edit-panel", **HTMX
    )
    assert preview.content.decode().lstrip().startswith('<div id="edit-panel">')


def test_save_after_the_key_changed_is_a_conflict(
    staff: Client, agent: Agent, sh: Statehouse
) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="op-1", key="plan", value={"by": "agent"})
    response = _post_edit(staff, agent, value='{"n": 2}', reason="r", action="save")
    assert response.status_code == 409
    assert "expected version 1, but the record is at version 2" in response.content.decode()
    assert sh.get_state("op-1", "plan").value == {"by": "agent"}


# --- fork and compare -----------------------------------------------------------------------


def test_fork_redirects_to_the_new_agent_linked_to_its_source(
    staff: Client, agent: Agent, sh: Statehouse
) -> None:
    response = staff.post(
        reverse("agents:fork", args=[agent.pk]),
        {"new_id": "op-copy", "step": "0", "resume": "on", "reason": "try again"},
    )
    forked = Agent.objects.get(agent_id="op-copy")
    assert response.status_code == 302
    assert response["Location"] == forked.get_absolute_url()
    assert sh.list_keys("op-copy") == ["step:0", "task"]
    assert ResumeRequest.objects.get(agent=forked).requested_by == "ops"
    html = staff.get(forked.get_absolute_url()).content.decode()
    assert "Forked from" in html and f"?a={agent.pk}&amp;b={forked.pk}" in html


def test_fork_errors_are_messages_and_write_nothing(staff: Client, agent: Agent) -> None:
    agents = Agent.objects.count()
    for data, text in (
        ({"new_id": "op-1"}, "a fork needs a new agent id"),
        ({"step": "7"}, "has no step 7"),
        ({"step": "x"}, "step: Enter a whole number."),
    ):
        response = staff.post(reverse("agents:fork", args=[agent.pk]), data, follow=True)
        assert text in response.content.decode()
    assert Agent.objects.count() == agents


def test_compare_shows_steps_side_by_side_with_diffs(staff: Client, sh: Statehouse) -> None:
    a = make_agent(sh, "cmp-a", steps=3)
    b = make_agent(sh, "cmp-b", steps=2)
    with sh.begin_transaction() as tx:
        tx.write(agent_id="cmp-b", key="step:0", value={"status": "done", "result": "other"})
    response = staff.get(reverse("agents:compare") + f"?a={a.pk}&b={b.pk}")
    html = response.content.decode()
    assert response.status_code == 200
    assert '<span id="differing">3 differ</span>' in html  # step 0, step 1 (pending), step 2
    assert 'id="compare-step-0" class="differs"' in html
    assert "no such step" in html
    assert staff.get(reverse("agents:compare") + "?a=x&b=1").status_code == 400
    assert staff.get(reverse("agents:compare") + f"?a={a.pk}&b=99999").status_code == 404


# --- approvals ------------------------------------------------------------------------------


def test_waiting_agent_shows_the_request_and_is_counted(staff: Client, agent: Agent) -> None:
    request_approval(namespace="default", agent_id="op-1", name="deploy", payload={"env": "prod"})
    html = staff.get(agent.get_absolute_url()).content.decode()
    assert "waits for a decision on <code>deploy</code>" in html
    assert "&quot;env&quot;: &quot;prod&quot;" in html
    listing = staff.get(reverse("agents:list") + "?status=waiting").content.decode()
    assert "op-1" in listing
    overview = staff.get(reverse("agents:overview")).content.decode()
    assert "?status=waiting" in overview


@pytest.mark.parametrize(("decision", "status"), [("approve", "approved"), ("reject", "rejected")])
def test_decide_without_javascript_redirects_back(
    staff: Client, agent: Agent, decision: str, status: str
) -> None:
    approval = request_approval(namespace="default", agent_id="op-1", name="go")
    response = staff.post(
        reverse("agents:decide", args=[approval.pk]),
        {"decision": decision, "comment": "looked fine", "next": agent.get_absolute_url()},
    )
    assert (response.status_code, response["Location"]) == (302, agent.get_absolute_url())
    stored = Approval.objects.get(pk=approval.pk)
    assert (stored.status, stored.decided_by, stored.comment) == (status, "ops", "looked fine")
    assert status_of(agent) == "interrupted"


def test_decide_with_htmx_returns_the_live_part_and_twice_is_refused(
    staff: Client, agent: Agent
) -> None:
    approval = request_approval(namespace="default", agent_id="op-1", name="go")
    url = reverse("agents:decide", args=[approval.pk])
    html = staff.post(url, {"decision": "approve"}, HTTP_HX_TARGET="agent-live", **HTMX)
    text = html.content.decode()
    assert text.lstrip().startswith('<div id="agent-live"')
    assert "Approved: &#x27;go&#x27; of op-1." in text
    again = staff.post(url, {"decision": "reject"}, follow=True).content.decode()
    assert "was already approved by ops; nothing changed" in again
    assert Approval.objects.get(pk=approval.pk).status == "approved"


# --- query budgets --------------------------------------------------------------------------


@pytest.fixture
def wide(request: pytest.FixtureRequest, sh: Statehouse) -> tuple[Agent, Agent]:
    """Two agents of `n` steps each (differing values), the second waiting for approval
    after `n` decided requests."""
    n = request.param
    for agent_id, result in (("wa", 1), ("wb", 2)):
        with sh.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key="task", value={"task": agent_id})
            for i in range(n):
                tx.write(agent_id=agent_id, key=f"step:{i}", value={"status": "done", "r": result})
                tx.write(agent_id=agent_id, key=f"k{i}", value={"i": i})
    sh.release("wa")
    sh.release("wb")
    from statehouse_agents.store.approvals import decide_approval

    for i in range(n):
        asked = request_approval(namespace="default", agent_id="wb", name=f"q{i}")
        decide_approval(approval_id=asked.pk, approve=True, actor="t")
    request_approval(namespace="default", agent_id="wb", name="last")
    return Agent.objects.get(agent_id="wa"), Agent.objects.get(agent_id="wb")


BUDGETS = [
    ("compare", lambda a, b: reverse("agents:compare") + f"?a={a.pk}&b={b.pk}", 7),
    ("edit", lambda a, b: reverse("agents:edit", args=[a.pk]) + "?key=k0", 5),
    ("detail-waiting", lambda a, b: b.get_absolute_url(), 13),  # the agent page of test_views
]


@pytest.mark.parametrize("wide", [1, 50], indirect=True)
@pytest.mark.parametrize(("name", "url", "budget"), BUDGETS, ids=[b[0] for b in BUDGETS])
def test_query_count_of_the_new_pages_is_fixed(
    staff: Client,
    wide: tuple[Agent, Agent],
    name: str,
    url: Any,
    budget: int,
    django_assert_max_num_queries: Any,
) -> None:
    target = url(*wide)
    staff.get(target)  # warm the session
    with django_assert_max_num_queries(budget):
        assert staff.get(target).status_code == 200
