"""The replay screen: an agent's committed operations in commit order, a page at a time.

Pages seek by (commit, version row) like the list and audit screens (`keyset.seek`), so
the last page of a long history costs what the first costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.urls import reverse
from statehouse_agents.dashboard.formatting import one_line
from statehouse_agents.dashboard.keyset import Position, seek
from statehouse_agents.dashboard.pager import SeekAnswer
from statehouse_agents.models import Agent, Version

REPLAY_PER_PAGE = 50
_MAX_ID = 2**63 - 1  # the largest bigint: beyond it a position names no row


class ReplayPositionField(forms.CharField):
    """`<commit_ts>_<version row id>`: the operation a page starts after or ends before."""

    default_error_messages = {
        "invalid": "This is not a position in the replay log; start again from the first page."
    }

    def to_python(self, value: Any) -> Position | None:  # type: ignore[override]  # a position, not a str
        text = super().to_python(value)
        if not text:
            return None
        commit, sep, pk = text.partition("_")
        if not (sep and commit.isdigit() and pk.isdigit() and len(text) <= 40):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        if int(commit) > _MAX_ID or int(pk) > _MAX_ID:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return (int(commit), int(pk))


class ReplayForm(forms.Form):
    after = ReplayPositionField(required=False)
    before = ReplayPositionField(required=False)


@dataclass(kw_only=True)
class ReplayPage(SeekAnswer):
    PREV_TEXT, NEXT_TEXT, PAGER_ALWAYS = "Earlier", "Later", False

    agent: Agent
    rows: list[tuple[Version, str]] = field(default_factory=list)
    total: int = 0

    @property
    def position(self) -> str:
        return f"{len(self.rows)} shown of {self.total}"


def _replay_url(agent: Agent, **position: str) -> str:
    url = reverse("agents:replay", args=[agent.pk])
    return f"{url}?{urlencode(position)}" if position else url


def _position(version: Version) -> str:
    return f"{version.commit_id}_{version.pk}"


def replay(agent: Agent, params: Mapping[str, Any]) -> ReplayPage:
    """The agent's committed operations in commit order, a page after or before a position."""
    page = ReplayPage(agent=agent, first_url=_replay_url(agent))
    form = ReplayForm(params)
    if not form.is_valid():
        page.refuse(400, *(str(e) for errors in form.errors.values() for e in errors))
        return page
    versions = Version.objects.filter(agent=agent)
    page.total = versions.count()
    found, has_prev, has_next = seek(
        versions.select_related("commit"),
        by="commit_id",
        descending=False,
        after=form.cleaned_data["after"],
        before=form.cleaned_data["before"],
        size=REPLAY_PER_PAGE,
    )
    page.rows = [(v, one_line(v.value_json, 200)) for v in found]
    if found and has_prev:
        page.prev_url = _replay_url(agent, before=_position(found[0]))
    if found and has_next:
        page.next_url = _replay_url(agent, after=_position(found[-1]))
    return page
