"""Step policies (docs/contract.md §3, §7): the `policy` column of a step row, and the
PostgreSQL commit function `statehouse_commit` replaced so that it writes that column too
(the general path writes it through `STEP_VALUE_COLUMNS` of agents/store/projection.py).

The function is 0019's with `policy` added to its step INSERT and its ON CONFLICT update
(three edits of 0019's text, `STEP_POLICY_EDITS`); its signature is unchanged, so CREATE
OR REPLACE swaps it in place. Going back restores 0019's function. SQLite has no such
function: only the column is added there.
"""

import importlib

from django.db import migrations, models

# 0019's function with `policy` written by the step INSERT and its ON CONFLICT update:
# each edit names the text it replaces, and a text not found stops the migration.
STEP_POLICY_EDITS = (
    (
        "cost, version, started_at, ended_at)",
        "cost, policy, version, started_at, ended_at)",
    ),
    (
        "o.version, v_now, CASE WHEN x.status",
        "x.policy, o.version, v_now, CASE WHEN x.status",
    ),
    (
        "cost = excluded.cost, version = excluded.version,",
        "cost = excluded.cost, policy = excluded.policy, version = excluded.version,",
    ),
)


def previous_function() -> str:
    return importlib.import_module("statehouse_agents.migrations.0019_commit_path").FUNCTION


def with_step_policy(function: str) -> str:
    for old, new in STEP_POLICY_EDITS:
        if function.count(old) != 1:
            raise ValueError(f"0019's commit function does not hold {old!r} once")
        function = function.replace(old, new)
    return function


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # no placeholders: `%ROWTYPE` as written
        schema_editor.execute(with_step_policy(previous_function()), params=None)


def restore_previous_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(previous_function(), params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0019_commit_path"),
    ]

    operations = [
        migrations.AddField(
            model_name="step",
            name="policy",
            field=models.CharField(
                choices=[("retry", "Retry"), ("skip", "Skip"), ("review", "Review")],
                default="retry",
                max_length=8,
            ),
        ),
        migrations.RunPython(create_function, restore_previous_function),
    ]
