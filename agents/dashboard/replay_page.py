"""The replay screen: an agent's committed operations in commit order, a page at a time."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from statehouse_agents.dashboard.formatting import one_line
from statehouse_agents.dashboard.pager import Pager
from statehouse_agents.models import Agent, Version

REPLAY_PER_PAGE = 50


def replay(agent: Agent, page_number: str | None) -> dict[str, Any]:
    """The agent's committed operations in commit order, a page at a time."""
    versions = (
        Version.objects.filter(agent=agent).select_related("commit").order_by("commit_id", "id")
    )
    page = Paginator(versions, REPLAY_PER_PAGE).get_page(page_number)
    return {
        "agent": agent,
        "page": page,
        "pager": Pager.of_page(page, label="Pages", first_and_last=True, always=True),
        "rows": [(v, one_line(v.value_json, 200)) for v in page.object_list],
    }
