"""The Django admin: every page loads, the store's history is read-only, the resume action
delegates to the store, values are escaped, and the agent list's query count is fixed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from statehouse_agents import admin as agents_admin
from statehouse_agents.models import (
    Agent,
    Commit,
    Record,
    ResumeAttempt,
    ResumeRequest,
    Step,
    Task,
    Version,
)

from statehouse import Statehouse
from tests.factories import make_agents

SCRIPT = "<script>alert('x')</script>"
READ_ONLY_MODELS = [Task, Step, Commit, Version, Record, ResumeRequest, ResumeAttempt]
ALL_MODELS = [Agent, *READ_ONLY_MODELS]
# Session, user, count, the page of rows (status annotated), the date hierarchy (min/max,
# then the years), the namespace filter's choices, and on PostgreSQL the planner's estimate
# of the table's size (EstimatedCountPaginator): 8 at most, whatever the number of rows.
AGENT_CHANGELIST_QUERIES = 8


def url(model: type, view: str, *args: object) -> str:
    return reverse(f"admin:agents_{model._meta.model_name}_{view}", args=args)


def inline_management_data(client: Client, change_url: str) -> dict[str, object]:
    """The inline formsets' management fields a browser would post with the change form."""
    data: dict[str, object] = {}
    for inline in client.get(change_url).context["inline_admin_formsets"]:
        form = inline.formset.management_form
        data.update({form.add_prefix(name): value for name, value in form.initial.items()})
    return data


@pytest.fixture
def agents(sh: Statehouse) -> Iterator[dict[str, str]]:
    """One agent of each status an operator sees, written through the real client."""
    sh.start("done-1", {"task": "add numbers"})
    with sh.step("done-1", 0, action={"tool": "calc", "args": [1, 2]}) as step:
        step.result = 3
    with sh.begin_transaction() as tx:
        tx.write(agent_id="done-1", key="notes", value={"html": SCRIPT})
        tx.write(agent_id="done-1", key="scratch", value=1)
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="done-1", key="scratch")
    sh.finish("done-1", {"answer": 3})

    sh.start("failed-1", {"task": "divide"})
    sh.fail("failed-1", "division by zero")

    with Statehouse() as crashed:  # exits holding nothing: its agent is interrupted
        crashed.start("interrupted-1", {"task": SCRIPT})
        with crashed.step("interrupted-1", 0, action="fetch") as step:
            step.result = {"bytes": 10}
        with crashed.begin_transaction() as tx:
            tx.write(agent_id="interrupted-1", key="step:1", value={"status": "pending"})

    sh.start("running-1", {"task": "still going"})  # `sh` keeps its lease alive

    statuses = {
        agent_id: sh.status(agent_id)
        for agent_id in Agent.objects.values_list("agent_id", flat=True)
    }
    assert statuses == {
        "done-1": "completed",
        "failed-1": "failed",
        "interrupted-1": "interrupted",
        "running-1": "running",
    }
    yield statuses  # type: ignore[misc]


@pytest.fixture
def django_error_pages(settings) -> None:  # type: ignore[no-untyped-def]
    """Render 403s with Django's built-in page: the admin's answer is the status code, and
    these tests must not depend on the project's dashboard error templates."""
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]


@pytest.fixture
def superuser_client(transactional_db: None) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_every_model_is_registered() -> None:
    assert set(ALL_MODELS) <= set(admin.site._registry)


def test_every_changelist_and_change_page_loads(
    agents: dict[str, str], superuser_client: Client
) -> None:
    Statehouse().request_resume("interrupted-1")
    ResumeAttempt.objects.create(
        request=ResumeRequest.objects.get(),
        agent=Agent.objects.get(agent_id="interrupted-1"),
        number=1,
        worker="w1",
        host="h1",
        started_at=Agent.objects.get(agent_id="interrupted-1").last_activity_at,
    )
    for model in ALL_MODELS:
        response = superuser_client.get(url(model, "changelist"))
        assert response.status_code == 200, model
        obj = model.objects.order_by("pk").first()
        assert obj is not None, model
        response = superuser_client.get(url(model, "change", obj.pk))
        assert response.status_code == 200, model


