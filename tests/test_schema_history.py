"""Migrations 0001 to 0021 are squashed into one (docs/deploy.md, "Upgrading from an
early release"): a database that applied all of them is up to date, and one that applied
only some is refused by `migrate` and by the client with an error naming where it
stopped, instead of being skipped in silence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from statehouse_agents.schema_history import stranded_squash

from statehouse._django import pending_migrations
from statehouse.cli import main
from statehouse.errors import SchemaMissingError

pytestmark = pytest.mark.django_db

SQUASHED = "0001_squashed_0021_bulk_dashboard_indexes"


@pytest.fixture(autouse=True)
def history_restored() -> Iterator[None]:
    """Each test rewrites the agents app's rows of the migration table; put them back
    even where a test's transaction is not rolled back."""
    kept = list(MigrationRecorder.Migration.objects.filter(app="agents").values_list("name"))
    yield
    record_history([name for (name,) in kept])


def replaced() -> list[str]:
    migration = MigrationLoader(None).disk_migrations[("agents", SQUASHED)]
    return [name for _app, name in migration.replaces]


def record_history(names: list[str]) -> None:
    """Make the migration table say that the agents app applied exactly `names`."""
    recorded = MigrationRecorder.Migration.objects.filter(app="agents")
    recorded.delete()
    for name in names:
        MigrationRecorder.Migration.objects.create(app="agents", name=name)


def test_the_squash_replaces_the_twenty_one_numbered_migrations() -> None:
    names = replaced()
    assert names[0] == "0001_initial"
    assert names[-1] == "0021_bulk_dashboard_indexes"
    assert len(names) == 16  # 0007 to 0011 were never released


def after_the_squash() -> list[str]:
    """The agents app's migrations that came after the squash, by their labels."""
    names = MigrationLoader(None).disk_migrations
    return sorted(f"agents.{name}" for app, name in names if app == "agents" and name > SQUASHED)


def test_a_database_that_applied_every_replaced_migration_is_up_to_date() -> None:
    record_history(replaced())
    assert stranded_squash(MigrationLoader(connection)) is None
    # Only what came after the squash remains: the database is on the squash's footing.
    assert pending_migrations() == after_the_squash()
    assert after_the_squash() == [
        "agents.0002_cheaper_step_commits",
        "agents.0003_step_commits_by_index",
        "agents.0004_records_point_at_versions",
        "agents.0005_commit_ids_in_time_order",
        "agents.0006_less_wal_per_step",
        "agents.0007_step_commits_without_a_task",
        "agents.0008_commit_ids_without_a_catalog_lookup",
    ]
    record_history([*replaced(), *(label.split(".")[1] for label in after_the_squash())])
    assert pending_migrations() == []
    call_command("check", databases=["default"])


def test_a_database_part_way_through_the_squashed_range_is_refused() -> None:
    record_history(replaced()[:13])  # 0001 to 0006, then 0012 to 0018
    message = (
        "this database applied Statehouse migrations only up to "
        "agents.0018_operator_controls, and they are now squashed into "
        f"{SQUASHED}; migrate it first with the release that still ships them "
        '(docs/deploy.md, "Upgrading from an early release")'
    )
    assert stranded_squash(MigrationLoader(connection)) == message
    with pytest.raises(SystemCheckError, match=r"statehouse\.E001"):
        call_command("migrate", "--check", verbosity=0, skip_checks=False)
    with pytest.raises(SchemaMissingError) as raised:
        pending_migrations()
    assert str(raised.value) == message


@pytest.mark.parametrize("argv", [["migrate"], ["migrate", "--check"]])
def test_statehouse_migrate_names_the_problem(capsys, argv: list[str]) -> None:
    record_history(replaced()[:3])
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(
        "statehouse: error: this database applied Statehouse migrations only up to "
        "agents.0003_search_trigram_indexes, and they are now squashed"
    )
