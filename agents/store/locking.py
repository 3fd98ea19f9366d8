"""Locking the agents' rows that order a commit, and reading what the commit builds on.

A commit locks the rows of the agents it touches in agent-id order, so two commits never
deadlock on each other. On PostgreSQL the row locks order the commits of one agent (and
so its commit_ts); on SQLite the write lock taken at BEGIN IMMEDIATE serializes every
commit anyway. The same statement reads the current version of each record named (and
the status of its step), so a commit needs one round trip before it writes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models.base import ModelState
from django.db.models.functions import Now
from django.utils import timezone
from statehouse_agents.models import Agent, AgentQuerySet, Record, Step
from statehouse_agents.store import sql
from statehouse_agents.store.operations import Current

_AGENT = Agent._meta.db_table
_RECORD = Record._meta.db_table
_STEP = Step._meta.db_table

AGENT_FIELDS = list(Agent._meta.concrete_fields)
_NAMES = [f.attname for f in AGENT_FIELDS]
_WIDTH = len(_NAMES)
_AGENT_ID_COLUMN = _NAMES.index("agent_id")
_COLUMN_TYPES = [f.get_internal_type() for f in AGENT_FIELDS]
_DATETIME_COLUMNS = [i for i, kind in enumerate(_COLUMN_TYPES) if kind == "DateTimeField"]
_BOOLEAN_COLUMNS = [i for i, kind in enumerate(_COLUMN_TYPES) if kind == "BooleanField"]

# SQLite binds at most SQLITE_MAX_VARIABLE_NUMBER parameters (32,766 in the builds we
# know); lists longer than this are read in pieces there. PostgreSQL takes one array.
SQLITE_CHUNK = 10_000

Records = dict[tuple[str, str], Current]

# An agent as a bulk operator action reads it: (pk, namespace, agent_id, status).
AgentRow = tuple[int, str, str, str]


def locked_agent(namespace: str, agent_id: str) -> Agent:
    """One agent's row, locked until the transaction ends, with its status (`status_value`)
    and the database's clock (`db_now`); NotFoundError if there is no such agent. What an
    operator's action or an approval reads before it writes."""
    from statehouse.errors import NotFoundError

    agent = (
        Agent.objects.select_for_update()
        .filter(namespace=namespace, agent_id=agent_id)
        .annotate_status()
        .annotate(db_now=Now())
        .first()
    )
    if agent is None:
        raise NotFoundError(f"no agent {agent_id!r} in namespace {namespace!r}")
    return agent


def lock_rows(agents: AgentQuerySet) -> list[AgentRow]:
    """Lock the rows of `agents` in pk order and read each one's `AgentRow`: what a bulk
    operator action (a chunk of a bulk cancel or resume) reads before it writes."""
    return [
        (agent.pk, agent.namespace, agent.agent_id, agent.status_value)
        for agent in agents.select_for_update()
        .annotate_status()
        .only("pk", "namespace", "agent_id")
        .order_by("pk")
    ]


@functools.cache
def _lock_sql(agent_count: int, key_count: int) -> str:
    """Lock the agents' rows and read, in the same statement, their records of some keys.

    PostgreSQL binds the lists as arrays (one statement text for any size, prepared
    once). There a statement that waited for a row lock sees the locked row as
    committed after the wait but the joined rows as of its start: `seen_commit_ts`
    (the agent's last commit in that older snapshot) tells the caller when the records
    it read may be stale.
    """
    columns = ", ".join(f"a.{f.column}" for f in AGENT_FIELDS)
    if sql.is_sqlite():
        agents = f"a.agent_id IN ({sql.placeholders(agent_count)})"
        keys = f"r.key IN ({sql.placeholders(key_count)})" if key_count else "1 = 0"
        seen = "a.last_commit_ts"
    else:
        agents = "a.agent_id = ANY(%s::text[])"
        keys = "r.key = ANY(%s::text[])"  # an empty array matches nothing
        seen = f"(SELECT s.last_commit_ts FROM {_AGENT} s WHERE s.id = a.id)"
    return (
        f"SELECT {columns}, {sql.now_sql()}, {seen}, r.key, r.version, r.deleted, st.status "
        f"FROM {_AGENT} a LEFT JOIN {_RECORD} r ON r.agent_id = a.id AND {keys} "
        f"LEFT JOIN {_STEP} st ON st.agent_id = a.id AND st.key = r.key "
        f"WHERE a.namespace = %s AND {agents} "
        f"ORDER BY a.agent_id{sql.for_update(of='a')}"
    )