@pytest.mark.parametrize("status", [s.value for s in Agent.Status])
def test_status_filter_uses_the_operator_status(
    agents: dict[str, str], superuser_client: Client, status: str
) -> None:
    response = superuser_client.get(url(Agent, "changelist"), {"status": status})
    assert response.status_code == 200
    shown = {agent.agent_id for agent in response.context["cl"].result_list}
    assert shown == {agent_id for agent_id, s in agents.items() if s == status}
    assert all(agent.status_value == status for agent in response.context["cl"].result_list)


def test_agent_changelist_search_and_columns(
    agents: dict[str, str], superuser_client: Client
) -> None:
    response = superuser_client.get(url(Agent, "changelist"), {"q": "divide"})
    assert [a.agent_id for a in response.context["cl"].result_list] == ["failed-1"]
    response = superuser_client.get(url(Agent, "changelist"), {"q": "running"})
    content = response.content.decode()
    assert "running-1" in content
    assert "still going" in content  # the task summary column


def test_non_staff_is_redirected_to_login(agents: dict[str, str]) -> None:
    user = get_user_model().objects.create_user("visitor", password="pw")
    client = Client()
    client.force_login(user)
    for model in ALL_MODELS:
        response = client.get(url(model, "changelist"))
        assert response.status_code == 302
        assert reverse("admin:login") in response["Location"]


def test_staff_without_permissions_can_view_but_not_resume(agents: dict[str, str]) -> None:
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    for model in ALL_MODELS:
        assert client.get(url(model, "changelist")).status_code == 200, model
    response = client.post(
        url(Agent, "changelist"),
        {
            "action": "resume_agents",
            "_selected_action": [Agent.objects.get(agent_id="interrupted-1").pk],
        },
    )
    assert response.status_code == 200  # "no action selected": the action is not offered
    assert not ResumeRequest.objects.exists()


@pytest.mark.parametrize("model", READ_ONLY_MODELS, ids=lambda m: m.__name__)
def test_read_only_models_reject_add_change_delete(
    agents: dict[str, str], superuser_client: Client, model: type, django_error_pages: None
) -> None:
    Statehouse().request_resume("interrupted-1")
    ResumeAttempt.objects.create(
        request=ResumeRequest.objects.get(),
        agent=Agent.objects.get(agent_id="interrupted-1"),
        number=1,
        worker="w1",
        host="h1",
        started_at=Agent.objects.get(agent_id="interrupted-1").last_activity_at,
    )
    obj = model.objects.order_by("pk").first()
    before = model.objects.count()

    assert superuser_client.get(url(model, "add")).status_code == 403
    assert superuser_client.post(url(model, "add"), {}).status_code == 403
    page = superuser_client.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert superuser_client.post(url(model, "change", obj.pk), {}).status_code == 403
    assert superuser_client.get(url(model, "delete", obj.pk)).status_code == 403
    assert superuser_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    changelist = superuser_client.get(url(model, "changelist"))
    assert b"delete_selected" not in changelist.content
    assert model.objects.count() == before


