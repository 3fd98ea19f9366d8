"""Statehouse's schema: migrations 0001 to 0021 squashed into one.

A database that has applied all of 0001 to 0021 takes this migration as applied; a new
one runs it. A database part-way through that range must first be migrated to 0021 with
the release that shipped it (docs/deploy.md, "Upgrades without downtime").

On PostgreSQL it also creates what the models cannot say: the `pg_trgm` extension the two
trigram search indexes need, a fillfactor of 80 on the agents table so that a step's
update of its agent's row stays on its page (HOT), and the commit function
`statehouse_commit` (docs/architecture.md, "The commit function"). SQLite gets none of
these.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import statehouse_agents.models

# The common commit in one server-side call. It does what agents/store/commit.py does for
# the common case (one existing agent, writes of step and other keys): lock the agent's
# row, check compare-and-set expectations, the lease and its fencing, number the versions,
# then write the commit, the versions, the current records, the step rows and the agent's
# row. Anything else, and any check that fails, it hands back (`commit_ts` NULL, nothing
# written) to the general Python path, which runs in the same transaction and raises the
# typed error, so each rule and its message live in one place.
FUNCTION = r"""CREATE OR REPLACE FUNCTION statehouse_commit(
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
               x.policy, o.version, v_now, CASE WHEN x.status IN ('done', 'failed') THEN v_now END
        FROM jsonb_populate_recordset(NULL::agents_step, p_steps) x
        JOIN unnest(p_keys, versions) AS o(key, version) ON o.key = x.key
        ON CONFLICT (agent_id, key) DO UPDATE SET
            status = excluded.status, model = excluded.model,
            tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out,
            cost = excluded.cost, policy = excluded.policy, version = excluded.version, ended_at = excluded.ended_at,
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

DROP = """
DROP FUNCTION IF EXISTS statehouse_commit(uuid, text, text, text[], text[], integer[], jsonb,
    boolean, text, text, integer, double precision, bigint, jsonb);
"""

# Every model's primary key.
ID = ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID'))


def postgresql_only(forwards: str, backwards: str | None):
    """A RunPython operation that executes `forwards` (and `backwards`, if any, when
    unapplied) on PostgreSQL and does nothing on SQLite. The SQL runs without
    placeholders, so the function's `%ROWTYPE` stays as written."""

    def run(sql: str | None):
        def execute(apps, schema_editor):
            if sql and schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(sql, params=None)

        return execute

    return migrations.RunPython(run(forwards), run(backwards), elidable=False)


class Migration(migrations.Migration):
    initial = True

    replaces = [
        ("agents", "0001_initial"),
        ("agents", "0002_lease_epoch"),
        ("agents", "0003_search_trigram_indexes"),
        ("agents", "0004_drop_indexes_covered_by_identity"),
        ("agents", "0005_api_tokens"),
        ("agents", "0006_resume_attempt_timed_out"),
        ("agents", "0012_metric_counter"),
        ("agents", "0013_operator_actions"),
        ("agents", "0014_step_values_once"),
        ("agents", "0015_step_llm_metadata"),
        ("agents", "0016_lease_watch"),
        ("agents", "0017_operator_edits_forks_approvals"),
        ("agents", "0018_operator_controls"),
        ("agents", "0019_commit_path"),
        ("agents", "0020_indoubt_step_policy"),
        ("agents", "0021_bulk_dashboard_indexes"),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Backwards, the extension stays: other objects may use it.
        postgresql_only("CREATE EXTENSION IF NOT EXISTS pg_trgm", None),
        migrations.CreateModel(name='MetricCounter', fields=[
            ID,
            ('name', models.CharField(max_length=64, unique=True)),
            ('value', models.PositiveBigIntegerField(default=0)),
        ]),
        migrations.CreateModel(name='Agent', options={
            'indexes': [
                models.Index(fields=['state', '-last_activity_at'], name='agent_state_activity'),
                models.Index(fields=['-last_activity_at'], name='agent_activity'),
                models.Index(condition=models.Q(('state', 'active')), fields=['-last_activity_at'], name='agent_active_activity'),
                models.Index(fields=['lease_expires_at'], name='agent_lease_expiry'),
                models.Index(condition=models.Q(('lease_owner', ''), _negated=True), fields=['lease_owner'], name='agent_lease_owner'),
                models.Index(fields=['agent_id'], name='agent_agent_id'),
                models.Index(condition=models.Q(('waiting_since__isnull', False)), fields=['-waiting_since'], name='agent_waiting'),
                statehouse_agents.models.TrigramIndex(fields=['agent_id'], name='agent_id_trgm'),
                statehouse_agents.models.TrigramIndex(fields=['task_summary'], name='agent_task_trgm'),
            ],
            'constraints': [
                models.UniqueConstraint(fields=('namespace', 'agent_id'), name='agent_identity'),
            ],
        }, fields=[
            ID,
            ('namespace', models.CharField(max_length=255)),
            ('agent_id', models.CharField(max_length=255)),
            ('state', models.CharField(choices=[('idle', 'Idle (no task)'), ('active', 'Active'), ('resuming', 'Resuming'), ('completed', 'Completed'), ('failed', 'Failed'), ('paused', 'Paused by an operator'), ('cancelled', 'Cancelled by an operator')], default='idle', max_length=16)),
            ('created_at', models.DateTimeField()),
            ('last_activity_at', models.DateTimeField()),
            ('last_commit_ts', models.BigIntegerField(default=0)),
            ('has_task', models.BooleanField(default=False)),
            ('task_summary', models.CharField(blank=True, default='', max_length=200)),
            ('steps_done', models.PositiveIntegerField(default=0)),
            ('steps_pending', models.PositiveIntegerField(default=0)),
            ('steps_failed', models.PositiveIntegerField(default=0)),
            ('last_step', models.IntegerField(blank=True, null=True)),
            ('finished_at', models.DateTimeField(blank=True, null=True)),
            ('error', models.TextField(blank=True, default='')),
            ('resume_entry_point', models.CharField(blank=True, default='', max_length=255)),
            ('lease_owner', models.CharField(blank=True, default='', max_length=64)),
            ('lease_host', models.CharField(blank=True, default='', max_length=255)),
            ('lease_pid', models.IntegerField(blank=True, null=True)),
            ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
            ('lease_epoch', models.PositiveBigIntegerField(default=0)),
            ('auto_resume', models.BooleanField(default=False)),
            ('lease_watch', models.TextField(blank=True, default='')),
            ('forked_at_ts', models.BigIntegerField(blank=True, null=True)),
            ('forked_from', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='forks', to='agents.agent')),
            ('waiting_since', models.DateTimeField(blank=True, null=True)),
            ('paused_at', models.DateTimeField(blank=True, null=True)),
            ('paused_from', models.CharField(blank=True, default='', max_length=16)),
        ]),
        migrations.CreateModel(name='ApiToken', options={
            'verbose_name': 'API token',
            'ordering': ['-created_at', '-id'],
        }, fields=[
            ID,
            ('name', models.CharField(blank=True, default='', max_length=100)),
            ('prefix', models.CharField(help_text="The token's first characters.", max_length=16)),
            ('digest', models.CharField(editable=False, max_length=64, unique=True)),
            ('namespaces', models.JSONField(blank=True, default=list)),
            ('read_only', models.BooleanField(default=False)),
            ('rate_limit', models.PositiveIntegerField(default=0, help_text='Requests per minute; 0: STATEHOUSE_API_RATE_LIMIT.')),
            ('created_at', models.DateTimeField(auto_now_add=True)),
            ('expires_at', models.DateTimeField(blank=True, null=True)),
            ('last_used_at', models.DateTimeField(blank=True, null=True)),
            ('revoked_at', models.DateTimeField(blank=True, null=True)),
            ('window_start', models.DateTimeField(blank=True, editable=False, null=True)),
            ('window_count', models.PositiveIntegerField(default=0, editable=False)),
            ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='statehouse_api_tokens', to=settings.AUTH_USER_MODEL)),
        ]),
        migrations.CreateModel(name='Approval', options={
            'ordering': ['-requested_at', '-id'],
            'indexes': [
                models.Index(fields=['agent', '-requested_at'], name='approval_agent'),
            ],
            'constraints': [
                models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('agent',), name='one_pending_approval'),
            ],
        }, fields=[
            ID,
            ('name', models.CharField(max_length=255)),
            ('kind', models.CharField(choices=[('request', 'Request from the agent'), ('interrupt', 'LangGraph interrupt')], default='request', max_length=16)),
            ('payload', models.JSONField(blank=True, default=dict)),
            ('status', models.CharField(choices=[('pending', 'Pending'), ('approved', 'Approved'), ('rejected', 'Rejected')], default='pending', max_length=16)),
            ('requested_at', models.DateTimeField()),
            ('decided_by', models.CharField(blank=True, default='', max_length=255)),
            ('decided_at', models.DateTimeField(blank=True, null=True)),
            ('comment', models.TextField(blank=True, default='')),
            ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='approvals', to='agents.agent')),
        ]),
        migrations.CreateModel(name='Commit', options={
            'indexes': [models.Index(fields=['committed_at'], name='commit_committed_at')],
        }, fields=[
            ID,
            ('txn_id', models.UUIDField(default=uuid.uuid4, unique=True)),
            ('namespace', models.CharField(max_length=255)),
            ('committed_at', models.DateTimeField()),
            ('op_count', models.PositiveIntegerField()),
        ]),
        migrations.CreateModel(name='OperatorAction', options={
            'ordering': ['-at', '-id'],
            'indexes': [
                models.Index(fields=['agent', '-at'], name='operator_action_agent'),
                models.Index(fields=['action', '-at'], name='operator_action_action'),
                models.Index(fields=['-at', '-id'], name='operator_action_at'),
            ],
        }, fields=[
            ID,
            ('actor', models.CharField(max_length=255)),
            ('at', models.DateTimeField()),
            ('namespace', models.CharField(blank=True, default='', max_length=255)),
            ('agent_name', models.CharField(blank=True, default='', max_length=255)),
            ('action', models.CharField(choices=[('resume', 'Resume'), ('cancel', 'Cancel'), ('pause', 'Pause'), ('unpause', 'Unpause'), ('edit', 'Edit a key'), ('fork', 'Fork'), ('approve', 'Approve'), ('reject', 'Reject'), ('step_decision', 'Step decision'), ('token_created', 'API token created'), ('token_revoked', 'API token revoked'), ('answer', 'Answer')], max_length=32)),
            ('reason', models.TextField(blank=True, default='')),
            ('before', models.JSONField(blank=True, null=True)),
            ('after', models.JSONField(blank=True, null=True)),
            ('detail', models.JSONField(blank=True, default=dict)),
            ('agent', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='operator_actions', to='agents.agent')),
        ]),
        migrations.CreateModel(name='Record', options={
            'constraints': [
                models.UniqueConstraint(fields=('agent', 'key'), name='record_identity'),
            ],
            'indexes': [
                models.Index(condition=models.Q(('deleted', False), ('value_json__contains', '"waiting":"input"')), fields=['agent', 'key'], name='record_waiting_input'),
            ],
        }, fields=[
            ID,
            ('key', models.CharField(max_length=255)),
            ('version', models.PositiveIntegerField()),
            ('commit_ts', models.BigIntegerField()),
            ('value_json', models.TextField(blank=True, null=True)),
            ('deleted', models.BooleanField(default=False)),
            ('updated_at', models.DateTimeField()),
            ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='records', to='agents.agent')),
        ]),
        migrations.CreateModel(name='ResumeRequest', options={
            'indexes': [
                models.Index(condition=models.Q(('status', 'queued')), fields=['run_after', 'id'], name='resume_due'),
                models.Index(condition=models.Q(('status', 'claimed')), fields=['claim_expires_at'], name='resume_claimed'),
            ],
            'constraints': [
                models.UniqueConstraint(condition=models.Q(('status__in', ('queued', 'claimed'))), fields=('agent',), name='one_open_resume_per_agent'),
            ],
        }, fields=[
            ID,
            ('status', models.CharField(choices=[('queued', 'Queued'), ('claimed', 'Claimed by a worker'), ('succeeded', 'Succeeded'), ('stopped', 'Stopped before finishing'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=16)),
            ('source', models.CharField(choices=[('dashboard', 'Dashboard'), ('admin', 'Admin'), ('command', 'Command'), ('client', 'Client'), ('auto', 'Automatic (crash detected)')], max_length=16)),
            ('requested_by', models.CharField(blank=True, default='', max_length=255)),
            ('requested_at', models.DateTimeField()),
            ('run_after', models.DateTimeField()),
            ('attempts', models.PositiveIntegerField(default=0)),
            ('claimed_by', models.CharField(blank=True, default='', max_length=255)),
            ('claim_expires_at', models.DateTimeField(blank=True, null=True)),
            ('finished_at', models.DateTimeField(blank=True, null=True)),
            ('last_error', models.TextField(blank=True, default='')),
            ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='resume_requests', to='agents.agent')),
        ]),
        migrations.CreateModel(name='ResumeAttempt', options={
            'ordering': ['-started_at', '-id'],
            'indexes': [
                models.Index(fields=['agent', '-started_at'], name='attempt_agent_started'),
            ],
        }, fields=[
            ID,
            ('number', models.PositiveIntegerField()),
            ('requested_by', models.CharField(blank=True, default='', max_length=255)),
            ('worker', models.CharField(max_length=255)),
            ('host', models.CharField(max_length=255)),
            ('pid', models.IntegerField(blank=True, null=True)),
            ('entry_point', models.CharField(blank=True, default='', max_length=255)),
            ('started_at', models.DateTimeField()),
            ('ended_at', models.DateTimeField(blank=True, null=True)),
            ('outcome', models.CharField(choices=[('running', 'Running'), ('succeeded', 'Succeeded'), ('stopped', 'Returned without finishing'), ('failed', 'Failed'), ('crashed', 'Crashed'), ('lost', 'Worker lost'), ('shutdown', 'Worker shut down'), ('timed_out', 'Timed out'), ('cancelled', 'Stopped: the agent was cancelled')], default='running', max_length=16)),
            ('exit_code', models.IntegerField(blank=True, null=True)),
            ('error', models.TextField(blank=True, default='')),
            ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='resume_attempts', to='agents.agent')),
            ('request', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='agents.resumerequest')),
        ]),
        migrations.CreateModel(name='Step', options={
            'ordering': ['agent', 'number', 'key'],
            'indexes': [
                models.Index(fields=['agent', 'number'], name='step_agent_number'),
                models.Index(condition=models.Q(models.Q(('model', ''), _negated=True), ('tokens_in__isnull', False), ('tokens_out__isnull', False), ('cost__isnull', False), _connector='OR'), fields=['started_at', 'agent'], name='step_llm_usage'),
            ],
            'constraints': [
                models.UniqueConstraint(fields=('agent', 'key'), name='step_identity'),
            ],
        }, fields=[
            ID,
            ('key', models.CharField(max_length=255)),
            ('number', models.IntegerField()),
            ('status', models.CharField(choices=[('pending', 'Pending'), ('done', 'Done'), ('failed', 'Failed'), ('unknown', 'Unknown')], max_length=16)),
            ('version', models.PositiveIntegerField()),
            ('started_at', models.DateTimeField()),
            ('ended_at', models.DateTimeField(blank=True, null=True)),
            ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='agents.agent')),
            ('cost', models.FloatField(blank=True, null=True)),
            ('model', models.CharField(blank=True, default='', max_length=255)),
            ('tokens_in', models.BigIntegerField(blank=True, null=True)),
            ('tokens_out', models.BigIntegerField(blank=True, null=True)),
            ('policy', models.CharField(choices=[('retry', 'Retry'), ('skip', 'Skip'), ('review', 'Review')], default='retry', max_length=8)),
        ]),
        migrations.CreateModel(name='Task', fields=[
            ID,
            ('value_json', models.TextField()),
            ('summary', models.CharField(blank=True, default='', max_length=200)),
            ('version', models.PositiveIntegerField()),
            ('written_at', models.DateTimeField()),
            ('agent', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='task', to='agents.agent')),
        ]),
        migrations.CreateModel(name='Version', options={
            'indexes': [
                models.Index(fields=['agent', 'commit'], name='version_replay'),
            ],
            'constraints': [
                models.UniqueConstraint(fields=('agent', 'key', 'version'), name='version_identity'),
            ],
        }, fields=[
            ID,
            ('key', models.CharField(max_length=255)),
            ('version', models.PositiveIntegerField()),
            ('value_json', models.TextField(blank=True, null=True)),
            ('deleted', models.BooleanField(default=False)),
            ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='agents.agent')),
            ('commit', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='agents.commit')),
        ]),
        postgresql_only(
            "ALTER TABLE agents_agent SET (fillfactor = 80)",
            "ALTER TABLE agents_agent RESET (fillfactor)",
        ),
        postgresql_only(FUNCTION, DROP),
    ]
