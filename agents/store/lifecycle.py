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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from statehouse_agents.conf import get_settings
from statehouse_agents.conventions import check_step_key
from statehouse_agents.models import Agent, Commit, Record, Version
from statehouse_agents.store import reads
from statehouse_agents.store.counters import PRUNED_COMMITS, add_to_counter
from statehouse_agents.store.resume import register_entry_point
from statehouse_agents.store.writes import StagedOp, commit, run_atomic

from statehouse._ids import new_txn_id
from statehouse.errors import AlreadyExistsError, NotFoundError, ValidationError
from statehouse.validation import check_entry_point, check_identifier, encode_value

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
    compact_before: datetime | None = None,
) -> PruneReport:
    """Delete finished agents (all their data) finished before `finished_before`; of the
    finished agents that remain, the superseded versions older than `versions_before`, and
    every superseded version of those finished before `compact_before` (only each key's
    final value stays: docs/retention.md).

    Agents that are not finished keep every version: their replay and resume need them.
    Current versions are never deleted. Each batch is its own transaction. Commits left
    without versions are deleted too, and counted (`/metrics` keeps counting them).
    """
    agents = Agent.objects.finished().in_namespace(namespace)
    doomed_agents = (
        agents.filter(finished_at__lt=finished_before) if finished_before else agents.none()
    )
    kept = agents.exclude(pk__in=doomed_agents.values("pk"))
    old_versions = Version.objects.none()
    if versions_before or compact_before:
        current = Record.objects.filter(agent=OuterRef("agent"), key=OuterRef("key")).values(
            "version"
        )[:1]
        which = Q(pk__in=[])
        if versions_before:
            which |= Q(agent__in=kept, commit__committed_at__lt=versions_before)
        if compact_before:
            which |= Q(agent__in=kept.filter(finished_at__lt=compact_before))
        old_versions = (
            Version.objects.filter(which)
            .annotate(current_version=Subquery(current))
            .filter(version__lt=F("current_version"))
        )
    if dry_run:
        return PruneReport(agents=doomed_agents.count(), versions=old_versions.count(), commits=0)
    deleted_agents = _delete_in_batches(doomed_agents.values_list("pk", flat=True), Agent)
    deleted_versions = _delete_in_batches(old_versions.values_list("pk", flat=True), Version)
    orphans = Commit.objects.filter(versions__isnull=True).values_list("pk", flat=True)
    deleted_commits = _delete_in_batches(orphans, Commit, counter=PRUNED_COMMITS)
    return PruneReport(agents=deleted_agents, versions=deleted_versions, commits=deleted_commits)


def prune_by_policy(*, dry_run: bool = False, namespace: str | None = None) -> PruneReport | None:
    """Apply the retention settings (STATEHOUSE_RETENTION_FINISHED_DAYS and _DROP_DAYS);
    None when neither is set."""
    settings = get_settings()
    finished, drop = settings.retention_finished_days, settings.retention_drop_days
    if finished is None and drop is None:
        return None
    now = timezone.now()
    return prune(
        finished_before=now - timedelta(days=drop) if drop is not None else None,
        versions_before=None,
        compact_before=now - timedelta(days=finished) if finished is not None else None,
        namespace=namespace,
        dry_run=dry_run,
    )


def _delete_in_batches(pks_query, model, counter: str | None = None) -> int:  # type: ignore[no-untyped-def]  # any model's pk query
    total = 0
    while True:
        batch = list(pks_query[:_BATCH])
        if not batch:
            return total

        def delete(batch: list[int] = batch) -> None:
            model.objects.filter(pk__in=batch).delete()
            if counter:
                add_to_counter(name=counter, amount=len(batch))

        run_atomic(delete, what="prune")
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


@dataclass(frozen=True)
class _Event:
    txn_id: str
    committed_at: datetime
    ops: list[StagedOp]
    versions: list[int]


def import_history(
    lines: Iterable[str | bytes],
    *,
    namespace: str | None = None,
    agent_id: str | None = None,
    new_txn_ids: bool = False,
) -> ImportReport:
    """Recreate an exported agent (optionally under another namespace or id), all or nothing.

    The target must not hold that agent yet. Every version must come out as exported,
    else nothing is imported (a pruned export cannot be replayed exactly). Transaction ids
    are kept unless `new_txn_ids` (needed to copy an agent within one database). Anything
    malformed is a ValidationError naming the line and the field (docs/operations.md).
    """
    stream = iter(lines)
    header = _parse(next(stream, b""), 1)
    if header.get("format") != FORMAT or _field(header, "format_version", 1) != FORMAT_VERSION:
        raise ValidationError(f"line 1 is not a {FORMAT} v{FORMAT_VERSION} header")
    ns = _checked(
        1, "namespace", check_identifier, "namespace", namespace or header.get("namespace")
    )
    target = _checked(
        1, "agent_id", check_identifier, "agent_id", agent_id or header.get("agent_id")
    )
    entry_point = header.get("resume_entry_point") or ""
    if entry_point:
        _checked(1, "resume_entry_point", check_entry_point, entry_point)
    if Record.objects.filter(agent__namespace=ns, agent__agent_id=target).exists():
        raise AlreadyExistsError(
            f"agent {target!r} in namespace {ns!r} already has records; import into an empty one"
        )
    transactions = operations = 0
    with transaction.atomic():
        for number, line in enumerate(stream, start=2):
            if not line.strip():
                continue
            event = _event(_parse(line, number), target, number, new_txn_ids=new_txn_ids)
            if not new_txn_ids and Commit.objects.filter(txn_id=event.txn_id).exists():
                raise AlreadyExistsError(
                    f"line {number}: transaction {event.txn_id} is already in this database; "
                    "to copy an agent within one database, import with new transaction ids"
                )
            result = commit(namespace=ns, ops=event.ops, txn_id=event.txn_id, at=event.committed_at)
            for index, (op, expected) in enumerate(zip(event.ops, event.versions, strict=True)):
                got = result.versions[(target, op.key)]
                if got != expected:
                    raise ValidationError(
                        f"line {number}, field operations[{index}].version: {op.key!r} would "
                        f"get version {got}, but the export says {expected} (is the export "
                        "pruned?); nothing was imported"
                    )
            transactions += 1
            operations += len(event.ops)
        if entry_point:
            register_entry_point(namespace=ns, agent_id=target, entry_point=entry_point)
    return ImportReport(ns, target, transactions, operations)


