"""Less WAL per step on PostgreSQL (docs/architecture.md, "The commit function", "What a
step writes" and "References without constraints"). Each change was measured with
`pg_walinspect` (bench/README.md); together they take a step from 4.50 to 3.96 KB.

- The commit function reads the agent's row without locking it, and makes the update of
  that row its first write, applied only to the row version it read (`xmin`): the update
  takes the row's lock, and if anything changed the row in between, the function hands
  the commit back with nothing written. A lock taken by the read wrote a WAL record of
  its own on every commit.
- It writes a record or a step row by an UPDATE of the row the key has, or an INSERT for
  a key new to the agent, instead of `INSERT ... ON CONFLICT DO UPDATE`: an upsert that
  updates locks the row first, and one that inserts writes a speculative row and then
  confirms it (a WAL record each). Which keys exist it knows from the versions it read.
- `commit_committed_at` becomes a BRIN index on PostgreSQL (`TimeOrderIndex` of
  agents/models.py): commits arrive in time order, and a commit no longer adds an entry
  to a B-tree. The range of pages still being filled is left unsummarized, as VACUUM
  leaves it, so commits there write nothing to the index.
- The store's references (a version's agent and commit, a record's and a step's agent)
  lose their foreign-key constraints on PostgreSQL: each check locked the agent's or the
  commit's row that the same transaction had just written (a WAL record). On SQLite the
  constraints stay in the database file (removing one would copy the table); only the
  migration state changes there.

The new function text is 0004's with these edits, and going back re-creates 0004's text.
Its arguments and results are the same, and the previous release works without the
constraints, so this migration may be applied with the previous release running
(docs/deploy.md, "Migration 0006").
"""

import importlib

import statehouse_agents.models
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

squashed = importlib.import_module(".0001_squashed_0021_bulk_dashboard_indexes", __package__)
cheaper = importlib.import_module(".0002_cheaper_step_commits", __package__)
values_once = importlib.import_module(".0004_records_point_at_versions", __package__)

EDITS: list[cheaper.Edit] = [
    # the agent's update moves up, to be the first write
    (
        ("\n    UPDATE agents_agent SET\n        state = a.state,", "    WHERE id = a.id;\n"),
        "",
    ),
    (
        "    v_clash boolean;\nBEGIN",
        "    v_clash boolean;\n"
        "    v_read record;\n"
        "    v_xmin xid;\n"
        "    v_commit_ts bigint;\n"
        "    v_step agents_step;\n"
        "    v_version integer;\n"
        "BEGIN",
    ),
    (
        (
            "    -- The agent's row is the lock that orders its commits",
            "        RETURN;  -- a new agent, or a state the general path handles\n    END IF;\n",
        ),
        "    -- The agent's row orders its commits (docs/contract.md §2). It is read without a\n"
        "    -- lock, with its row version (xmin); the update of the row, the first write below,\n"
        "    -- takes the lock and applies only to the version read here.\n"
        "    SELECT t AS agent, t.xmin AS xmin INTO v_read FROM agents_agent t\n"
        "    WHERE t.namespace = p_namespace AND t.agent_id = p_agent_id;\n"
        "    IF NOT FOUND THEN\n"
        "        RETURN;  -- a new agent: the general path creates it\n"
        "    END IF;\n"
        "    a := v_read.agent;\n"
        "    v_xmin := v_read.xmin;\n"
        "    IF NOT (jsonb_build_object(\n"
        "            'state', a.state, 'paused_at', a.paused_at, 'lease_owner', a.lease_owner\n"
        "        ) @> p_guard) THEN\n"
        "        RETURN;  -- a state the general path handles\n"
        "    END IF;\n",
    ),
    (
        "    -- Current versions, read after the lock (a new snapshot per statement), and the\n",
        "    -- Current versions (read in a later snapshot than the agent's row: a commit in\n"
        "    -- between changed the row, and the update below then finds nothing), and the\n",
    ),
    (
        (
            "    -- The writes.\n",
            "    RETURNING id INTO commit_ts;\n",
        ),
        "    -- The writes, the agent's row first. Its update takes the row's lock, which orders\n"
        "    -- every writer of the agent's records and steps, and finds no row if the agent\n"
        "    -- changed since it was read (a commit, an operator, the lease): then nothing is\n"
        "    -- written and the general path runs. A lock taken when reading would cost a WAL\n"
        "    -- record of its own on every commit (docs/architecture.md, \"The commit function\").\n"
        "    v_commit_ts := nextval(pg_get_serial_sequence('agents_commit', 'id'));\n"
        "    UPDATE agents_agent SET\n"
        "        state = a.state, last_activity_at = a.last_activity_at,\n"
        "        last_commit_ts = v_commit_ts,\n"
        "        steps_done = a.steps_done, steps_pending = a.steps_pending,\n"
        "        steps_failed = a.steps_failed, last_step = a.last_step, finished_at = a.finished_at,\n"
        "        lease_owner = a.lease_owner, lease_host = a.lease_host, lease_pid = a.lease_pid,\n"
        "        lease_expires_at = a.lease_expires_at, lease_epoch = a.lease_epoch\n"
        "    WHERE id = a.id AND xmin = v_xmin;\n"
        "    IF NOT FOUND THEN\n"
        "        versions := NULL;\n"
        "        lease_epoch := NULL;\n"
        "        RETURN;  -- changed since it was read: the general path\n"
        "    END IF;\n"
        "    commit_ts := v_commit_ts;\n"
        "\n"
        "    INSERT INTO agents_commit (id, txn_id, namespace, committed_at, op_count)\n"
        "    VALUES (commit_ts, p_txn_id, p_namespace, v_now, cardinality(p_keys));\n",
    ),
    (
        (
            "    INSERT INTO agents_record (agent_id, key, version, commit_ts, deleted, updated_at,\n",
            "        waits_for_input = excluded.waits_for_input;\n",
        ),
        "    -- Records and steps: an UPDATE of the row a key has, an INSERT for a key new to\n"
        "    -- the agent, each by its identity index. The agent's row lock orders every\n"
        "    -- writer of them, and the versions read above say which keys exist.\n"
        "    FOR i IN 1 .. cardinality(p_keys) LOOP\n"
        "        IF versions[i] = 1 THEN\n"
        "            INSERT INTO agents_record (agent_id, key, version, commit_ts, deleted,\n"
        "                                       updated_at, waits_for_input)\n"
        "            VALUES (a.id, p_keys[i], 1, statehouse_commit.commit_ts, false, v_now,\n"
        f"                    strpos(p_values[i], '{values_once.WAITING}') > 0);\n"
        "        ELSE\n"
        "            UPDATE agents_record SET\n"
        "                version = versions[i], commit_ts = statehouse_commit.commit_ts,\n"
        "                deleted = false, updated_at = v_now,\n"
        f"                waits_for_input = strpos(p_values[i], '{values_once.WAITING}') > 0\n"
        "            WHERE agent_id = a.id AND key = p_keys[i];\n"
        "        END IF;\n"
        "    END LOOP;\n",
    ),
    (
        (
            "    IF v_has_steps THEN\n        INSERT INTO agents_step (",
            "                THEN excluded.started_at ELSE agents_step.started_at END;\n",
        ),
        "    IF v_has_steps THEN\n"
        "        FOREACH v_step IN ARRAY v_steps LOOP\n"
        "            v_version := versions[array_position(p_keys, v_step.key)];\n"
        "            UPDATE agents_step SET\n"
        "                status = v_step.status, model = v_step.model,\n"
        "                tokens_in = v_step.tokens_in, tokens_out = v_step.tokens_out,\n"
        "                cost = v_step.cost, policy = v_step.policy, version = v_version,\n"
        "                ended_at = CASE WHEN v_step.status IN ('done', 'failed') THEN v_now END,\n"
        "                started_at = CASE\n"
        "                    WHEN status IN ('done', 'failed') AND v_step.status = 'pending'\n"
        "                    THEN v_now ELSE started_at END\n"
        "            WHERE agent_id = a.id AND key = v_step.key;\n"
        "            IF NOT FOUND THEN\n"
        "                INSERT INTO agents_step (agent_id, key, number, status, model, tokens_in,\n"
        "                                         tokens_out, cost, policy, version, started_at,\n"
        "                                         ended_at)\n"
        "                VALUES (a.id, v_step.key, v_step.number, v_step.status, v_step.model,\n"
        "                        v_step.tokens_in, v_step.tokens_out, v_step.cost, v_step.policy,\n"
        "                        v_version, v_now,\n"
        "                        CASE WHEN v_step.status IN ('done', 'failed') THEN v_now END);\n"
        "            END IF;\n"
        "        END LOOP;\n",
    ),
]

