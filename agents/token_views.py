"""The API tokens page (docs/api.md): staff create, list and revoke tokens of the HTTP API.

A new token's secret is shown once, in the response to the POST that made it; only its
digest is stored. Every action is a POST with a CSRF token and works without JavaScript.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from statehouse_agents.access import staff_action, staff_page
from statehouse_agents.models import ApiToken
from statehouse_agents.store.tokens import create_token, revoke_token

from statehouse.errors import NotFoundError, ValidationError


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What it is for.")
    namespaces = forms.CharField(
        required=False, help_text="Separated by spaces or commas; empty: every namespace."
    )
    read_only = forms.BooleanField(required=False, label="Read only")
    expires_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=3650,
        label="Expires in (days)",
        help_text="Empty: never.",
    )

    def clean_namespaces(self) -> list[str]:
        raw = self.cleaned_data["namespaces"].replace(",", " ")
        return [ns for ns in raw.split() if ns]


def _page(
    request: HttpRequest, form: TokenForm, secret: str = "", status: int = 200
) -> HttpResponse:
    tokens = ApiToken.objects.select_related("user").order_by("-created_at", "-id")[:500]
    context = {"form": form, "tokens": tokens, "secret": secret}
    return render(request, "agents/api_tokens.html", context, status=status)


@staff_page
def token_list(request: HttpRequest) -> HttpResponse:
    return _page(request, TokenForm())


@staff_action
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    days = form.cleaned_data["expires_days"]
    try:
        token, secret = create_token(
            user=request.user,  # type: ignore[arg-type]  # staff_action: a logged-in user
            name=form.cleaned_data["name"],
            namespaces=form.cleaned_data["namespaces"],
            read_only=form.cleaned_data["read_only"],
            expires_in=None if days is None else timedelta(days=days),
            actor=request.user.get_username(),
        )
    except ValidationError as exc:
        form.add_error("namespaces", str(exc))
        return _page(request, form, status=400)
    messages.success(request, f"Token {token.prefix}… created. Copy it now: it is shown once.")
    return _page(request, TokenForm(), secret=secret)


@staff_action
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        token = revoke_token(token_id=pk, actor=request.user.get_username())
    except NotFoundError as exc:
        messages.error(request, f"Not revoked: {exc}.")
    else:
        messages.success(request, f"Token {token.prefix}… revoked.")
    return HttpResponseRedirect(reverse("agents:api-tokens"))
