"""The embedded backend: the store in this process's database (the one of the Django
settings), set up on first use. The HTTP API runs the same functions on the server side."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from statehouse import _django
from statehouse._backend import Backend, Owner
from statehouse._ops import PendingOp
from statehouse.errors import NotFoundError, StatehouseError, TransactionError, ValidationError
from statehouse.lease import LeaseKeeper
from statehouse.types import Operation, ReplayEvent, StateResult

if TYPE_CHECKING:
    from statehouse_agents.conf import StatehouseSettings
    from statehouse_agents.store.reads import RecordRow
    from statehouse_agents.store.writes import CommitResult

__all__ = ["EmbeddedBackend", "commit_ops", "replay_events", "state_result"]

MAX_INT64 = 2**63 - 1


def settings() -> StatehouseSettings:
    _django.ensure_ready()
    from statehouse_agents.conf import get_settings

    return get_settings()


def commit_ops(
    *,
    namespace: str,
    ops: list[PendingOp],
    txn_id: str,
    owner: Owner | None,
    held: Mapping[str, int],
    lease_seconds: float,
    durable: bool = True,
    liveness: bool = False,
) -> CommitResult:
    """Commit staged operations through the store (agents/store/writes.py) as `owner`.

    `liveness`: `owner` is this process, which takes its liveness handle (once) before a
    commit that takes a lease (agents/store/liveness.py); the HTTP API commits for
    remote owners, which hold none."""
    from statehouse_agents.conventions import classify
    from statehouse_agents.store.writes import LeaseOwner, StagedOp, commit

    staged = [
        StagedOp(
            agent_id=op.agent_id,
            key=op.key,
            value_json=op.value_json,
            # The projection (task, steps, answer) reads the value; plain keys need no copy.
            value=(
                None
                if op.value_json is None or not classify(op.key).takes_lease
                else json.loads(op.value_json)
            ),
            expected_version=op.expected_version,
        )
        for op in ops
    ]
    watch = ""
    if liveness and owner is not None and any(op.value is not None for op in staged):
        from statehouse_agents.store.liveness import watch_for

        watch = watch_for(owner.token)
    return commit(
        namespace=namespace,
        ops=staged,
        owner=None if owner is None else LeaseOwner(owner.token, owner.host, owner.pid, watch),
        lease_seconds=lease_seconds,
        txn_id=txn_id,
        held=held,
        durable=durable,
    )


def state_result(row: RecordRow | None, namespace: str, agent_id: str, key: str) -> StateResult:
    """A stored record (or tombstone, or nothing) as the client returns it."""
    if row is None:
        return StateResult(None, 0, 0, False, key=key, agent_id=agent_id, namespace=namespace)
    return StateResult(
        None if row.deleted else json.loads(row.value_json),  # type: ignore[arg-type]  # live: JSON
        row.version,
        row.commit_ts,
        not row.deleted,
        key=key,
        agent_id=agent_id,
        namespace=namespace,
    )


def version_result(namespace: str, agent_id: str, key: str, version: int) -> StateResult:
    from statehouse_agents.store import reads

    # No stored version exceeds 64 bits (and SQLite cannot even bind such an integer).
    row = reads.get_version(namespace, agent_id, key, version) if version <= MAX_INT64 else None
    if row is None:
        raise NotFoundError(
            f"version {version} of {agent_id!r}/{key!r} in namespace {namespace!r} never existed"
        )
    return state_result(row, namespace, agent_id, key)


def scan_results(namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
    from statehouse_agents.store import reads

    return [
        StateResult(
            json.loads(value_json),
            version,
            commit_ts,
            True,
            key=key,
            agent_id=agent_id,
            namespace=namespace,
        )
        for key, value_json, version, commit_ts in reads.scan_prefix(namespace, agent_id, prefix)
    ]


def replay_events(
    namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
) -> Iterator[ReplayEvent]:
    """Stream the agent's committed transactions with commit_ts in [start_ts, end_ts]."""
    from statehouse_agents.store import reads

    # The store's upper bound is exclusive; every commit_ts lies in [1, 2**63 - 1].
    high = None if end_ts is None or end_ts >= MAX_INT64 else end_ts + 1
    for rows in reads.transactions(namespace, agent_id, start_ts=start_ts, end_ts=high):
        yield ReplayEvent(
            txn_id=rows[0].txn_id,
            commit_ts=rows[0].commit_ts,
            namespace=namespace,
            agent_id=agent_id,
            committed_at=rows[0].committed_at,
            operations=[
                Operation(
                    key=row.key,
                    value=None if row.deleted else json.loads(row.value_json),  # type: ignore[arg-type]  # value_json is set unless deleted
                    version=row.version,
                    op="delete" if row.deleted else "write",
                )
                for row in rows
            ],
        )


