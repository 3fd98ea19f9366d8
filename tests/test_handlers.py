"""statehouse_site/handlers.py: an API call with a bearer token skips the browser-only
middleware (docs/api.md, "Latency"); pages, and the API's docs in a browser, do not."""

from __future__ import annotations

from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.conf import settings

from statehouse_site.handlers import StatehouseWSGI

from .conftest import make_token


@pytest.fixture(scope="module")
def application() -> StatehouseWSGI:
    return StatehouseWSGI()


def call(app: StatehouseWSGI, path: str, **environ: str) -> tuple[int, dict[str, str], bytes]:
    env: dict[str, Any] = {"HTTP_HOST": "127.0.0.1", "PATH_INFO": path}
    env.update(environ)
    setup_testing_defaults(env)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app(env, start_response))
    return seen["status"], seen["headers"], body


def test_the_api_chain_is_the_full_one_without_the_browser_only_middleware(
    application: StatehouseWSGI,
) -> None:
    full = list(settings.MIDDLEWARE)
    assert application.api.middleware == [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ]
    assert full == settings.MIDDLEWARE  # given back after the API's chain was built


def test_a_bearer_api_call_answers_without_session_csrf_or_frame_work(
    application: StatehouseWSGI, transactional_db: None
) -> None:
    secret = make_token()[1]
    status, headers, body = call(
        application, "/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert (status, body) == (200, b'{"status": "ok"}')
    assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs
    assert "X-Frame-Options" not in headers
    assert "Set-Cookie" not in headers and "Vary" not in headers


def test_the_api_refuses_a_bad_host_on_the_lean_path_too(
    application: StatehouseWSGI, transactional_db: None
) -> None:
    secret = make_token()[1]
    status, _headers, _body = call(
        application,
        "/api/v1/health",
        HTTP_HOST="evil.example",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert status == 400


def test_without_a_bearer_token_the_api_takes_the_full_chain(
    application: StatehouseWSGI, transactional_db: None
) -> None:
    status, headers, body = call(application, "/api/v1/version")
    assert status == 401
    assert b'"code": "unauthorized"' in body
    assert headers["X-Frame-Options"] == "DENY"


def test_the_health_check_answers_without_a_token_but_checks_one_that_is_sent(
    application: StatehouseWSGI, transactional_db: None
) -> None:
    """docs/api.md, "Endpoints": a load balancer's probe has no token."""
    assert call(application, "/api/v1/health")[::2] == (200, b'{"status": "ok"}')
    status, _headers, body = call(
        application, "/api/v1/health", HTTP_AUTHORIZATION="Bearer sh_not-a-token"
    )
    assert status == 401 and b"unknown API token" in body


def test_pages_take_the_full_chain(application: StatehouseWSGI, transactional_db: None) -> None:
    status, headers, _body = call(application, "/accounts/login/")
    assert status == 200
    assert headers["X-Frame-Options"] == "DENY"
    assert "csrftoken=" in headers.get("Set-Cookie", "")
