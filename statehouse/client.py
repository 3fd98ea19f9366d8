"""The Statehouse client: transactions, reads and replay, embedded or over the network.

`Statehouse` validates arguments and delegates to a backend: the embedded one (the
database of the Django settings, statehouse/_embedded.py) or the remote one (the HTTP API,
statehouse/remote.py). Both behave the same; docs/client.md says how one is chosen.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import time
import types
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from statehouse._backend import Backend, Owner
from statehouse._ids import new_txn_id
from statehouse._ops import PendingOp, Staging
from statehouse.errors import (
    ApprovalTimeoutError,
    StatehouseError,
    TransactionError,
    ValidationError,
)
from statehouse.steps import ExcInfo, StepContext, StepOptions
from statehouse.types import ApprovalDecision, ReplayEvent, StateResult
from statehouse.validation import check_identifier, check_prefix, encode_value, env_seconds

if TYPE_CHECKING:
    from statehouse.aio import AsyncStatehouse

__all__ = ["DEFAULT_TIMEOUT_MS", "Statehouse", "Transaction", "failure_value"]

_open_clients: weakref.WeakSet[Statehouse] = weakref.WeakSet()
_MAX_INT64 = 2**63 - 1
DEFAULT_TIMEOUT_MS = 30_000
# The longest one wait for an approval's decision lasts, in this process or on the
# server (the API's long poll: agents/store/approvals.py, MAX_WAIT_SECONDS).
APPROVAL_WAIT = 20.0
DEFAULT_TIMEOUT_SECONDS = 60.0
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
SyncR = TypeVar("SyncR")
AsyncR = TypeVar("AsyncR")
StepT = TypeVar("StepT")  # what `step()` returns: a StepContext, or an AsyncStepContext


def new_staging(client: Statehouse) -> Staging:
    """An empty staging of operations with the client's limits, as a transaction has."""
    backend = client._backend
    return Staging(
        max_value_bytes=backend.max_value_bytes,
        max_operations=backend.max_transaction_operations,
    )


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
        self.txn_id = new_txn_id()
        self.commit_ts: int | None = None
        # True once the commit can no longer be undone. A joined commit becomes durable
        # when the caller's database transaction commits (docs/client.md, "Durability").
        self.durable = False
        # The limits first: a remote client may ask its server for them, outside the deadline.
        self._staging = new_staging(client)
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

    def _stage_validated(self, ops: Iterable[PendingOp]) -> None:
        """Stage operations validated earlier by a `new_staging` of this client (the
        LangGraph saver encodes a checkpoint while the previous commit runs)."""
        self._check_usable()
        for op in ops:
            self._staging.add(op)

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

    def __exit__(self, *exc_info: *ExcInfo) -> None:
        if exc_info[0] is not None:
            self.abort()
            return
        if self._state == "open":
            self.commit()


class BackendCall(NamedTuple):
    """One backend operation, named, with its validated arguments: what a shared plan asks
    its client to perform (`Backend`'s methods; the asyncio client's I/O layer has the same)."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# An operation written once for both clients: a generator that validates its arguments,
# yields the backend calls it needs (receiving each one's result) and returns the result.
Plan = Generator[BackendCall, Any, R]


def backend_call(
    method: Callable[Concatenate[Backend, P], T], *args: P.args, **kwargs: P.kwargs
) -> Generator[BackendCall, Any, T]:
    """In a plan, `result = yield from backend_call(Backend.op, …)`: `op`'s result, typed."""
    result: T = yield BackendCall(method.__name__, args, kwargs)
    return result


@dataclass(frozen=True, slots=True)
class Replay(Generic[T]):
    """A validated replay: the backend's arguments, and what each event becomes (None: the
    event itself)."""

    args: tuple[str, str, int | None, int | None]
    each: Callable[[ReplayEvent], Iterable[T]] | None = None


