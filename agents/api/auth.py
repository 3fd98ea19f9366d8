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
