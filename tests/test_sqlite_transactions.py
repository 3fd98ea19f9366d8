"""The embedded SQLite database's transactions (statehouse_site/sqlite3/base.py): BEGIN
takes the write lock, COMMIT makes the writes durable for every other connection, a
locked database gives Django's error, and the query log still shows both statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from statehouse_agents.models import Commit

from statehouse import Statehouse


@pytest.fixture
def other(transactional_db: None) -> Iterator[sqlite3.Connection]:
    """A second connection to the same file, as another process would open it."""
    if connection.vendor != "sqlite":
        pytest.skip("the embedded SQLite database's own transactions")
    connection.ensure_connection()
    second = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    yield second
    second.close()


def _commits_seen_by(other: sqlite3.Connection) -> int:
    return int(other.execute(f"SELECT count(*) FROM {Commit._meta.db_table}").fetchone()[0])


def test_a_transaction_holds_the_write_lock_from_its_begin(other: sqlite3.Connection) -> None:
    with (
        transaction.atomic(),
        pytest.raises(sqlite3.OperationalError, match="database is locked"),
    ):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once it committed
    other.execute("ROLLBACK")


def test_a_commit_is_visible_to_another_connection_once_acknowledged(
    sh: Statehouse, other: sqlite3.Connection
) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "pending"})
    assert tx.durable
    assert _commits_seen_by(other) == 1
    (value,) = other.execute(
        "SELECT value_json FROM agents_version WHERE key = 'step:1'"
    ).fetchone()
    assert value == '{"status":"pending"}'


def test_begin_on_a_locked_database_raises_djangos_error_and_leaves_autocommit(
    other: sqlite3.Connection,
) -> None:
    busy_timeout = int(connection.settings_dict["OPTIONS"]["timeout"] * 1000)
    other.execute("BEGIN IMMEDIATE")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 50")
    try:
        with (
            pytest.raises(OperationalError, match="database is locked"),
            transaction.atomic(),
        ):
            pytest.fail("the block ran without the write lock")
        assert (connection.get_autocommit(), connection.in_atomic_block) == (True, False)
        other.execute("ROLLBACK")
        with transaction.atomic():  # and the next transaction gets the lock
            Commit.objects.count()
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout}")


def test_with_the_query_log_on_begin_and_commit_are_logged(
    sh: Statehouse, other: sqlite3.Connection
) -> None:
    with CaptureQueriesContext(connection) as queries, sh.begin_transaction() as tx:
        tx.write("a1", "k", {"n": 1})
    statements = [query["sql"] for query in queries.captured_queries]
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements[-1] == "COMMIT"
    assert _commits_seen_by(other) == 1