def _event(value: dict[str, Any], agent_id: str, line: int, *, new_txn_ids: bool) -> _Event:
    """Check every field of one exported transaction before anything of it is written."""
    for name in ("txn_id", "committed_at", "operations"):
        if name not in value:
            raise ValidationError(f"line {line}, field {name}: missing")
    txn_id = _field(value, "txn_id", line, str)
    try:
        txn_id = str(uuid.UUID(txn_id))
    except ValueError:
        raise ValidationError(f"line {line}, field txn_id: {txn_id!r} is not a UUID") from None
    if new_txn_ids:
        txn_id = new_txn_id()
    committed_at = _when(_field(value, "committed_at", line, str), line)
    raw_ops = _field(value, "operations", line, list)
    if not raw_ops:
        raise ValidationError(f"line {line}, field operations: the list is empty")
    ops: list[StagedOp] = []
    versions: list[int] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_ops):
        where = f"operations[{index}]"
        if not isinstance(raw, dict):
            raise ValidationError(
                f"line {line}, field {where}: must be an object, not {_kind(raw)}"
            )
        op = _staged(agent_id, raw, line, where)
        if op.key in seen:
            raise ValidationError(f"line {line}, field {where}.key: {op.key!r} appears twice")
        seen.add(op.key)
        version = raw.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError(
                f"line {line}, field {where}.version: must be an integer >= 1, not {version!r}"
            )
        ops.append(op)
        versions.append(version)
    return _Event(txn_id, committed_at, ops, versions)


def _staged(agent_id: str, op: dict[str, Any], line: int, where: str) -> StagedOp:
    from statehouse_agents.conf import get_settings

    key = _checked(line, f"{where}.key", check_identifier, "key", op.get("key"))
    _checked(line, f"{where}.key", check_step_key, key)
    if op.get("op") == "delete":
        return StagedOp(agent_id=agent_id, key=key, value_json=None)
    if op.get("op") != "write":
        raise ValidationError(
            f"line {line}, field {where}.op: {op.get('op')!r} is neither write nor delete"
        )
    if "value" not in op:
        raise ValidationError(f"line {line}, field {where}.value: missing")
    text = _checked(
        line,
        f"{where}.value",
        encode_value,
        op["value"],
        key=key,
        max_bytes=get_settings().max_value_bytes,
    )
    return StagedOp(agent_id=agent_id, key=key, value_json=text, value=op["value"])


T = TypeVar("T")


def _checked(line: int, field: str, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a validator; say which line and field failed."""
    try:
        return check(*args, **kwargs)
    except ValidationError as exc:
        raise ValidationError(f"line {line}, field {field}: {exc}") from None


def _field(value: dict[str, Any], name: str, line: int, kind: type = int) -> Any:
    got = value.get(name)
    if isinstance(got, bool) or not isinstance(got, kind):
        raise ValidationError(
            f"line {line}, field {name}: must be {_KINDS[kind]}, not {_kind(got)} {got!r:.60}"
        )
    return got


_KINDS = {int: "an integer", str: "a string", list: "a list"}


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else f"a {type(value).__name__}"
    )


def _when(text: str, line: int) -> datetime:
    try:
        when = datetime.fromisoformat(text)
        when.astimezone(UTC)  # a time zone may push it past year 1 or 9999
    except (ValueError, OverflowError):
        when = None
    if when is None or when.tzinfo is None:
        raise ValidationError(
            f"line {line}, field committed_at: {text!r:.60} is not an ISO 8601 time with "
            "a time zone (e.g. 2026-01-31T12:00:00+00:00)"
        )
    return when


def _parse(line: str | bytes, number: int) -> dict[str, Any]:
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"line {number} is not UTF-8 text (byte 0x{line[exc.start]:02x} at "
                f"column {exc.start + 1}); export files are UTF-8"
            ) from None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {number} is not JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(
            f"line {number} nests JSON too deeply to read; no export nests like that"
        ) from None
    if not isinstance(value, dict):
        raise ValidationError(f"line {number} is not a JSON object")
    return value


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
