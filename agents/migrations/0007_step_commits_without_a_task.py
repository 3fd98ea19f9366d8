"""PostgreSQL: the commit function takes the steps of an agent without a task too
(docs/architecture.md, "The commit function").

An agent whose `task` was never written is idle (`Agent.State.IDLE`), and the function's
guard wanted an active agent, so every step written to it went through the general
path: four round trips where one does (bench/README.md, `store_bench.py`). A step
changes neither state: an agent without a task stays idle however many steps it writes,
and an active one stays active (agents/store/projection.py, which the function repeats).
So the function commits a step of an idle agent as it does one of an active agent, and
its guard reads an idle agent's state as "active".

The function's arguments and results are unchanged, so this migration may be applied
with the previous release running (docs/deploy.md, "Migration 0007"). Unapplying it
restores 0006's text.
"""

import importlib

from django.db import migrations

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)
cheaper = importlib.import_module(".0002_cheaper_step_commits", __package__)
less_wal = importlib.import_module(".0006_less_wal_per_step", __package__)

EDITS: list[cheaper.Edit] = [
    (
        "    IF NOT (jsonb_build_object(\n"
        "            'state', a.state, 'paused_at', a.paused_at, 'lease_owner', a.lease_owner\n"
        "        ) @> p_guard) THEN\n",
        "    -- An agent without a task (idle) takes steps as an active one does: a step\n"
        "    -- changes neither state, so the guard reads idle as active.\n"
        "    IF NOT (jsonb_build_object(\n"
        "            'state', CASE a.state WHEN 'idle' THEN 'active' ELSE a.state END,\n"
        "            'paused_at', a.paused_at, 'lease_owner', a.lease_owner\n"
        "        ) @> p_guard) THEN\n",
    ),
]

FUNCTION = cheaper.edited(less_wal.FUNCTION, EDITS)


class Migration(migrations.Migration):
    dependencies = [("agents", "0006_less_wal_per_step")]

    operations = [squashed.postgresql_only(FUNCTION, less_wal.FUNCTION)]
