"""A bounded fuzz of every query parameter of every dashboard page and admin changelist:
no query string makes any page answer 500 or show a traceback.

The parameters are discovered, not listed by hand: the dashboard's forms and the names its
views read from `request.GET`, and each admin changelist's filters, date hierarchy, search,
ordering and paging, plus field lookups of its model. Every (page, parameter) pair gets
every hostile value below, once as a plain request and once as htmx; the count is fixed and
the run is bounded in time.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.test import Client
from django.urls import reverse
from statehouse_agents import dashboard, views
from statehouse_agents.models import Agent, Version

from statehouse import Statehouse
from tests.test_admin import agents, superuser_client  # noqa: F401 (fixtures)

HOSTILE = [
    "99999999999999999999999999",
    "-99999999999999999999",
    "-1",
    "1e309",
    "NaN",
    "\x00",
    "%",
    "' OR 1=1 --",
    "x" * 3000,
    "\U0001f642\u202e",
    "9999-12-31T23:59:59",
]
RAW = ["%ff%fe", "%", "%zz", "&&==", "a=b=c"]  # undecodable or odd query strings
TIME_BUDGET_SECONDS = 300


def dashboard_parameters() -> set[str]:
    names: set[str] = set()
    for obj in vars(dashboard).values():
        if isinstance(obj, type) and issubclass(obj, forms.BaseForm):
            names |= set(obj.base_fields)
    for module in (views, dashboard):
        names |= set(
            re.findall(r"GET\.get(?:list)?\(\s*[\"'](\w+)[\"']", inspect.getsource(module))
        )
    return names | {"page", "keys", "key"}


def admin_parameters(model_admin: admin.ModelAdmin, request) -> set[str]:  # type: ignore[no-untyped-def,type-arg]
    names = {"q", "o", "p", "e", "all", "_to_field", "_popup", "_changelist_filters"}
    for spec in model_admin.get_list_filter(request):
        if isinstance(spec, str):
            names |= {spec, f"{spec}__exact", f"{spec}__isnull"}
        elif isinstance(spec, type):
            names.add(spec.parameter_name)  # type: ignore[attr-defined]
    if model_admin.date_hierarchy:
        names |= {f"{model_admin.date_hierarchy}__{part}" for part in ("year", "month", "day")}
    for field in model_admin.model._meta.concrete_fields:
        if isinstance(field, models.ForeignKey):
            names.add(f"{field.name}__id__exact")
        elif isinstance(field, (models.IntegerField, models.DateTimeField)):
            names.add(f"{field.name}__gte")
    return names


# The bounded CI run sends these to each parameter alone, and every hostile value to all
# parameters of a page at once; --run-slow sends every value to each parameter alone.
QUICK = ["99999999999999999999999999", "\x00", "x" * 3000, "-1"]


def requests_for(pages: dict[str, set[str]], values: list[str]) -> Iterator[tuple[str, str, bool]]:
    for path, names in pages.items():
        for name in sorted(names):
            for index, value in enumerate(values):
                # Every other one as htmx: the dashboard renders fragments for those.
                yield path, f"{quote(name)}={quote(value)}", index % 2 == 1
        for index, value in enumerate(HOSTILE):
            together = "&".join(f"{quote(name)}={quote(value)}" for name in sorted(names))
            yield path, together, index % 2 == 1
        for raw in RAW:
            yield path, raw, False


@pytest.fixture
def pages(agents: dict[str, str], superuser_client: Client, sh: Statehouse) -> dict[str, set[str]]:  # noqa: F811
    agent = Agent.objects.get(agent_id="done-1")
    version = Version.objects.filter(agent=agent).first()
    assert version is not None
    found = {
        reverse("agents:overview"): dashboard_parameters(),
        reverse("agents:list"): dashboard_parameters(),
        reverse("agents:detail", args=[agent.pk]): dashboard_parameters(),
        reverse("agents:key-history", args=[agent.pk]) + f"?key={quote(version.key)}&": (
            dashboard_parameters()
        ),
        reverse("agents:replay", args=[agent.pk]): dashboard_parameters(),
    }
    request = superuser_client.get(reverse("admin:index")).wsgi_request
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "agents":
            continue
        url = reverse(f"admin:agents_{model._meta.model_name}_changelist")
        found[url] = admin_parameters(model_admin, request)
        assert model_admin.get_changelist(request) is not ChangeList
    return found


def fuzz(client: Client, pages: dict[str, set[str]], values: list[str]) -> None:
    client.raise_request_exception = False
    planned = list(requests_for(pages, values))
    assert len(pages) >= 13
    started = time.monotonic()
    failures = []
    for path, query, htmx in planned:
        url = f"{path}{'&' if '?' in path else '?'}{query}"
        response = client.get(url, **({"HTTP_HX_REQUEST": "true"} if htmx else {}))
        body = response.content
        if response.status_code >= 500 or b"Traceback" in body or b"Exception Value" in body:
            failures.append((response.status_code, url[:200], htmx))
        assert time.monotonic() - started < TIME_BUDGET_SECONDS, "the fuzz ran out of time"
    print(f"{len(planned)} requests in {time.monotonic() - started:.1f} s")
    assert failures == [], f"{len(failures)} of {len(planned)} requests failed: {failures[:10]}"


def test_no_query_string_makes_a_page_answer_500(
    pages: dict[str, set[str]],
    superuser_client: Client,  # noqa: F811
) -> None:
    fuzz(superuser_client, pages, QUICK)


@pytest.mark.slow
def test_no_query_string_makes_a_page_answer_500_every_value_alone(
    pages: dict[str, set[str]],
    superuser_client: Client,  # noqa: F811
) -> None:
    fuzz(superuser_client, pages, HOSTILE)