class ClientMethod(Generic[P, SyncR, AsyncR]):
    """A method of both clients, defined once on `ClientBase` (`operation`, `replay_method`):
    `Statehouse` runs what it builds and returns `SyncR`, `AsyncStatehouse` returns `AsyncR`
    (a coroutine, an async iterator)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Any], runner: str) -> None:
        def method(client: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(client, runner)(build(client, *args, **kwargs))

        # Made once: reading the method off a client only binds it, as for a plain method.
        self._method = functools.update_wrapper(method, build)
        self.__doc__ = build.__doc__  # help() of the class shows the method's
        self.__wrapped__ = build

    @overload
    def __get__(self, client: None, owner: type) -> ClientMethod[P, SyncR, AsyncR]: ...
    @overload
    def __get__(self, client: AsyncStatehouse, owner: type) -> Callable[P, AsyncR]: ...
    @overload
    def __get__(self, client: Statehouse, owner: type) -> Callable[P, SyncR]: ...
    def __get__(self, client: ClientBase[Any] | None, owner: type) -> Any:
        if client is None:
            return self
        return types.MethodType(self._method, client)


def operation(
    plan: Callable[Concatenate[Any, P], Plan[R]],
) -> ClientMethod[P, R, Coroutine[Any, Any, R]]:
    """Make a plan an operation of both clients: a call, or a coroutine."""
    return ClientMethod(plan, "_run")


def replay_method(
    build: Callable[Concatenate[Any, P], Replay[T]],
) -> ClientMethod[P, Iterator[T], AsyncIterator[T]]:
    """Make a validated replay a method of both clients: an iterator, or an async one."""
    return ClientMethod(build, "_replay")


class PlanRun(Generic[R]):
    """Runs a plan: each backend call it asks for, its result sent back, until it returns."""

    def __init__(self, plan: Plan[R]) -> None:
        self._plan = plan
        self.value: R

    def send(self, result: Any) -> BackendCall | None:
        """The plan's next call (`result` answers the last one), or None once it returned."""
        try:
            return self._plan.send(result)
        except StopIteration as done:
            self.value = done.value
            return None


