"""Values stored once (docs/architecture.md, "Values stored once").

A record names its current version and no longer keeps a copy of its value: every write
stored the value twice, in the version and in the record, and an update of the record
rewrote the copy (its table, its TOAST and the WAL for both). Reads of current values
join the version by its identity index (`RecordQuerySet.with_values()`).

`Record.waits_for_input` was a column the database derived from the record's value; with
no value on the row, it becomes a plain column that the commit writes with the version
(`waits_for_input()` of agents/models.py; the commit function repeats it in SQL). Its
rows are marked from the values once, here, and unapplying copies each record's value
back from its version.

The commit function's record write changes accordingly: the new text is 0003's with the
record INSERT replaced, and going back re-creates 0003's text.

The previous release reads and writes `agents_record.value_json`: stop its processes
before migrating (docs/deploy.md, "Migration 0004").
"""

import importlib

from django.db import migrations, models

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)
cheaper = importlib.import_module(".0002_cheaper_step_commits", __package__)
by_index = importlib.import_module(".0003_step_commits_by_index", __package__)

# `WAITING_FOR_INPUT_JSON` of agents/models.py, as of this migration.
WAITING = '"waiting":"input"'

EDITS: list[cheaper.Edit] = [
    (
        (
            "    INSERT INTO agents_record (agent_id, key, version, commit_ts, value_json, deleted,\n",
            "        updated_at = excluded.updated_at;\n",
        ),
        "    INSERT INTO agents_record (agent_id, key, version, commit_ts, deleted, updated_at,\n"
        "                               waits_for_input)\n"
        "    SELECT a.id, o.key, o.version, commit_ts, false, v_now,\n"
        f"           strpos(o.value_json, '{WAITING}') > 0\n"
        "    FROM unnest(p_keys, versions, p_values) AS o(key, version, value_json)\n"
        "    ON CONFLICT (agent_id, key) DO UPDATE SET\n"
        "        version = excluded.version, commit_ts = excluded.commit_ts,\n"
        "        deleted = excluded.deleted, updated_at = excluded.updated_at,\n"
        "        waits_for_input = excluded.waits_for_input;\n",
    ),
]

FUNCTION = cheaper.edited(by_index.FUNCTION, EDITS)

# 0002's partial index `record_waits_for_input`, the same again on the new column.
WAITING_INDEX = next(
    op.index for op in cheaper.Migration.operations if isinstance(op, migrations.AddIndex)
)


def mark_waiting(apps, schema_editor):
    """Set `waits_for_input` of the live records whose value says so."""
    found = "strpos" if schema_editor.connection.vendor == "postgresql" else "instr"
    schema_editor.execute(
        "UPDATE agents_record SET waits_for_input = %s "
        f"WHERE NOT deleted AND {found}(value_json, %s) > 0",
        params=[True, WAITING],
    )


def copy_values_back(apps, schema_editor):
    """Unapplying: give each record the value of the version it names."""
    schema_editor.execute(
        "UPDATE agents_record SET value_json = (SELECT v.value_json FROM agents_version v "
        "WHERE v.agent_id = agents_record.agent_id AND v.key = agents_record.key "
        "AND v.version = agents_record.version)",
        params=[],
    )


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_step_commits_by_index")]

    operations = [
        migrations.RemoveIndex(model_name="record", name="record_waits_for_input"),
        migrations.RemoveField(model_name="record", name="waits_for_input"),
        migrations.AddField(
            model_name="record",
            name="waits_for_input",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_waiting, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(migrations.RunPython.noop, copy_values_back, elidable=False),
        migrations.RemoveField(model_name="record", name="value_json"),
        migrations.AddIndex(model_name="record", index=WAITING_INDEX.clone()),
        squashed.postgresql_only(FUNCTION, by_index.FUNCTION),
    ]