def agent_rows(
    *, status: str | None, namespace: str | None, pattern: str | None, limit: int
) -> list[dict[str, object]]:
    """Agents as listed by `statehouse agents` (statehouse_agents.selection), JSON-ready."""
    from statehouse_agents.selection import AgentFilter, SelectionError
    from statehouse_agents.selection import agent_rows as rows

    try:
        found = rows(AgentFilter(status=status, namespace=namespace, pattern=pattern), limit=limit)
    except SelectionError as exc:
        raise ValidationError(str(exc)) from None
    return [{**row, "last_activity": row["last_activity"].isoformat()} for row in found]


def schema_revision() -> str:
    """The latest of the agents app's migrations the database applied. Read by name among
    those this release ships: Django records a squash after what followed it, and keeps
    the rows of the migrations the squash replaced."""
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    shipped = {name for app, name in MigrationLoader(None).disk_migrations if app == "agents"}
    try:
        applied = set(
            MigrationRecorder.Migration.objects.filter(app="agents").values_list("name", flat=True)
        )
    except Exception as exc:
        raise StatehouseError(f"database unreachable: {exc}") from exc
    known = applied & shipped
    return f"schema agents.{max(known)}" if known else "schema none"


class EmbeddedBackend(Backend):
    mode: ClassVar[str] = "embedded"

    def __init__(self, *, database_url: str | None, lease_seconds: float | None) -> None:
        if database_url is not None:
            _use_database_url(database_url)
        super().__init__(lease_seconds=lease_seconds)

    def _ready(self) -> None:
        _django.ensure_ready()
        _django.recover_connection()

    def _setting(self, name: str) -> Any:
        return getattr(settings(), name)

    def _make_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(self.owner, self.lease_seconds)

    def health(self) -> str:
        self._ready()
        from statehouse_agents.store import reads

        reads.ping()
        return "ok"

    def version(self) -> tuple[str, str]:
        from statehouse import __version__

        self._ready()
        return __version__, schema_revision()

    def commit(
        self, namespace: str, ops: list[PendingOp], txn_id: str, *, join: bool = False
    ) -> int | None:
        self._ready()
        if join:
            _check_joinable()
        result = commit_ops(
            namespace=namespace,
            ops=ops,
            txn_id=txn_id,
            owner=self.owner,
            held=self.held_in(namespace),
            lease_seconds=self.lease_seconds,
            durable=not join,
            liveness=True,
        )
        if result.durable:
            self._track(namespace, result.leased, list(result.released))
        else:
            # Leases taken in the caller's transaction exist only if it commits.
            from django.db import transaction

            transaction.on_commit(
                lambda: self._track(namespace, result.leased, list(result.released))
            )
        return result.commit_ts

    def release(self, namespace: str, agent_id: str) -> None:
        self._ready()
        from statehouse_agents.store.writes import release_leases

        self._forget(namespace, agent_id)
        release_leases(owner=self.owner, namespace=namespace, agent_id=agent_id)  # type: ignore[arg-type]  # reads .token

    def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult:
        _django.ensure_ready()  # its one statement recovers a failed connection itself
        from statehouse_agents.store import reads

        return state_result(reads.get_state(namespace, agent_id, key), namespace, agent_id, key)

    def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult:
        self._ready()
        return version_result(namespace, agent_id, key, version)

    def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]:
        self._ready()
        from statehouse_agents.store import reads

        return reads.list_keys(namespace, agent_id, prefix or None)

    def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
        self._ready()
        return scan_results(namespace, agent_id, prefix)

    def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]:
        self._ready()
        return replay_events(namespace, agent_id, start_ts, end_ts)

    def last_completed_step(self, namespace: str, agent_id: str) -> int:
        self._ready()
        from statehouse_agents.store import reads

        return reads.last_completed_step(namespace, agent_id)

    def status(self, namespace: str, agent_id: str) -> str | None:
        self._ready()
        from statehouse_agents.store import reads

        return reads.agent_status(namespace, agent_id)

    def register_resume(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> None:
        self._ready()
        from statehouse_agents.store.resume import register_entry_point

        register_entry_point(
            namespace=namespace, agent_id=agent_id, entry_point=entry_point, auto=auto
        )

    def request_approval(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str = "request"
    ) -> dict[str, Any]:
        self._ready()
        from statehouse_agents.store.approvals import decision_of, request_approval

        return decision_of(
            request_approval(
                namespace=namespace, agent_id=agent_id, name=name, payload=payload, kind=kind
            )
        )

    def get_approval(
        self, namespace: str, agent_id: str, approval_id: int, wait: float, poll_interval: float
    ) -> dict[str, Any]:
        self._ready()
        from statehouse_agents.store.approvals import decision_of, wait_for_decision

        return decision_of(
            wait_for_decision(
                namespace=namespace,
                agent_id=agent_id,
                approval_id=approval_id,
                wait=wait,
                poll_interval=poll_interval,
            )
        )

    def fork(
        self,
        namespace: str,
        source_id: str,
        new_id: str,
        step: int | None,
        at_ts: int | None,
        resume: bool,
    ) -> str:
        self._ready()
        from statehouse_agents.models import ResumeSource
        from statehouse_agents.store.forks import fork_agent

        result = fork_agent(
            namespace=namespace,
            source_id=source_id,
            new_id=new_id,
            step=step,
            at_ts=at_ts,
            resume=resume,
            actor=self.owner.describe(),
            source=ResumeSource.CLIENT,
        )
        return result.agent.agent_id

    def control(self, namespace: str, agent_id: str, action: str, actor: str, reason: str) -> str:
        self._ready()
        from statehouse_agents.store import operator

        act = {
            "cancel": operator.cancel_agent,
            "pause": operator.pause_agent,
            "unpause": operator.unpause_agent,
        }[action]
        record = act(
            namespace=namespace,
            agent_id=agent_id,
            actor=actor or self.owner.describe(),
            reason=reason,
            source="client",
        )
        return str((record.after or {}).get("status", ""))

    def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int:
        self._ready()
        from statehouse_agents.models import ResumeSource
        from statehouse_agents.store.resume import request_resume

        request, _created = request_resume(
            namespace=namespace,
            agent_id=agent_id,
            source=ResumeSource.CLIENT,
            requested_by=requested_by or self.owner.describe(),
        )
        return request.pk

    def agents(
        self, status: str | None, namespace: str | None, pattern: str | None, limit: int
    ) -> list[dict[str, object]]:
        self._ready()
        return agent_rows(status=status, namespace=namespace, pattern=pattern, limit=limit)

    def close(self) -> None:
        if self._stop_keeping():
            try:
                from statehouse_agents.store.writes import release_leases

                release_leases(owner=self.owner)  # type: ignore[arg-type]  # reads .token
            except StatehouseError:
                pass  # the leases expire on their own (or the detector ends them)
        liveness = sys.modules.get("statehouse_agents.store.liveness")
        if liveness is not None:  # loaded: this process may hold a handle
            # After the leases: a handle freed first would read as this process's death.
            liveness.release_handle(self.owner.token)


def _use_database_url(url: str) -> None:
    from django.conf import settings as django_settings

    if django_settings.configured:
        current = os.environ.get("DATABASE_URL")
        if current != url:
            raise StatehouseError(
                "Django is already configured with another database; pass no url, "
                "or create the client before anything else uses Django"
            )
        return
    os.environ["DATABASE_URL"] = url


def _check_joinable() -> None:
    """`join=True` needs a transaction of the caller to join."""
    from django.db import connection

    if not connection.in_atomic_block:
        raise TransactionError(
            "begin_transaction(join=True) joins the caller's database transaction, but "
            "none is open; open one with django.db.transaction.atomic() or leave join "
            "off; nothing was applied"
        )
