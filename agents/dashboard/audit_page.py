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
from django.db.models import Q
from django.urls import reverse
from statehouse_agents.dashboard.list_page import Cursor, CursorField
from statehouse_agents.dashboard.pager import Answer, Pager
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
class AuditPage(Answer):
    form: AuditForm
    rows: list[ShownAction] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)
    next_url: str = ""
    prev_url: str = ""
    first_url: str = ""

    @property
    def pager(self) -> Pager:
        return Pager(
            label="Pages of the audit log",
            position=f"{len(self.rows)} shown",
            first_url=self.first_url if self.prev_url else "",
            prev_url=self.prev_url,
            next_url=self.next_url,
            prev_text="Newer",
            next_text="Older",
            shown=bool(self.prev_url or self.next_url),
        )

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
        page.refuse(
            400,
            *(
                f"{name}: {e}" if name != "__all__" else str(e)
                for name, errors in form.errors.items()
                for e in errors
            ),
        )
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
    found, has_prev, has_next = _seek(rows, after=data["after"], before=data["before"])
    page.rows = [ShownAction.of(row) for row in found]
    page.first_url = audit_url(**page.filters)
    if found and has_next:
        page.next_url = audit_url(after=_cursor(found[-1]).encode(), **page.filters)
    if found and has_prev:
        page.prev_url = audit_url(before=_cursor(found[0]).encode(), **page.filters)
    return page


def _cursor(row: OperatorAction) -> Cursor:
    return Cursor(at=row.at, pk=row.pk)


def _seek(
    rows: OperatorActionQuerySet, *, after: Cursor | None, before: Cursor | None
) -> tuple[list[OperatorAction], bool, bool]:
    """One page after (older than) or before (newer than) a cursor: (rows, prev, next)."""
    backwards = before is not None
    cursor = before if backwards else after
    op = "gt" if backwards else "lt"
    if cursor is not None:
        rows = rows.filter(
            Q(**{f"at__{op}": cursor.at}) | Q(at=cursor.at, **{f"pk__{op}": cursor.pk})
        )
    ordering = ["at", "pk"] if backwards else ["-at", "-pk"]
    found = list(rows.order_by(*ordering)[: AUDIT_PAGE_SIZE + 1])
    more = len(found) > AUDIT_PAGE_SIZE
    found = found[:AUDIT_PAGE_SIZE]
    if backwards:
        found.reverse()
        return found, more, True
    return found, cursor is not None, more


def agent_actions(agent: Agent) -> list[ShownAction]:
    """The latest operator actions on one agent, newest first (one query)."""
    rows = OperatorAction.objects.for_agent(agent).order_by("-at", "-pk")[:AGENT_ACTIONS_SHOWN]
    return [ShownAction.of(row) for row in rows]
