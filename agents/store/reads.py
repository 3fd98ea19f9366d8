"""The store's hot reads, in hand-written SQL through Django's connection.

These run on every agent step, so they skip the ORM's per-query overhead; each uses a
unique index, so its cost does not grow with a record's number of versions. A current
value is its version's: the record names it (docs/architecture.md, "Values stored once").
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db import DatabaseError
from statehouse_agents.models import Agent, Commit, Record, Step, Version
from statehouse_agents.store import sql

from statehouse.errors import StatehouseError

_A = Agent._meta.db_table
_R = Record._meta.db_table
_V = Version._meta.db_table
_C = Commit._meta.db_table
_S = Step._meta.db_table

# The current value is the key's latest version, the one its record names: one lookup
# at the end of the version's identity index, however long the history. The agent is a
# subquery, not a join, so that the index scan has its whole key and stops at the first
# row (a join would sort every version of the key first).
_GET_STATE = f"""
SELECT v.value_json, v.version, v.commit_id, v.deleted
FROM {_V} v
WHERE v.agent_id = (SELECT a.id FROM {_A} a WHERE a.namespace = %s AND a.agent_id = %s)
  AND v.key = %s
ORDER BY v.version DESC LIMIT 1
"""
_GET_VERSION = f"""
SELECT v.value_json, v.version, v.commit_id, v.deleted
FROM {_V} v JOIN {_A} a ON a.id = v.agent_id
WHERE a.namespace = %s AND a.agent_id = %s AND v.key = %s AND v.version = %s
"""
_LIST_KEYS = f"""
SELECT r.key FROM {_R} r JOIN {_A} a ON a.id = r.agent_id
WHERE a.namespace = %s AND a.agent_id = %s AND r.deleted = %s
"""
_SCAN = f"""
SELECT r.key, v.value_json, r.version, r.commit_ts
FROM {_R} r JOIN {_A} a ON a.id = r.agent_id
JOIN {_V} v ON v.agent_id = r.agent_id AND v.key = r.key AND v.version = r.version
WHERE a.namespace = %s AND a.agent_id = %s AND r.deleted = %s
  AND substr(r.key, 1, %s) = %s
"""
_AGENT_PK = f"SELECT id FROM {_A} WHERE namespace = %s AND agent_id = %s"
_REPLAY_PAGE = f"""
SELECT v.commit_id, c.txn_id, c.committed_at, v.id, v.key, v.version, v.value_json, v.deleted
FROM {_V} v JOIN {_C} c ON c.id = v.commit_id
WHERE v.agent_id = %s AND v.commit_id >= %s AND v.commit_id < %s
  AND (v.commit_id > %s OR (v.commit_id = %s AND v.id > %s))