class ClientBase(ABC, Generic[StepT]):
    """What `Statehouse` and `AsyncStatehouse` share: the arguments, their checks and
    defaults, and every operation written once as a plan; each client only performs the
    backend calls (blocking, or awaited).

    `url`: None (then `STATEHOUSE_URL`, else embedded), an `http(s)://host:port` server
    address or a bare `host:port` (remote), or a database URL such as `postgres://…`
    (embedded, on that database). `token` (or `STATEHOUSE_TOKEN`) authenticates a remote
    client. `namespace` (or `STATEHOUSE_NAMESPACE`, else "default") is the default for every
    call that names none; `timeout` (or `STATEHOUSE_TIMEOUT`, else 60) bounds each request
    to a server, in seconds.
    """

    namespace: str

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
        namespace = check_identifier("namespace", namespace)
        seconds = _timeout(timeout)
        backend = _backend(url, token=token, timeout=seconds, lease_seconds=lease_seconds)
        self._start(namespace, seconds, backend)

    @abstractmethod
    def _start(self, namespace: str, timeout: float, backend: Backend) -> None:
        """Set the client up on its (checked) namespace, timeout and backend."""

    @property
    @abstractmethod
    def _blocking(self) -> Statehouse:
        """The blocking client holding the backend: this one, or the one driven by asyncio."""

    @property
    def mode(self) -> str:
        """ "embedded" or "remote"."""
        return self._blocking._backend.mode

    def _ns(self, namespace: str | None) -> str:
        return self.namespace if namespace is None else check_identifier("namespace", namespace)

    # The arguments of each operation, validated and normalised.

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

    # --- health ---

    @operation
    def health(self) -> Plan[str]:
        """Return "ok" when the store answers; raise StatehouseError otherwise."""
        return (yield from backend_call(Backend.health))

    @operation
    def version(self) -> Plan[tuple[str, str]]:
        """Return (package version, schema revision) of the store."""
        return (yield from backend_call(Backend.version))

    @operation
    def release(self, agent_id: str, namespace: str | None = None) -> Plan[None]:
        """Stop running an agent here: release its lease and forget that this client held it.

        After a LeaseLostError, this is how a client that means to run the agent again
        (for example after an operator's decision) starts afresh.
        """
        yield from backend_call(Backend.release, *self._agent_args(agent_id, namespace))

    # --- reads ---

    @operation
    def get_state(self, agent_id: str, key: str, namespace: str | None = None) -> Plan[StateResult]:
        """The current value of a record; `exists=False` if never written or deleted."""
        args = self._record_args(agent_id, key, namespace)
        return (yield from backend_call(Backend.get_state, *args))

    @operation
    def get_state_at_version(
        self, agent_id: str, key: str, version: int, namespace: str | None = None
    ) -> Plan[StateResult]:
        """The record as it was at `version`; NotFoundError if that version never existed."""
        args = self._version_args(agent_id, key, version, namespace)
        return (yield from backend_call(Backend.get_state_at_version, *args))

    @operation
    def list_keys(
        self, agent_id: str, namespace: str | None = None, prefix: str | None = None
    ) -> Plan[list[str]]:
        """The agent's live keys (tombstones left out), sorted."""
        args = self._keys_args(agent_id, namespace, prefix)
        return (yield from backend_call(Backend.list_keys, *args))

    @operation
    def scan_prefix(
        self, agent_id: str, prefix: str, namespace: str | None = None
    ) -> Plan[list[StateResult]]:
        """Live records whose key starts with `prefix`, in key order."""
        args = self._scan_args(agent_id, prefix, namespace)
        return (yield from backend_call(Backend.scan_prefix, *args))

    @replay_method
    def replay(
        self,
        agent_id: str,
        start_ts: int | None = None,  # the first commit timestamp, inclusive
        end_ts: int | None = None,  # the last one, inclusive
        namespace: str | None = None,
    ) -> Replay[ReplayEvent]:
        """Every committed transaction that touched the agent, in commit order, streamed.
        Bad arguments raise at the call."""
        return Replay(self._replay_args(agent_id, start_ts, end_ts, namespace))

    replay_events = replay  # the original SDK's name

    @replay_method
    def replay_pretty(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
        verbose: bool = False,
    ) -> Replay[str]:
        """One readable line per operation of the agent's history (statehouse.formatting)."""
        from statehouse.formatting import event_lines

        args = self._replay_args(agent_id, start_ts, end_ts, namespace)
        return Replay(args, functools.partial(event_lines, verbose=verbose))

    # --- agents, steps and resume (docs/client.md) ---

    @operation
    def last_completed_step(self, agent_id: str, namespace: str | None = None) -> Plan[int]:
        """The highest step number whose status is `done`, or -1 when none is."""
        args = self._agent_args(agent_id, namespace)
        return (yield from backend_call(Backend.last_completed_step, *args))

    def step(
        self,
        agent_id: str,
        number: int,
        action: Any = None,
        namespace: str | None = None,
        **options: Unpack[StepOptions],
    ) -> StepT:
        """A context manager recording step `number` as pending, then done or failed;
        optional LLM metadata (model, tokens_in, tokens_out, cost) goes in its value, and
        `step.llm(...)` adds more inside the block. `policy` ("retry", the default,
        "skip" or "review") says what a resume does with the step if the run is
        interrupted while it is pending (docs/client.md, "In-doubt steps")."""
        check_identifier("agent_id", agent_id)
        step = StepContext(self._blocking, agent_id, number, action, namespace, **options)
        return self._step_context(step)

    @abstractmethod
    def _step_context(self, step: StepContext) -> StepT:
        """The step as this client's callers enter it (`with`, or `async with`)."""

    @operation
    def request_approval(
        self,
        agent_id: str,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = 3600.0,
        poll_interval: float = 1.0,
        namespace: str | None = None,
    ) -> Plan[ApprovalDecision]:
        """Ask a person to approve or reject `name` (with `payload` shown to them) and wait.

        The agent shows as waiting on the dashboard until an operator decides; the decision
        is returned. After `timeout` seconds (None: no limit) ApprovalTimeoutError, the
        request staying open: an agent may instead stop, and once resumed ask again with
        the same name, which returns the same request and, decided, its decision at once.
        The asyncio client waits without blocking the event loop.
        """
        args = self._agent_args(agent_id, namespace)
        waiting = ApprovalWait(agent_id, name, timeout, poll_interval)
        max_bytes = yield from backend_call(Backend.value_limit)
        check_approval_payload(name, payload, max_bytes)
        found = yield from backend_call(Backend.request_approval, *args, name, payload)
        decision = ApprovalDecision.from_dict(found)
        while not decision.decided:
            wait = waiting.next_wait(decision)
            found = yield from backend_call(
                Backend.get_approval, *args, decision.id, wait, poll_interval
            )
            decision = ApprovalDecision.from_dict(found)
        return decision

    @operation
    def get_approval(
        self,
        agent_id: str,
        approval_id: int,
        namespace: str | None = None,
        *,
        wait: float = 0.0,
    ) -> Plan[ApprovalDecision]:
        """One approval request of the agent as it stands now (pending or decided); with
        `wait` (up to 30 s), as soon as it is decided within that time."""
        args = self._agent_args(agent_id, namespace)
        _check_approval_args(approval_id, wait)
        found = yield from backend_call(Backend.get_approval, *args, approval_id, wait, 1.0)
        return ApprovalDecision.from_dict(found)

    @operation
    def status(self, agent_id: str, namespace: str | None = None) -> Plan[str | None]:
        """The agent's status as operators see it (running, interrupted, …), None if unknown."""
        args = self._agent_args(agent_id, namespace)
        return (yield from backend_call(Backend.status, *args))

    @operation
    def register_resume(
        self, agent_id: str, entry_point: str, namespace: str | None = None, *, auto: bool = False
    ) -> Plan[None]:
        """Name the function that resumes this agent: "package.module:function".

        A resume worker calls it as `function(client, agent_id)` in a process it supervises.
        `auto=True`: when the agent's process is seen dead (docs/operations.md, "Crash
        detection"), a resume is queued at once, with no command typed.
        """
        args = self._register_args(agent_id, namespace, entry_point, auto)
        yield from backend_call(Backend.register_resume, *args)

    @operation
    def request_resume(
        self, agent_id: str, namespace: str | None = None, requested_by: str = ""
    ) -> Plan[int]:
        """Queue a resume of an interrupted or failed agent; return the request's id.

        Asking again while a request is open returns the same request.
        NotFoundError if the agent is unknown, NotResumableError if it is running or done.
        """
        args = self._resume_args(agent_id, namespace, requested_by)
        return (yield from backend_call(Backend.request_resume, *args))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mode} namespace={self.namespace!r}>"


