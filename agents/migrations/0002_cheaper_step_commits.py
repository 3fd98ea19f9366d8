"""Cheaper step commits (docs/architecture.md, "The commit function" and "What a step
writes").

The commit function, cheaper per call:

- its statements are planned once per session (`plan_cache_mode`), not for every call;
- the step rows are parsed from their JSON once, not three times;
- one statement both counts the step transitions and checks that a new step key does not
  take a step number another key has (the check was a statement of its own);
- its guard reads the three columns a guard may name (`GUARDED_COLUMNS` of
  agents/store/commit_function.py) instead of converting the whole row to JSON.

Its arguments, its results and what it writes are the same: the new text is 0001's with
these fragments replaced (`edited`), and going back re-creates 0001's text.

The record's "waits for input" condition becomes a column the database keeps
(`Record.waits_for_input`), and the partial index on it replaces the one whose condition
read `value_json`: that one made every update of a record a non-HOT update on PostgreSQL,
writing to every index of the table. Adding the column rewrites the record table once.
"""

import importlib

from django.db import migrations, models

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)

# An edit: (old text, or a span (first fragment, last fragment)), new text.
Edit = tuple[str | tuple[str, str], str]

EDITS: list[Edit] = [
    (
        ") LANGUAGE plpgsql AS $fn$",
        ") LANGUAGE plpgsql\nSET plan_cache_mode = force_generic_plan\nAS $fn$",
    ),
    (
        "    v_conflict boolean;\nBEGIN",
        "    v_conflict boolean;\n    v_steps agents_step[];\n    v_clash boolean;\nBEGIN",
    ),
    (
        "IF NOT FOUND OR NOT (to_jsonb(a) @> p_guard) THEN",
        "IF NOT FOUND OR NOT (jsonb_build_object(\n"
        "            'state', a.state, 'paused_at', a.paused_at, 'lease_owner', a.lease_owner\n"
        "        ) @> p_guard) THEN",
    ),
    (
        # 0001's own clash check, from its first line through its END IF
        (
            "        IF EXISTS (\n"
            "            SELECT 1 FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x\n",
            "            RETURN;  -- two keys for one step number: ValidationError\n"
            "        END IF;\n",
        ),
        "        v_steps := ARRAY(\n"
        "            SELECT x FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x);\n",
    ),
    (
        """               max(x.number)
        INTO v_done, v_pending, v_failed, v_max_number
        FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x
        LEFT JOIN agents_step o ON o.agent_id = a.id AND o.key = x.key;
""",
        """               max(x.number),
               -- a key new to the agent whose step number another key has
               bool_or(o.key IS NULL AND EXISTS (
                   SELECT 1 FROM agents_step k WHERE k.agent_id = a.id AND k.number = x.number))
        INTO v_done, v_pending, v_failed, v_max_number, v_clash
        FROM unnest(v_steps) x
        LEFT JOIN agents_step o ON o.agent_id = a.id AND o.key = x.key;
        IF v_clash THEN
            versions := NULL;
            lease_epoch := NULL;
            RETURN;  -- two keys for one step number: ValidationError
        END IF;
""",
    ),
    (
        "        FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x\n"
        "        JOIN unnest(p_keys, versions)",
        "        FROM unnest(v_steps) x\n        JOIN unnest(p_keys, versions)",
    ),
]


def edited(text: str, edits: list[Edit]) -> str:
    """`text` with each edit's old text replaced by its new one. The old text is quoted
    whole, or as a span: from a first fragment through the next occurrence of a last one.
    The first fragment must occur exactly once, so an edit never lands elsewhere."""
    for old, new in edits:
        first, last = old if isinstance(old, tuple) else (old, "")
        if text.count(first) != 1:
            raise ValueError(f"the commit function does not hold this once: {first!r}")
        start = text.index(first)
        end = text.index(last, start + len(first)) + len(last)
        text = text[:start] + new + text[end:]
    return text


FUNCTION = edited(squashed.FUNCTION, EDITS)


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_squashed_0021_bulk_dashboard_indexes")]

    operations = [
        squashed.postgresql_only(FUNCTION, squashed.FUNCTION),
        migrations.RemoveIndex(model_name="record", name="record_waiting_input"),
        migrations.AddField(
            model_name="record",
            name="waits_for_input",
            field=models.GeneratedField(
                db_persist=True,
                expression=models.ExpressionWrapper(
                    models.Q(("deleted", False), ("value_json__contains", '"waiting":"input"')),
                    output_field=models.BooleanField(),
                ),
                output_field=models.BooleanField(),
            ),
        ),
        migrations.AddIndex(
            model_name="record",
            index=models.Index(
                condition=models.Q(("waits_for_input", True)),
                fields=["agent", "key"],
                name="record_waits_for_input",
            ),
        ),
    ]
