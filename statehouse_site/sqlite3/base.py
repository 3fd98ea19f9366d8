"""Django's SQLite backend, making the database file's folder when it first connects.

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
