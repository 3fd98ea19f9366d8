"""LangGraph's checkpointer conformance suite, in full, for both savers (docs/langgraph.md).

`langgraph-checkpoint-conformance` runs every base capability (put, put_writes, get_tuple,
list, delete_thread) and every extended one (delete_for_runs, copy_thread, prune) through
the async methods. StatehouseSaver's async methods run its sync methods on its worker
thread, so its run exercises the sync code path; AsyncStatehouseSaver is run as an async
context manager, as async graphs use it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES

from statehouse import Statehouse
from statehouse.langgraph import AsyncStatehouseSaver, StatehouseSaver
from tests.factories import run_async


def _run_suite(saver_class: type[StatehouseSaver], name: str) -> None:
    clients: list[Statehouse] = []

    async def factory() -> AsyncGenerator[StatehouseSaver, None]:
        client = Statehouse(namespace=f"conformance-{name}")
        clients.append(client)
        saver = saver_class(client)
        if isinstance(saver, AsyncStatehouseSaver):
            async with saver:
                yield saver
        else:
            yield saver
            saver.close()

    registered = checkpointer_test(name=name)(factory)
    report = run_async(validate(registered))
    for client in clients:
        client.close()
    summary = {cap: (r.passed, r.tests_passed, r.failures) for cap, r in report.results.items()}
    assert set(summary) == {cap.value for cap in ALL_CAPABILITIES}
    failing = {cap: r for cap, r in summary.items() if r[0] is not True}
    assert not failing, failing
    assert all(r[1] > 0 for r in summary.values()), summary


@pytest.mark.django_db(transaction=True)
def test_sync_saver_passes_the_whole_conformance_suite() -> None:
    _run_suite(StatehouseSaver, "StatehouseSaver")


@pytest.mark.django_db(transaction=True)
def test_async_saver_passes_the_whole_conformance_suite() -> None:
    _run_suite(AsyncStatehouseSaver, "AsyncStatehouseSaver")
