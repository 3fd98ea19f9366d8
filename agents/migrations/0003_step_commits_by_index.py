"""Step commits whose cost does not grow with the agent's history (docs/architecture.md,
"The commit function").

The commit function reads the current record and the current step of each key it
writes. It plans its statements once per session (0002), and that generic plan, which
cannot know how many steps the agent has, may join every step row of the agent by hash
instead of looking up the few keys being written: measured on an agent with 2,000
steps, that read took 0.7 ms of a 1.8 ms call, and it grew with every step. Both reads
are now lookups by (agent, key) for each key of the commit, whatever the plan
(`LATERAL ... OFFSET 0` keeps the planner from turning them back into a join).

Arguments, results and writes are unchanged: the new text is 0002's with these
fragments replaced, and going back re-creates 0002's text.
"""

import importlib

from django.db import migrations

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)
cheaper = importlib.import_module(".0002_cheaper_step_commits", __package__)

EDITS: list[cheaper.Edit] = [
    (
        "    LEFT JOIN agents_record r ON r.agent_id = a.id AND r.key = o.key;\n",
        "    LEFT JOIN LATERAL (\n"
        "        SELECT r.version, r.deleted FROM agents_record r\n"
        "        WHERE r.agent_id = a.id AND r.key = o.key OFFSET 0) r ON true;\n",
    ),
    (
        "        LEFT JOIN agents_step o ON o.agent_id = a.id AND o.key = x.key;\n",
        "        LEFT JOIN LATERAL (\n"
        "            SELECT o.key, o.status FROM agents_step o\n"
        "            WHERE o.agent_id = a.id AND o.key = x.key OFFSET 0) o ON true;\n",
    ),
]

FUNCTION = cheaper.edited(cheaper.FUNCTION, EDITS)


class Migration(migrations.Migration):
    dependencies = [("agents", "0002_cheaper_step_commits")]

    operations = [squashed.postgresql_only(FUNCTION, cheaper.FUNCTION)]
