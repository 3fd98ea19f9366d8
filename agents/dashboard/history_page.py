"""The key history screen: a key's versions, newest first, and the diff of two of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Page, Paginator
from django.urls import reverse
from statehouse_agents.dashboard.formatting import DiffLine, diff_lines, one_line, pretty_json
from statehouse_agents.dashboard.pager import Answer, Pager
from statehouse_agents.models import Agent, Version

VERSIONS_PER_PAGE = 50
DIFF_MAX_LINES = 20_000


class VersionField(forms.IntegerField):
    default_error_messages = {"invalid": "A version is a whole number, such as 3."}


class KeyHistoryForm(forms.Form):
    key = forms.CharField(max_length=255, error_messages={"required": "Name a key (?key=…)."})
    a = VersionField(required=False, min_value=1, max_value=2**31 - 1)
    b = VersionField(required=False, min_value=1, max_value=2**31 - 1)
    page = forms.CharField(required=False, max_length=20)


@dataclass(kw_only=True)
class KeyHistory(Answer):
    agent: Agent
    key: str = ""
    versions: Page | None = None
    old: Version | None = None
    new: Version | None = None
    diff: list[DiffLine] = field(default_factory=list)
    diff_note: str = ""
    added: int = 0
    removed: int = 0
    new_value: str = ""
    # For each version listed, the version kept before it (None for the first kept).
    earlier: dict[int, int | None] = field(default_factory=dict)

    @property
    def old_label(self) -> str:
        return f"v{self.old.version}" if self.old else ""

    @property
    def new_label(self) -> str:
        return f"v{self.new.version}" if self.new else ""

    @property
    def version_links(self) -> list[dict[str, Any]]:
        if self.versions is None:
            return []
        rows = []
        for version in self.versions.object_list:
            rows.append(
                {
                    "version": version,
                    "diff_url": _history_url(
                        self.agent, self.key, self.earlier[version.version], version.version
                    )
                    if self.earlier.get(version.version)
                    else "",
                    "view_url": _history_url(self.agent, self.key, None, version.version),
                    "selected": self.new is not None and version.pk == self.new.pk,
                    "preview": one_line(version.value_json),
                }
            )
        return rows

    def _page_url(self, number: int) -> str:
        a = self.old.version if self.old else None
        b = self.new.version if self.new else None
        return _history_url(self.agent, self.key, a, b, page=number)

    @property
    def pager(self) -> Pager | None:
        pages = self.versions
        if pages is None:
            return None
        return Pager(
            label="Pages of versions",
            position=f"page {pages.number} of {pages.paginator.num_pages}",
            prev_url=self._page_url(pages.previous_page_number()) if pages.has_previous() else "",
            next_url=self._page_url(pages.next_page_number()) if pages.has_next() else "",
            prev_text="Newer",
            next_text="Older",
            shown=pages.has_other_pages(),
        )


def _history_url(
    agent: Agent, key: str, a: int | None, b: int | None, page: int | None = None
) -> str:
    params: dict[str, Any] = {"key": key}
    if a:
        params["a"] = a
    if b:
        params["b"] = b
    if page and page > 1:
        params["page"] = page
    return reverse("agents:key-history", args=[agent.pk]) + "?" + urlencode(params)


def key_history(agent: Agent, params: Mapping[str, Any]) -> KeyHistory:
    """A key's versions (newest first, paginated) and the diff between versions a and b."""
    history = KeyHistory(agent=agent)
    form = KeyHistoryForm(params)
    if not form.is_valid():
        history.refuse_form(form)
        history.key = str(params.get("key", ""))[:255]
        return history
    data = form.cleaned_data
    history.key = data["key"]
    all_versions = Version.objects.filter(agent=agent, key=history.key).select_related("commit")
    paginator = Paginator(all_versions.order_by("-version"), VERSIONS_PER_PAGE)
    history.versions = paginator.get_page(data["page"] or None)
    if paginator.count == 0:
        history.refuse(404, f"Agent {agent} has no key {history.key!r}.")
        return history
    listed = list(history.versions.object_list)
    # The newest version is not the count: `prune --versions` deletes superseded versions
    # and keeps the numbers of the others (docs/contract.md §2).
    newest = listed[0].version if history.versions.number == 1 else _newest(all_versions)
    numbers = [v.version for v in listed]
    beyond = _kept_before(all_versions, numbers[-1]) if history.versions.has_next() else None
    history.earlier = dict(zip(numbers, [*numbers[1:], beyond], strict=True))
    b = data["b"] or newest
    # By default, the diff is against the version before b that is still kept.
    if data["a"] is not None:
        a = data["a"]
    else:
        a = history.earlier[b] if b in history.earlier else _kept_before(all_versions, b)
    wanted = {v for v in (a, b) if v}
    chosen = {v.version: v for v in listed if v.version in wanted}
    missing = wanted - chosen.keys()
    if missing:
        chosen.update({v.version: v for v in all_versions.filter(version__in=missing).order_by()})
    unknown = sorted(v for v in wanted if v not in chosen)
    if unknown:
        oldest = _oldest(all_versions)
        kept = (
            f"versions {oldest} to {newest}"
            if paginator.count == newest - oldest + 1
            else f"{paginator.count} versions from {oldest} to {newest}"
        ) + ("" if paginator.count == newest else "; the others were pruned")
        history.refuse(
            404, *(f"Key {history.key!r} has no version {v} (it has {kept})." for v in unknown)
        )
        return history
    history.new = chosen[b]
    history.old = chosen.get(a) if a else None
    history.new_value = pretty_json(history.new.value_json)
    old_text = pretty_json(history.old.value_json, sort_keys=True) if history.old else ""
    new_text = pretty_json(history.new.value_json, sort_keys=True)
    if max(old_text.count("\n"), new_text.count("\n")) > DIFF_MAX_LINES:
        history.diff_note = f"These values have more than {DIFF_MAX_LINES} lines: no diff shown."
    elif history.old is not None:
        history.diff = diff_lines(old_text, new_text)
        history.added = sum(1 for line in history.diff if line.kind == "added")
        history.removed = sum(1 for line in history.diff if line.kind == "removed")
    return history


def _newest(versions: Any) -> int:
    return int(versions.order_by("-version").values_list("version", flat=True)[0])


def _oldest(versions: Any) -> int:
    return int(versions.order_by("version").values_list("version", flat=True)[0])


def _kept_before(versions: Any, version: int) -> int | None:
    """The newest version before `version` still kept (None if there is none)."""
    before = versions.filter(version__lt=version).order_by("-version")
    found: int | None = before.values_list("version", flat=True).first()
    return found
