"""Data lifecycle: pruning old history, and exporting/importing one agent's full history.

Export format (JSON lines): a header object, then one object per committed transaction in
commit order — {"txn_id", "commit_ts", "committed_at", "operations": [{"key", "op",
"version", "value"}]}. An import replays it through the ordinary commit path, keeping
transaction ids, times, keys, values and versions; commit_ts is assigned anew by the
target database (in the same order), as commit_ts is the database's own clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from statehouse_agents.models import Agent, Commit, Record, Version
from statehouse_agents.store import reads
from statehouse_agents.store.writes import StagedOp, commit, run_atomic

from statehouse.errors import ConflictError, NotFoundError, ValidationError
from statehouse.validation import check_identifier

FORMAT = "statehouse-agent-history"
FORMAT_VERSION = 1
_BATCH = 2000


# --- prune ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneReport:
    agents: int
    versions: int
    commits: int


def prune(
    *,
    finished_before: datetime | None,
    versions_before: datetime | None,
    namespace: str | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Delete finished agents (all their data) finished before `finished_before`, and the
    superseded versions older than `versions_before` of the finished agents that remain.

    Agents that are not finished keep every version: their replay and resume need them.
    Current versions are never deleted. Each batch is its own transaction.
    """
    agents = Agent.objects.finished().in_namespace(namespace)
    doomed_agents = (
        agents.filter(finished_at__lt=finished_before) if finished_before else agents.none()
    )
    old_versions = Version.objects.none()
    if versions_before:
        current = Record.objects.filter(agent=OuterRef("agent"), key=OuterRef("key")).values(
            "version"
        )[:1]
        old_versions = (
            Version.objects.filter(
                agent__in=agents.exclude(pk__in=doomed_agents.values("pk")),
                commit__committed_at__lt=versions_before,
            )
            .annotate(current_version=Subquery(current))
            .filter(version__lt=F("current_version"))
        )
    if dry_run:
        return PruneReport(agents=doomed_agents.count(), versions=old_versions.count(), commits=0)
    deleted_agents = _delete_in_batches(doomed_agents.values_list("pk", flat=True), Agent)
    deleted_versions = _delete_in_batches(old_versions.values_list("pk", flat=True), Version)
    orphans = Commit.objects.filter(versions__isnull=True).values_list("pk", flat=True)
    deleted_commits = _delete_in_batches(orphans, Commit)
    return PruneReport(agents=deleted_agents, versions=deleted_versions, commits=deleted_commits)


def _delete_in_batches(pks_query, model) -> int:  # type: ignore[no-untyped-def]  # any model's pk query
    total = 0
    while True:
        batch = list(pks_query[:_BATCH])
        if not batch:
            return total
        run_atomic(
            lambda batch=batch: model.objects.filter(pk__in=batch).delete(),  # type: ignore[misc]  # a lambda with a default
            what="prune",
        )
        total += len(batch)


# --- export / import -----------------------------------------------------------------------


def export_history(namespace: str, agent_id: str) -> Iterator[str]:
    """Yield the agent's history as JSON lines (header first), streaming."""
    agent = Agent.objects.filter(namespace=namespace, agent_id=agent_id).first()
    if agent is None:
        raise NotFoundError(f"no agent {agent_id!r} in namespace {namespace!r}")
    yield _dumps(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "namespace": namespace,
            "agent_id": agent_id,
            "resume_entry_point": agent.resume_entry_point,
        }
    )
    for rows in reads.transactions(namespace, agent_id):
        yield _dumps(
            {
                "txn_id": rows[0].txn_id,
                "commit_ts": rows[0].commit_ts,
                "committed_at": rows[0].committed_at.isoformat(),
                "operations": [
                    {
                        "key": row.key,
                        "op": "delete" if row.deleted else "write",
                        "version": row.version,
                        "value": None if row.deleted else json.loads(row.value_json),  # type: ignore[arg-type]  # value_json is set unless deleted
                    }
                    for row in rows
                ],
            }
        )


@dataclass(frozen=True)
class ImportReport:
    namespace: str
    agent_id: str
    transactions: int
    operations: int


def import_history(
    lines: Iterable[str],
    *,
    namespace: str | None = None,
    agent_id: str | None = None,
    new_txn_ids: bool = False,
) -> ImportReport:
    """Recreate an exported agent (optionally under another namespace or id), all or nothing.

    The target must not hold that agent yet. Every version must come out as exported,
    else nothing is imported (a pruned export cannot be replayed exactly). Transaction ids
    are kept unless `new_txn_ids` (needed to copy an agent within one database).
    """
    stream = iter(lines)
    header = _parse(next(stream, ""), 1)
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise ValidationError(f"line 1 is not a {FORMAT} v{FORMAT_VERSION} header")
    ns = check_identifier("namespace", namespace or header.get("namespace"))
    target = check_identifier("agent_id", agent_id or header.get("agent_id"))
    if Record.objects.filter(agent__namespace=ns, agent__agent_id=target).exists():
        raise ConflictError(
            f"agent {target!r} in namespace {ns!r} already has records; import into an empty one",
            agent_id=target,
            key="",
            expected=0,
            actual=1,
        )
    transactions = operations = 0
    with transaction.atomic():
        for number, line in enumerate(stream, start=2):
            if not line.strip():
                continue
            event = _parse(line, number)
            ops = [_staged(target, op, number) for op in event.get("operations", [])]
            txn_id = str(uuid.uuid4()) if new_txn_ids else str(event["txn_id"])
            if not new_txn_ids and Commit.objects.filter(txn_id=txn_id).exists():
                raise ConflictError(
                    f"line {number}: transaction {txn_id} is already in this database; "
                    "to copy an agent within one database, import with new transaction ids",
                    agent_id=target,
                    key="",
                    expected=0,
                    actual=1,
                )
            result = commit(
                namespace=ns,
                ops=ops,
                txn_id=txn_id,
                at=datetime.fromisoformat(event["committed_at"]),
            )
            for op in event["operations"]:
                got = result.versions[(target, op["key"])]
                if got != op["version"]:
                    raise ValidationError(
                        f"line {number}: {op['key']!r} would get version {got}, but the export "
                        f"says {op['version']} (is the export pruned?); nothing was imported"
                    )
            transactions += 1
            operations += len(ops)
        entry_point = header.get("resume_entry_point") or ""
        if entry_point:
            Agent.objects.filter(namespace=ns, agent_id=target).update(
                resume_entry_point=entry_point
            )
    return ImportReport(ns, target, transactions, operations)


def _staged(agent_id: str, op: dict, line: int) -> StagedOp:
    from statehouse_agents.conf import get_settings

    from statehouse.validation import encode_value

    key = check_identifier("key", op.get("key"))
    if op.get("op") == "delete":
        return StagedOp(agent_id=agent_id, key=key, value_json=None)
    if op.get("op") != "write":
        raise ValidationError(
            f"line {line}: operation {op.get('op')!r} is neither write nor delete"
        )
    text = encode_value(op.get("value"), key=key, max_bytes=get_settings().max_value_bytes)
    return StagedOp(agent_id=agent_id, key=key, value_json=text, value=op.get("value"))


def _parse(line: str, number: int) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {number} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationError(f"line {number} is not a JSON object")
    if number > 1 and not {"txn_id", "committed_at", "operations"} <= value.keys():
        raise ValidationError(f"line {number} lacks txn_id, committed_at or operations")
    return value


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
