"""The API tokens page in a real browser (docs/api.md): a staff operator creates a token,
sees its secret once, revokes it, and finds both actions in the audit log; a user without
staff rights is refused and nothing changes. Plain forms: no script needed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer
from statehouse_agents.models import ApiToken, OperatorAction
from statehouse_agents.store.tokens import digest

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_a_token_see_it_once_revoke_it_and_find_both_in_the_audit_log(
    logged_in: Page, live_server: LiveServer
) -> None:
    page = logged_in
    page.goto(live_server.url + reverse("agents:api-tokens"))
    expect(page.get_by_text("No token yet.")).to_be_visible()
    page.get_by_label("Name:", exact=True).fill("ci")
    page.get_by_label("Namespaces:", exact=True).fill("team-a, team-b")
    page.get_by_label("Read only").check()
    page.get_by_role("button", name="Create token").click()

    secret = page.locator("#new-token").inner_text()
    token = ApiToken.objects.get()
    assert secret.startswith(token.prefix) and token.digest == digest(secret)
    assert (token.name, token.namespaces, token.read_only) == ("ci", ["team-a", "team-b"], True)
    row = page.get_by_role("row").filter(has_text=f"{token.prefix}…")
    expect(row).to_contain_text("active")
    page.goto(live_server.url + reverse("agents:api-tokens"))  # shown once: now the prefix only
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()

    row.get_by_role("button", name="Revoke").click()
    expect(page.locator("#messages")).to_contain_text(f"Token {token.prefix}… revoked.")
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    token.refresh_from_db()
    assert token.revoked_at is not None

    page.goto(live_server.url + reverse("agents:audit"))
    expect(page.locator("tbody tr").filter(has_text="API token created")).to_have_count(1)
    expect(page.locator("tbody tr").filter(has_text="API token revoked")).to_have_count(1)
    rows = list(OperatorAction.objects.order_by("pk"))
    assert [(r.action, r.actor) for r in rows] == [
        ("token_created", "operator"),
        ("token_revoked", "operator"),
    ]
    assert rows[0].after is not None and rows[0].after["prefix"] == token.prefix
    assert rows[1].detail["prefix"] == token.prefix


def test_a_user_without_staff_rights_is_refused_and_nothing_changes(
    viewer_page: Page, live_server: LiveServer, django_user_model: type[User]
) -> None:
    owner = django_user_model.objects.create_user("ops", is_staff=True)
    token = ApiToken.objects.create(user=owner, prefix="sh_abc", digest="d" * 64)
    page = viewer_page
    response = page.goto(live_server.url + reverse("agents:api-tokens"))
    assert response is not None and response.status == 403
    csrf = page.context.cookies(live_server.url)
    headers = {
        "X-CSRFToken": next(c["value"] for c in csrf if c["name"] == "csrftoken"),
        "Referer": live_server.url + "/",
    }
    for url in (
        reverse("agents:api-token-create"),
        reverse("agents:api-token-revoke", args=[token.pk]),
    ):
        assert (
            page.request.post(live_server.url + url, headers=headers, form={"name": "x"}).status
            == 403
        )
    token.refresh_from_db()
    assert token.revoked_at is None
    assert ApiToken.objects.count() == 1
    assert not OperatorAction.objects.exists()
