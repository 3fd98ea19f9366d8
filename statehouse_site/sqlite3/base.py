"""Django's SQLite backend, making the database file's folder when it first connects, and
starting and committing transactions on the driver's connection itself.

SQLite creates files, not folders, and a fresh clone or a fresh install has no data
folder. Making it on the first connection, rather than when the settings are read, keeps
importing the settings free of writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        name = str(conn_params.get("database") or "")
        if name and not name.startswith("file:") and name != ":memory:":
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)

    # Every store commit opens and ends a transaction: BEGIN and COMMIT go straight to the
    # driver's connection, instead of through a cursor wrapper made for BEGIN alone and a
    # generator context that times COMMIT for the query log. That saves 15-25 µs a
    # transaction on the test machine (bench/README.md, "Where a SQLite commit's time
    # goes"). With the query log on (DEBUG, or a test capturing queries), Django's own
    # methods run, so both statements are still logged.

    def _start_transaction_under_autocommit(self) -> None:
        if self.queries_logged:
            return super()._start_transaction_under_autocommit()  # type: ignore[misc]  # Django's private method, absent from the stubs
        mode = self.transaction_mode  # type: ignore[attr-defined]  # Django 5.1's OPTIONS, absent from the stubs
        begin = f"BEGIN {mode}" if mode else "BEGIN"
        with self.wrap_database_errors:
            self.connection.execute(begin)

    def _commit(self) -> None:
        if self.connection is None or self.queries_logged:
            return super()._commit()  # type: ignore[misc]  # Django's private method, absent from the stubs
        with self.wrap_database_errors:
            self.connection.commit()
