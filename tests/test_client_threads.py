"""The embedded client from threads (docs/client.md, "Threads"): a thread's database
connection is closed when the thread ends, not left to the garbage collector."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from statehouse import Statehouse
from tests.conftest import database_url_of_test_db
from tests.factories import wait_until


@pytest.fixture
def no_gc() -> Iterator[None]:
    """No garbage collection while the test runs: Django's connection objects are in
    reference cycles, so a collection would close a finished thread's connection anyway
    and hide a leak."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _in_thread(work: Callable[[], Any]) -> Any:
    """Run `work` on a new thread until it ends; return its result or raise its error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _is_closed(raw: Any) -> bool:
    if isinstance(raw, sqlite3.Connection):
        try:
            raw.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return True
        return False
    return bool(raw.closed)


def test_a_thread_that_used_the_client_has_its_connection_closed_as_it_ends(
    sh: Statehouse, no_gc: None
) -> None:
    def work() -> Any:
        with sh.begin_transaction() as tx:
            tx.write("t-agent", "k", {"n": 1})
        assert sh.get_state("t-agent", "k").value == {"n": 1}
        assert connection.connection is not None  # this thread's own, now open
        return connection.connection

    raw = _in_thread(work)

    assert _is_closed(raw)
    # The main thread's connection is its own, and stays open.
    assert sh.get_state("t-agent", "k").version == 1
    assert connection.connection is not None and not _is_closed(connection.connection)


def test_a_thread_that_used_another_threads_connection_leaves_it_open(
    sh: Statehouse, no_gc: None
) -> None:
    """As Django's live test server does with an in-memory SQLite database: the connection
    is the main thread's, lent to the thread, and stays the main thread's."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    sh.get_state("t-agent", "k")
    raw = wrapper.connection
    wrapper.inc_thread_sharing()

    def work() -> bool:
        connections[DEFAULT_DB_ALIAS] = wrapper
        return sh.get_state("t-agent", "k").exists

    try:
        assert _in_thread(work) is False
    finally:
        wrapper.dec_thread_sharing()

    assert wrapper.connection is raw and not _is_closed(raw)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL sessions")
def test_threads_that_come_and_go_hold_no_database_sessions_after_they_end(
    sh: Statehouse, no_gc: None
) -> None:
    watch = psycopg.connect(database_url_of_test_db(), autocommit=True)

    def sessions() -> set[int]:
        """The test database's sessions, but for the client's lease keeper (it holds the
        running agent's advisory lock) and this watch."""
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() "
            "AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
        )
        return {pid for (pid,) in watch.execute(query)}

    def record(n: int) -> None:
        with sh.step("t-steps", n, action={"n": n}) as step:
            step.result = {"ok": n}

    try:
        # The first step takes the lease, which starts the client's lease keeper: its
        # session lives with the client, not with the thread.
        _in_thread(lambda: record(0))
        before = sessions()
        for n in range(1, 6):
            _in_thread(lambda n=n: record(n))
        after = sessions()
    finally:
        watch.close()

    assert after == before
    assert sh.last_completed_step("t-steps") == 5


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL sessions")
def test_the_closing_of_a_finished_threads_connection_is_seen_by_the_server(
    sh: Statehouse, no_gc: None
) -> None:
    def work() -> int:
        sh.get_state("t-agent", "k")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    pid = _in_thread(work)

    watch = psycopg.connect(database_url_of_test_db(), autocommit=True)
    try:
        wait_until(
            lambda: (
                not watch.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
            ),
            timeout=5,
            what=f"session {pid} ended",
        )
    finally:
        watch.close()