FUNCTION = cheaper.edited(values_once.FUNCTION, EDITS)

# Building a BRIN index summarizes every range of pages, the last one too, which is still
# being filled: each commit there would widen that summary (WAL again). VACUUM leaves a
# partial range unsummarized, so the index is left as VACUUM would leave it.
UNSUMMARIZE_LAST_RANGE = (
    "SELECT brin_desummarize_range('commit_committed_at', greatest(0, "
    "pg_relation_size('agents_commit') / current_setting('block_size')::bigint - 1))"
)


def unconstrained(to: str, related_name: str, **options: bool) -> models.ForeignKey:
    """A store reference as it is from here on: no foreign-key constraint
    (docs/architecture.md, "References without constraints")."""
    return models.ForeignKey(
        db_constraint=False,
        on_delete=models.deletion.CASCADE,
        related_name=related_name,
        to=to,
        **options,
    )


# (model, field, the field without its constraint)
UNCONSTRAINED = [
    ("record", "agent", unconstrained("agents.agent", "records", db_index=False)),
    ("step", "agent", unconstrained("agents.agent", "steps", db_index=False)),
    ("version", "agent", unconstrained("agents.agent", "+", db_index=False)),
    ("version", "commit", unconstrained("agents.commit", "versions")),
]


class OnPostgreSQL(Operation):
    """`operation` in the migration state everywhere, and in the database on PostgreSQL
    only: SQLite keeps its table as it is (its ALTER would copy the table)."""

    reversible = True

    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    def deconstruct(self):  # type: ignore[no-untyped-def]  # Operation's own signature
        return self.__class__.__name__, [self.operation], {}

    def state_forwards(self, app_label, state):  # type: ignore[no-untyped-def]
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{self.operation.describe()} (in the database on PostgreSQL only)"


class Migration(migrations.Migration):
    dependencies = [("agents", "0005_commit_ids_in_time_order")]

    operations = [
        squashed.postgresql_only(FUNCTION, values_once.FUNCTION),
        OnPostgreSQL(migrations.RemoveIndex(model_name="commit", name="commit_committed_at")),
        OnPostgreSQL(
            migrations.AddIndex(
                model_name="commit",
                index=statehouse_agents.models.TimeOrderIndex(
                    fields=["committed_at"], name="commit_committed_at"
                ),
            )
        ),
        squashed.postgresql_only(UNSUMMARIZE_LAST_RANGE, None),
        *(
            OnPostgreSQL(migrations.AlterField(model_name=model, name=name, field=field))
            for model, name, field in UNCONSTRAINED
        ),
    ]
