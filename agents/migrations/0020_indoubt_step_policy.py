"""Step policies (docs/contract.md §3, §7): the `policy` column of a step row, and the
PostgreSQL commit function `statehouse_commit` replaced so that it writes that column too
(the general path writes it through `STEP_VALUE_COLUMNS` of agents/store/projection.py).

The function is 0019's with `policy` added to its step INSERT and its ON CONFLICT update;
its signature is unchanged, so CREATE OR REPLACE swaps it in place. Going back restores
0019's function. SQLite has no such function: only the column is added there.
"""

import importlib

from django.db import migrations, models

FUNCTION = r"""
CREATE OR REPLACE FUNCTION statehouse_commit(
    p_txn_id uuid,
    p_namespace text,
    p_agent_id text,
    p_keys text[],
    p_values text[],
    p_expected integer[],
    p_steps jsonb,
    p_leasing boolean,
    p_owner text,
    p_host text,
    p_pid integer,
    p_lease_seconds double precision,
    p_held_epoch bigint,
    p_guard jsonb,
    OUT commit_ts bigint,
    OUT versions integer[],
    OUT lease_epoch bigint
) LANGUAGE plpgsql AS $fn$
DECLARE
    a agents_agent%ROWTYPE;
    v_now timestamptz := statement_timestamp();
    v_lease interval := make_interval(secs => p_lease_seconds);
    v_done integer := 0;
    v_pending integer := 0;
    v_failed integer := 0;
    v_max_number integer;
    v_has_steps boolean := jsonb_array_length(p_steps) > 0;
    v_conflict boolean;
BEGIN
    -- The agent's row is the lock that orders its commits (docs/contract.md §2).
    SELECT * INTO a FROM agents_agent
    WHERE namespace = p_namespace AND agent_id = p_agent_id FOR UPDATE;
    IF NOT FOUND OR NOT (to_jsonb(a) @> p_guard) THEN
        RETURN;  -- a new agent, or a state the general path handles
    END IF;

    -- Current versions, read after the lock (a new snapshot per statement), and the
    -- compare-and-set expectations.
    SELECT array_agg(coalesce(r.version, 0) + 1 ORDER BY o.ord),
           bool_or(o.expected IS NOT NULL AND NOT (
               o.expected = coalesce(r.version, 0)
               OR (o.expected = 0 AND (r.version IS NULL OR r.deleted))))
    INTO versions, v_conflict
    FROM unnest(p_keys, p_expected) WITH ORDINALITY AS o(key, expected, ord)
    LEFT JOIN agents_record r ON r.agent_id = a.id AND r.key = o.key;
    IF v_conflict THEN
        versions := NULL;
        RETURN;  -- a conflict: the general path raises ConflictError
    END IF;

    -- Leases and fencing (agents/store/leases.py).
    IF p_leasing THEN
        IF p_held_epoch IS NOT NULL AND p_held_epoch <> a.lease_epoch THEN
            versions := NULL;
            RETURN;  -- taken over since: LeaseLostError
        END IF;
        IF a.lease_owner <> '' AND (p_owner IS NULL OR a.lease_owner <> p_owner) THEN
            versions := NULL;
            RETURN;  -- held by another (LeaseHeldError), or taken over when lapsed (counted)
        END IF;
        IF p_owner IS NOT NULL THEN
            IF NOT (a.lease_owner = p_owner AND a.lease_expires_at IS NOT NULL
                    AND a.lease_expires_at - v_now > v_lease / 2) THEN
                IF a.lease_owner <> p_owner THEN
                    a.lease_epoch := a.lease_epoch + 1;
                END IF;
                a.lease_owner := p_owner;
                a.lease_host := p_host;
                a.lease_pid := p_pid;
                a.lease_expires_at := v_now + v_lease;
            END IF;
            lease_epoch := a.lease_epoch;
        END IF;
    END IF;

    -- The step projection (agents/store/projection.py): counters, last step, and one
    -- step number per key, checked only for keys new to the agent.
    IF v_has_steps THEN
        IF EXISTS (
            SELECT 1 FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x
            JOIN agents_step o ON o.agent_id = a.id AND o.number = x.number AND o.key <> x.key
            WHERE NOT EXISTS (
                SELECT 1 FROM agents_step k WHERE k.agent_id = a.id AND k.key = x.key)
        ) THEN
            versions := NULL;
            lease_epoch := NULL;
            RETURN;  -- two keys for one step number: ValidationError
        END IF;
        SELECT count(*) FILTER (WHERE x.status = 'done')
                   - count(*) FILTER (WHERE o.status = 'done'),
               count(*) FILTER (WHERE x.status = 'pending')
                   - count(*) FILTER (WHERE o.status = 'pending'),
               count(*) FILTER (WHERE x.status = 'failed')
                   - count(*) FILTER (WHERE o.status = 'failed'),
               max(x.number)
        INTO v_done, v_pending, v_failed, v_max_number
        FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x
        LEFT JOIN agents_step o ON o.agent_id = a.id AND o.key = x.key;
        a.steps_done := greatest(0, a.steps_done + v_done);
        a.steps_pending := greatest(0, a.steps_pending + v_pending);
        a.steps_failed := greatest(0, a.steps_failed + v_failed);
        a.last_step := greatest(a.last_step, v_max_number);
        -- A process writing the agent's steps runs it.
        IF a.has_task AND a.state <> 'active' THEN
            a.state := 'active';
            a.finished_at := NULL;
        END IF;
    END IF;
    IF v_now - a.last_activity_at >= interval '1 second' THEN
        a.last_activity_at := v_now;
    END IF;

    -- The writes.
    INSERT INTO agents_commit (txn_id, namespace, committed_at, op_count)
    VALUES (p_txn_id, p_namespace, v_now, cardinality(p_keys))
    RETURNING id INTO commit_ts;

    INSERT INTO agents_version (agent_id, key, version, commit_id, value_json, deleted)
    SELECT a.id, o.key, o.version, commit_ts, o.value_json, false
    FROM unnest(p_keys, versions, p_values) AS o(key, version, value_json);

    INSERT INTO agents_record (agent_id, key, version, commit_ts, value_json, deleted,
                               updated_at)
    SELECT a.id, o.key, o.version, commit_ts, o.value_json, false, v_now
    FROM unnest(p_keys, versions, p_values) AS o(key, version, value_json)
    ON CONFLICT (agent_id, key) DO UPDATE SET
        version = excluded.version, commit_ts = excluded.commit_ts,
        value_json = excluded.value_json, deleted = excluded.deleted,
        updated_at = excluded.updated_at;

    -- Step columns: those the general path writes (STEP_COLUMNS of projection.py).
    IF v_has_steps THEN
        INSERT INTO agents_step (agent_id, key, number, status, model, tokens_in, tokens_out,
                                 cost, policy, version, started_at, ended_at)
        SELECT a.id, x.key, x.number, x.status, x.model, x.tokens_in, x.tokens_out, x.cost,
               x.policy, o.version, v_now,
               CASE WHEN x.status IN ('done', 'failed') THEN v_now END
        FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x
        JOIN unnest(p_keys, versions) AS o(key, version) ON o.key = x.key
        ON CONFLICT (agent_id, key) DO UPDATE SET
            status = excluded.status, model = excluded.model,
            tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out,
            cost = excluded.cost, policy = excluded.policy, version = excluded.version,
            ended_at = excluded.ended_at,
            started_at = CASE
                WHEN agents_step.status IN ('done', 'failed') AND excluded.status = 'pending'
                THEN excluded.started_at ELSE agents_step.started_at END;
    END IF;

    UPDATE agents_agent SET
        state = a.state, last_activity_at = a.last_activity_at, last_commit_ts = commit_ts,
        steps_done = a.steps_done, steps_pending = a.steps_pending,
        steps_failed = a.steps_failed, last_step = a.last_step, finished_at = a.finished_at,
        lease_owner = a.lease_owner, lease_host = a.lease_host, lease_pid = a.lease_pid,
        lease_expires_at = a.lease_expires_at, lease_epoch = a.lease_epoch
    WHERE id = a.id;
END
$fn$;
"""


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)  # no placeholders: `%ROWTYPE` as written


def restore_previous_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("statehouse_agents.migrations.0019_commit_path")
        schema_editor.execute(previous.FUNCTION, params=None)


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
