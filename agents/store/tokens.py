"""API tokens (docs/api.md): made, revoked and looked up here; stored as digests only.

A token is 32 random bytes, URL-safe, with the prefix `sh_`. Its SHA-256 digest is what the
database keeps: a token has far too much entropy to be guessed from its digest, so a slow
password hash would only slow every request down.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Sequence
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.utils import timezone
from statehouse_agents.models import ApiToken, OperatorAction
from statehouse_agents.store import sql
from statehouse_agents.store.audit import record_action

from statehouse.errors import NotFoundError, ValidationError
from statehouse.validation import check_identifier

__all__ = [
    "create_token",
    "digest",
    "find_token",
    "new_secret",
    "record_token_created",
    "revoke_token",
]

PREFIX = "sh_"
SHOWN_PREFIX = 10  # characters kept to tell tokens apart in lists


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create_token(
    *,
    user: User,
    name: str = "",
    namespaces: Sequence[str] = (),
    read_only: bool = False,
    expires_in: timedelta | None = None,
    rate_limit: int = 0,
    actor: str = "",
) -> tuple[ApiToken, str]:
    """Make a token for `user`; return it and its secret (shown once, never stored).

    The audit log records it (`actor`: who made it; default the token's user).
    """
    scoped = sorted({check_identifier("namespace", ns) for ns in namespaces})
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValidationError(f"a token must expire in the future, not in {expires_in}")
    if rate_limit < 0:
        raise ValidationError(f"rate_limit must be >= 0 requests per minute, not {rate_limit}")
    if len(name) > 100:
        raise ValidationError(f"a token's name is at most 100 characters, not {len(name)}")
    secret = new_secret()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=secret[:SHOWN_PREFIX],
            digest=digest(secret),
            namespaces=scoped,
            read_only=read_only,
            rate_limit=rate_limit,
            expires_at=None if expires_in is None else timezone.now() + expires_in,
        )
        record_token_created(token, actor=actor or user.get_username())
    return token, secret


def _described(token: ApiToken) -> dict[str, object]:
    return {
        "token": token.pk,
        "prefix": token.prefix,
        "name": token.name,
        "user": token.user.get_username(),
        "namespaces": list(token.namespaces),
        "read_only": token.read_only,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def record_token_created(token: ApiToken, *, actor: str) -> None:
    """Audit a token made here or by the admin's form; inside its transaction."""
    record_action(actor=actor, action=OperatorAction.Action.TOKEN_CREATED, after=_described(token))


def revoke_token(*, token_id: int, user: User | None = None, actor: str = "") -> ApiToken:
    """Revoke a token (for good; a revoked token stays listed). `user`: only theirs.

    A revocation is recorded in the audit log (`actor`: who; default `user`); revoking a
    revoked token again changes and records nothing.
    """
    with transaction.atomic():
        tokens = ApiToken.objects.select_for_update()
        if user is not None:
            tokens = tokens.filter(user=user)
        token = tokens.filter(pk=token_id).first()
        if token is None:
            raise NotFoundError(f"no API token {token_id}")
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            record_action(
                actor=actor or (user.get_username() if user is not None else ""),
                action=OperatorAction.Action.TOKEN_REVOKED,
                before={"revoked_at": None},
                after={"revoked_at": token.revoked_at.isoformat()},
                detail=_described(token),
            )
        return token


# Every field an API request reads (docs/api.md: authentication, scopes, rate limit).
_FOUND_FIELDS = (
    "id",
    "user_id",
    "prefix",
    "namespaces",
    "read_only",
    "rate_limit",
    "expires_at",
    "revoked_at",
    "window_start",
    "window_count",
)


@functools.cache
def _find_sql() -> str:
    columns = ", ".join(f"t.{name}" for name in _FOUND_FIELDS)
    return (
        f"SELECT {columns}, u.is_active FROM {ApiToken._meta.db_table} t "
        f"JOIN {User._meta.db_table} u ON u.id = t.user_id WHERE t.digest = %s"
    )


def find_token(secret: str) -> tuple[ApiToken, bool] | None:
    """The token whose secret this is, and whether its user is active; None if unknown.

    Every API request authenticates here, so it is one query on the unique digest index,
    sent as a prepared statement (agents/store/sql.py), that reads only what a request needs:
    the row is read anew each time, so a revocation holds at once.

    It is also the request's connection health check (CONN_HEALTH_CHECKS): Django would
    send a `SELECT 1` before the request's first transaction; this query proves the
    persistent connection instead, and if the database dropped it since the last request,
    the connection is opened anew and the lookup (a read) sent once more, as Django's check
    would have done (docs/api.md, "Latency").
    """
    db = connections[DEFAULT_DB_ALIAS]
    params = (digest(secret),)
    try:
        row = sql.fetchone(_find_sql(), params)
    except (OperationalError, InterfaceError):
        checked = db.health_check_done  # type: ignore[attr-defined]  # Django's; not in the stubs
        if db.in_atomic_block or not db.health_check_enabled or checked:  # type: ignore[attr-defined]  # as above
            raise
        db.close()
        row = sql.fetchone(_find_sql(), params)
    db.health_check_done = True  # type: ignore[attr-defined]  # proved usable by this query
    if row is None:
        return None
    values = dict(zip((*_FOUND_FIELDS, "is_active"), row, strict=True))
    if isinstance(values["namespaces"], str):  # JSON text, as Django's own cursors read it
        values["namespaces"] = json.loads(values["namespaces"])
    for name in ("expires_at", "revoked_at", "window_start"):
        if values[name] is not None:
            values[name] = sql.to_datetime(values[name])
    values["read_only"] = bool(values["read_only"])
    active = bool(values.pop("is_active"))
    token = ApiToken.from_db(DEFAULT_DB_ALIAS, list(_FOUND_FIELDS), list(values.values()))
    return token, active
