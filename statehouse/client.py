"""The Statehouse client: transactions, reads and replay, embedded or over the network.

`Statehouse` validates arguments and delegates to a backend: the embedded one (the
database of the Django settings, statehouse/_embedded.py) or the remote one (the HTTP API,
statehouse/remote.py). Both behave the same; docs/client.md says how one is chosen.
"""

from __future__ import annotations

import atexit
import os
import re
import time
import uuid
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Unpack

from statehouse._backend import Backend, Owner
from statehouse._ops import PendingOp, Staging
from statehouse.errors import (
    ApprovalTimeoutError,
    StatehouseError,
    TransactionError,
    ValidationError,
)
from statehouse.steps import StepContext, StepOptions
from statehouse.types import ApprovalDecision, ReplayEvent, StateResult
from statehouse.validation import check_identifier, check_prefix, encode_value, env_seconds

__all__ = ["DEFAULT_TIMEOUT_MS", "Statehouse", "Transaction", "failure_value"]

_open_clients: weakref.WeakSet[Statehouse] = weakref.WeakSet()
_MAX_INT64 = 2**63 - 1
DEFAULT_TIMEOUT_MS = 30_000
# The longest one wait for an approval's decision lasts, in this process or on the
# server (the API's long poll: agents/store/approvals.py, MAX_WAIT_SECONDS).
APPROVAL_WAIT = 20.0
DEFAULT_TIMEOUT_SECONDS = 60.0
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}")


