"""Login: a few failures per username and address lock that pair out for a cool-off, with
a clear message, on the dashboard's login and the admin's; only login and logout of
Django's auth views are mounted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

LIMIT = 5
LOGINS = {"dashboard": "/accounts/login/", "admin": "/admin/login/"}


@pytest.fixture
def staff(transactional_db: None) -> str:
    get_user_model().objects.create_user("ops", password="right-password", is_staff=True)
    return "ops"


def attempt(client: Client, login: str, password: str, username: str = "ops"):  # type: ignore[no-untyped-def]
    return client.post(LOGINS[login], {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_failures_lock_the_user_and_address_out_even_with_the_right_password(
    staff: str, login: str
) -> None:
    client = Client()
    for _ in range(LIMIT - 1):
        assert attempt(client, login, "wrong").status_code == 200  # the form again
    response = attempt(client, login, "wrong")
    assert response.status_code == 429
    response = attempt(client, login, "right-password")
    assert response.status_code == 429
    assert not logged_in(client)
    page = response.content.decode()
    assert "Too many failed logins" in page
    assert f"{LIMIT} logins in a row failed for “ops”" in page
    assert "0:15:00" in page


def test_the_lockout_is_per_username_and_address(staff: str) -> None:
    get_user_model().objects.create_user("other", password="other-password")
    for _ in range(LIMIT):
        attempt(Client(), "dashboard", "wrong")
    assert attempt(Client(), "dashboard", "right-password").status_code == 429
    elsewhere = Client(REMOTE_ADDR="10.1.2.3")
    assert attempt(elsewhere, "dashboard", "right-password").status_code == 302
    assert logged_in(elsewhere)
    colleague = Client()
    assert attempt(colleague, "admin", "other-password", "other").status_code == 200
    assert not logged_in(colleague)  # not staff: the admin says so, not the lockout


def test_the_lockout_ends_after_the_cool_off(staff: str) -> None:
    client = Client()
    for _ in range(LIMIT):
        attempt(client, "admin", "wrong")
    assert attempt(client, "admin", "right-password").status_code == 429
    # The failures were made a whole cool-off (and a second) ago: the lockout is over.
    cool_off = settings.AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=timezone.now() - cool_off - timedelta(seconds=1))
    assert attempt(client, "admin", "right-password").status_code == 302
    assert logged_in(client)


def test_a_success_clears_earlier_failures(staff: str) -> None:
    client = Client()
    for _ in range(LIMIT - 1):
        attempt(client, "dashboard", "wrong")
    assert attempt(client, "dashboard", "right-password").status_code == 302
    client.post("/accounts/logout/")
    for _ in range(LIMIT - 1):
        assert attempt(client, "dashboard", "wrong").status_code == 200
    assert attempt(client, "dashboard", "right-password").status_code == 302


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/password_change/",
        "/accounts/password_change/done/",
    ],
)
def test_only_login_and_logout_are_mounted(staff: str, path: str) -> None:
    client = Client()
    assert client.get(path).status_code == 404
    assert client.post(path, {"email": "ops@example.com"}).status_code == 404
    assert mail.outbox == []


def test_login_and_logout_work(staff: str) -> None:
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    assert attempt(client, "dashboard", "right-password").status_code == 302
    assert logged_in(client)
    assert client.post("/accounts/logout/").status_code == 302
    assert not logged_in(client)
