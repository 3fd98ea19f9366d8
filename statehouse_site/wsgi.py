"""WSGI entry point: `gunicorn statehouse_site.wsgi` (see docs/deploy.md)."""

import os

import django
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
django.setup(set_prefix=False)  # what get_wsgi_application() does before its handler

from statehouse_site.handlers import StatehouseWSGI  # noqa: E402  (needs Django set up)

# API calls with a bearer token skip the browser-only middleware (statehouse_site/handlers.py).
application = StatehouseWSGI()

from django.conf import settings  # noqa: E402  (after the application set Django up)

# The wrapped settings object: `settings.SECRET_KEY` itself raises when the key is empty.
if not settings._wrapped.SECRET_KEY:  # type: ignore[misc]  # private attribute, not in the stubs
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DEBUG is off: every web process of a deployment must "
        "share one secret key (see docs/deploy.md; `make run` makes one for the embedded mode)"
    )
