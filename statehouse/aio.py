"""`AsyncStatehouse`: the client's API for asyncio code, embedded or remote (docs/client.md).

    async with AsyncStatehouse() as client:
        async with client.begin_transaction() as tx:
            tx.write(agent_id="a1", key="task", value={"task": "…"})
        async for event in client.replay("a1"):
            ...

Arguments are validated, and transactions staged, by the same code as the blocking client's
(`Statehouse`), so both raise the same errors. Then:

- remote: the calls go out on a pooled `httpx.AsyncClient` (statehouse/remote.py,
  `AsyncRemote`): the event loop never waits on the network, and one client serves many
  concurrent tasks. Leases are renewed by the blocking client's keeper thread, so a busy
  loop cannot let them lapse.
- embedded: the database is reached through Django's blocking ORM, so the backend's calls
  run, in order, on one thread of the client's own (Django's connections belong to a
  thread: the client keeps one), never on the loop.

Staging (`write`, `delete`) does no I/O and is a plain method.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, Unpack, cast

from statehouse._backend import Backend
from statehouse._ops import PendingOp
from statehouse.client import (
    ClientBase,
    Plan,
    PlanRun,
    Replay,
    Statehouse,
    Transaction,
    failure_value,
)
from statehouse.remote import AsyncRemote, RemoteBackend
from statehouse.steps import ExcInfo, LlmUsage, StepContext
from statehouse.types import ReplayEvent, StateResult

__all__ = ["AsyncStatehouse", "AsyncStepContext", "AsyncTransaction"]

T = TypeVar("T")
R = TypeVar("R")
_BATCH = 100  # replay events fetched per hop to the embedded client's thread


def _close_thread_connection() -> None:
    from django.db import connection

    connection.close()


class _Threaded:
    """The embedded mode: the blocking backend's calls, in order, on one thread."""

    def __init__(self, client: Statehouse) -> None:
        self.client = client
        self.backend = client._backend
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statehouse-aio")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))

    async def value_limit(self) -> int:
        return await self.run(self.backend.value_limit)

    async def health(self) -> str:
        return await self.run(self.backend.health)

    async def version(self) -> tuple[str, str]:
        return await self.run(self.backend.version)

    async def commit(self, namespace: str, ops: list[PendingOp], txn_id: str) -> int | None:
        return await self.run(self.backend.commit, namespace, ops, txn_id)

    async def release(self, namespace: str, agent_id: str) -> None:
        await self.run(self.backend.release, namespace, agent_id)

    async def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult:
        return await self.run(self.backend.get_state, namespace, agent_id, key)

    async def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult:
        return await self.run(self.backend.get_state_at_version, namespace, agent_id, key, version)

    async def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]:
        return await self.run(self.backend.list_keys, namespace, agent_id, prefix)

    async def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
        return await self.run(self.backend.scan_prefix, namespace, agent_id, prefix)

    async def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> AsyncIterator[ReplayEvent]:
        events = await self.run(self.backend.replay, namespace, agent_id, start_ts, end_ts)
        async for event in self._drain(events):
            yield event

    async def _drain(self, items: Iterator[T]) -> AsyncIterator[T]:
        """Pull a blocking iterator on the client's thread, a batch per hop."""

        def batch() -> list[T]:
            return [item for _, item in zip(range(_BATCH), items, strict=False)]

        try:
            while chunk := await self.run(batch):
                for item in chunk:
                    yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                await self.run(close)

    async def last_completed_step(self, namespace: str, agent_id: str) -> int:
        return await self.run(self.backend.last_completed_step, namespace, agent_id)

    async def status(self, namespace: str, agent_id: str) -> str | None:
        return await self.run(self.backend.status, namespace, agent_id)

    async def register_resume(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> None:
        await self.run(self.backend.register_resume, namespace, agent_id, entry_point, auto)

    async def request_approval(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str = "request"
    ) -> dict[str, Any]:
        return await self.run(
            self.backend.request_approval, namespace, agent_id, name, payload, kind
        )

    async def get_approval(
        self, namespace: str, agent_id: str, approval_id: int, wait: float, poll_interval: float
    ) -> dict[str, Any]:
        """Waits on the loop, not on the client's one thread (other calls go on meanwhile)."""
        deadline = time.monotonic() + wait
        while True:
            found = await self.run(
                self.backend.get_approval, namespace, agent_id, approval_id, 0.0, poll_interval
            )
            left = deadline - time.monotonic()
            if found["decided"] or left <= 0:
                return found
            await asyncio.sleep(min(poll_interval, left))

    async def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int:
        return await self.run(self.backend.request_resume, namespace, agent_id, requested_by)

    async def close(self) -> None:
        await self.run(self.client.close)
        await self.run(_close_thread_connection)
        self._executor.shutdown(wait=False)


class AsyncTransaction:
    """`async with client.begin_transaction() as tx:` (or `tx = await …`): a clean exit
    commits, an exception aborts and re-raises."""

    def __init__(self, client: AsyncStatehouse, timeout_ms: int | None, namespace: str | None):
        self._client = client
        self._args = (timeout_ms, namespace)
        self._tx: Transaction | None = None

    async def _open(self) -> AsyncTransaction:
        if self._tx is None:
            self._tx = await self._client._begin(*self._args)
        return self

    def __await__(self) -> Generator[Any, None, AsyncTransaction]:
        return self._open().__await__()

    @property
    def tx(self) -> Transaction:
        if self._tx is None:  # staged before being awaited: open it here (no await possible)
            self._tx = self._client.sync.begin_transaction(*self._args)
        return self._tx

    @property
    def txn_id(self) -> str:
        return self.tx.txn_id

    @property
    def commit_ts(self) -> int | None:
        return self.tx.commit_ts

    @property
    def namespace(self) -> str:
        return self.tx.namespace

    @property
    def operations(self) -> list[tuple[str, str, str]]:
        return self.tx.operations

    def write(
        self, agent_id: str, key: str, value: Any, expected_version: int | None = None
    ) -> None:
        self.tx.write(agent_id, key, value, expected_version)

    def delete(self, agent_id: str, key: str, expected_version: int | None = None) -> None:
        self.tx.delete(agent_id, key, expected_version)

    async def commit(self) -> int | None:
        """Apply every staged operation; return the commit_ts (None for an empty one)."""
        tx = self.tx
        ops = tx._committing()
        try:
            commit_ts = await self._client._commit(tx.namespace, ops, tx.txn_id)
        except BaseException:
            tx._state = "aborted"
            raise
        return tx._committed(ops, commit_ts)

    async def abort(self) -> None:
        self.tx.abort()

    async def __aenter__(self) -> AsyncTransaction:
        return await self._open()

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        if exc_info[0] is not None:
            self.tx.abort()
        elif self.tx._state == "open":
            await self.commit()


class AsyncStepContext:
    """`async with client.step(agent_id, n, action=…) as step: step.result = await act()`."""

    def __init__(self, client: AsyncStatehouse, step: StepContext) -> None:
        self._client = client
        self._step = step

    @property
    def result(self) -> Any:
        return self._step.result

    @result.setter
    def result(self, value: Any) -> None:
        self._step.result = value

    def llm(self, **usage: Unpack[LlmUsage]) -> None:
        """Record one LLM call's usage in this step (see `StepContext.llm`)."""
        self._step.llm(**usage)

    async def __aenter__(self) -> AsyncStepContext:
        await self._write(self._step.entering_value())
        return self

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        value = self._step.exiting_value(*exc_info[:2])
        if value is not None:
            await self._write(value)

    async def _write(self, value: dict[str, Any]) -> None:
        step = self._step
        await self._client._write_one(step.agent_id, step.key, value, step.namespace)


class AsyncStatehouse(ClientBase[AsyncStepContext]):
    """The same arguments and operations as `Statehouse` (both are `ClientBase`'s): every
    operation is a coroutine, replay an async iterator, transactions and steps async
    context managers."""

    def _start(self, namespace: str, timeout: float, backend: Backend) -> None:
        self.namespace = namespace
        self.sync = Statehouse._sharing(namespace, timeout, backend)
        self._io: AsyncRemote | _Threaded = (
            AsyncRemote(backend) if isinstance(backend, RemoteBackend) else _Threaded(self.sync)
        )

    @property
    def _blocking(self) -> Statehouse:
        return self.sync

    async def _run(self, plan: Plan[R]) -> R:
        """Perform a plan's backend calls on the I/O layer, never blocking the loop."""
        run = PlanRun(plan)
        call = run.send(None)
        while call is not None:
            self.sync._ready()
            call = run.send(await getattr(self._io, call.name)(*call.args, **call.kwargs))
        return run.value

    def _replay(self, replay: Replay[T]) -> AsyncIterator[T]:
        self.sync._ready()
        events = self._io.replay(*replay.args)
        if replay.each is None:
            return cast(AsyncIterator[T], events)
        return _each(events, replay.each)

    def _step_context(self, step: StepContext) -> AsyncStepContext:
        return AsyncStepContext(self, step)

    def begin_transaction(
        self, timeout_ms: int | None = None, namespace: str | None = None
    ) -> AsyncTransaction:
        return AsyncTransaction(self, timeout_ms, namespace)

    async def _begin(self, timeout_ms: int | None, namespace: str | None) -> Transaction:
        if isinstance(self._io, AsyncRemote):
            await self._io.load_limits()  # what staging checks against, asked without blocking
            return self.sync.begin_transaction(timeout_ms, namespace)
        return await self._io.run(self.sync.begin_transaction, timeout_ms, namespace)

    async def _commit(self, namespace: str, ops: list[PendingOp], txn_id: str) -> int | None:
        if not ops:
            return None
        self.sync._ready()
        return await self._io.commit(namespace, ops, txn_id)

    async def _write_one(
        self, agent_id: str, key: str, value: Any, namespace: str | None
    ) -> int | None:
        async with self.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key=key, value=value)
        return tx.commit_ts

    async def start(self, agent_id: str, task: Any, namespace: str | None = None) -> int | None:
        return await self._write_one(agent_id, "task", task, namespace)

    async def finish(self, agent_id: str, answer: Any, namespace: str | None = None) -> int | None:
        return await self._write_one(agent_id, "answer", answer, namespace)

    async def fail(self, agent_id: str, error: str, namespace: str | None = None) -> int | None:
        return await self._write_one(agent_id, "failure", failure_value(error), namespace)

    async def close(self) -> None:
        """Release the leases, then close the connections (or the thread). Idempotent."""
        if self.sync._closed:
            return
        await self._io.close()
        self.sync.close()  # its leases are released already: this closes what remains

    async def __aenter__(self) -> AsyncStatehouse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def _each(
    events: AsyncIterator[ReplayEvent], each: Callable[[ReplayEvent], Iterable[T]]
) -> AsyncIterator[T]:
    async for event in events:
        for item in each(event):
            yield item