class Statehouse(ClientBase[StepContext]):
    """A client of a Statehouse store: embedded (this process's database) or remote.

    The arguments are `ClientBase`'s: `Statehouse(url=None, namespace=None, timeout=None,
    *, token=None, lease_seconds=None)`.
    """

    def _start(self, namespace: str, timeout: float, backend: Backend) -> None:
        self.namespace = namespace
        self.timeout = timeout
        self._backend = backend
        self._closed = False
        _open_clients.add(self)

    @classmethod
    def _sharing(cls, namespace: str, timeout: float, backend: Backend) -> Statehouse:
        """A blocking client on an existing backend (the one an AsyncStatehouse drives)."""
        client = cls.__new__(cls)
        client._start(namespace, timeout, backend)
        return client

    @property
    def _blocking(self) -> Statehouse:
        return self

    # --- set-up ---

    @property
    def lease_seconds(self) -> float:
        return self._backend.lease_seconds

    @property
    def owner(self) -> Owner:
        """Who this client is when it holds a lease (made anew in a forked child)."""
        return self._backend.owner

    def _ready(self) -> Backend:
        if self._closed:
            raise StatehouseError("this Statehouse client is closed")
        return self._backend

    def _run(self, plan: Plan[R]) -> R:
        """Perform a plan's backend calls, in this thread (`PlanRun`'s loop, inlined: every
        read and commit of the blocking client goes through here)."""
        result = None
        while True:
            try:
                call = plan.send(result)
            except StopIteration as done:
                return cast(R, done.value)
            result = getattr(self._ready(), call.name)(*call.args, **call.kwargs)

    def _replay(self, replay: Replay[T]) -> Iterator[T]:
        events = self._ready().replay(*replay.args)
        if replay.each is None:
            return cast(Iterator[T], events)
        each = replay.each
        return (item for event in events for item in each(event))

    def _step_context(self, step: StepContext) -> StepContext:
        return step

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

    # --- agents (docs/client.md) ---

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
        backend = self._ready()
        from statehouse._embedded import EmbeddedBackend  # loaded already when embedded

        if not isinstance(backend, EmbeddedBackend):
            raise StatehouseError("fork is offered by the embedded client only for now")
        return backend.fork(ns, source_id, new_id, step, at_ts, resume)

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
