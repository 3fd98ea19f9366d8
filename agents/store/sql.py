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
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from statehouse_agents.conf import get_settings

Params = Sequence[Any]
T = TypeVar("T")

# A PostgreSQL `text[]` parameter of stored values (JSON text), sent in binary. In the text
# format psycopg quotes each element and escapes every `"` in it with a regular
# expression, in Python: about 0.4 ms for the nine ~1 KB values of a LangGraph super-step,
# where binary costs nothing per character (docs/architecture.md, "Sending values").
VALUES_ARRAY = "%b::text[]"


@functools.cache
def is_sqlite() -> bool:
    return connection.vendor == "sqlite"


def _prepare() -> bool:
    return get_settings().pg_prepare


@functools.cache
def qmark(sql: str) -> str:
    """The same SQL for sqlite3: `?` placeholders, and `%%` back to a literal `%`."""
    return sql.replace("%%", "\0").replace("%s", "?").replace("\0", "%")


def _run(sql: str, params: Params, fetch: Callable[[Any], Any]) -> Any:
    """Execute on this thread's connection and return `fetch(cursor)`."""
    db = connections[DEFAULT_DB_ALIAS]  # one thread-local lookup, then plain attributes
    raw = _driver_connection(db)
    try:
        if is_sqlite():
            return fetch(raw.execute(qmark(sql), params))
        prepare = _prepare()
        if prepare and raw.prepare_threshold is None:
            # Django turns prepared statements off for the connection (for poolers); its
            # own cursors never prepare anyway, so this enables them for ours alone.
            raw.prepare_threshold = 0
        cursor = _cursor_of(db, raw)
        cursor.execute(sql, params, prepare=None if prepare else False)
        return fetch(cursor)
    except Exception:
        # Driver errors become Django's, as in `with db.wrap_database_errors:` around the
        # whole block, which would cost every statement a context manager's enter and exit.
        with db.wrap_database_errors:
            raise


def on_sqlite(work: Callable[[Any], T]) -> T:
    """Run `work(connection)` on this thread's sqlite3 connection, its statements in
    `qmark` form: several statements (a commit's writes) for one lookup of the connection,
    with driver errors still coming out as Django's."""
    db = connections[DEFAULT_DB_ALIAS]
    raw = _driver_connection(db)
    try:
        return work(raw)
    except Exception:
        with db.wrap_database_errors:
            raise


def _driver_connection(db: BaseDatabaseWrapper) -> Any:
    """The driver's connection of `db`, recovered after an error and opened if needed."""
    if db.errors_occurred:
        recover(db)
    raw = db.connection
    if raw is None:
        db.ensure_connection()
        raw = db.connection
    return raw


def recover(db: BaseDatabaseWrapper) -> None:
    """After a statement failed outside a transaction: drop the connection if it is broken
    (e.g. killed by the server), so the next statement reconnects."""
    if db.connection is None or not db.errors_occurred or db.in_atomic_block:
        return
    if not db.is_usable():
        db.close()
    db.errors_occurred = False


def _cursor_of(db: BaseDatabaseWrapper, raw: Any) -> Any:
    """The psycopg cursor of the store's statements on `raw`, made once a connection.

    A cursor keeps the type adapters it chose for the parameters and columns it has seen,
    so a statement sent again on it skips choosing them (about 40 µs for a commit's
    parameters, docs/architecture.md "Sending values"). Each statement is read whole by its
    `fetch` before the next one reuses the cursor; a new connection gets a new cursor."""
    cursor = getattr(db, "_statehouse_cursor", None)
    if cursor is None or cursor.connection is not raw:
        cursor = _psycopg_cursor()(raw)
        db._statehouse_cursor = cursor  # type: ignore[attr-defined]  # ours, on Django's wrapper
    return cursor


@functools.cache
def _psycopg_cursor() -> type:
    import psycopg

    return psycopg.Cursor


def fetchall(sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    return _run(sql, params, lambda cursor: cursor.fetchall())


def fetchone(sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    return _run(sql, params, lambda cursor: cursor.fetchone())


def execute(sql: str, params: Params = ()) -> int:
    """Run a statement; return the number of rows it changed."""
    return int(_run(sql, params, lambda cursor: cursor.rowcount))


def now_sql() -> str:
    """An SQL expression of the database's clock (a timestamp), shared by all hosts."""
    if is_sqlite():
        return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
    return "statement_timestamp()"


def db_now() -> datetime:
    """The database's clock: every write's times come from it, so hosts agree."""
    row = fetchone(f"SELECT {now_sql()}")
    assert row is not None
    return to_datetime(row[0])


def for_update(of: str = "") -> str:
    """Row locks on PostgreSQL (of the table aliased `of`, when given); nothing on SQLite,
    whose BEGIN IMMEDIATE already holds the database's write lock."""
    if is_sqlite():
        return ""
    return f" FOR UPDATE OF {of}" if of else " FOR UPDATE"


def db_datetime(value: datetime | None) -> Any:
    """A datetime as Django stores it: naive UTC text on SQLite (what
    `DatabaseOperations.adapt_datetimefield_value` makes with USE_TZ), aware on PostgreSQL."""
    if value is None or not is_sqlite():
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return str(value)


def to_datetime(value: datetime | str) -> datetime:
    """A datetime read on the raw cursor, aware in UTC (SQLite gives naive UTC or text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def db_value(value: Any) -> Any:
    """A Python value of a model field as the raw driver takes it."""
    return db_datetime(value) if isinstance(value, datetime) else value


def db_uuid(value: str) -> Any:
    parsed = uuid.UUID(value)
    return parsed.hex if is_sqlite() else parsed


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)
