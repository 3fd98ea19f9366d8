"""Cluster-wide event counters (`MetricCounter`), read by `/metrics` (docs/metrics.md)."""

from __future__ import annotations

from statehouse_agents.models import MetricCounter
from statehouse_agents.store import sql
from statehouse_agents.store.atomic import run_atomic

_COUNTER = MetricCounter._meta.db_table

LEASE_EXPIRIES = "lease_expiries"
DIRECT_DETECTIONS = "direct_detections"
PRUNED_COMMITS = "pruned_commits"
NAMES = (LEASE_EXPIRIES, DIRECT_DETECTIONS, PRUNED_COMMITS)


def add_to_counter(*, name: str, amount: int = 1) -> None:
    """Add `amount` to the counter `name`, in the caller's transaction if one is open (the
    count then commits or rolls back with the event it counts).

    One upsert: concurrent adders queue on the counter's row lock; the events counted are
    rare (a lease lapsing, a dead holder found), so that queue stays short."""
    if name not in NAMES:
        raise ValueError(f"unknown counter {name!r}; use one of {', '.join(NAMES)}")
    if amount < 0:
        raise ValueError(f"a counter only grows; {amount} is negative")
    if amount == 0:
        return
    run_atomic(
        lambda: sql.execute(
            f"INSERT INTO {_COUNTER} (name, value) VALUES (%s, %s) "
            f"ON CONFLICT (name) DO UPDATE SET value = {_COUNTER}.value + excluded.value",
            [name, amount],
        ),
        what=f"counting {name}",
    )


def counter_values() -> dict[str, int]:
    """Every counter's value (0 for one never added to), in one query."""
    values = dict(MetricCounter.objects.values_list("name", "value"))
    return {name: int(values.get(name, 0)) for name in NAMES}