class Transaction:
    """Stages writes and deletes; applies them at commit, all or nothing.

    Use it as a context manager: a clean exit commits, an exception aborts and re-raises.
    """

    def __init__(
        self, client: Statehouse, *, namespace: str, timeout_ms: int, join: bool = False
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.timeout_ms = timeout_ms
        self.join = join
        self.txn_id = str(uuid.uuid4())
        self.commit_ts: int | None = None
        # True once the commit can no longer be undone. A joined commit becomes durable
        # when the caller's database transaction commits (docs/client.md, "Durability").
        self.durable = False
        # The limits first: a remote client may ask its server for them, outside the deadline.
        backend = client._backend
        self._staging = Staging(
            max_value_bytes=backend.max_value_bytes,
            max_operations=backend.max_transaction_operations,
        )
        self._deadline = time.monotonic() + timeout_ms / 1000
        self._state = "open"

    # --- staging ---

    def write(
        self, agent_id: str, key: str, value: Any, expected_version: int | None = None
    ) -> None:
        """Stage a write of `value` (any JSON value) to `(agent_id, key)`."""
        self._check_usable()
        self._staging.stage(agent_id, key, value, expected_version, delete=False)

    def delete(self, agent_id: str, key: str, expected_version: int | None = None) -> None:
        """Stage a delete: the record becomes a tombstone; its history is kept."""
        self._check_usable()
        self._staging.stage(agent_id, key, None, expected_version, delete=True)

    # --- ending ---

    def commit(self) -> int | None:
        """Apply every staged operation; return the commit_ts (None for an empty one).

        A joined transaction (`begin_transaction(join=True)`) returns None: its writes
        are part of the caller's database transaction and `durable` stays False until
        that commits, when `commit_ts` is set; if it rolls back, nothing happened.
        """
        ops = self._committing()
        try:
            commit_ts = self._client._commit(self.namespace, ops, self.txn_id, join=self.join)
        except BaseException:
            self._state = "aborted"
            raise
        return self._committed(ops, commit_ts)

    def _committing(self) -> list[PendingOp]:
        """Check the transaction may commit and mark it committing; return its operations."""
        self._check_usable()
        ops = self._staging.ops()
        self._state = "committing"
        return ops

    def _committed(self, ops: list[PendingOp], commit_ts: int | None) -> int | None:
        """Record a commit the store applied (the blocking and the asyncio client alike)."""
        self._staging.clear()
        if self.join and ops:
            from django.db import transaction

            self._state = "joined"
            transaction.on_commit(lambda: self._made_durable(commit_ts))
            return None
        self._made_durable(commit_ts)
        return commit_ts

    def _made_durable(self, commit_ts: int | None) -> None:
        self._state = "committed"
        self.commit_ts = commit_ts
        self.durable = True

    def abort(self) -> None:
        """Drop every staged operation. Idempotent; a committed transaction stays committed."""
        if self._state == "open":
            self._state = "aborted"
            self._staging.clear()

    def _check_usable(self) -> None:
        if self._state != "open":
            raise TransactionError(f"transaction {self.txn_id} is already {self._state}")
        if time.monotonic() > self._deadline:
            self._state = "aborted"
            self._staging.clear()
            raise TransactionError(
                f"transaction {self.txn_id} timed out after {self.timeout_ms} ms; "
                "nothing was applied"
            )

    @property
    def operations(self) -> list[tuple[str, str, str]]:
        """What is staged: (agent_id, key, "write"|"delete") in staging order."""
        return [
            (op.agent_id, op.key, "delete" if op.is_delete else "write")
            for op in self._staging.ops()
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
    """A client of a Statehouse store: embedded (this process's database) or remote.

    `url`: None (then `STATEHOUSE_URL`, else embedded), an `http(s)://host:port` server
    address or a bare `host:port` (remote), or a database URL such as `postgres://…`
    (embedded, on that database). `token` (or `STATEHOUSE_TOKEN`) authenticates a remote
    client. `namespace` (or `STATEHOUSE_NAMESPACE`, else "default") is the default for every
    call that names none; `timeout` (or `STATEHOUSE_TIMEOUT`, else 60) bounds each request
    to a server, in seconds.
    """

    def __init__(
        self,
        url: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        *,
        token: str | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        if namespace is None:
            namespace = os.environ.get("STATEHOUSE_NAMESPACE") or "default"
        self.namespace = check_identifier("namespace", namespace)
        self.timeout = _timeout(timeout)
        self._backend = _backend(
            url, token=token, timeout=self.timeout, lease_seconds=lease_seconds
        )
        self._closed = False
        _open_clients.add(self)

    # --- set-up ---

    @property
    def mode(self) -> str:
        """ "embedded" or "remote"."""
        return self._backend.mode

    @property
    def lease_seconds(self) -> float:
        return self._backend.lease_seconds

    @property
    def owner(self) -> Owner:
        """Who this client is when it holds a lease (made anew in a forked child)."""
        return self._backend.owner

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else check_identifier("namespace", namespace)

    # The arguments of each operation, validated and normalised: shared with AsyncStatehouse.

    def _agent_args(self, agent_id: str, namespace: str | None) -> tuple[str, str]:
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        return ns, agent_id

    def _record_args(self, agent_id: str, key: str, namespace: str | None) -> tuple[str, str, str]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        check_identifier("key", key)
        return ns, agent_id, key

    def _version_args(
        self, agent_id: str, key: str, version: int, namespace: str | None
    ) -> tuple[str, str, str, int]:
        ns, agent_id, key = self._record_args(agent_id, key, namespace)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError(f"version must be an integer >= 1, not {version!r}")
        return ns, agent_id, key, version

    def _keys_args(
        self, agent_id: str, namespace: str | None, prefix: str | None
    ) -> tuple[str, str, str | None]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        if prefix is not None:
            check_prefix(prefix)
        return ns, agent_id, prefix or None

    def _scan_args(self, agent_id: str, prefix: str, namespace: str | None) -> tuple[str, str, str]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        check_prefix(prefix)
        return ns, agent_id, prefix

    def _replay_args(
        self, agent_id: str, start_ts: int | None, end_ts: int | None, namespace: str | None
    ) -> tuple[str, str, int | None, int | None]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        start_ts, end_ts = check_replay_bounds(start_ts, end_ts)
        return ns, agent_id, start_ts, end_ts

    def _resume_args(
        self, agent_id: str, namespace: str | None, requested_by: str
    ) -> tuple[str, str, str]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        if not isinstance(requested_by, str):
            raise ValidationError(f"requested_by must be a string, not {requested_by!r}")
        return ns, agent_id, requested_by

    def _register_args(
        self, agent_id: str, namespace: str | None, entry_point: str, auto: bool
    ) -> tuple[str, str, str, bool]:
        ns, agent_id = self._agent_args(agent_id, namespace)
        if not isinstance(auto, bool):
            raise ValidationError(f"auto must be True or False, not {auto!r}")
        return ns, agent_id, entry_point, auto

    def _ready(self) -> Backend:
        if self._closed:
            raise StatehouseError("this Statehouse client is closed")
        return self._backend

    # --- health ---

    def health(self) -> str:
        """Return "ok" when the store answers; raise StatehouseError otherwise."""
        return self._ready().health()

    def version(self) -> tuple[str, str]:
        """Return (package version, schema revision) of the store."""
        return self._ready().version()

    # --- transactions ---

    def begin_transaction(
        self, timeout_ms: int | None = None, namespace: str | None = None, *, join: bool = False
    ) -> Transaction:
        """A new transaction; `timeout_ms` None means the default (30 s).

        Its commit is durable on its own: inside an open database transaction of the
        caller (`django.db.transaction.atomic()`) it is refused with TransactionError.
        `join=True` (embedded client only) instead makes it part of that transaction, one
        atomic unit with the caller's own writes, durable only when the caller's
        transaction commits (docs/client.md, "Durability").
        """
        if timeout_ms is None:
            timeout_ms = DEFAULT_TIMEOUT_MS
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise ValidationError(f"timeout_ms must be a positive integer, not {timeout_ms!r}")
        if not isinstance(join, bool):
            raise ValidationError(f"join must be True or False, not {join!r}")
        self._ready()
        return Transaction(self, namespace=self._ns(namespace), timeout_ms=timeout_ms, join=join)

    def _commit(
        self, namespace: str, ops: list[Any], txn_id: str, *, join: bool = False
    ) -> int | None:
        if not ops:
            return None
        return self._ready().commit(namespace, ops, txn_id, join=join)

    def release(self, agent_id: str, namespace: str | None = None) -> None:
        """Stop running an agent here: release its lease and forget that this client held it.

        After a LeaseLostError, this is how a client that means to run the agent again
        (for example after an operator's decision) starts afresh.
        """
        args = self._agent_args(agent_id, namespace)
        self._ready().release(*args)

    # --- reads ---

    def get_state(self, agent_id: str, key: str, namespace: str | None = None) -> StateResult:
        """The current value of a record; `exists=False` if never written or deleted."""
        args = self._record_args(agent_id, key, namespace)
        return self._ready().get_state(*args)

    def get_state_at_version(
        self, agent_id: str, key: str, version: int, namespace: str | None = None
    ) -> StateResult:
        """The record as it was at `version`; NotFoundError if that version never existed."""
        args = self._version_args(agent_id, key, version, namespace)
        return self._ready().get_state_at_version(*args)

    def list_keys(
        self, agent_id: str, namespace: str | None = None, prefix: str | None = None
    ) -> list[str]:
        """The agent's live keys (tombstones left out), sorted."""
        args = self._keys_args(agent_id, namespace, prefix)
        return self._ready().list_keys(*args)

    def scan_prefix(
        self, agent_id: str, prefix: str, namespace: str | None = None
    ) -> list[StateResult]:
        """Live records whose key starts with `prefix`, in key order."""
        args = self._scan_args(agent_id, prefix, namespace)
        return self._ready().scan_prefix(*args)

    def replay(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
    ) -> Iterator[ReplayEvent]:
        """Every committed transaction that touched the agent, in commit order, streamed.

        `start_ts` and `end_ts` are both inclusive.
        """
        args = self._replay_args(agent_id, start_ts, end_ts, namespace)
        return self._ready().replay(*args)

    def replay_events(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
    ) -> Iterator[ReplayEvent]:
        """The same as `replay` (the original SDK's name)."""
        return self.replay(agent_id, start_ts=start_ts, end_ts=end_ts, namespace=namespace)

    def replay_pretty(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
        verbose: bool = False,
    ) -> Iterator[str]:
        """One readable line per operation of the agent's history (statehouse.formatting)."""
        from statehouse.formatting import event_lines

        for event in self.replay(agent_id, start_ts=start_ts, end_ts=end_ts, namespace=namespace):
            yield from event_lines(event, verbose=verbose)

    # --- agents, steps and resume (docs/client.md) ---

    def last_completed_step(self, agent_id: str, namespace: str | None = None) -> int:
        """The highest step number whose status is `done`, or -1 when none is."""
        args = self._agent_args(agent_id, namespace)
        return self._ready().last_completed_step(*args)

    def step(
        self,
        agent_id: str,
        number: int,
        action: Any = None,
        namespace: str | None = None,
        **options: Unpack[StepOptions],
    ) -> StepContext:
        """A context manager recording step `number` as pending, then done or failed;
        optional LLM metadata (model, tokens_in, tokens_out, cost) goes in its value, and
        `step.llm(...)` adds more inside the block. `policy` ("retry", the default,
        "skip" or "review") says what a resume does with the step if the run is
        interrupted while it is pending (docs/client.md, "In-doubt steps")."""
        check_identifier("agent_id", agent_id)
        return StepContext(self, agent_id, number, action, namespace, **options)

    def start(self, agent_id: str, task: Any, namespace: str | None = None) -> int | None:
        """Write the agent's `task` (this process now runs the agent)."""
        return self._write_one(agent_id, "task", task, namespace)

    def finish(self, agent_id: str, answer: Any, namespace: str | None = None) -> int | None:
        """Write the agent's `answer`: it is completed and its lease released."""
        return self._write_one(agent_id, "answer", answer, namespace)

    def fail(self, agent_id: str, error: str, namespace: str | None = None) -> int | None:
        """Write the agent's `failure`: it is failed (until resumed) and its lease released."""
        return self._write_one(agent_id, "failure", failure_value(error), namespace)

    def _write_one(self, agent_id: str, key: str, value: Any, namespace: str | None) -> int | None:
        """One write in a transaction of its own; its commit_ts."""
        with self.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key=key, value=value)
        return tx.commit_ts

    def request_approval(
        self,
        agent_id: str,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = 3600.0,
        poll_interval: float = 1.0,
        namespace: str | None = None,
    ) -> ApprovalDecision:
        """Ask a person to approve or reject `name` (with `payload` shown to them) and wait.

        The agent shows as waiting on the dashboard until an operator decides; the decision
        is returned. After `timeout` seconds (None: no limit) ApprovalTimeoutError, the
        request staying open: an agent may instead stop, and once resumed ask again with
        the same name, which returns the same request and, decided, its decision at once.
        """
        args = self._agent_args(agent_id, namespace)
        waiting = ApprovalWait(agent_id, name, timeout, poll_interval)
        backend = self._ready()
        check_approval_payload(name, payload, backend.max_value_bytes)
        decision = ApprovalDecision.from_dict(backend.request_approval(*args, name, payload))
        while not decision.decided:
            wait = waiting.next_wait(decision)
            decision = ApprovalDecision.from_dict(
                backend.get_approval(*args, decision.id, wait, poll_interval)
            )
        return decision

    def fork(
        self,
        source_id: str,
        new_id: str = "",
        *,
        step: int | None = None,
        at_ts: int | None = None,
        resume: bool = False,
        namespace: str | None = None,
    ) -> str:
        """Create agent `new_id` (generated when empty) from `source_id`'s keys as they
        stood at `step` or commit `at_ts` (neither: now); return the new id. `resume=True`
        queues its resume at once (docs/operations.md, "Fork")."""
        ns, source_id = self._agent_args(source_id, namespace)
        if new_id:
            check_identifier("agent_id", new_id)
        return self._ready().fork(ns, source_id, new_id, step, at_ts, resume)

    def get_approval(
        self,
        agent_id: str,
        approval_id: int,
        namespace: str | None = None,
        *,
        wait: float = 0.0,
    ) -> ApprovalDecision:
        """One approval request of the agent as it stands now (pending or decided); with
        `wait` (up to 30 s), as soon as it is decided within that time."""
        args = self._agent_args(agent_id, namespace)
        _check_approval_args(approval_id, wait)
        return ApprovalDecision.from_dict(self._ready().get_approval(*args, approval_id, wait))

    def status(self, agent_id: str, namespace: str | None = None) -> str | None:
        """The agent's status as operators see it (running, interrupted, …), None if unknown."""
        args = self._agent_args(agent_id, namespace)
        return self._ready().status(*args)

    def register_resume(
        self, agent_id: str, entry_point: str, namespace: str | None = None, *, auto: bool = False
    ) -> None:
        """Name the function that resumes this agent: "package.module:function".

        A resume worker calls it as `function(client, agent_id)` in a process it supervises.
        `auto=True`: when the agent's process is seen dead (docs/operations.md, "Crash
        detection"), a resume is queued at once, with no command typed.
        """
        args = self._register_args(agent_id, namespace, entry_point, auto)
        self._ready().register_resume(*args)

    def request_resume(
        self, agent_id: str, namespace: str | None = None, requested_by: str = ""
    ) -> int:
        """Queue a resume of an interrupted or failed agent; return the request's id.

        Asking again while a request is open returns the same request.
        NotFoundError if the agent is unknown, NotResumableError if it is running or done.
        """
        args = self._resume_args(agent_id, namespace, requested_by)
        return self._ready().request_resume(*args)

    def cancel(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        """Cancel an agent (docs/operations.md): its next step raises AgentCancelledError
        and a resume run of it under a worker is stopped. Return its new status.

        OperatorActionError if it has already finished; NotFoundError if unknown.
        """
        return self._control("cancel", agent_id, namespace, reason, actor)

    def pause(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        """Pause an agent: its next step waits until it is unpaused (or
        STATEHOUSE_PAUSE_TIMEOUT_SECONDS pass: AgentPausedError). Return its new status."""
        return self._control("pause", agent_id, namespace, reason, actor)

    def unpause(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        """Unpause a paused agent; return its new status."""
        return self._control("unpause", agent_id, namespace, reason, actor)

    def _control(
        self, action: str, agent_id: str, namespace: str | None, reason: str, actor: str
    ) -> str:
        ns = self._ns(namespace)
        check_identifier("agent_id", agent_id)
        for name, value in (("reason", reason), ("actor", actor)):
            if not isinstance(value, str):
                raise ValidationError(f"{name} must be a string, not {value!r}")
        if len(actor) > 255:
            raise ValidationError(f"actor is at most 255 characters, not {len(actor)}")
        return self._ready().control(ns, agent_id, action, actor, reason)

    def agents(
        self,
        status: str | None = None,
        namespace: str | None = None,
        pattern: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, object]]:
        """Agents with their status, task and step counts, most recently active first.

        `namespace` None: every namespace; `pattern`: a shell pattern of agent ids.
        """
        if namespace is not None:
            check_identifier("namespace", namespace)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be an integer in [1, 10000], not {limit!r}")
        return self._ready().agents(status, namespace, pattern, limit)

    # --- life cycle ---

    def close(self) -> None:
        """Stop renewing leases and release them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._backend.close()

    def __enter__(self) -> Statehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Statehouse {self.mode} namespace={self.namespace!r}>"


def check_approval_payload(name: str, payload: Any, max_bytes: int) -> None:
    """A payload is JSON within the value limit, checked before anything is sent."""
    encode_value({} if payload is None else payload, key=f"approval {name}", max_bytes=max_bytes)


class ApprovalWait:
    """How long `request_approval` still waits, the blocking and the asyncio client alike:
    its arguments checked at the call, then one wait of up to APPROVAL_WAIT s at a time (in
    this process when embedded, on the server when remote: a long poll, docs/api.md) until
    `timeout` is spent (None: no limit), then ApprovalTimeoutError."""

    def __init__(
        self, agent_id: str, name: str, timeout: float | None, poll_interval: float
    ) -> None:
        check_identifier("name", name)
        if timeout is not None and timeout < 0:
            raise ValidationError(f"timeout must be 0 or more seconds, not {timeout}")
        if poll_interval <= 0:
            raise ValidationError(f"poll_interval must be more than 0 seconds, not {poll_interval}")
        self.agent_id, self.name, self.timeout = agent_id, name, timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def next_wait(self, decision: ApprovalDecision) -> float:
        """The next wait for `decision` (still pending), in seconds; raise once none is left."""
        left = APPROVAL_WAIT if self.deadline is None else self.deadline - time.monotonic()
        if left <= 0:
            raise ApprovalTimeoutError(
                f"nobody decided {self.name!r} for agent {self.agent_id!r} within "
                f"{self.timeout} s; the request stays open",
                approval_id=decision.id,
                name=self.name,
            )
        return min(APPROVAL_WAIT, left)


def _check_approval_args(approval_id: int, wait: float) -> None:
    if isinstance(approval_id, bool) or not isinstance(approval_id, int) or approval_id < 1:
        raise ValidationError(f"approval_id must be a positive integer, not {approval_id!r}")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 30:
        raise ValidationError(f"wait must be 0 to 30 seconds, not {wait!r}")


def failure_value(error: str) -> dict[str, str]:
    """The `failure` record `fail()` writes."""
    if not isinstance(error, str):
        raise ValidationError(f"error must be a string, not {type(error).__name__}")
    return {"error": error}


def check_replay_bounds(start_ts: int | None, end_ts: int | None) -> tuple[int | None, int | None]:
    """Validate replay bounds; clamp them to [0, 2**63 - 1] (where every commit_ts lies)."""
    for name, bound in (("start_ts", start_ts), ("end_ts", end_ts)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise ValidationError(f"{name} must be an integer or None, not {bound!r}")
    low, high = (None if ts is None else min(max(ts, 0), _MAX_INT64) for ts in (start_ts, end_ts))
    return low, high


def server_address(url: str) -> str | None:
    """The base URL of a Statehouse server named by `url`, or None for a database URL."""
    if url.startswith(("http://", "https://")):
        return url.rstrip("/")
    if "://" in url:
        return None
    if _HOST_PORT.fullmatch(url):
        return f"http://{url}"
    raise ValidationError(
        f"url {url!r} is neither a server address (http://host:port or host:port) "
        "nor a database URL (postgres://…, sqlite:///…)"
    )


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        timeout = env_seconds("STATEHOUSE_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValidationError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _backend(
    url: str | None, *, token: str | None, timeout: float, lease_seconds: float | None
) -> Backend:
    if url is None:
        url = os.environ.get("STATEHOUSE_URL") or None
    address = None if url is None else server_address(url)
    if address is None:
        from statehouse._embedded import EmbeddedBackend

        return EmbeddedBackend(database_url=url, lease_seconds=lease_seconds)
    from statehouse.remote import RemoteBackend

    return RemoteBackend(
        address,
        token=token if token is not None else os.environ.get("STATEHOUSE_TOKEN"),
        timeout=timeout,
        lease_seconds=lease_seconds,
    )


@atexit.register
def _release_at_exit() -> None:
    for client in list(_open_clients):
        client.close()
