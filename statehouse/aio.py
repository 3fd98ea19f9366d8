"""`AsyncStatehouse`: the client's API for asyncio code, embedded or remote (docs/client.md).

    async with AsyncStatehouse() as client:
        async with client.begin_transaction() as tx:
            tx.write(agent_id="a1", key="task", value={"task": "…"})
        async for event in client.replay("a1"):
            ...

Each client runs the blocking client's calls, in order, on one thread of its own: the
event loop never waits on the database or the network, the embedded mode keeps one
database connection per client (Django's connections belong to a thread), and the two
modes behave exactly as the blocking client does, errors included. Staging (`write`,
`delete`) does no I/O and is a plain method.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

from statehouse.client import Statehouse, Transaction
from statehouse.steps import StepContext
from statehouse.types import ReplayEvent, StateResult

__all__ = ["AsyncStatehouse", "AsyncStepContext", "AsyncTransaction"]

T = TypeVar("T")
_BATCH = 100  # replay events fetched per hop to the client's thread


def _close_thread_connection() -> None:
    from django.db import connection

    connection.close()


class AsyncTransaction:
    """`async with client.begin_transaction() as tx:` (or `tx = await …`): a clean exit
    commits, an exception aborts and re-raises."""

    def __init__(self, client: AsyncStatehouse, timeout_ms: int | None, namespace: str | None):
        self._client = client
        self._args = (timeout_ms, namespace)
        self._tx: Transaction | None = None

    async def _open(self) -> AsyncTransaction:
        if self._tx is None:
            self._tx = await self._client._run(self._client.sync.begin_transaction, *self._args)
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
        return await self._client._run(self.tx.commit)

    async def abort(self) -> None:
        self.tx.abort()

    async def __aenter__(self) -> AsyncTransaction:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client._run(self.tx.__exit__, exc_type, exc, tb)


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

    async def __aenter__(self) -> AsyncStepContext:
        await self._client._run(self._step.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client._run(self._step.__exit__, exc_type, exc, tb)


class AsyncStatehouse:
    """The same arguments as `Statehouse`; every operation is a coroutine, replay an
    async iterator, transactions and steps async context managers."""

    def __init__(
        self,
        url: str | None = None,
        namespace: str | None = None,
        timeout: float | None = None,
        *,
        token: str | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.sync = Statehouse(url, namespace, timeout, token=token, lease_seconds=lease_seconds)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="statehouse-aio")

    @property
    def namespace(self) -> str:
        return self.sync.namespace

    @property
    def mode(self) -> str:
        return self.sync.mode

    async def _run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    async def health(self) -> str:
        return await self._run(self.sync.health)

    async def version(self) -> tuple[str, str]:
        return await self._run(self.sync.version)

    def begin_transaction(
        self, timeout_ms: int | None = None, namespace: str | None = None
    ) -> AsyncTransaction:
        return AsyncTransaction(self, timeout_ms, namespace)

    async def get_state(self, agent_id: str, key: str, namespace: str | None = None) -> StateResult:
        return await self._run(self.sync.get_state, agent_id, key, namespace)

    async def get_state_at_version(
        self, agent_id: str, key: str, version: int, namespace: str | None = None
    ) -> StateResult:
        return await self._run(self.sync.get_state_at_version, agent_id, key, version, namespace)

    async def list_keys(
        self, agent_id: str, namespace: str | None = None, prefix: str | None = None
    ) -> list[str]:
        return await self._run(self.sync.list_keys, agent_id, namespace, prefix)

    async def scan_prefix(
        self, agent_id: str, prefix: str, namespace: str | None = None
    ) -> list[StateResult]:
        return await self._run(self.sync.scan_prefix, agent_id, prefix, namespace)

    async def replay(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
    ) -> AsyncIterator[ReplayEvent]:
        events = await self._run(self.sync.replay, agent_id, start_ts, end_ts, namespace)
        async for event in self._drain(events):
            yield event

    def replay_events(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
    ) -> AsyncIterator[ReplayEvent]:
        return self.replay(agent_id, start_ts, end_ts, namespace)

    async def replay_pretty(
        self,
        agent_id: str,
        start_ts: int | None = None,
        end_ts: int | None = None,
        namespace: str | None = None,
        verbose: bool = False,
    ) -> AsyncIterator[str]:
        lines = self.sync.replay_pretty(agent_id, start_ts, end_ts, namespace, verbose)
        async for line in self._drain(lines):
            yield line

    async def _drain(self, items: Iterator[T]) -> AsyncIterator[T]:
        """Pull a blocking iterator on the client's thread, a batch per hop."""

        def batch() -> list[T]:
            return [item for _, item in zip(range(_BATCH), items, strict=False)]

        try:
            while chunk := await self._run(batch):
                for item in chunk:
                    yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                await self._run(close)

    async def last_completed_step(self, agent_id: str, namespace: str | None = None) -> int:
        return await self._run(self.sync.last_completed_step, agent_id, namespace)

    def step(
        self, agent_id: str, number: int, action: Any = None, namespace: str | None = None
    ) -> AsyncStepContext:
        return AsyncStepContext(self, self.sync.step(agent_id, number, action, namespace))

    async def start(self, agent_id: str, task: Any, namespace: str | None = None) -> int | None:
        return await self._run(self.sync.start, agent_id, task, namespace)

    async def finish(self, agent_id: str, answer: Any, namespace: str | None = None) -> int | None:
        return await self._run(self.sync.finish, agent_id, answer, namespace)

    async def fail(self, agent_id: str, error: str, namespace: str | None = None) -> int | None:
        return await self._run(self.sync.fail, agent_id, error, namespace)

    async def status(self, agent_id: str, namespace: str | None = None) -> str | None:
        return await self._run(self.sync.status, agent_id, namespace)

    async def register_resume(
        self, agent_id: str, entry_point: str, namespace: str | None = None
    ) -> None:
        await self._run(self.sync.register_resume, agent_id, entry_point, namespace)

    async def cancel(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        return await self._run(self.sync.cancel, agent_id, namespace, reason=reason, actor=actor)

    async def pause(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        return await self._run(self.sync.pause, agent_id, namespace, reason=reason, actor=actor)

    async def unpause(
        self, agent_id: str, namespace: str | None = None, *, reason: str = "", actor: str = ""
    ) -> str:
        return await self._run(self.sync.unpause, agent_id, namespace, reason=reason, actor=actor)

    async def request_resume(
        self, agent_id: str, namespace: str | None = None, requested_by: str = ""
    ) -> int:
        return await self._run(self.sync.request_resume, agent_id, namespace, requested_by)

    async def release(self, agent_id: str, namespace: str | None = None) -> None:
        await self._run(self.sync.release, agent_id, namespace)

    async def close(self) -> None:
        """Release the leases, then stop the client's thread. Idempotent."""
        if self.sync._closed:
            return
        await self._run(self.sync.close)
        if self.mode == "embedded":
            await self._run(_close_thread_connection)
        self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncStatehouse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<AsyncStatehouse {self.mode} namespace={self.namespace!r}>"
