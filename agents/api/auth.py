"""Bearer-token authentication and scopes of the HTTP API (docs/api.md)."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer
from statehouse_agents.api.ratelimit import limiter
from statehouse_agents.models import ApiToken
from statehouse_agents.store.tokens import find_token

from statehouse.errors import AuthenticationError, PermissionDeniedError


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>`: an active token of an active user, within its
    rate limit. The token is looked up on every request (one prepared query), so a
    revocation holds at once."""

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        """django-ninja's HttpBearer reading, from the WSGI environ itself: its
        `request.headers` copies every header of the request first (docs/api.md,
        "Latency")."""
        value = request.META.get("HTTP_AUTHORIZATION")
        if not value:
            return None
        scheme, *token = value.split(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, " ".join(token))

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        lookup = find_token(token)
        if lookup is None:
            raise AuthenticationError("unknown API token")
        found, user_active = lookup
        if found.revoked_at is not None:
            raise AuthenticationError(
                f"API token {found.prefix}… was revoked at {found.revoked_at.isoformat()}"
            )
        if found.expires_at is not None and found.expires_at <= timezone.now():
            raise AuthenticationError(
                f"API token {found.prefix}… expired at {found.expires_at.isoformat()}"
            )
        if not user_active:
            raise AuthenticationError(f"the user of API token {found.prefix}… is inactive")
        limiter.hit(found)
        return found


class HealthAuth:
    """The health check's: answered without a token, since a load balancer or an uptime
    probe has none (docs/api.md, "Endpoints"); a token, when sent, is checked, counted and
    recorded as on every other endpoint, so a client's `health()` still proves its token.

    Not a bearer scheme of its own: the schema names TokenAuth as optional instead
    (`OPTIONAL_TOKEN`)."""

    def __init__(self) -> None:
        self._token = TokenAuth()

    def __call__(self, request: HttpRequest) -> ApiToken | str | None:
        if "HTTP_AUTHORIZATION" not in request.META:
            return NO_TOKEN
        return self._token(request)


# The OpenAPI `security` of the health check: no token, or TokenAuth's.
OPTIONAL_TOKEN: list[dict[str, list[str]]] = [{}, {"TokenAuth": []}]

# What `request.auth` holds for a health check sent without a token.
NO_TOKEN = "no token"


def request_token(request: HttpRequest) -> ApiToken:
    """The token the request authenticated with (`BearerToken` above)."""
    return request.auth  # type: ignore[attr-defined]  # set by django-ninja


def allow(request: HttpRequest, namespace: str | None, *, write: bool) -> None:
    """Raise PermissionDeniedError unless the request's token may do this."""
    token = request_token(request)
    if write and token.read_only:
        raise PermissionDeniedError(f"API token {token.prefix}… is read-only")
    if namespace is not None and not token.allows_namespace(namespace):
        raise PermissionDeniedError(
            f"API token {token.prefix}… may not use namespace {namespace!r} "
            f"(only {', '.join(map(repr, token.namespaces))})"
        )
