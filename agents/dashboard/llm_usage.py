"""What the agents' LLM calls cost (docs/contract.md §3): totals and a table by day, for one
agent's page or for the overview, read from the step rows' LLM columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone
from statehouse_agents.models import Agent, Step, StepQuerySet

DAYS_SHOWN = 14
TOP_AGENTS = 10


@dataclass(frozen=True)
class Usage:
    steps: int
    tokens_in: int
    tokens_out: int
    cost: float

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True)
class DayUsage:
    day: date
    usage: Usage


def totals(steps: StepQuerySet) -> Usage:
    return Usage(**steps.llm_totals())


def by_day(steps: StepQuerySet, *, days: int = DAYS_SHOWN) -> list[DayUsage]:
    """Usage per day (UTC, by when each step started) over the last `days` days, newest
    first, days without usage left out: one grouped query."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        steps.with_llm_usage()
        .filter(started_at__gte=since)
        .annotate(day=TruncDate("started_at"))
        .order_by()
        .values("day")
        .annotate(n=Count("pk"), t_in=Sum("tokens_in"), t_out=Sum("tokens_out"), c=Sum("cost"))
        .order_by("-day")
    )
    return [
        DayUsage(
            day=row["day"],
            usage=Usage(row["n"], row["t_in"] or 0, row["t_out"] or 0, row["c"] or 0.0),
        )
        for row in rows
    ]


def agent_usage(agent: Agent) -> dict[str, object]:
    steps = Step.objects.filter(agent=agent)
    return {
        "llm_totals": totals(steps),
        "llm_by_day": by_day(steps),
        # What the steps a resume runs again cost when they ran (shown beside Resume).
        "rerun_usage": totals(steps.to_run_again()),
    }


def top_agents(limit: int = TOP_AGENTS) -> list[tuple[Agent, Usage]]:
    """The agents whose steps cost most, with their totals: one grouped query."""
    used = Q(steps__cost__isnull=False) | Q(steps__tokens_in__isnull=False)
    used |= Q(steps__tokens_out__isnull=False) | ~Q(steps__model="")
    # The semi-join first narrows the agents to those with LLM steps (the partial index
    # `step_llm_usage`), so the join and grouping below never read the other steps.
    agents = (
        Agent.objects.filter(pk__in=Step.objects.with_llm_usage().values("agent_id"))
        .annotate(
            llm_steps=Count("steps", filter=used),
            llm_in=Sum("steps__tokens_in"),
            llm_out=Sum("steps__tokens_out"),
            llm_cost=Sum("steps__cost"),
        )
        .filter(llm_steps__gt=0)
        .order_by(F("llm_cost").desc(nulls_last=True), F("llm_out").desc(nulls_last=True), "pk")
        .annotate_status()[:limit]
    )
    return [
        (a, Usage(a.llm_steps, a.llm_in or 0, a.llm_out or 0, a.llm_cost or 0.0))  # type: ignore[attr-defined]  # annotated above
        for a in agents
    ]


def overview_usage() -> dict[str, object]:
    steps = Step.objects.all()
    return {
        "llm_totals": totals(steps),
        "llm_by_day": by_day(steps),
        "llm_top_agents": top_agents(),
    }
