"""The "cancel all matching" screen (docs/operations.md, "Bulk cancel"): the agent list's
filters (status tab, search, namespace), a dry-run preview of the agents they select, and
the same selection for the cancel itself.

The preview names the newest agent it counted (`upto`, a primary key); the cancel acts on
the agents that still match and are not newer, so an agent created after the operator
read the preview is never cancelled by it. Agents that finished meanwhile are skipped by
the store (agents/store/operator.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.db.models import Count, Max
from django.urls import reverse
from statehouse_agents.dashboard.list_page import ListFiltersForm, filtered_agents
from statehouse_agents.dashboard.pager import Answer
from statehouse_agents.models import Agent, AgentQuerySet

# The dashboard cancels at most this many agents in one request; more is the command's job.
MAX_CANCEL_MATCHING = 10_000
PREVIEW_ROWS = 50


class CancelMatchingForm(ListFiltersForm):
    """The list's filters, and the preview's bound on the selection."""

    upto = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**63 - 1,
        error_messages={"invalid": "This is not an agent id from the preview."},
    )

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if status and status not in Agent.CANCELLABLE_STATUSES:
            allowed = ", ".join(str(s) for s in Agent.CANCELLABLE_STATUSES)
            raise forms.ValidationError(
                f"Agents that are {status} cannot be cancelled; choose one of {allowed}, "
                "or all statuses."
            )
        return status


@dataclass(kw_only=True)
class CancelMatchingPage(Answer):
    """What the preview shows; `selection` is what the cancel acts on when not refused."""

    status: str = ""
    q: str = ""
    namespace: str = ""
    matching: int = 0  # agents the filters match, whatever their status
    cancellable: int = 0  # of them, the ones a cancel would change
    upto: int = 0
    agents: list[Agent] = field(default_factory=list)
    list_url: str = ""
    selection: AgentQuerySet | None = None

    @property
    def filters(self) -> dict[str, str]:
        given = {"status": self.status, "q": self.q, "namespace": self.namespace}
        return {name: value for name, value in given.items() if value}

    @property
    def described(self) -> str:
        """The filters in words, for the page and the audit log."""
        parts = [f"status {self.status}" if self.status else "any status"]
        if self.q:
            parts.append(f"matching “{self.q}”")
        if self.namespace:
            parts.append(f"in namespace {self.namespace}")
        return ", ".join(parts)

    @property
    def more(self) -> int:
        return max(0, self.cancellable - len(self.agents))

    @property
    def too_many(self) -> bool:
        return self.cancellable > MAX_CANCEL_MATCHING

    @property
    def limit(self) -> int:
        return MAX_CANCEL_MATCHING


def _selection_form(params: Mapping[str, Any]) -> tuple[CancelMatchingPage, CancelMatchingForm]:
    form = CancelMatchingForm(params)
    page = CancelMatchingPage()
    page.list_url = reverse("agents:list")
    if not form.is_valid():
        page.refuse(400, *(str(e) for errors in form.errors.values() for e in errors))
        return page, form
    data = form.cleaned_data
    page.status, page.q, page.namespace = data["status"], data["q"], data["namespace"]
    if page.filters:
        page.list_url += "?" + urlencode(page.filters)
    base = filtered_agents(namespace=page.namespace, q=page.q)
    if page.status:
        base = base.with_status(page.status)
    page.selection = base.with_cancellable_status()
    return page, form


def cancel_matching_preview(params: Mapping[str, Any]) -> CancelMatchingPage:
    """The dry run: how many agents the filters match, how many a cancel would change, and
    the first of them (most recently active first). Three queries; nothing is written."""
    page, _form = _selection_form(params)
    if page.selection is None:
        return page
    base = filtered_agents(namespace=page.namespace, q=page.q)
    page.matching = (base.with_status(page.status) if page.status else base).count()
    counted = page.selection.order_by().aggregate(n=Count("pk"), upto=Max("pk"))
    page.cancellable, page.upto = counted["n"], counted["upto"] or 0
    page.agents = list(
        page.selection.annotate_status().order_by("-last_activity_at", "pk")[:PREVIEW_ROWS]
    )
    return page


def cancel_matching_selection(params: Mapping[str, Any]) -> CancelMatchingPage:
    """The agents a confirmed cancel acts on: those matching the filters now, no newer
    than the preview's `upto`. Refused (400) without `upto`, or above the dashboard's limit."""
    page, form = _selection_form(params)
    if page.selection is None:
        return page
    upto = form.cleaned_data["upto"]
    if upto is None:
        page.refuse(400, "Preview the agents first: the cancel acts on what the preview showed.")
        return page
    page.upto = upto
    page.selection = page.selection.filter(pk__lte=upto)
    return page


def selected_pks(page: CancelMatchingPage) -> list[int]:
    """The selection's primary keys, in order; at most the limit plus one (to refuse more)."""
    if page.selection is None:
        return []
    rows = page.selection.order_by("pk").values_list("pk", flat=True)
    return list(rows[: MAX_CANCEL_MATCHING + 1])


__all__ = [
    "MAX_CANCEL_MATCHING",
    "PREVIEW_ROWS",
    "CancelMatchingPage",
    "cancel_matching_preview",
    "cancel_matching_selection",
    "selected_pks",
]
