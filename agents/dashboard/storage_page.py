"""The storage page (staff): bytes by table, value bytes by namespace, the largest agents
(docs/retention.md). A fixed number of queries whatever the size of the store. The value
sums read every version, so past LIVE_SUMS_UP_TO versions they are computed only when the
operator asks (`?sums=1`): the page itself stays quick on a large store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Count, Sum
from django.db.models.functions import Length
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, Version

LARGEST_AGENTS = 20
# Up to this many versions the page sums values on every view (tens of milliseconds);
# beyond it, on request (about a second per million versions on PostgreSQL).
LIVE_SUMS_UP_TO = 100_000


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


def more_versions_than(limit: int) -> bool:
    """Whether the store holds more than `limit` versions: one query that reads at most
    `limit + 1` entries of the version table's primary key, whatever its size."""
    return Version.objects.order_by()[limit : limit + 1].exists()


def storage(*, sums: bool = False) -> dict[str, Any]:
    """The page's context; the value sums when `sums` or the store is small enough."""
    tables, note = table_sizes()
    settings = get_settings()
    deferred = not sums and more_versions_than(LIVE_SUMS_UP_TO)
    return {
        "tables": tables,
        "tables_total": sum(t.bytes for t in tables),
        "tables_note": note,
        "sums_deferred": deferred,
        "live_sums_up_to": f"{LIVE_SUMS_UP_TO:,}",
        "namespaces": [] if deferred else namespace_sizes(),
        "largest": [] if deferred else largest_agents(),
        "retention_finished_days": settings.retention_finished_days,
        "retention_drop_days": settings.retention_drop_days,
    }
