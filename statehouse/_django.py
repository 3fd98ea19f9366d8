"""Set Django up on first use of the client, and make sure the schema is there.

A plain script that only sets `DATABASE_URL` (or nothing: the embedded SQLite file) gets a
working store: SQLite creates its schema on first use, under a file lock so that several
processes starting at once migrate it once; PostgreSQL is migrated by its operator.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from statehouse.errors import SchemaMissingError, StatehouseError

_ready = False
_lock = threading.Lock()
# Database connections a forked child inherited: kept referenced, never closed, since
# closing would end the parent's session (or release its SQLite locks). See
# `forget_inherited_connections`.
_inherited: list[Any] = []


# Per thread: the closer of the thread's database connection (`_close_at_thread_exit`).
_this_thread = threading.local()


def ensure_ready() -> None:
    """Set Django up and check the schema, once per process; and, once per thread, have
    the thread's database connection closed when the thread ends."""
    global _ready
    if not _ready:
        with _lock:
            if not _ready:
                setup_django()
                _ensure_schema()
                _ready = True
    if not hasattr(_this_thread, "closer"):
        _close_at_thread_exit()


class _ConnectionCloser:
    """Closes one thread's database connection when the thread ends (docs/client.md,
    "Threads").

    Django keeps a connection per thread and closes it only when asked: a thread that ends
    leaves its connection to the garbage collector, since Django's connection objects hold
    reference cycles, and until a collection runs the session stays open (PostgreSQL's
    `max_connections` counts it). This object, kept in the thread's own `threading.local`
    and in no cycle, is freed as the thread ends, in that thread, and closes the driver's
    connection then. A connection shared with another thread (Django's live test server
    shares an in-memory SQLite one) belongs to that thread and is left alone.
    """

    __slots__ = ("_owner", "_wrapper")

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper
        self._owner = threading.get_ident()

    def __del__(self) -> None:
        wrapper = self._wrapper
        raw = wrapper.connection
        # Not its to close: lent to other threads, or lent by another to this one.
        if raw is None or wrapper.allow_thread_sharing or wrapper._thread_ident != self._owner:
            return
        with contextlib.suppress(Exception):  # the thread is gone; nothing to report to
            raw.close()


def _close_at_thread_exit() -> None:
    """Register this thread's connection for closing at its end (the main thread's lives
    as long as the process)."""
    if threading.current_thread() is threading.main_thread():
        _this_thread.closer = None
        return
    from django.db import DEFAULT_DB_ALIAS, connections

    _this_thread.closer = _ConnectionCloser(connections[DEFAULT_DB_ALIAS])


def setup_django() -> None:
    from django.conf import settings

    if settings.configured:
        from django.apps import apps

        if not apps.ready:
            import django

            django.setup()
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    import django

    try:
        django.setup()
    except Exception as exc:
        raise StatehouseError(f"cannot configure Statehouse: {exc}") from exc


def pending_migrations() -> list[str]:
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor
    from statehouse_agents.schema_history import stranded_squash

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        raise StatehouseError(f"database unreachable: {exc}") from exc
    stranded = stranded_squash(executor.loader)
    if stranded:
        raise SchemaMissingError(stranded)
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def _ensure_schema() -> None:
    from django.db import connection

    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if name and not name.startswith(("file:", ":memory:")):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
    pending = pending_migrations()
    if not pending:
        return
    if connection.vendor != "sqlite":
        raise SchemaMissingError(
            f"the database has no up-to-date Statehouse schema ({len(pending)} migrations "
            "not applied); create it with `python manage.py migrate` "
            "(or `statehouse migrate`) against the same DATABASE_URL"
        )
    _migrate_sqlite()


def _migrate_sqlite() -> None:
    from django.core.management import call_command
    from django.db import connection

    with sqlite_migrate_lock(connection):
        if pending_migrations():
            call_command("migrate", interactive=False, verbosity=0)


@contextlib.contextmanager
def sqlite_migrate_lock(connection: Any) -> Iterator[None]:
    """On a SQLite file, hold its migrate lock: one process migrates, the others wait (the
    client's first use here, `statehouse migrate` in the command line). Elsewhere nothing."""
    name = str(connection.settings_dict["NAME"])
    if connection.vendor != "sqlite" or not name or name.startswith(("file:", ":memory:")):
        yield
        return
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{name}.migrate-lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def recover_connection() -> None:
    """Drop a connection that failed (e.g. killed by the server) so the next call reconnects."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from statehouse_agents.store.sql import recover

    recover(connections[DEFAULT_DB_ALIAS])  # the store's own statements also do this


def mark_ready() -> None:
    """Skip the set-up checks in a process forked from one that made them (a resume run)."""
    global _ready
    _ready = True


def forget_inherited_connections() -> None:
    """In a forked child: drop the parent's database connections, so the next query opens
    the child's own (docs/client.md, processes).

    A connection shared by two processes interleaves their protocol messages (a hang) and
    their prepared statements (the parent's next commit fails); closing it here would end
    the parent's session. So the child only forgets it, keeping a reference so that no
    finalizer runs; Django connects afresh on the next query.
    """
    if "django.db" not in sys.modules:
        return
    from django.conf import settings

    if not settings.configured:
        return
    from django.db import connections

    for db in connections.all(initialized_only=True):
        if db.connection is not None:
            _inherited.append(db.connection)
            db.connection = None
        db.in_atomic_block = False
        db.savepoint_ids = []
        db.atomic_blocks = []
        db.savepoint_state = 0
        db.needs_rollback = False
        db.errors_occurred = False
        db.closed_in_transaction = False
        db.run_on_commit = []


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    forget_inherited_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)
