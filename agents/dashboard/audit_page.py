"""The audit log screens: every operator action, filtered (action, actor, agent, day),
newest first by keyset; and the latest actions on one agent, for its page."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.urls import reverse
from statehouse_agents.dashboard.keyset import seek
from statehouse_agents.dashboard.list_page import Cursor, CursorField
from statehouse_agents.dashboard.pager import SeekAnswer
from statehouse_agents.models import Agent, OperatorAction, OperatorActionQuerySet

AUDIT_PAGE_SIZE = 50
AGENT_ACTIONS_SHOWN = 20


class AuditForm(forms.Form):
    """The audit page's filters, from the query string; every one optional."""

    action = forms.ChoiceField(
        required=False,
        choices=[("", "Every action"), *OperatorAction.Action.choices],
        error_messages={"invalid_choice": "Unknown action %(value)s."},
    )
    actor = forms.CharField(required=False, max_length=255, strip=True)
    namespace = forms.CharField(required=False, max_length=255, strip=True)
    agent = forms.CharField(required=False, max_length=255, strip=True, label="Agent id")
    day = forms.DateField(
        required=False,
        label="Day (UTC)",
        error_messages={"invalid": "A day is written YYYY-MM-DD, such as 2026-01-31."},
    )
    after = CursorField(required=False)
    before = CursorField(required=False)


@dataclass(frozen=True)
class ShownAction:
    """One audit row as a table shows it: its JSON fields as compact text."""

    row: OperatorAction
    before: str
    after: str
    detail: str

    @classmethod
    def of(cls, row: OperatorAction) -> ShownAction:
        return cls(
            row=row, before=_text(row.before), after=_text(row.after), detail=_text(row.detail)
        )

    @property
    def agent_label(self) -> str:
        row = self.row
        if not row.agent_name:
            return ""
        return row.agent_name if row.namespace == "default" else f"{row.namespace}/{row.agent_name}"


def _text(value: Any) -> str:
    if value is None or value == {}:
        return ""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(kw_only=True)
class AuditPage(SeekAnswer):
    PAGER_LABEL, PREV_TEXT, NEXT_TEXT, PAGER_ALWAYS = (
        "Pages of the audit log",
        "Newer",
        "Older",
        False,
    )

    form: AuditForm
    rows: list[ShownAction] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def position(self) -> str:
        return f"{len(self.rows)} shown"

    @property
    def actions(self) -> list[tuple[str, str]]:
        return list(OperatorAction.Action.choices)


def audit_url(**params: str) -> str:
    kept = {name: value for name, value in params.items() if value}
    return reverse("agents:audit") + (f"?{urlencode(kept)}" if kept else "")


def audit_url_for(agent: Agent) -> str:
    return audit_url(namespace=agent.namespace, agent=agent.agent_id)


def audit_log(params: Mapping[str, Any]) -> AuditPage:
    """One page of the audit log, newest first: one query, by keyset on (at, id)."""
    form = AuditForm(params)
    page = AuditPage(form=form, first_url=audit_url())
    if not form.is_valid():
        page.refuse_form(form)
        return page
    data = form.cleaned_data
    rows: OperatorActionQuerySet = OperatorAction.objects.all()
    if data["action"]:
        rows = rows.filter(action=data["action"])
    if data["actor"]:
        rows = rows.filter(actor=data["actor"])
    if data["namespace"]:
        rows = rows.filter(namespace=data["namespace"])
    if data["agent"]:
        rows = rows.filter(agent_name=data["agent"])
    if data["day"]:
        start = datetime.combine(data["day"], time(), tzinfo=UTC)
        rows = rows.filter(at__gte=start, at__lt=start + timedelta(days=1))
    page.filters = {
        "action": data["action"],
        "actor": data["actor"],
        "namespace": data["namespace"],
        "agent": data["agent"],
        "day": data["day"].isoformat() if data["day"] else "",
    }
    after, before = data["after"], data["before"]
    found, has_prev, has_next = seek(
        rows,
        by="at",
        descending=True,
        after=after.position if after else None,
        before=before.position if before else None,
        size=AUDIT_PAGE_SIZE,
    )
    page.rows = [ShownAction.of(row) for row in found]
    page.first_url = audit_url(**page.filters)
    if found and has_next:
        page.next_url = audit_url(after=_cursor(found[-1]).encode(), **page.filters)
    if found and has_prev:
        page.prev_url = audit_url(before=_cursor(found[0]).encode(), **page.filters)
    return page


def _cursor(row: OperatorAction) -> Cursor:
    return Cursor(at=row.at, pk=row.pk)


def agent_actions(agent: Agent) -> list[ShownAction]:
    """The latest operator actions on one agent, newest first (one query)."""
    rows = OperatorAction.objects.for_agent(agent).order_by("-at", "-pk")[:AGENT_ACTIONS_SHOWN]
    return [ShownAction.of(row) for row in rows]
