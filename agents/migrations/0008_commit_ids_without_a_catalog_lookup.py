"""PostgreSQL: the commit function names the commit log's id sequence, and looks up no
step number that cannot be taken (docs/architecture.md, "The commit function").

1. The function drew each commit's id by `nextval(pg_get_serial_sequence('agents_commit',
   'id'))`. `pg_get_serial_sequence` finds the column's sequence in the catalog on every
   call, and its text result is resolved to the sequence again by name: about 20 µs of a
   call's 0.2 ms on the test machine (bench/README.md). The sequence is named now, as a
   `regclass` constant, resolved once when the statement is first planned in a session
   (the name is the one PostgreSQL gives the identity column: tests/test_commit_function.py
   checks it).
2. A step key new to the agent was looked up in its steps by number, to refuse a second
   key of the same step. A number above the agent's `last_step` (the highest number of
   its step rows, which every commit keeps) has no row to find, so the look-up runs only
   for a number at or below it, as on the general path (agents/store/projection.py). An
   agent taking its steps in order never needs it.

The function's arguments and results are unchanged, so this migration may be applied
with the previous release running (docs/deploy.md, "Migrations 0007 and 0008").
Unapplying it restores 0007's text.
"""

import importlib

from django.db import migrations

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)
cheaper = importlib.import_module(".0002_cheaper_step_commits", __package__)
without_a_task = importlib.import_module(".0007_step_commits_without_a_task", __package__)

EDITS: list[cheaper.Edit] = [
    (
        "               -- a key new to the agent whose step number another key has\n"
        "               bool_or(o.key IS NULL AND EXISTS (\n",
        "               -- a key new to the agent whose step number another key has (no key\n"
        "               -- has a number above the agent's last step)\n"
        "               bool_or(o.key IS NULL AND x.number <= coalesce(a.last_step, -1)\n"
        "                       AND EXISTS (\n",
    ),
    (
        "    v_commit_ts := nextval(pg_get_serial_sequence('agents_commit', 'id'));\n",
        "    -- The commit log's id sequence by name, resolved when first planned.\n"
        "    v_commit_ts := nextval('agents_commit_id_seq'::regclass);\n",
    ),
]

FUNCTION = cheaper.edited(without_a_task.FUNCTION, EDITS)


class Migration(migrations.Migration):
    dependencies = [("agents", "0007_step_commits_without_a_task")]

    operations = [squashed.postgresql_only(FUNCTION, without_a_task.FUNCTION)]
