"""The overview screen: counts per status, recently interrupted agents, latest writes,
hourly charts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from statehouse_agents.dashboard.charts import hourly_chart, per_hour
from statehouse_agents.dashboard.list_page import TAB_ORDER
from statehouse_agents.dashboard.llm_usage import overview_usage
from statehouse_agents.models import Agent, Commit, ResumeRequest, Version


def overview(*, hours: int = 24) -> dict[str, Any]:
    """Counts per status, recently interrupted agents, latest writes, hourly charts."""
    now = timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = Agent.objects.status_counts()
    commits = hourly_chart(
        "Commits",
        f"Committed transactions per hour, last {hours} hours.",
        per_hour(Commit.objects.all(), "committed_at", since),
        since,
        hours,
    )
    # Interruptions are not recorded as events, so this approximates them: resume requests
    # created in each hour (an operator or script saw the agent interrupted or failed), plus
    # agents interrupted now, counted at the hour of their last activity (when they stopped).
    interruptions = hourly_chart(
        "Interruptions",
        f"Resume requests created, plus agents interrupted now by the hour of their last "
        f"activity, per hour, last {hours} hours.",
        per_hour(ResumeRequest.objects.all(), "requested_at", since)
        + per_hour(Agent.objects.interrupted(), "last_activity_at", since),
        since,
        hours,
    )
    return {
        "counts": [(status, counts[status]) for status in TAB_ORDER],
        "total": sum(counts.values()),
        "interrupted": list(
            Agent.objects.interrupted().annotate_status().order_by("-last_activity_at", "-pk")[:10]
        ),
        "activity": list(Version.objects.select_related("agent", "commit").order_by("-pk")[:15]),
        "charts": [commits, interruptions],
        **overview_usage(),
    }
