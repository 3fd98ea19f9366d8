"""The audit log of operator actions (docs/contract.md §7, docs/operations.md "Audit log"):
each action writes its row in its own transaction, field by field; the global page's
filters and keyset pages; the agent page's section; the admin; query budgets."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from statehouse_agents.models import Agent, ApiToken, OperatorAction, ResumeRequest
from statehouse_agents.store.audit import ActionRecord, record_action, record_actions
from statehouse_agents.store.tokens import create_token, revoke_token

from statehouse import Statehouse
from statehouse.errors import NotResumableError
from tests.factories import make_agent, make_agents

HTMX = {"HTTP_HX_REQUEST": "true"}


def _recent(at: datetime) -> bool:
    return abs(timezone.now() - at) < timedelta(minutes=1)


def _only_row(**filters: Any) -> OperatorAction:
    rows = list(OperatorAction.objects.filter(**filters))
    assert len(rows) == 1, rows
    return rows[0]


# --- the store API ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_record_action_refuses_to_run_outside_a_transaction() -> None:
    assert not connection.in_atomic_block
    with pytest.raises(AssertionError, match="inside the store transaction"):
        record_action(actor="ops", action="cancel", namespace="ns", agent_id="a")
    with pytest.raises(AssertionError, match="inside the store transaction"):
        record_actions(actor="ops", action="cancel", rows=[])
    assert not OperatorAction.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_record_action_copies_the_agent_identity_and_outlives_the_agent(sh: Statehouse) -> None:
    from django.db import transaction

    agent = make_agent(sh, "audited", namespace="team")
    with transaction.atomic():
        row = record_action(
            actor="ops",
            action=OperatorAction.Action.PAUSE,
            agent=agent,
            reason="look first",
            before={"paused": False},
            after={"paused": True},
            detail={"x": 1},
        )
        with pytest.raises(ValueError, match="unknown operator action 'dance'"):
            record_action(actor="ops", action="dance")
    row.refresh_from_db()
    assert (row.actor, row.action, row.reason) == ("ops", "pause", "look first")
    assert (row.agent_id, row.namespace, row.agent_name) == (agent.pk, "team", "audited")
    assert (row.before, row.after, row.detail) == ({"paused": False}, {"paused": True}, {"x": 1})
    assert _recent(row.at)
    with transaction.atomic():
        bulk = record_actions(
            actor="",
            action=OperatorAction.Action.CANCEL,
            rows=[ActionRecord(agent_pk=agent.pk, namespace="team", agent_id="audited")],
        )
    assert bulk[0].actor == "system"
    Agent.objects.filter(pk=agent.pk).delete()
    row.refresh_from_db()
    assert row.agent_id is None and row.agent_name == "audited" and row.namespace == "team"


# --- resume records its audit row --------------------------------------------------------------


def test_dashboard_resume_records_who_what_and_the_request(sh: Statehouse, staff: Client) -> None:
    agent = make_agent(sh, "to-resume")
    response = staff.post(reverse("agents:resume", args=[agent.pk]))
    assert response.status_code == 302
    request = ResumeRequest.objects.get(agent=agent)
    row = _only_row(action="resume")
    assert row.actor == "ops"
    assert row.agent_id == agent.pk
    assert (row.namespace, row.agent_name) == ("default", "to-resume")
    assert row.reason == ""
    assert row.before == {"status": "interrupted"}
    assert row.after == {"status": "resuming"}
    assert row.detail == {"source": "dashboard", "request": request.pk}
    assert _recent(row.at)
    # Asking again reuses the open request: no second action is recorded.
    staff.post(reverse("agents:resume", args=[agent.pk]))
    assert OperatorAction.objects.count() == 1


def test_refused_resume_records_nothing(sh: Statehouse, staff: Client) -> None:
    from statehouse_agents.store.resume import request_resume

    agent = make_agent(sh, "done-already", status="completed")
    with pytest.raises(NotResumableError):
        request_resume(namespace="default", agent_id="done-already", source="command")
    staff.post(reverse("agents:resume", args=[agent.pk]))
    assert not OperatorAction.objects.exists()
    assert not ResumeRequest.objects.exists()


def test_bulk_resume_records_one_row_per_queued_agent(sh: Statehouse, staff: Client) -> None:
    agents = make_agents(3)
    done = make_agent(sh, "finished", status="completed")
    staff.post(
        reverse("agents:bulk-resume"), {"agent": [str(a.pk) for a in [*agents, done]]}, **HTMX
    )
    rows = list(OperatorAction.objects.order_by("agent_name"))
    assert [r.agent_name for r in rows] == ["bulk-000", "bulk-001", "bulk-002"]
    requests = dict(ResumeRequest.objects.values_list("agent_id", "pk"))
    for row, agent in zip(rows, agents, strict=True):
        assert (row.actor, row.action, row.agent_id) == ("ops", "resume", agent.pk)
        assert row.before == {"status": "interrupted"} and row.after == {"status": "resuming"}
        assert row.detail == {"source": "dashboard", "request": requests[agent.pk]}
    assert len({r.at for r in rows}) == 1  # one transaction, one database time


def test_admin_and_command_resumes_are_recorded(sh: Statehouse, superuser: Client) -> None:
    by_admin = make_agent(sh, "by-admin")
    by_command = make_agent(sh, "by-command", status="failed")
    superuser.post(
        reverse("admin:agents_agent_changelist"),
        {"action": "resume_agents", "_selected_action": [str(by_admin.pk)]},
    )
    row = _only_row(agent=by_admin)
    assert (row.actor, row.action) == ("root", "resume")
    assert row.detail["source"] == "admin"
    call_command("resume_agents", "--status", "failed", stdout=io.StringIO())
    row = _only_row(agent=by_command)
    assert (row.actor, row.action) == ("resume_agents", "resume")
    assert row.before == {"status": "failed"} and row.detail["source"] == "command"
    call_command(
        "resume_agents", "--status", "failed", "--requested-by", "cron", stdout=io.StringIO()
    )
    assert OperatorAction.objects.count() == 2  # nothing left to resume: nothing recorded


# --- API tokens -------------------------------------------------------------------------------


def test_token_created_and_revoked_on_the_page_are_recorded(staff: Client) -> None:
    staff.post(reverse("agents:api-token-create"), {"name": "ci", "namespaces": "ns1 ns2"})
    token = ApiToken.objects.get()
    row = _only_row(action="token_created")
    assert row.actor == "ops" and row.agent_id is None and row.agent_name == ""
    assert row.before is None
    assert row.after == {
        "token": token.pk,
        "prefix": token.prefix,
        "name": "ci",
        "user": "ops",
        "namespaces": ["ns1", "ns2"],
        "read_only": False,
        "expires_at": None,
    }
    assert row.detail == {}
    staff.post(reverse("agents:api-token-revoke", args=[token.pk]))
    token.refresh_from_db()
    assert token.revoked_at is not None
    row = _only_row(action="token_revoked")
    assert row.actor == "ops"
    assert row.before == {"revoked_at": None}
    assert row.after == {"revoked_at": token.revoked_at.isoformat()}
    assert row.detail["token"] == token.pk and row.detail["prefix"] == token.prefix
    # Revoking again changes nothing and records nothing.
    staff.post(reverse("agents:api-token-revoke", args=[token.pk]))
    assert OperatorAction.objects.filter(action="token_revoked").count() == 1


@pytest.mark.django_db(transaction=True)
def test_token_from_the_command_and_the_admin_are_recorded(superuser: Client) -> None:
    user = User.objects.get(username="root")
    call_command("create_token", "root", stdout=io.StringIO(), stderr=io.StringIO())
    assert _only_row(action="token_created").actor == "create_token"
    superuser.post(
        reverse("admin:agents_apitoken_add"),
        {"user": user.pk, "name": "from-admin", "namespaces": "[]", "rate_limit": 0},
    )
    made = ApiToken.objects.get(name="from-admin")
    row = OperatorAction.objects.filter(action="token_created").order_by("-pk").first()
    assert row is not None and row.actor == "root" and row.after["token"] == made.pk
    superuser.post(
        reverse("admin:agents_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [str(made.pk)]},
    )
    row = _only_row(action="token_revoked")
    assert row.actor == "root" and row.detail["name"] == "from-admin"


@pytest.mark.django_db(transaction=True)
def test_a_refused_token_writes_no_audit_row() -> None:
    from statehouse.errors import ValidationError

    user = User.objects.create_user("u")
    with pytest.raises(ValidationError):
        create_token(user=user, rate_limit=-1)
    token, _secret = create_token(user=user, actor="someone")
    revoke_token(token_id=token.pk, actor="someone")
    assert list(OperatorAction.objects.values_list("action", "actor").order_by("pk")) == [
        ("token_created", "someone"),
        ("token_revoked", "someone"),
    ]


# --- the pages --------------------------------------------------------------------------------


def _seed(count: int, **fields: Any) -> list[OperatorAction]:
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    return OperatorAction.objects.bulk_create(
        [
            OperatorAction(
                **{
                    "actor": "alice",
                    "at": base + timedelta(minutes=i % 7),  # ties on `at`: broken by id
                    "namespace": "default",
                    "agent_name": f"agent-{i}",
                    "action": "cancel",
                    "reason": f"reason {i}",
                    **fields,
                }
            )
            for i in range(count)
        ]
    )


def test_audit_page_filters_by_action_actor_agent_and_day(staff: Client, viewer: Client) -> None:
    _seed(2)
    _seed(1, actor="bob", action="pause", agent_name="paused-one")
    _seed(1, at=datetime(2026, 3, 2, 0, 30, tzinfo=UTC), agent_name="next-day")
    url = reverse("agents:audit")

    def shown(client: Client = staff, **query: str) -> list[str]:
        response = client.get(url, query)
        assert response.status_code == 200
        return sorted(r.row.agent_name for r in response.context["page"].rows)

    assert len(shown()) == 4
    assert shown(action="pause") == ["paused-one"]
    assert shown(actor="bob") == ["paused-one"]
    assert shown(agent="agent-1") == ["agent-1"]
    assert shown(namespace="default", agent="next-day") == ["next-day"]
    assert shown(day="2026-03-02") == ["next-day"]
    assert shown(day="2026-03-01", action="cancel") == ["agent-0", "agent-1"]
    assert shown(client=viewer, actor="alice") == ["agent-0", "agent-1", "next-day"]
    html = staff.get(url, {"action": "pause"}).content.decode()
    assert "paused-one" in html and "reason 0" in html and "bob" in html


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"action": "dance"}, "Unknown action dance."),
        ({"day": "yesterday"}, "A day is written YYYY-MM-DD"),
        ({"after": "garbage"}, "This is not a position in the list"),
        ({"actor": "a\x00b"}, "Null characters are not allowed."),
    ],
)
def test_audit_page_refuses_bad_filters_with_400(
    staff: Client, query: dict[str, str], problem: str
) -> None:
    response = staff.get(reverse("agents:audit"), query)
    assert response.status_code == 400
    assert problem in response.content.decode()


def test_audit_page_needs_a_login(client: Client, transactional_db: None) -> None:
    response = client.get(reverse("agents:audit"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_audit_keyset_pages_cover_every_row_once(
    staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statehouse_agents.dashboard.audit_page.AUDIT_PAGE_SIZE", 4)
    seeded = _seed(11)
    seen: list[int] = []
    pages: list[str] = []
    url = reverse("agents:audit")
    for _ in range(10):
        page = staff.get(url).context["page"]
        pages.append(url)
        seen += [r.row.pk for r in page.rows]
        if not page.next_url:
            break
        url = page.next_url
    expected = sorted(seeded, key=lambda r: (r.at, r.pk), reverse=True)
    assert seen == [r.pk for r in expected]
    # "Newer" from the last page gives back the page before it.
    last = staff.get(pages[-1]).context["page"]
    previous = staff.get(last.prev_url).context["page"]
    assert [r.row.pk for r in previous.rows] == seen[4:8]
    # htmx asks for the table alone.
    response = staff.get(reverse("agents:audit"), **HTMX)
    assert b'id="audit-table"' in response.content and b"<html" not in response.content


def test_agent_page_shows_its_operator_actions(sh: Statehouse, staff: Client) -> None:
    agent = make_agent(sh, "watched")
    other = make_agent(sh, "other")
    staff.post(reverse("agents:resume", args=[agent.pk]))
    staff.post(reverse("agents:resume", args=[other.pk]))
    context = staff.get(agent.get_absolute_url()).context
    assert [a.row.agent_name for a in context["actions"]] == ["watched"]
    html = staff.get(agent.get_absolute_url()).content.decode()
    assert "Operator actions" in html and '"source": "dashboard"' in html.replace("&quot;", '"')
    assert reverse("agents:audit") + "?namespace=default&amp;agent=watched" in html


def test_admin_shows_the_audit_log_read_only(sh: Statehouse, superuser: Client) -> None:
    agent = make_agent(sh, "admin-audited")
    superuser.post(reverse("agents:resume", args=[agent.pk]))
    row = OperatorAction.objects.get()
    changelist = superuser.get(reverse("admin:agents_operatoraction_changelist"))
    assert changelist.status_code == 200 and b"admin-audited" in changelist.content
    change = reverse("admin:agents_operatoraction_change", args=[row.pk])
    assert superuser.get(change).status_code == 200
    assert superuser.post(change, {"actor": "forged"}).status_code == 403
    assert superuser.get(reverse("admin:agents_operatoraction_add")).status_code == 403
    delete = reverse("admin:agents_operatoraction_delete", args=[row.pk])
    assert superuser.post(delete, {"post": "yes"}).status_code == 403
    assert OperatorAction.objects.get().actor == "root"


# --- query budgets ------------------------------------------------------------------------------


@pytest.fixture
def audited(request: pytest.FixtureRequest, sh: Statehouse) -> Agent:
    """One agent with `n` operator actions, and `n` more on other agents."""
    n = request.param
    agent = make_agent(sh, "audited")
    _seed(n)
    _seed(n, agent=agent, agent_name="audited", action="pause")
    return agent


@pytest.mark.parametrize("audited", [1, 50], indirect=True)
@pytest.mark.parametrize(("name", "budget"), [("audit", 3), ("audit-filtered", 3), ("detail", 13)])
def test_audit_query_count_is_fixed_whatever_the_rows(
    staff: Client, audited: Agent, name: str, budget: int, django_assert_max_num_queries: Any
) -> None:
    url = {
        "audit": reverse("agents:audit"),
        "audit-filtered": reverse("agents:audit") + "?action=pause&agent=audited&day=2026-03-01",
        "detail": audited.get_absolute_url(),
    }[name]
    staff.get(url)  # warm the session
    with django_assert_max_num_queries(budget):
        response = staff.get(url)
    assert response.status_code == 200
