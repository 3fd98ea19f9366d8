"""The Statehouse client: transactions, reads and replay over the Django-managed database."""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from statehouse import _django
from statehouse.errors import NotFoundError, StatehouseError, TransactionError, ValidationError
from statehouse.lease import LeaseKeeper
from statehouse.steps import StepContext
from statehouse.types import Operation, ReplayEvent, StateResult
from statehouse.validation import (
    check_expected_version,
    check_identifier,
    check_prefix,
    encode_value,
)

if TYPE_CHECKING:
    from statehouse_agents.store.reads import RecordRow
    from statehouse_agents.store.writes import CommitResult, LeaseOwner, StagedOp

__all__ = ["Statehouse", "Transaction"]

_open_clients: weakref.WeakSet[Statehouse] = weakref.WeakSet()
_MAX_INT64 = 2**63 - 1


class Transaction:
    """Stages writes and deletes; applies them at commit, all or nothing.

    Use it as a context manager: a clean exit commits, an exception aborts and re-raises.
    """

    def __init__(self, client: Statehouse, *, namespace: str, timeout_ms: int) -> None:
        self._client = client
        self.namespace = namespace
        self.timeout_ms = timeout_ms
        self.txn_id = str(uuid.uuid4())
        self.commit_ts: int | None = None
        self._deadline = time.monotonic() + timeout_ms / 1000
        self._ops: dict[tuple[str, str], StagedOp] = {}
        self._state = "open"

    # --- staging ---

    def write(
        self, agent_id: str, key: str, value: Any, expected_version: int | None = None
    ) -> None:
        """Stage a write of `value` (any JSON value) to `(agent_id, key)`."""
        self._stage(agent_id, key, value, expected_version, delete=False)

    def delete(self, agent_id: str, key: str, expected_version: int | None = None) -> None:
        """Stage a delete: the record becomes a tombstone; its history is kept."""
        self._stage(agent_id, key, None, expected_version, delete=True)

    def _stage(
        self, agent_id: str, key: str, value: Any, expected: int | None, *, delete: bool
    ) -> None:
        from statehouse_agents.conventions import check_step_key, classify
        from statehouse_agents.store.writes import StagedOp

        self._check_usable()
        check_identifier("agent_id", agent_id)
        check_step_key(check_identifier("key", key))
        expected = check_expected_version(expected)
        value_json = (
            None
            if delete
            else encode_value(value, key=key, max_bytes=self._client._settings.max_value_bytes)
        )
        earlier = self._ops.get((agent_id, key))
        if earlier is not None and earlier.expected_version is not None:
            if expected is not None and expected != earlier.expected_version:
                raise ValidationError(
                    f"key {key!r} of agent {agent_id!r} is already staged with "
                    f"expected_version={earlier.expected_version}, not {expected}"
                )
            expected = earlier.expected_version
        # A later write to the same key replaces the earlier one (keeping its expectation).
        self._ops.pop((agent_id, key), None)
        self._ops[(agent_id, key)] = StagedOp(
            agent_id=agent_id,
            key=key,
            value_json=value_json,
            # The projection (task, steps, answer) reads the value; plain keys need no copy.
            value=None if delete or not classify(key).takes_lease else json.loads(value_json),  # type: ignore[arg-type]
            expected_version=expected,
        )

    # --- ending ---

    def commit(self) -> int | None:
        """Apply every staged operation; return the commit_ts (None for an empty one)."""
        self._check_usable()
        ops = list(self._ops.values())
        self._state = "committing"
        try:
            result = self._client._commit(self.namespace, ops, self.txn_id)
        except BaseException:
            self._state = "aborted"
            raise
        self._state = "committed"
        self._ops.clear()
        self.commit_ts = result.commit_ts
        return result.commit_ts

    def abort(self) -> None:
        """Drop every staged operation. Idempotent; a committed transaction stays committed."""
        if self._state == "open":
            self._state = "aborted"
            self._ops.clear()

    def _check_usable(self) -> None:
        if self._state != "open":
            raise TransactionError(f"transaction {self.txn_id} is already {self._state}")
        if time.monotonic() > self._deadline:
            self._state = "aborted"
            self._ops.clear()
            raise TransactionError(
                f"transaction {self.txn_id} timed out after {self.timeout_ms} ms; "
                "nothing was applied"
            )

    @property
    def operations(self) -> list[tuple[str, str, str]]:
        """What is staged: (agent_id, key, "write"|"delete") in staging order."""
        return [
            (op.agent_id, op.key, "delete" if op.is_delete else "write")
            for op in self._ops.values()
        ]

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
            return
        if self._state == "open":
            self.commit()


