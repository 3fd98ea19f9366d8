"""Choosing agents by the operator's filters: status, namespace, id pattern, idle time.

Shared by `manage.py resume_agents` and `statehouse agents`, so that both understand
the same filters the same way.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from statehouse_agents.models import Agent, AgentQuerySet

_DURATION_PART = re.compile(r"([0-9]+)([smhdw])")
# The largest row count both databases take in a LIMIT (a 64-bit signed integer).
MAX_LIMIT = 2**63 - 1
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class SelectionError(ValueError):
    """A filter the operator gave is malformed; the message says which and why."""


def parse_duration(text: str) -> timedelta:
    """Parse "90s", "10m", "1h30m", "2d" into a timedelta."""
    cleaned = text.strip().lower()
    if not cleaned or _DURATION_PART.sub("", cleaned):
        raise SelectionError(
            f"{text!r} is not a duration; use a number and a unit s, m, h, d or w (e.g. 10m, 1h30m)"
        )
    total = timedelta()
    try:
        for amount, unit in _DURATION_PART.findall(cleaned):
            total += timedelta(**{_UNITS[unit]: int(amount)})
    except OverflowError:
        raise SelectionError(f"{text!r} is longer than any duration can be") from None
    return total


def parse_status(text: str) -> str:
    if text not in Agent.Status.values:
        raise SelectionError(
            f"unknown status {text!r}; use one of {', '.join(Agent.Status.values)}"
        )
    return text


@dataclass(frozen=True)
class AgentFilter:
    status: str | None = None
    namespace: str | None = None
    pattern: str | None = None
    idle_for: timedelta | None = None

    def queryset(self) -> AgentQuerySet:
        agents = Agent.objects.all()
        if self.status:
            agents = agents.with_status(parse_status(self.status))
        if self.namespace:
            agents = agents.filter(namespace=self.namespace)
        if self.idle_for is not None:
            agents = agents.idle_for(self.idle_for)
        if self.pattern:
            literal = _literal_prefix(self.pattern)
            if literal:
                agents = agents.filter(agent_id__startswith=literal)
        return agents

    def agent_pks(self, *, limit: int | None = None) -> list[int]:
        """The matching agents' primary keys, most recently active first."""
        check_limit(limit)
        rows = self.queryset().order_by("-last_activity_at", "pk").values_list("pk", "agent_id")
        if not self.pattern:
            return [pk for pk, _ in (rows[:limit] if limit else rows)]
        chosen: list[int] = []
        for pk, agent_id in rows.iterator(chunk_size=5000):
            if fnmatch.fnmatchcase(agent_id, self.pattern):
                chosen.append(pk)
                if limit and len(chosen) >= limit:
                    break
        return chosen


def check_limit(limit: int | None) -> None:
    """The same error on both databases for a limit neither can take (not their own)."""
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise SelectionError(f"--limit must be an integer from 1 to {MAX_LIMIT}, not {limit}")


def _literal_prefix(pattern: str) -> str:
    """The part of a shell pattern before its first wildcard (narrows the query by index)."""
    match = re.match(r"[^*?\[]*", pattern)
    return match.group(0) if match else ""


def agent_rows(selection: AgentFilter, *, limit: int = 100) -> list[dict[str, Any]]:
    """The matching agents as plain rows (most recently active first), for listings."""
    pks = selection.agent_pks(limit=limit)
    agents = Agent.objects.filter(pk__in=pks).annotate_status().order_by("-last_activity_at", "pk")
    return [
        {
            "namespace": agent.namespace,
            "agent_id": agent.agent_id,
            "status": agent.status_value,
            "task": agent.task_summary,
            "steps_done": agent.steps_done,
            "steps_pending": agent.steps_pending,
            "steps_failed": agent.steps_failed,
            "last_step": agent.last_step,
            "last_activity": agent.last_activity_at,
            "owner": f"{agent.lease_host} pid {agent.lease_pid}" if agent.lease_owner else "",
        }
        for agent in agents
    ]
