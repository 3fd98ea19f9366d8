"""Who may call a dashboard view, and how: each view names one of these guards instead of
stacking Django's decorators itself (docs/operations.md, "Operator controls").

Reading needs a login; every action needs staff rights and a POST with its CSRF token
(Django's middleware checks the token; a GET of an action is 405, a user without staff
rights gets 403 and nothing runs).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Refuse (403) a logged-in user without staff rights; nothing else runs."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("This needs staff rights.")
        return view(request, *args, **kwargs)

    return wrapped


def page(view: View) -> View:
    """A page any logged-in user reads (GET)."""
    return require_GET(login_required(view))


def staff_page(view: View) -> View:
    """A page only staff read (GET)."""
    return require_GET(login_required(staff_required(view)))


def staff_action(view: View) -> View:
    """An action (POST, staff only)."""
    return require_POST(login_required(staff_required(view)))


def staff_form(view: View) -> View:
    """A form staff fill in (GET) and send (POST)."""
    return require_http_methods(["GET", "POST"])(login_required(staff_required(view)))