class Statehouse:
    """A client of the store in this process's database (the one of the Django settings).

    `namespace` is the default for every call that does not name one.
    """

    def __init__(
        self,
        url: str | None = None,
        namespace: str = "default",
        *,
        lease_seconds: float | None = None,
    ) -> None:
        if url is not None:
            _use_database_url(url)
        self.namespace = check_identifier("namespace", namespace)
        self._lease_seconds = lease_seconds
        self._owner_token = os.environ.get("STATEHOUSE_LEASE_TOKEN") or uuid.uuid4().hex
        self._keeper: LeaseKeeper | None = None
        self._owner: LeaseOwner | None = None
        # (namespace, agent_id) -> lease epoch this client got when it took the lease
        self._held: dict[tuple[str, str], int] = {}
        self._closed = False
        _open_clients.add(self)

    # --- set-up ---

    @property
    def _settings(self):  # type: ignore[no-untyped-def]
        _django.ensure_ready()
        from statehouse_agents.conf import get_settings

        return get_settings()

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds or self._settings.lease_seconds

    @property
    def owner(self) -> LeaseOwner:
        """Who this client is when it holds a lease (made anew in a forked child)."""
        from statehouse_agents.store.writes import LeaseOwner

        owner = self._owner
        if owner is None or owner.pid != os.getpid():
            owner = LeaseOwner(token=self._owner_token, host=socket.gethostname(), pid=os.getpid())
            self._owner = owner
        return owner

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else check_identifier("namespace", namespace)

    def _ready(self) -> None:
        if self._closed:
            raise StatehouseError("this Statehouse client is closed")
        _django.ensure_ready()
        _django.recover_connection()

    # --- health ---

    def health(self) -> str:
        """Return "ok" when the database answers; raise StatehouseError otherwise."""
        self._ready()
        from statehouse_agents.store import reads

        reads.ping()
        return "ok"

    def version(self) -> tuple[str, str]:
        """Return (package version, schema revision)."""
        from statehouse import __version__

        self._ready()
        from django.db.migrations.recorder import MigrationRecorder

        try:
            latest = (
                MigrationRecorder.Migration.objects.filter(app="agents").order_by("-id").first()
            )
        except Exception as exc:
            raise StatehouseError(f"database unreachable: {exc}") from exc
        return __version__, f"schema agents.{latest.name}" if latest else "schema none"

    # --- transactions ---

    def begin_transaction(
        self, timeout_ms: int = 30_000, namespace: str | None = None
    ) -> Transaction:
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise ValidationError(f"timeout_ms must be a positive integer, not {timeout_ms!r}")
        self._ready()
        return Transaction(self, namespace=self._ns(namespace), timeout_ms=timeout_ms)

    def _commit(self, namespace: str, ops: list[StagedOp], txn_id: str) -> CommitResult:
        from statehouse_agents.store.writes import commit

        self._ready()
        result = commit(
            namespace=namespace,
            ops=ops,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            txn_id=txn_id,
            held={agent: epoch for (ns, agent), epoch in self._held.items() if ns == namespace},
        )
        for agent_id, epoch in result.leased.items():
            self._held[(namespace, agent_id)] = epoch
        for agent_id in result.released:
            self._held.pop((namespace, agent_id), None)
        if result.leased:
            self._keep_leases()
        return result

    def release(self, agent_id: str, namespace: str | None = None) -> None:
        """Stop running an agent here: release its lease and forget that this client held it.

        After a LeaseLostError, this is how a client that means to run the agent again
        (for example after an operator's decision) starts afresh.
        """
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        self._ready()
        from statehouse_agents.store.writes import release_leases

        self._held.pop((ns, agent_id), None)
        release_leases(owner=self.owner, namespace=ns, agent_id=agent_id)

    def _keep_leases(self) -> None:
        if self._keeper is None:
            self._keeper = LeaseKeeper(self.owner, self.lease_seconds)
        self._keeper.start()

    # --- reads ---

    def get_state(self, agent_id: str, key: str, namespace: str | None = None) -> StateResult:
        """The current value of a record; `exists=False` if never written or deleted."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        check_identifier("key", key)
        self._ready()
        from statehouse_agents.store import reads

        row = reads.get_state(ns, agent_id, key)
        if row is None:
            return StateResult(None, 0, 0, False, key=key, agent_id=agent_id, namespace=ns)
        return _result(row, ns, agent_id, key)

    def get_state_at_version(
        self, agent_id: str, key: str, version: int, namespace: str | None = None
    ) -> StateResult:
        """The record as it was at `version`; NotFoundError if that version never existed."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        check_identifier("key", key)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError(f"version must be an integer >= 1, not {version!r}")
        self._ready()
        from statehouse_agents.store import reads

        # No stored version exceeds 64 bits (and SQLite cannot even bind such an integer).
        row = reads.get_version(ns, agent_id, key, version) if version <= _MAX_INT64 else None
        if row is None:
            raise NotFoundError(
                f"version {version} of {agent_id!r}/{key!r} in namespace {ns!r} never existed"
            )
        return _result(row, ns, agent_id, key)

    def list_keys(
        self, agent_id: str, namespace: str | None = None, prefix: str | None = None
    ) -> list[str]:
        """The agent's live keys (tombstones left out), sorted."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        if prefix is not None:
            check_prefix(prefix)
        self._ready()
        from statehouse_agents.store import reads

        return reads.list_keys(ns, agent_id, prefix or None)

    def scan_prefix(
        self, agent_id: str, prefix: str, namespace: str | None = None
    ) -> list[StateResult]:
        """Live records whose key starts with `prefix`, in key order."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        check_prefix(prefix)
        self._ready()
        from statehouse_agents.store import reads

        return [
            StateResult(
                json.loads(value_json),
                version,
                commit_ts,
                True,
                key=key,
                agent_id=agent_id,
                namespace=ns,
            )
            for key, value_json, version, commit_ts in reads.scan_prefix(ns, agent_id, prefix)
        ]

    def replay(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
    ) -> Iterator[ReplayEvent]:
        """Every committed transaction that touched the agent, in commit order, streamed.

        `start_ts` is inclusive, `end_ts` exclusive.
        """
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        for name, bound in (("start_ts", start_ts), ("end_ts", end_ts)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise ValidationError(f"{name} must be an integer or None, not {bound!r}")
        # Every commit_ts lies in [1, 2**63 - 1]; clamping keeps SQLite from overflowing.
        start_ts, end_ts = (
            None if ts is None else min(max(ts, 0), _MAX_INT64) for ts in (start_ts, end_ts)
        )
        self._ready()
        return self._replay(ns, agent_id, start_ts, end_ts)

    def _replay(
        self, ns: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]:
        from statehouse_agents.store import reads

        event: ReplayEvent | None = None
        for row in reads.history(ns, agent_id, start_ts=start_ts, end_ts=end_ts):
            if event is None or row.commit_ts != event.commit_ts:
                if event is not None:
                    yield event
                event = ReplayEvent(
                    txn_id=row.txn_id,
                    commit_ts=row.commit_ts,
                    namespace=ns,
                    agent_id=agent_id,
                    committed_at=row.committed_at,
                    operations=[],
                )
            event.operations.append(
                Operation(
                    key=row.key,
                    value=None if row.deleted else json.loads(row.value_json),  # type: ignore[arg-type]
                    version=row.version,
                    op="delete" if row.deleted else "write",
                )
            )
        if event is not None:
            yield event

    # --- agents, steps and resume (docs/contract.md §3, §4) ---

    def last_completed_step(self, agent_id: str, namespace: str | None = None) -> int:
        """The highest step number whose status is `done`, or -1 when none is."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        self._ready()
        from statehouse_agents.store import reads

        return reads.last_completed_step(ns, agent_id)

    def step(
        self, agent_id: str, number: int, action: Any = None, namespace: str | None = None
    ) -> StepContext:
        """A context manager recording step `number` as pending, then done or failed."""
        check_identifier("agent_id", agent_id)
        return StepContext(self, agent_id, number, action, namespace)

    def start(self, agent_id: str, task: Any, namespace: str | None = None) -> int | None:
        """Write the agent's `task` (this process now runs the agent)."""
        with self.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key="task", value=task)
        return tx.commit_ts

    def finish(self, agent_id: str, answer: Any, namespace: str | None = None) -> int | None:
        """Write the agent's `answer`: it is completed and its lease released."""
        with self.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key="answer", value=answer)
        return tx.commit_ts

    def fail(self, agent_id: str, error: str, namespace: str | None = None) -> int | None:
        """Write the agent's `failure`: it is failed (until resumed) and its lease released."""
        if not isinstance(error, str):
            raise ValidationError(f"error must be a string, not {type(error).__name__}")
        with self.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key="failure", value={"error": error})
        return tx.commit_ts

    def status(self, agent_id: str, namespace: str | None = None) -> str | None:
        """The agent's status as operators see it (running, interrupted, …), None if unknown."""
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        self._ready()
        from statehouse_agents.store import reads

        return reads.agent_status(ns, agent_id)

    def register_resume(
        self, agent_id: str, entry_point: str, namespace: str | None = None
    ) -> None:
        """Name the function that resumes this agent: "package.module:function".

        A resume worker calls it as `function(client, agent_id)` in a process it supervises.
        """
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        self._ready()
        from statehouse_agents.store.resume import register_entry_point

        register_entry_point(namespace=ns, agent_id=agent_id, entry_point=entry_point)

    def request_resume(
        self, agent_id: str, namespace: str | None = None, requested_by: str = ""
    ) -> int:
        """Queue a resume of an interrupted or failed agent; return the request's id.

        Asking again while a request is open returns the same request.
        NotFoundError if the agent is unknown, NotResumableError if it is running or done.
        """
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        self._ready()
        from statehouse_agents.store.resume import request_resume

        request, _created = request_resume(
            namespace=ns,
            agent_id=agent_id,
            source="client",
            requested_by=requested_by or f"{socket.gethostname()} pid {os.getpid()}",
        )
        return request.pk

    # --- life cycle ---

    def close(self) -> None:
        """Stop renewing leases and release them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._held.clear()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.stop()
            try:
                from statehouse_agents.store.writes import release_leases

                release_leases(owner=self.owner)
            except StatehouseError:
                pass  # the leases expire on their own

    def __enter__(self) -> Statehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Statehouse namespace={self.namespace!r}>"


def _result(row: RecordRow, namespace: str, agent_id: str, key: str) -> StateResult:
    """A stored record (or tombstone) as the client returns it."""
    return StateResult(
        None if row.deleted else json.loads(row.value_json),  # type: ignore[arg-type]
        row.version,
        row.commit_ts,
        not row.deleted,
        key=key,
        agent_id=agent_id,
        namespace=namespace,
    )


def _use_database_url(url: str) -> None:
    if "://" not in url:
        warnings.warn(
            f"Statehouse is embedded: {url!r} (an address of the old daemon) is ignored; "
            "set DATABASE_URL or pass a database URL instead",
            stacklevel=3,
        )
        return
    from django.conf import settings

    if settings.configured:
        current = os.environ.get("DATABASE_URL")
        if current != url:
            raise StatehouseError(
                "Django is already configured with another database; pass no url, "
                "or create the client before anything else uses Django"
            )
        return
    os.environ["DATABASE_URL"] = url


def _after_fork_in_child() -> None:
    """A forked child is another process: it holds none of its parent's leases and takes
    its own under a new identity (its parent goes on renewing its own)."""
    for client in list(_open_clients):
        client._owner_token = uuid.uuid4().hex
        client._owner = None
        client._held = {}
        client._keeper = None  # the parent's renewal thread did not survive the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _release_at_exit() -> None:
    for client in list(_open_clients):
        client.close()
