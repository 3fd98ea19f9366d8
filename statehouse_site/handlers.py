"""The WSGI application: the product's pages, and a lean path for the HTTP API.

A request to /api/ that carries `Authorization: Bearer …` is an agent's API call
(docs/api.md): it has no session, no cookie, no form and no login, so it runs through
`settings.MIDDLEWARE` without the browser-only middleware below (each costs Python work on
every request, docs/api.md "Latency"). Everything else — the dashboard, the admin, the
API's docs page in a browser — takes the full chain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

__all__ = ["API_MIDDLEWARE", "StatehouseWSGI", "is_api_call"]

# What a bearer-token API call keeps of settings.MIDDLEWARE: the HTTPS redirect, security
# headers and ALLOWED_HOSTS. The rest serves browsers only: static files, sessions, CSRF
# (no cookie authenticates an API call), the logged-in user, messages, framing and CSP
# (JSON, never a page), htmx, and the login lockout (an API call never logs in).
API_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    }
)

_loading = threading.Lock()


def is_api_call(environ: dict[str, Any]) -> bool:
    return environ.get("PATH_INFO", "").startswith("/api/") and environ.get(
        "HTTP_AUTHORIZATION", ""
    ).startswith("Bearer ")


class ApiWSGIHandler(WSGIHandler):
    """Django's handler over the API_MIDDLEWARE part of `settings.MIDDLEWARE`."""

    middleware: list[str]

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE alone: it is shown the API's
        # list while it does (once, at start-up, under a lock) and then given back.
        full = settings.MIDDLEWARE
        self.middleware = [m for m in full if m in API_MIDDLEWARE]
        with _loading:
            settings.MIDDLEWARE = self.middleware
            try:
                super().load_middleware(is_async)
            finally:
                settings.MIDDLEWARE = full


class StatehouseWSGI:
    """Route API calls to the lean handler, everything else to Django's own."""

    def __init__(self) -> None:
        self.site = WSGIHandler()
        self.api = ApiWSGIHandler()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        handler = self.api if is_api_call(environ) else self.site
        return handler(environ, start_response)
