#!/usr/bin/env python
"""Fill a fresh PostgreSQL database with a realistic fleet of agents, fast.

    .venv/bin/python bench/seed.py --database-url postgres://postgres@127.0.0.1:5432/bench_agents
    .venv/bin/python bench/seed.py ... --agents 100000 --steps-per-agent 10

The database is DROPPED and created anew (its name must contain "bench"), migrated, then
filled by a few `INSERT ... SELECT ... generate_series` statements run by the server
itself (no row crosses the network), so 100,000 agents and 1,000,000 steps take well under
a minute. What it creates (see bench/README-resume.md):

- `agents` agents `agent-000001`… (namespace `default`, every tenth in `team-a`, every
  tenth+1 in `team-b`), each with a task row, `steps_per_agent` steps (`step:0`…), step
  counters, and `last_activity_at` spread over the last 30 days. Statuses, by agent number
  modulo 20: 60 % completed (every step done), 20 % interrupted (state active, no lease,
  last step pending), 10 % running (a lease held until tomorrow, last step pending), 5 %
  failed (last step failed), 5 % resuming (a queued resume request, no lease).
- one big agent `agent-big` written through the real store
  (`statehouse_agents.store.writes.commit`):
  a task, 1,000 steps (the last one pending, the rest done), 100 keys `note:000`…`note:099`
  with 3 versions each, so Commit/Version/Record rows exist for it (for a dashboard bench);
  it is interrupted. The bulk agents' steps have their current values as versions of one
  seed commit, and records naming them (no earlier versions: the dashboard's lists, counts
  and steps read the agent, task and step tables, and a step's value).

`seed(database_url, agents=..., steps_per_agent=...)` is the reusable entry point: it sets
Django up on that database (unless already set up on it) and returns a `SeedSummary`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_agents"
BIG_AGENT = "agent-big"
BIG_AGENT_STEPS = 1000
BIG_AGENT_KEYS = 100
BIG_AGENT_KEY_VERSIONS = 3

_RUNNING_SQL = "(i % 20 IN (16, 17))"


@dataclass(frozen=True)
class SeedSummary:
    database_url: str
    agents: int
    steps: int
    tasks: int
    resume_requests: int
    big_agent: str
    big_agent_steps: int
    big_agent_keys: int
    seconds: float
    statuses: dict[str, int]


def log(message: str) -> None:
    print(f"[seed] {message}", file=sys.stderr, flush=True)


def reset_database(url: str, *, allow_drop: bool = False) -> None:
    """Drop and create the PostgreSQL database named by `url`."""
    import psycopg
    from psycopg import sql

    name = psycopg.conninfo.conninfo_to_dict(url).get("dbname") or ""
    if "bench" not in str(name) and not allow_drop:
        raise SystemExit(f"refusing to drop database {name!r}: its name has no 'bench'")
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        ident = sql.Identifier(str(name))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))


def setup_django(url: str) -> None:
    """Point Django at `url` before it is set up; refuse if it is set up on another one."""
    from django.conf import settings

    if settings.configured:
        if os.environ.get("DATABASE_URL") != url:
            raise RuntimeError(
                f"Django is already set up on {os.environ.get('DATABASE_URL')!r}, not {url!r}"
            )
        return
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    import django

    django.setup()


def seed(
    database_url: str = DEFAULT_URL,
    *,
    agents: int = 100_000,
    steps_per_agent: int = 10,
    big_agent: bool = True,
    reset: bool = True,
    allow_drop: bool = False,
) -> SeedSummary:
    """Create (drop first if `reset`), migrate and fill the database; return what it holds."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("the seed needs PostgreSQL (generate_series); pass a postgres:// URL")
    if agents < 1 or steps_per_agent < 1:
        raise SystemExit("--agents and --steps-per-agent must be at least 1")
    started = time.perf_counter()
    if reset:
        reset_database(database_url, allow_drop=allow_drop)
    setup_django(database_url)
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", interactive=False, verbosity=0)
    log(f"migrated; inserting {agents:,} agents and {agents * steps_per_agent:,} steps")

    from statehouse_agents.models import Agent, ResumeRequest

    from statehouse import steps as step

    # Integers and the models' named values only, formatted into the SQL: no parameters, so
    # `%` is the modulo operator.
    agents, steps, last = int(agents), int(steps_per_agent), int(steps_per_agent) - 1
    completed, active = _text(Agent.State.COMPLETED), _text(Agent.State.ACTIVE)
    failed, resuming = _text(Agent.State.FAILED), _text(Agent.State.RESUMING)
    done, pending, step_failed = _text(step.DONE), _text(step.PENDING), _text(step.FAILED)
    retry = _text(step.RETRY)
    queued, by_command = _text(ResumeRequest.Status.QUEUED), _text(ResumeRequest.Source.COMMAND)
    # Agent number modulo 20 -> stored state and lease, giving the operator statuses above.
    state_sql = f"""
        CASE
            WHEN i % 20 < 12 THEN {completed}
            WHEN i % 20 < 18 THEN {active}
            WHEN i % 20 = 18 THEN {failed}
            ELSE {resuming}
        END
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(
            f"""
            INSERT INTO agents_agent (
                namespace, agent_id, state, created_at, last_activity_at, last_commit_ts,
                has_task, task_summary, steps_done, steps_pending, steps_failed, last_step,
                finished_at, error, resume_entry_point,
                lease_owner, lease_host, lease_pid, lease_expires_at, lease_epoch,
                auto_resume, lease_watch, paused_from)
            SELECT
                CASE i % 10 WHEN 0 THEN 'team-a' WHEN 1 THEN 'team-b' ELSE 'default' END,
                'agent-' || lpad(i::text, 6, '0'),
                {state_sql},
                now() - make_interval(secs => (i * 7919) % 2592000) - interval '1 hour',
                now() - make_interval(secs => (i * 7919) % 2592000),
                0,
                true,
                'Summarize report #' || i || ' for customer ' || (i % 997),
                CASE WHEN i % 20 < 12 THEN {steps} ELSE {last} END,
                CASE WHEN i % 20 < 12 OR i % 20 = 18 THEN 0 ELSE 1 END,
                CASE WHEN i % 20 = 18 THEN 1 ELSE 0 END,
                {last},
                CASE WHEN i % 20 < 12 OR i % 20 = 18
                     THEN now() - make_interval(secs => (i * 7919) % 2592000) END,
                CASE WHEN i % 20 = 18 THEN 'step ' || {last} || ' failed: tool timeout'
                     ELSE '' END,
                '',
                CASE WHEN {_RUNNING_SQL} THEN md5(i::text) ELSE '' END,
                CASE WHEN {_RUNNING_SQL} THEN 'worker-' || (i % 7) ELSE '' END,
                CASE WHEN {_RUNNING_SQL} THEN 10000 + i % 50000 END,
                CASE WHEN {_RUNNING_SQL} THEN now() + interval '1 day' END,
                CASE WHEN {_RUNNING_SQL} THEN 1 ELSE 0 END,
                false, '', ''
            FROM generate_series(1, {agents}) AS i
            ORDER BY i
            """,
        )
        cursor.execute(
            """
            INSERT INTO agents_task (agent_id, value_json, summary, version, written_at)
            SELECT id,
                   json_build_object('task', task_summary, 'priority', id % 3)::text,
                   task_summary, 1, created_at
            FROM agents_agent
            """
        )
        cursor.execute(
            f"""
            INSERT INTO agents_step (
                agent_id, key, number, status, version, started_at, ended_at, model, policy)
            SELECT a.id, 'step:' || n, n, s.status,
                   CASE WHEN s.status = {pending} THEN 1 ELSE 2 END,
                   a.created_at + make_interval(secs => n * 60),
                   CASE WHEN s.status = {pending} THEN NULL
                        ELSE a.created_at + make_interval(secs => n * 60 + 30) END,
                   '', {retry}
            FROM agents_agent a
            CROSS JOIN generate_series(0, {last}) AS n
            CROSS JOIN LATERAL (
                SELECT CASE
                    WHEN n < {last} OR a.state = {completed} THEN {done}
                    WHEN a.state = {failed} THEN {step_failed}
                    ELSE {pending}
                END AS status
            ) s
            ORDER BY a.id, n
            """,
        )
        # The steps' current values: versions of one seed commit, and the records naming
        # them (neither the step rows nor the records keep a copy of a value).
        cursor.execute(
            "INSERT INTO agents_commit (txn_id, namespace, committed_at, op_count) "
            "VALUES (gen_random_uuid(), 'default', now(), 0) RETURNING id"
        )
        (seed_commit,) = cursor.fetchone()
        cursor.execute(
            f"""
            INSERT INTO agents_version (agent_id, key, version, commit_id, value_json, deleted)
            SELECT agent_id, key, version, {int(seed_commit)},
                   jsonb_strip_nulls(jsonb_build_object(
                       'status', status,
                       'action', jsonb_build_object('tool', 'search', 'query', 'part ' || number),
                       'result', CASE WHEN status = 'done'
                                      THEN jsonb_build_object('hits', number * 3 % 17) END,
                       'error', CASE WHEN status = 'failed' THEN '"tool timeout"'::jsonb END
                   ))::text,
                   false
            FROM agents_step
            """
        )
        cursor.execute(
            f"""
            INSERT INTO agents_record (
                agent_id, key, version, commit_ts, deleted, updated_at, waits_for_input)
            SELECT agent_id, key, version, {int(seed_commit)}, false, started_at, false
            FROM agents_step
            """
        )
        cursor.execute(
            f"""
            INSERT INTO agents_resumerequest (
                agent_id, status, source, requested_by, requested_at, run_after, attempts,
                claimed_by, claim_expires_at, finished_at, last_error)
            SELECT id, {queued}, {by_command}, 'seed', last_activity_at, last_activity_at, 0,
                   '', NULL, NULL, ''
            FROM agents_agent WHERE state = {resuming}
            """
        )
    log(f"bulk rows in {time.perf_counter() - started:.1f}s")
    if big_agent:
        _write_big_agent()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return _summary(database_url, time.perf_counter() - started)


def _text(value: str) -> str:
    """`value` as an SQL string literal; only for our own named values, never user input."""
    if "'" in value:
        raise ValueError(f"not a plain named value: {value!r}")
    return f"'{value}'"


def _write_big_agent() -> None:
    """Write `agent-big` through the store itself, so its history is real."""
    from statehouse_agents.store.writes import StagedOp, commit

    from statehouse import steps

    def op(key: str, value: object) -> StagedOp:
        return StagedOp(agent_id=BIG_AGENT, key=key, value_json=json.dumps(value), value=value)

    commit(namespace="default", ops=[op("task", {"task": "Crawl and summarize 1,000 pages"})])
    for start in range(0, BIG_AGENT_STEPS, 100):
        ops = []
        for n in range(start, min(start + 100, BIG_AGENT_STEPS)):
            if n == BIG_AGENT_STEPS - 1:
                value = {"action": {"fetch": f"page {n}"}, "status": steps.PENDING}
            else:
                value = {"action": {"fetch": f"page {n}"}, "status": steps.DONE, "result": n}
            ops.append(op(f"step:{n}", value))
        commit(namespace="default", ops=ops)
    for version in range(1, BIG_AGENT_KEY_VERSIONS + 1):
        commit(
            namespace="default",
            ops=[
                op(f"note:{k:03d}", {"text": f"note {k}", "revision": version})
                for k in range(BIG_AGENT_KEYS)
            ],
        )
    log(f"{BIG_AGENT}: {BIG_AGENT_STEPS} steps, {BIG_AGENT_KEYS} keys x {BIG_AGENT_KEY_VERSIONS}")


def _summary(url: str, seconds: float) -> SeedSummary:
    from django.db.models import Count
    from statehouse_agents.models import Agent, ResumeRequest, Step, Task

    statuses = dict(
        Agent.objects.annotate_status()
        .values_list("status_value")
        .annotate(n=Count("pk"))
        .order_by("status_value")
    )
    return SeedSummary(
        database_url=url,
        agents=Agent.objects.count(),
        steps=Step.objects.count(),
        tasks=Task.objects.count(),
        resume_requests=ResumeRequest.objects.count(),
        big_agent=BIG_AGENT,
        big_agent_steps=BIG_AGENT_STEPS,
        big_agent_keys=BIG_AGENT_KEYS,
        seconds=round(seconds, 1),
        statuses=statuses,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--steps-per-agent", type=int, default=10)
    parser.add_argument("--no-big-agent", action="store_true")
    parser.add_argument("--allow-drop", action="store_true", help="drop a non-'bench' database")
    args = parser.parse_args(argv)
    summary = seed(
        args.database_url,
        agents=args.agents,
        steps_per_agent=args.steps_per_agent,
        big_agent=not args.no_big_agent,
        allow_drop=args.allow_drop,
    )
    print(json.dumps(asdict(summary), indent=2))


if __name__ == "__main__":
    main()
