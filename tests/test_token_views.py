"""The API tokens page and admin (docs/api.md): staff only, POST with CSRF, shown once."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from statehouse_agents.models import ApiToken
from statehouse_agents.store.tokens import digest

from .conftest import make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(User.objects.create(username="boss", is_staff=True, is_superuser=True))
    return client


def test_staff_create_a_token_and_see_it_once(staff: Client) -> None:
    response = staff.post(
        "/api-tokens/new/", {"name": "ci", "namespaces": "blue, red", "expires_days": "30"}
    )
    assert response.status_code == 200
    secret = re.search(r'<code id="new-token">(sh_[^<]+)</code>', response.content.decode())[1]  # type: ignore[index]
    token = ApiToken.objects.get(digest=digest(secret))
    assert (token.name, token.namespaces, token.read_only) == ("ci", ["blue", "red"], False)
    listing = staff.get("/api-tokens/").content.decode()
    assert token.prefix in listing
    assert secret not in listing


def test_staff_revoke_a_token(staff: Client) -> None:
    token, _secret = make_token()
    response = staff.post(f"/api-tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_bad_namespace_is_refused_and_nothing_made(staff: Client) -> None:
    response = staff.post("/api-tokens/new/", {"namespaces": "a\x01b"})
    assert response.status_code == 400
    assert ApiToken.objects.count() == 0


def test_the_page_needs_staff_and_csrf(client: Client) -> None:
    User.objects.create(username="viewer")
    client.force_login(User.objects.get(username="viewer"))
    assert client.get("/api-tokens/").status_code == 403
    assert client.post("/api-tokens/new/", {}).status_code == 403
    boss = Client(enforce_csrf_checks=True)
    boss.force_login(User.objects.create(username="boss", is_staff=True))
    assert boss.post("/api-tokens/new/", {"name": "x"}).status_code == 403
    assert ApiToken.objects.count() == 0


def test_the_admin_makes_a_token_and_shows_it_once(staff: Client) -> None:
    user = User.objects.get(username="boss")
    response = staff.post(
        "/admin/agents/apitoken/add/",
        {"user": user.pk, "name": "admin-made", "namespaces": '["blue"]', "rate_limit": "0"},
        follow=True,
    )
    assert response.status_code == 200
    secret = re.search(r"The new token is (sh_\S+)", response.content.decode())[1]  # type: ignore[index]
    assert ApiToken.objects.get(digest=digest(secret)).namespaces == ["blue"]


def test_the_admin_revokes_tokens(staff: Client) -> None:
    token, _secret = make_token()
    staff.post("/admin/agents/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
