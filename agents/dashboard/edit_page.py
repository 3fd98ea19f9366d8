"""The key editor: a key's current value in a JSON editor, the diff of what was entered
against it (the history page's diff rendering), and the reason (docs/operations.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django import forms
from statehouse_agents.dashboard.formatting import DiffLine, diff_lines, pretty_json
from statehouse_agents.models import Agent, Record
from statehouse_agents.store.edits import MAX_REASON, parse_json_text

from statehouse.errors import ValidationError


class EditForm(forms.Form):
    key = forms.CharField(max_length=255)
    value = forms.CharField(
        widget=forms.Textarea(attrs={"class": "json-editor", "spellcheck": "false", "rows": 16}),
        strip=False,
        label="Value (JSON)",
    )
    expected_version = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    reason = forms.CharField(
        max_length=MAX_REASON,
        required=False,  # a preview needs none; saving does (agents/store/edits.py)
        label="Reason",
        help_text="Why you change it (needed to save); kept in the audit log.",
    )


@dataclass(kw_only=True)
class EditPage:
    agent: Agent
    key: str
    record: Record | None
    form: EditForm
    diff: list[DiffLine] = field(default_factory=list)
    previewed: bool = False
    added: int = 0
    removed: int = 0
    problem: str = ""

    @property
    def context(self) -> dict[str, Any]:
        return {"edit": self, "agent": self.agent}


def current_record(agent: Agent, key: str) -> Record | None:
    return Record.objects.filter(agent=agent, key=key, deleted=False).with_values().first()


def edit_page(agent: Agent, key: str) -> EditPage:
    """The editor opened on `key`'s current value and version."""
    record = current_record(agent, key)
    initial: dict[str, object] = {"key": key}
    if record is not None:
        initial.update(value=pretty_json(record.value_json), expected_version=record.version)
    return EditPage(agent=agent, key=key, record=record, form=EditForm(initial=initial))


def preview(agent: Agent, form: EditForm) -> EditPage:
    """The diff of the entered value against the key's current one, or what is wrong."""
    key = str(form.data.get("key", ""))[:255]
    page = EditPage(agent=agent, key=key, record=current_record(agent, key), form=form)
    if not form.is_valid():
        return page
    try:
        value = parse_json_text(form.cleaned_data["value"], key=key)
    except ValidationError as exc:
        form.add_error("value", str(exc))
        return page
    old = pretty_json(page.record.value_json, sort_keys=True) if page.record else ""
    new = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    page.diff = diff_lines(old, new)
    page.added = sum(1 for line in page.diff if line.kind == "added")
    page.removed = sum(1 for line in page.diff if line.kind == "removed")
    page.previewed = True
    return page
