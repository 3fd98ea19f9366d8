"""The store's statements on PostgreSQL (agents/store/sql.py): they share one psycopg
cursor a connection, which keeps working after a statement fails and is replaced when the
connection is (docs/architecture.md, "Sending values")."""

from __future__ import annotations

import pytest
from django.db import DataError, connection
from statehouse_agents.store import sql

from statehouse import Statehouse


@pytest.fixture(autouse=True)
def _postgresql(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the store's psycopg cursor")


def _cursor() -> object:
    return connection._statehouse_cursor  # type: ignore[attr-defined]  # set by sql._cursor_of


def test_a_connections_statements_share_one_cursor(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "k", {"n": 1})
    first = _cursor()
    assert sh.get_state("a1", "k").value == {"n": 1}
    with sh.begin_transaction() as tx:
        tx.write("a1", "k", {"n": 2})
    assert sh.get_state("a1", "k").value == {"n": 2}
    assert _cursor() is first
    assert sql.fetchall("SELECT generate_series(1, 3)") == [(1,), (2,), (3,)]
    assert sql.fetchone("SELECT 'after'") == ("after",)


def test_a_failed_statement_leaves_the_next_one_working(sh: Statehouse) -> None:
    with pytest.raises(DataError, match="division by zero"):
        sql.fetchone("SELECT 1 / 0")
    assert sql.fetchone("SELECT 2") == (2,)
    with sh.begin_transaction() as tx:
        tx.write("a1", "k", "kept")
    assert sh.get_state("a1", "k").value == "kept"


def test_a_new_connection_gets_a_cursor_of_its_own(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "k", 1)
    before = _cursor()
    connection.close()
    assert sh.get_state("a1", "k").value == 1
    after = _cursor()
    assert after is not before
    assert after.connection is connection.connection  # type: ignore[attr-defined]  # a psycopg cursor
