"""API tokens in the Django admin (docs/api.md): made here, the secret is shown once in
the confirmation message; revoked with an action, never deleted by accident."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from statehouse_agents.models import ApiToken
from statehouse_agents.store.tokens import (
    SHOWN_PREFIX,
    digest,
    new_secret,
    record_token_created,
    revoke_token,
)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "user",
        "scope",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    EDITABLE = ["user", "name", "namespaces", "read_only", "rate_limit", "expires_at"]
    SHOWN = ["prefix", "created_at", "last_used_at", "revoked_at"]
    fields = tuple(EDITABLE)
    readonly_fields = SHOWN
    actions = ["revoke"]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        # Imported here: admin.py imports this module at its end.
        from statehouse_agents.admin import BoundedChangeList

        return BoundedChangeList

    def get_fields(  # type: ignore[override]  # field names only, a narrower return
        self, request: HttpRequest, obj: ApiToken | None = None
    ) -> list[str]:
        return self.EDITABLE if obj is None else [*self.EDITABLE, *self.SHOWN]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        secret = ""
        if not change:
            secret = new_secret()
            obj.prefix, obj.digest = secret[:SHOWN_PREFIX], digest(secret)
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if secret:
                record_token_created(obj, actor=request.user.get_username())
        if secret:
            messages.warning(request, f"The new token is {secret} — copy it now: it is shown once.")

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for pk in queryset.values_list("pk", flat=True):
            revoke_token(token_id=pk, actor=request.user.get_username())
        self.message_user(request, f"{len(queryset)} token(s) revoked.", messages.SUCCESS)