def lock_agents(
    namespace: str, agent_ids: list[str], keys: Sequence[str] = ()
) -> tuple[dict[str, Agent], datetime, Records]:
    """Lock (creating if needed) the agents' rows in id order; return them, the database
    time, and the current version of each of their records named in `keys`."""
    agents, db_now, records, stale = _select(namespace, agent_ids, keys)
    if len(agents) < len(agent_ids):
        created = timezone.now()
        Agent.objects.bulk_create(
            [
                Agent(namespace=namespace, agent_id=a, created_at=created, last_activity_at=created)
                for a in agent_ids
                if a not in agents
            ],
            ignore_conflicts=True,
        )
        agents, db_now, records, stale = _select(namespace, agent_ids, keys)
    if stale:
        records = current_records(agents, keys)
    return agents, sql.to_datetime(db_now), records


def _select(
    namespace: str, agent_ids: list[str], keys: Sequence[str]
) -> tuple[dict[str, Agent], Any, Records, bool]:
    agents: dict[str, Agent] = {}
    records: Records = {}
    db_now = None
    stale = False
    if sql.is_sqlite():
        # Pieces in id order; the write lock is held since BEGIN IMMEDIATE.
        join = keys if len(keys) <= SQLITE_CHUNK else ()
        batches = [
            (_lock_sql(len(part), len(join)), [*join, namespace, *part])
            for part in _pieces(agent_ids, SQLITE_CHUNK)
        ]
        stale = bool(keys) and not join
    else:
        batches = [(_lock_sql(0, 0), [list(keys), namespace, agent_ids])]
    for query, params in batches:
        for row in sql.fetchall(query, params):
            agent_id = row[_AGENT_ID_COLUMN]
            if agent_id not in agents:
                agent = agents[agent_id] = agent_from_row(row[:_WIDTH])
                db_now = row[_WIDTH]
                stale |= row[_WIDTH + 1] != agent.last_commit_ts
            key, version, deleted, status = row[_WIDTH + 2 :]
            if key is not None:
                records[(agent_id, key)] = Current(version, bool(deleted), status)
    return agents, db_now, records, stale


def current_records(agents: dict[str, Agent], keys: Sequence[str]) -> Records:
    """The records of `keys` read now, after the rows are locked (so not stale)."""
    by_pk = {agent.pk: agent_id for agent_id, agent in agents.items()}
    found: Records = {}
    if not by_pk or not keys:
        return found
    for agents_part in _pieces(list(by_pk), SQLITE_CHUNK // 2):
        for keys_part in _pieces(list(keys), SQLITE_CHUNK // 2):
            rows = sql.fetchall(
                f"SELECT r.agent_id, r.key, r.version, r.deleted, st.status FROM {_RECORD} r "
                f"LEFT JOIN {_STEP} st ON st.agent_id = r.agent_id AND st.key = r.key "
                f"WHERE r.agent_id IN ({sql.placeholders(len(agents_part))}) "
                f"AND r.key IN ({sql.placeholders(len(keys_part))})",
                [*agents_part, *keys_part],
            )
            for pk, key, version, deleted, status in rows:
                found[(by_pk[pk], key)] = Current(version, bool(deleted), status)
    return found


def _pieces(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def agent_from_row(values: Sequence[Any]) -> Agent:
    """An Agent from a raw row of `AGENT_FIELDS`, as `Model.from_db` makes one, without
    its per-field work (half the time): every commit reads its agents this way."""
    row = list(values)
    for index in _DATETIME_COLUMNS:
        if row[index] is not None:  # SQLite: naive UTC (or text); PostgreSQL: aware
            row[index] = sql.to_datetime(row[index])
    for index in _BOOLEAN_COLUMNS:
        row[index] = bool(row[index])
    agent = Agent.__new__(Agent)
    agent._state = ModelState()
    agent._state.adding = False
    agent._state.db = DEFAULT_DB_ALIAS
    agent.__dict__.update(zip(_NAMES, row, strict=True))
    return agent
