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

The commit function's record write changes accordingly, and its record and step writes
become a plain UPDATE of the rows that exist and a plain INSERT of the others instead of
INSERT ... ON CONFLICT: the agent's row lock already orders every write of them, and an
upsert costs a WAL record more per row (a speculative insert's confirmation, or the lock
of the row it then updates). The new text is 0003's with these fragments replaced, and
going back re-creates 0003's text.

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
        "    v_clash boolean;\nBEGIN",
        "    v_clash boolean;\n    v_existing text[];  -- the step keys that have a step row\nBEGIN",
    ),
    (
        "        INTO v_done, v_pending, v_failed, v_max_number, v_clash\n",
        "               array_agg(x.key) FILTER (WHERE o.key IS NOT NULL)\n"
        "        INTO v_done, v_pending, v_failed, v_max_number, v_clash, v_existing\n",
    ),
    (
        "                   SELECT 1 FROM agents_step k WHERE k.agent_id = a.id AND k.number = x.number))\n",
        "                   SELECT 1 FROM agents_step k WHERE k.agent_id = a.id AND k.number = x.number)),\n",
    ),
    (
        (
            "    INSERT INTO agents_record (agent_id, key, version, commit_ts, value_json, deleted,\n",
            "        updated_at = excluded.updated_at;\n",
        ),
        f"""\
    -- A key's record exists from its first version on, and the agent's row lock orders
    -- every write of it: an update of the records that exist, an insert of the others,
    -- and no ON CONFLICT (its speculative insert and its row lock cost a WAL record each).
    UPDATE agents_record r SET
        version = o.version, commit_ts = statehouse_commit.commit_ts, deleted = false,
        updated_at = v_now, waits_for_input = strpos(o.value_json, '{WAITING}') > 0
    FROM unnest(p_keys, versions, p_values) AS o(key, version, value_json)
    WHERE o.version > 1 AND r.agent_id = a.id AND r.key = o.key;

    INSERT INTO agents_record (agent_id, key, version, commit_ts, deleted, updated_at,
                               waits_for_input)
    SELECT a.id, o.key, o.version, commit_ts, false, v_now,
           strpos(o.value_json, '{WAITING}') > 0
    FROM unnest(p_keys, versions, p_values) AS o(key, version, value_json)
    WHERE o.version = 1;
""",
    ),
    (
        (
            "        INSERT INTO agents_step (agent_id, key, number, status, model, tokens_in, tokens_out,\n",
            "                THEN excluded.started_at ELSE agents_step.started_at END;\n",
        ),
        """\
        -- The same for step rows: v_existing names those there are.
        UPDATE agents_step s SET
            status = x.status, model = x.model, tokens_in = x.tokens_in,
            tokens_out = x.tokens_out, cost = x.cost, policy = x.policy, version = o.version,
            ended_at = CASE WHEN x.status IN ('done', 'failed') THEN v_now END,
            -- a step written pending again after it ended is a re-run: it starts anew
            started_at = CASE WHEN s.status IN ('done', 'failed') AND x.status = 'pending'
                              THEN v_now ELSE s.started_at END
        FROM unnest(v_steps) x
        JOIN unnest(p_keys, versions) AS o(key, version) ON o.key = x.key
        WHERE x.key = ANY(v_existing) AND s.agent_id = a.id AND s.key = x.key;

        INSERT INTO agents_step (agent_id, key, number, status, model, tokens_in, tokens_out,
                                 cost, policy, version, started_at, ended_at)
        SELECT a.id, x.key, x.number, x.status, x.model, x.tokens_in, x.tokens_out, x.cost,
               x.policy, o.version, v_now, CASE WHEN x.status IN ('done', 'failed') THEN v_now END
        FROM unnest(v_steps) x
        JOIN unnest(p_keys, versions) AS o(key, version) ON o.key = x.key
        WHERE NOT x.key = ANY(coalesce(v_existing, '{}'));
""",
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
