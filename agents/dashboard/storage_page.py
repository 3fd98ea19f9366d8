"""The storage page (staff): bytes by table, value bytes by namespace, the largest agents
(docs/retention.md). A fixed number of queries whatever the size of the store; the value
sums read every version, so this page is for an operator's occasional look."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Count, Sum
from django.db.models.functions import Length
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, Version

LARGEST_AGENTS = 20


@dataclass(frozen=True)
class TableSize:
    table: str
    bytes: int


def table_sizes() -> tuple[list[TableSize], str]:
    """(tables largest first, a note on how they were measured)."""
    if connection.vendor == "postgresql":
        query = (
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
            "ORDER BY 2 DESC, 1"
        )
        note = "pg_total_relation_size: each table with its indexes and TOAST data."
    else:
        # dbstat counts each b-tree's pages; an index is added to its table.
        query = (
            "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s "
            "JOIN sqlite_master m ON m.name = s.name "
            "GROUP BY m.tbl_name ORDER BY 2 DESC, 1"
        )
        note = "SQLite dbstat: the pages of each table and of its indexes."
    with connection.cursor() as cursor:
        try:
            # Outside an atomic block: one query, nothing to roll back; SQLite without
            # dbstat fails when preparing it, before anything runs.
            cursor.execute(query)
            rows = cursor.fetchall()
            return [TableSize(str(t), int(b)) for t, b in rows], note
        except DatabaseError:
            if connection.vendor != "sqlite":
                raise
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute("PRAGMA page_size")
            size = cursor.fetchone()[0]
            note = (
                "This SQLite has no dbstat table (built without SQLITE_ENABLE_DBSTAT_VTAB): "
                "only the whole file's size is known."
            )
            return [TableSize("(whole database file)", int(pages) * int(size))], note


def namespace_sizes() -> list[dict[str, Any]]:
    """Per namespace: agents, versions and the characters of JSON their values hold."""
    rows = (
        Version.objects.order_by()
        .values("agent__namespace")
        .annotate(
            agents=Count("agent", distinct=True),
            versions=Count("pk"),
            value_bytes=Sum(Length("value_json")),
        )
        .order_by("-value_bytes", "agent__namespace")
    )
    return [dict(row) for row in rows]


def largest_agents(limit: int = LARGEST_AGENTS) -> list[tuple[Agent, int, int]]:
    """The agents whose stored values (every version) are largest: (agent, versions,
    characters of JSON)."""
    rows = list(
        Version.objects.order_by()
        .values("agent")
        .annotate(versions=Count("pk"), value_bytes=Sum(Length("value_json")))
        .order_by("-value_bytes", "agent")[:limit]
    )
    agents = Agent.objects.annotate_status().in_bulk([row["agent"] for row in rows])
    return [
        (agents[row["agent"]], row["versions"], row["value_bytes"] or 0)
        for row in rows
        if row["agent"] in agents
    ]


def storage() -> dict[str, Any]:
    tables, note = table_sizes()
    settings = get_settings()
    return {
        "tables": tables,
        "tables_total": sum(t.bytes for t in tables),
        "tables_note": note,
        "namespaces": namespace_sizes(),
        "largest": largest_agents(),
        "retention_finished_days": settings.retention_finished_days,
        "retention_drop_days": settings.retention_drop_days,
    }
