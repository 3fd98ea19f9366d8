"""A database stopped part-way through migrations that were later squashed.

Statehouse's migrations 0001 to 0021 are one squashed migration (docs/deploy.md,
"Upgrading from an early release"). A database that applied all of them, or none, is
fine; one that applied only some has a schema this code cannot bring up to date, and
Django would otherwise skip the app in silence. `migrate` (through the database check
below) and the client refuse to run on such a database, naming the last migration it
applied.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import connections
from django.db.migrations.loader import MigrationLoader

APP_LABEL = "agents"


def stranded_squash(loader: MigrationLoader) -> str | None:
    """Why this database cannot be migrated, or None: the squashed migration whose
    replaced migrations it applied only in part."""
    applied = loader.applied_migrations or {}
    for key, migration in loader.replacements.items():
        if key[0] != APP_LABEL or key in applied:
            continue
        done = [name for app, name in migration.replaces if (app, name) in applied]
        if done and len(done) < len(migration.replaces):
            return (
                f"this database applied Statehouse migrations only up to {APP_LABEL}."
                f"{done[-1]}, and they are now squashed into {key[1]}; migrate it first "
                'with the release that still ships them (docs/deploy.md, "Upgrading '
                'from an early release")'
            )
    return None


@checks.register(checks.Tags.database)
def check_migration_history(databases: Any = None, **_: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for alias in databases or ():
        problem = stranded_squash(MigrationLoader(connections[alias]))
        if problem:
            errors.append(checks.Error(problem, id="statehouse.E001"))
    return errors