def test_agents_cannot_be_added_or_deleted_in_the_admin(
    agents: dict[str, str], superuser_client: Client, django_error_pages: None
) -> None:
    agent = Agent.objects.get(agent_id="done-1")
    assert superuser_client.get(url(Agent, "add")).status_code == 403
    assert superuser_client.get(url(Agent, "delete", agent.pk)).status_code == 403
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_resume_entry_point_is_saved_through_the_store(
    agents: dict[str, str], superuser_client: Client
) -> None:
    agent = Agent.objects.get(agent_id="interrupted-1")
    change = url(Agent, "change", agent.pk)
    management = inline_management_data(superuser_client, change)
    response = superuser_client.post(
        change, {**management, "resume_entry_point": "not an entry point"}
    )
    assert response.status_code == 200  # the form again, with the store's message
    assert b"is not of the form" in response.content
    response = superuser_client.post(
        change, {**management, "resume_entry_point": "tests.example_agent:resume"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.resume_entry_point == "tests.example_agent:resume"
    assert agent.state == Agent.State.ACTIVE  # nothing else changed
    assert agent.steps_done == 1


def test_resume_action_queues_interrupted_and_failed_agents_only(
    agents: dict[str, str], superuser_client: Client
) -> None:
    selected = list(Agent.objects.values_list("pk", flat=True))
    response = superuser_client.post(
        url(Agent, "changelist"),
        {"action": "resume_agents", "_selected_action": selected},
        follow=True,
    )
    assert response.status_code == 200
    assert (
        "2 of 4 selected agent(s) queued for resume (2 skipped: not interrupted or failed, "
        "or already queued)" in response.content.decode()
    )
    requests = ResumeRequest.objects.select_related("agent")
    assert {r.agent.agent_id for r in requests} == {"interrupted-1", "failed-1"}
    assert {(r.source, r.requested_by, r.status) for r in requests} == {("admin", "root", "queued")}
    sh = Statehouse()
    assert sh.status("interrupted-1") == "resuming"
    assert sh.status("done-1") == "completed"
    assert sh.status("running-1") == "running"

    again = superuser_client.post(
        url(Agent, "changelist"),
        {"action": "resume_agents", "_selected_action": selected},
        follow=True,
    )
    assert "0 of 4 selected agent(s) queued for resume (4 skipped" in again.content.decode()
    assert ResumeRequest.objects.count() == 2


def test_json_values_are_pretty_and_escaped(
    agents: dict[str, str], superuser_client: Client
) -> None:
    record = Record.objects.get(agent__agent_id="done-1", key="notes")
    version = Version.objects.get(agent__agent_id="done-1", key="notes")
    task = Task.objects.get(agent__agent_id="interrupted-1")
    for model, obj in [(Record, record), (Version, version), (Task, task)]:
        content = superuser_client.get(url(model, "change", obj.pk)).content.decode()
        assert SCRIPT not in content, model
        assert '<pre class="statehouse-json">' in content
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in content, model
    step = Step.objects.get(agent__agent_id="done-1", number=0)
    content = superuser_client.get(url(Step, "change", step.pk)).content.decode()
    assert "{\n  &quot;tool&quot;: &quot;calc&quot;,\n  &quot;args&quot;: [\n" in content
    agent = Agent.objects.get(agent_id="interrupted-1")
    content = superuser_client.get(url(Agent, "change", agent.pk)).content.decode()
    assert SCRIPT not in content


def test_pretty_json_marks_tombstones_and_keeps_malformed_text() -> None:
    assert agents_admin.pretty_json(None) == "(deleted)"
    assert agents_admin.pretty_json("not json <b>") == (
        '<pre class="statehouse-json">not json &lt;b&gt;</pre>'
    )


@pytest.mark.parametrize("rows", [1, 30])
def test_agent_changelist_query_count_is_fixed(
    sh: Statehouse, superuser_client: Client, django_assert_max_num_queries, rows: int
) -> None:  # type: ignore[no-untyped-def]
    make_agents(rows, steps=0)
    with django_assert_max_num_queries(AGENT_CHANGELIST_QUERIES):
        response = superuser_client.get(url(Agent, "changelist"))
    assert len(response.context["cl"].result_list) == rows
    with django_assert_max_num_queries(AGENT_CHANGELIST_QUERIES):
        response = superuser_client.get(url(Agent, "changelist"), {"status": "interrupted"})
    assert len(response.context["cl"].result_list) == rows


def test_big_unfiltered_tables_show_an_estimated_count(
    agents: dict[str, str], superuser_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("planner estimates are a PostgreSQL feature")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agents_step")
    monkeypatch.setattr(agents_admin, "_ESTIMATE_ABOVE", 0)
    response = superuser_client.get(url(Step, "changelist"))
    assert response.context["cl"].result_count >= 1
    filtered = superuser_client.get(url(Step, "changelist"), {"status": "pending"})
    assert filtered.context["cl"].result_count == Step.objects.pending().count()


def test_agent_page_shows_latest_steps_and_links_to_all(
    agents: dict[str, str], superuser_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agents_admin, "STEP_INLINE_LIMIT", 1)
    agent = Agent.objects.get(agent_id="interrupted-1")
    response = superuser_client.get(url(Agent, "change", agent.pk))
    steps = next(
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.model is Step
    )
    assert [form.instance.key for form in steps.forms] == ["step:1"]
    link = f"{url(Step, 'changelist')}?agent__id__exact={agent.pk}"
    assert link in response.content.decode()
    listed = superuser_client.get(link)
    assert {s.key for s in listed.context["cl"].result_list} == {"step:0", "step:1"}
