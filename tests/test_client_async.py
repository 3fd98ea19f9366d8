"""AsyncStatehouse (docs/client.md): the blocking client's behaviour and errors, in
asyncio; embedded and remote (against the real test server), on both databases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import statehouse
from statehouse import AsyncStatehouse, Statehouse, errors
from tests.factories import run_async


def same_error(
    sync_call: Callable[[], Any], async_call: Callable[[], Awaitable[Any]], case: int = 0
) -> str:
    """Assert both calls raise the same error class with the same message; return it."""
    with pytest.raises(errors.StatehouseError) as blocking:
        sync_call()
        pytest.fail(f"case {case}: no error")

    async def run() -> None:
        await async_call()

    with pytest.raises(errors.StatehouseError) as asynchronous:
        run_async(run())
    assert type(asynchronous.value) is type(blocking.value)
    assert str(asynchronous.value) == str(blocking.value)
    return str(blocking.value)


def test_bad_arguments_raise_what_the_blocking_client_raises(sh: Statehouse) -> None:
    sh.start("a1", "t")
    aio = AsyncStatehouse()
    cases: list[tuple[Callable[[], Any], Callable[[], Awaitable[Any]]]] = [
        (lambda: sh.get_state("", "k"), lambda: aio.get_state("", "k")),
        (lambda: sh.get_state("a1", ""), lambda: aio.get_state("a1", "")),
        (
            lambda: sh.get_state("a1", "k", namespace="no\tpe"),
            lambda: aio.get_state("a1", "k", namespace="no\tpe"),
        ),
        (
            lambda: sh.get_state_at_version("a1", "task", 0),
            lambda: aio.get_state_at_version("a1", "task", 0),
        ),
        (lambda: sh.list_keys("a1", prefix="a\nb"), lambda: aio.list_keys("a1", prefix="a\nb")),
        (lambda: sh.scan_prefix("a1", 3), lambda: aio.scan_prefix("a1", 3)),  # type: ignore[arg-type]
        (lambda: sh.replay("a1", start_ts="x"), lambda: _drain(aio.replay("a1", start_ts="x"))),  # type: ignore[arg-type]
        (lambda: sh.fail("a1", 3), lambda: aio.fail("a1", 3)),  # type: ignore[arg-type]
        (lambda: sh.step("a1", -1), lambda: _enter(aio.step("a1", -1))),
        (
            lambda: sh.request_resume("a1", requested_by=1),  # type: ignore[arg-type]
            lambda: aio.request_resume("a1", requested_by=1),  # type: ignore[arg-type]
        ),
        (
            lambda: sh.begin_transaction(timeout_ms=0),
            lambda: _open(aio, timeout_ms=0),
        ),
        (
            lambda: _stage(sh.begin_transaction(), {"bad": float("nan")}),
            lambda: _stage_async(aio, {"bad": float("nan")}),
        ),
    ]
    for case, (sync_call, async_call) in enumerate(cases):
        same_error(sync_call, async_call, case)
    run_async(aio.close())


def test_store_errors_are_the_blocking_clients_errors(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="k", value=1)
    aio = AsyncStatehouse()
    message = same_error(
        lambda: sh.get_state_at_version("a1", "k", 5),
        lambda: aio.get_state_at_version("a1", "k", 5),
    )
    assert "version 5" in message
    same_error(lambda: sh.request_resume("nobody"), lambda: aio.request_resume("nobody"))

    def conflict_sync() -> None:
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key="k", value=2, expected_version=3)

    async def conflict_async() -> None:
        async with aio.begin_transaction() as tx:
            tx.write(agent_id="a1", key="k", value=2, expected_version=3)

    same_error(conflict_sync, conflict_async)

    async def conflict_fields() -> errors.ConflictError:
        try:
            await conflict_async()
        except errors.ConflictError as exc:
            return exc
        raise AssertionError("no conflict")

    conflict = run_async(conflict_fields())
    assert (conflict.agent_id, conflict.key, conflict.expected, conflict.actual) == (
        "a1",
        "k",
        3,
        1,
    )
    assert sh.get_state("a1", "k").version == 1  # nothing written
    run_async(aio.close())


def test_a_lease_held_elsewhere_stops_the_async_client(sh: Statehouse) -> None:
    sh.start("a1", "t")

    async def run() -> None:
        async with AsyncStatehouse() as client:
            with pytest.raises(errors.LeaseHeldError) as held:
                await client.start("a1", "again")
            assert held.value.agent_id == "a1"
            assert held.value.pid == sh.owner.pid

    run_async(run())
    assert sh.get_state("a1", "task").value == "t"


def test_closing_the_async_client_releases_its_leases_at_once(sh: Statehouse) -> None:
    async def run() -> None:
        client = AsyncStatehouse()
        await client.start("a1", "t")
        assert await client.status("a1") == "running"
        await client.close()
        await client.close()  # idempotent
        with pytest.raises(errors.StatehouseError, match="closed"):
            await client.get_state("a1", "task")

    run_async(run())
    with Statehouse() as other:  # another owner takes the agent without waiting
        other.start("a1", "t2")
    assert sh.get_state("a1", "task").value == "t2"


def test_a_failing_async_step_is_recorded_failed_and_reraises(sh: Statehouse) -> None:
    async def run() -> None:
        async with AsyncStatehouse() as client:
            with pytest.raises(KeyError):
                async with client.step("a1", 0, action="act"):
                    raise KeyError("gone")

    run_async(run())
    assert sh.get_state("a1", "step:0").value == {
        "action": "act",
        "status": "failed",
        "error": "KeyError: 'gone'",
    }
    assert [op.value["status"] for e in sh.replay("a1") for op in e.operations] == [
        "pending",
        "failed",
    ]


def test_async_replay_pages_and_bounds_match_the_blocking_replay(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statehouse.remote.REPLAY_PAGE", 2)  # remote: pages of 2 events
    stamps = []
    for n in range(7):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key=f"k{n % 3}", value=n)
        stamps.append(tx.commit_ts)

    async def run() -> tuple[list[int], list[int], list[str]]:
        async with AsyncStatehouse() as client:
            every = [e.commit_ts async for e in client.replay("a1")]
            bounded = [e.commit_ts async for e in client.replay("a1", stamps[1], stamps[5])]
            lines = [line async for line in client.replay_pretty("a1", verbose=True)]
            return every, bounded, lines

    every, bounded, lines = run_async(run())
    assert every == stamps
    assert bounded == stamps[1:6]  # both bounds inclusive
    assert lines == list(sh.replay_pretty("a1", verbose=True))


def test_concurrent_tasks_share_one_async_client(sh: Statehouse, client_mode: str) -> None:
    async def run() -> list[Any]:
        async with AsyncStatehouse() as client:
            assert client.mode == client_mode
            writes = [client.start(f"agent-{n}", {"n": n}) for n in range(20)]
            stamps = await asyncio.gather(*writes)
            reads = [client.get_state(f"agent-{n}", "task") for n in range(20)]
            states = await asyncio.gather(*reads)
            # Remote: the calls ran on this loop (httpx.AsyncClient), on no thread of the
            # client's own; embedded: on its one thread.
            threads = [t for t in threading.enumerate() if t.name.startswith("statehouse-aio")]
            assert len(threads) == (0 if client_mode == "remote" else 1)
            return [stamps, [s.value["n"] for s in states]]

    stamps, values = run_async(run())
    assert len(set(stamps)) == 20
    assert values == list(range(20))
    assert sh.status("agent-7") == "interrupted"  # released at close; the task stays


def test_an_unreachable_server_is_a_connection_error_to_the_async_client() -> None:
    from bench.remote_bench import free_port

    async def run() -> None:
        async with AsyncStatehouse(f"127.0.0.1:{free_port()}", token="x", timeout=2) as client:
            assert client.mode == "remote"
            with pytest.raises(statehouse.ConnectionError, match="unreachable"):
                await client.get_state("a1", "k")
            with pytest.raises(statehouse.ConnectionError, match="unreachable"):
                await client.start("a1", "t")

    run_async(run())


async def _drain(events: Any) -> list[Any]:
    return [event async for event in events]


async def _enter(step: Any) -> None:
    async with step:
        pass


async def _open(client: AsyncStatehouse, **options: Any) -> None:
    await client.begin_transaction(**options)


def _stage(tx: statehouse.Transaction, value: Any) -> None:
    tx.write(agent_id="a1", key="k", value=value)


async def _stage_async(client: AsyncStatehouse, value: Any) -> None:
    tx = await client.begin_transaction()
    tx.write(agent_id="a1", key="k", value=value)
