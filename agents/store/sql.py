"""Run the store's hand-written SQL on the raw driver cursor of Django's connection.

The store's hot paths (every agent step commits and reads) skip the ORM's per-query
work and Django's cursor wrapper: SQL is written once with `%s` placeholders (rewritten
to `?` for SQLite once, at first use), and on PostgreSQL it is sent as a prepared
statement, so the server plans it once per connection (STATEHOUSE_PG_PREPARE=false turns
that off, e.g. behind an old transaction-mode PgBouncer). Driver errors still come out as
Django's database errors (`wrap_database_errors`), so transactions and connection
recovery behave exactly as with the ORM.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

Params = Sequence[Any]


@functools.cache
def _is_sqlite() -> bool:
    return connection.vendor == "sqlite"


@functools.cache
def _prepare() -> bool:
    return os.environ.get("STATEHOUSE_PG_PREPARE", "true").lower() not in {"0", "false", "no"}


@functools.cache
def _qmark(sql: str) -> str:
    """The same SQL for sqlite3: `?` placeholders, and `%%` back to a literal `%`."""
    return sql.replace("%%", "\0").replace("%s", "?").replace("\0", "%")


def _run(sql: str, params: Params) -> Any:
    """Execute and return the raw cursor (its rows, rowcount) of this thread's connection."""
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors:
        if _is_sqlite():
            return raw.execute(_qmark(sql), params)
        import psycopg

        cursor = psycopg.Cursor(raw)
        cursor.execute(sql, params, prepare=_prepare())
        return cursor


def fetchall(sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    cursor = _run(sql, params)
    with connection.wrap_database_errors:
        return cursor.fetchall()


def fetchone(sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    cursor = _run(sql, params)
    with connection.wrap_database_errors:
        return cursor.fetchone()


def execute(sql: str, params: Params = ()) -> int:
    """Run a statement; return the number of rows it changed."""
    return int(_run(sql, params).rowcount)


def now_sql() -> str:
    """An SQL expression of the database's clock (a timestamp), shared by all hosts."""
    if _is_sqlite():
        return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
    return "statement_timestamp()"


def for_update() -> str:
    return "" if _is_sqlite() else " FOR UPDATE"


def db_datetime(value: datetime | None) -> Any:
    """A datetime as Django stores it (naive UTC text on SQLite)."""
    if value is None or not _is_sqlite():
        return value
    return connection.ops.adapt_datetimefield_value(value)


def db_uuid(value: str) -> Any:
    parsed = uuid.UUID(value)
    return parsed.hex if _is_sqlite() else parsed


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)
