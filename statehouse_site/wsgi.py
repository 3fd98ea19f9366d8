"""WSGI entry point: `gunicorn statehouse_site.wsgi` (see docs/deploy.md)."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (after the application set Django up)

# The wrapped settings object: `settings.SECRET_KEY` itself raises when the key is empty.
if not settings._wrapped.SECRET_KEY:  # type: ignore[misc]  # private attribute, not in the stubs
    raise ImproperlyConfigured(
        "SECRET_KEY must be set when DEBUG is off: every web process of a deployment must "
        "share one secret key (see docs/deploy.md; `make run` makes one for the embedded mode)"
    )