ORDER BY v.commit_id, v.id
LIMIT %s
"""
_MAX_TS = 2**63 - 1


class RecordRow(NamedTuple):  # a tuple: made on every get_state, at half a dataclass's cost
    value_json: str | None
    version: int
    commit_ts: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class HistoryRow:
    commit_ts: int
    txn_id: str
    committed_at: datetime
    key: str
    version: int
    value_json: str | None
    deleted: bool


def _fetch(query: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    try:
        return sql.fetchall(query, params)
    except DatabaseError as exc:
        raise StatehouseError(f"read failed: database error: {exc}") from exc


def get_state(namespace: str, agent_id: str, key: str) -> RecordRow | None:
    rows = _fetch(_GET_STATE, (namespace, agent_id, key))
    return RecordRow(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None  # type: ignore[arg-type]  # raw driver rows are untyped tuples


def get_version(namespace: str, agent_id: str, key: str, version: int) -> RecordRow | None:
    rows = _fetch(_GET_VERSION, (namespace, agent_id, key, version))
    return RecordRow(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None  # type: ignore[arg-type]  # raw driver rows are untyped tuples


def list_keys(namespace: str, agent_id: str, prefix: str | None = None) -> list[str]:
    if prefix:
        return [row[0] for row in scan_prefix(namespace, agent_id, prefix)]
    return sorted(row[0] for row in _fetch(_LIST_KEYS, (namespace, agent_id, False)))  # type: ignore[misc]  # raw driver rows are untyped tuples


def scan_prefix(namespace: str, agent_id: str, prefix: str) -> list[tuple[str, str, int, int]]:
    """Live records whose key starts with `prefix` (case-sensitive), in key order."""
    rows = _fetch(_SCAN, (namespace, agent_id, False, len(prefix), prefix))
    return sorted(rows, key=lambda row: row[0])  # type: ignore[arg-type]  # raw driver rows are untyped tuples


def history(
    namespace: str,
    agent_id: str,
    *,
    start_ts: int | None = None,
    end_ts: int | None = None,
    page_size: int = 2000,
) -> Iterator[HistoryRow]:
    """Stream an agent's versions in commit order, one page of rows in memory at a time."""
    found = _fetch(_AGENT_PK, (namespace, agent_id))
    if not found:
        return
    agent_pk = found[0][0]
    low = start_ts if start_ts is not None else 0
    high = end_ts if end_ts is not None else _MAX_TS
    after_commit, after_id = -1, -1
    while True:
        # The lower bound follows the keyset position, so a page reads its own rows only
        # (not the whole history before it again): replay stays linear in history length.
        rows = _fetch(
            _REPLAY_PAGE,
            (
                agent_pk,
                max(low, after_commit),
                high,
                after_commit,
                after_commit,
                after_id,
                page_size,
            ),
        )
        for commit_ts, txn_id, committed_at, row_id, key, version, value_json, deleted in rows:
            yield HistoryRow(
                commit_ts=commit_ts,  # type: ignore[arg-type]  # raw driver rows are untyped tuples
                txn_id=str(uuid.UUID(str(txn_id))),
                committed_at=sql.to_datetime(committed_at),  # type: ignore[arg-type]  # raw driver rows are untyped tuples
                key=key,  # type: ignore[arg-type]  # raw driver rows are untyped tuples
                version=version,  # type: ignore[arg-type]  # raw driver rows are untyped tuples
                value_json=value_json,  # type: ignore[arg-type]  # raw driver rows are untyped tuples
                deleted=bool(deleted),
            )
            after_commit, after_id = commit_ts, row_id  # type: ignore[assignment]  # raw driver rows are untyped tuples
        if len(rows) < page_size:
            return


def transactions(
    namespace: str, agent_id: str, *, start_ts: int | None = None, end_ts: int | None = None
) -> Iterator[list[HistoryRow]]:
    """The agent's history grouped by transaction: its rows of each commit, in commit order
    (what replay and export show)."""
    rows = history(namespace, agent_id, start_ts=start_ts, end_ts=end_ts)
    for _commit_ts, group in itertools.groupby(rows, key=lambda row: row.commit_ts):
        yield list(group)


def ping() -> None:
    _fetch("SELECT 1", ())


_LAST_DONE_STEP = f"""
SELECT max(s.number) FROM {_S} s JOIN {_A} a ON a.id = s.agent_id
WHERE a.namespace = %s AND a.agent_id = %s AND s.status = %s
"""


def last_completed_step(namespace: str, agent_id: str) -> int:
    """The highest step number whose status is done, or -1."""
    rows = _fetch(_LAST_DONE_STEP, (namespace, agent_id, Step.Status.DONE.value))
    value = rows[0][0] if rows else None
    return -1 if value is None else int(value)  # type: ignore[call-overload]  # raw driver rows are untyped tuples


def agent_status(namespace: str, agent_id: str) -> str | None:
    try:
        return (
            Agent.objects.filter(namespace=namespace, agent_id=agent_id)
            .annotate_status()
            .values_list("status_value", flat=True)  # type: ignore[misc]  # an annotation
            .first()
        )
    except DatabaseError as exc:
        raise StatehouseError(f"read failed: database error: {exc}") from exc
