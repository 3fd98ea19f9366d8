"""Two agents' steps side by side (a fork and its source, say), with the diff of each step
value that differs (docs/operations.md, "Fork"). A fixed number of queries: the two
agents, then each one's first steps and their values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django import forms
from statehouse_agents.dashboard.formatting import DiffLine, diff_lines, pretty_json
from statehouse_agents.dashboard.pager import Answer
from statehouse_agents.models import Agent, Step

COMPARE_STEPS = 200


class CompareForm(forms.Form):
    a = forms.IntegerField(min_value=1, error_messages={"required": "Name agent a (?a=<id>)."})
    b = forms.IntegerField(min_value=1, error_messages={"required": "Name agent b (?b=<id>)."})


@dataclass(frozen=True)
class StepCell:
    status: str
    value: str
    version: int


@dataclass(frozen=True)
class CompareRow:
    number: int
    a: StepCell | None
    b: StepCell | None
    diff: list[DiffLine]

    @property
    def differs(self) -> bool:
        return self.a is None or self.b is None or self.a.value != self.b.value


@dataclass(kw_only=True)
class ComparePage(Answer):
    a: Agent | None = None
    b: Agent | None = None
    rows: list[CompareRow] = field(default_factory=list)
    more: bool = False

    @property
    def differing(self) -> int:
        return sum(1 for row in self.rows if row.differs)


def _steps(agent: Agent) -> tuple[dict[int, StepCell], bool]:
    steps = list(
        Step.objects.filter(agent=agent)
        .with_values()
        .order_by("number", "key")[: COMPARE_STEPS + 1]
    )
    more = len(steps) > COMPARE_STEPS
    steps = steps[:COMPARE_STEPS]
    cells: dict[int, StepCell] = {}
    for step in steps:
        cells.setdefault(
            step.number,
            StepCell(
                status=step.status,
                value=pretty_json(step.value_json, sort_keys=True),
                version=step.version,
            ),
        )
    return cells, more


def compare(params: Mapping[str, Any]) -> ComparePage:
    page = ComparePage()
    form = CompareForm(params)
    if not form.is_valid():
        page.refuse_form(form)
        return page
    wanted = [form.cleaned_data["a"], form.cleaned_data["b"]]
    found = {agent.pk: agent for agent in Agent.objects.filter(pk__in=wanted).annotate_status()}
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        page.refuse(404, *(f"No agent with id {pk}." for pk in missing))
        return page
    page.a, page.b = found[wanted[0]], found[wanted[1]]
    cells_a, more_a = _steps(page.a)
    cells_b, more_b = _steps(page.b)
    page.more = more_a or more_b
    for number in sorted(cells_a.keys() | cells_b.keys())[:COMPARE_STEPS]:
        a, b = cells_a.get(number), cells_b.get(number)
        diff = diff_lines(a.value, b.value) if a and b and a.value != b.value else []
        page.rows.append(CompareRow(number=number, a=a, b=b, diff=diff))
    return page


__all__ = ["COMPARE_STEPS", "ComparePage", "compare"]
