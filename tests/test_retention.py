"""Retention (docs/retention.md): the policy in settings, applied by `prune --policy` and by
the resume worker, through the store in batches; and the staff storage page."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.db.models.functions import Length
from django.test import Client
from django.utils import timezone
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, Commit, Record, Version
from statehouse_agents.worker import ResumeWorker

from statehouse import Statehouse
from tests.test_metrics import one, scrape


def finished_agent(client: Statehouse, agent_id: str, *, days_ago: float, edits: int = 3) -> Agent:
    """An agent that wrote `notes` `edits` times, then finished `days_ago` days ago."""
    client.start(agent_id, {"task": agent_id})
    for n in range(edits):
        with client.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key="notes", value={"n": n})
    client.finish(agent_id, {"answer": agent_id})
    Agent.objects.filter(agent_id=agent_id).update(
        finished_at=timezone.now() - timedelta(days=days_ago)
    )
    return Agent.objects.get(agent_id=agent_id)


def versions_of(agent_id: str, key: str = "notes") -> list[int]:
    return sorted(
        Version.objects.filter(agent__agent_id=agent_id, key=key).values_list("version", flat=True)
    )


def prune_policy(*args: str) -> str:
    out = StringIO()
    call_command("prune", "--policy", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def policy(settings):  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RETENTION_FINISHED_DAYS = 7
    settings.STATEHOUSE_RETENTION_DROP_DAYS = 30


def test_policy_keeps_final_values_after_n_days_and_drops_after_m(
    sh: Statehouse, policy: None
) -> None:
    finished_agent(sh, "old", days_ago=10)
    finished_agent(sh, "recent", days_ago=1)
    finished_agent(sh, "ancient", days_ago=40)
    sh.start("live", {"task": "live"})
    for n in range(3):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="live", key="notes", value={"n": n})
    commits_before = one(scrape(), "statehouse_commits_total")

    assert (
        prune_policy("--dry-run") == "prune would delete 1 finished agent(s) and 2 old version(s)\n"
    )
    assert versions_of("old") == [1, 2, 3]

    output = prune_policy()

    assert output.startswith("prune deleted 1 finished agent(s) and 2 old version(s); ")
    assert versions_of("old") == [3]  # only the final value of each key
    assert (
        Record.objects.with_values().get(agent__agent_id="old", key="notes").value_json == '{"n":2}'
    )
    assert sh.get_state("old", "notes").value == {"n": 2}
    assert sh.get_state("old", "answer").value == {"answer": "old"}
    assert versions_of("recent") == [1, 2, 3]  # finished 1 day ago: full history
    assert versions_of("live") == [1, 2, 3]  # not finished: never touched
    assert not Agent.objects.filter(agent_id="ancient").exists()
    assert not Version.objects.filter(agent__agent_id="ancient").exists()
    # Commits left empty are gone, yet /metrics keeps counting them.
    assert Commit.objects.filter(versions__isnull=True).count() == 0
    assert one(scrape(), "statehouse_commits_total") == commits_before
    # A second pass finds nothing more.
    assert prune_policy().startswith("prune deleted 0 finished agent(s) and 0 old version(s)")


def test_prune_policy_without_a_policy_is_a_command_error(transactional_db: None) -> None:
    with pytest.raises(CommandError, match="no retention policy"):
        prune_policy()


def test_prune_policy_refuses_explicit_ages(transactional_db: None, policy: None) -> None:
    with pytest.raises(CommandError, match="--policy takes its ages from the settings"):
        prune_policy("--agents", "30d")


@pytest.mark.parametrize(
    ("finished", "drop", "message"),
    [
        (30, 7, "STATEHOUSE_RETENTION_DROP_DAYS=7 must be more than"),
        (7, 7, "STATEHOUSE_RETENTION_DROP_DAYS=7 must be more than"),
        (-1, None, "STATEHOUSE_RETENTION_FINISHED_DAYS=-1 must be at least 0.01"),
        ("seven", None, "STATEHOUSE_RETENTION_FINISHED_DAYS='seven' is not a number"),
        (None, True, "STATEHOUSE_RETENTION_DROP_DAYS=True is not a number"),
    ],
)
def test_nonsense_retention_settings_are_refused(settings, finished, drop, message) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RETENTION_FINISHED_DAYS = finished
    settings.STATEHOUSE_RETENTION_DROP_DAYS = drop
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_worker_applies_the_policy_on_its_schedule(sh: Statehouse, policy: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RETENTION_INTERVAL_SECONDS = 3600
    finished_agent(sh, "old", days_ago=10)
    finished_agent(sh, "ancient", days_ago=40)
    worker = ResumeWorker(once=True, poll_interval=0.05)
    worker.run()  # waits for its retention pass before returning
    assert versions_of("old") == [3]
    assert not Agent.objects.filter(agent_id="ancient").exists()
    # Within the interval, the next round does not prune again.
    finished_agent(sh, "later", days_ago=10)
    worker._stopping.clear()
    worker.tick()
    worker.wait_for_retention()
    assert versions_of("later") == [1, 2, 3]


def test_worker_without_interval_never_prunes(sh: Statehouse, policy: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RETENTION_INTERVAL_SECONDS = 0
    finished_agent(sh, "old", days_ago=10)
    ResumeWorker(once=True, poll_interval=0.05).run()
    assert versions_of("old") == [1, 2, 3]


# --- the storage page -------------------------------------------------------------------


def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    return client


def test_storage_page_shows_tables_namespaces_and_largest_agents(
    sh: Statehouse, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    finished_agent(sh, "small", days_ago=0, edits=1)
    with Statehouse(namespace="big") as other:
        other.start("huge", {"task": "x" * 5000})
    client = staff_client()
    # session, user, tables, the bounded version count, namespaces, largest, agents
    with django_assert_max_num_queries(7):
        response = client.get("/storage/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="sums-deferred"' not in page
    assert "<code>agents_version</code>" in page
    assert "<code>agents_commit</code>" in page
    for namespace in ("default", "big"):
        chars = Version.objects.filter(agent__namespace=namespace).aggregate(
            n=Sum(Length("value_json"))
        )["n"]
        assert f'<code>{namespace}</code></td><td data-label="Agents">1</td>' in page
        assert f'<td data-label="Value bytes">{chars}</td>' in page
    largest = page.index('data-testid="largest-agents"')
    assert page.index(">big/huge</a>", largest) < page.index(">small</a>", largest)


def test_storage_page_of_a_large_store_sums_values_only_when_asked(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    """Past LIVE_SUMS_UP_TO versions the page shows the table sizes and a link; the sums,
    which read every version, come with `?sums=1`."""
    from statehouse_agents.dashboard import storage_page

    finished_agent(sh, "small", days_ago=0, edits=1)
    monkeypatch.setattr(storage_page, "LIVE_SUMS_UP_TO", Version.objects.count() - 1)
    client = staff_client()
    # session, user, tables, the bounded version count
    with django_assert_max_num_queries(4):
        page = client.get("/storage/").content.decode()
    assert 'data-testid="sums-deferred"' in page
    assert '<a class="button" href="?sums=1">' in page
    assert f"more than {storage_page.LIVE_SUMS_UP_TO:,} versions" in page
    assert 'data-testid="namespace-sizes"' not in page
    assert "<code>agents_version</code>" in page

    asked = client.get("/storage/?sums=1").content.decode()
    assert 'data-testid="sums-deferred"' not in asked
    chars = Version.objects.aggregate(n=Sum(Length("value_json")))["n"]
    assert f'<td data-label="Value bytes">{chars}</td>' in asked
    assert ">small</a>" in asked[asked.index('data-testid="largest-agents"') :]

    monkeypatch.setattr(storage_page, "LIVE_SUMS_UP_TO", Version.objects.count())
    assert 'data-testid="sums-deferred"' not in client.get("/storage/").content.decode()


def test_storage_page_needs_staff(transactional_db: None) -> None:
    assert Client().get("/storage/").status_code == 302
    viewer = Client()
    viewer.force_login(User.objects.create_user("viewer", password="x"))
    assert viewer.get("/storage/").status_code == 403


def test_storage_page_on_a_sqlite_without_dbstat_shows_the_file_size(
    sh: Statehouse,
) -> None:
    """A SQLite built without the dbstat table fails to prepare the per-table query; the
    page then shows the whole file's size. SQLite's authorizer refuses dbstat here as such
    a build would, at prepare time."""
    if connection.vendor != "sqlite":
        pytest.skip("dbstat is SQLite's")
    import sqlite3

    from statehouse_agents.dashboard.storage_page import table_sizes

    finished_agent(sh, "small", days_ago=0, edits=1)
    connection.ensure_connection()
    raw = connection.connection

    def no_dbstat(action: int, table: str | None, *_: object) -> int:
        return sqlite3.SQLITE_DENY if table == "dbstat" else sqlite3.SQLITE_OK

    raw.set_authorizer(no_dbstat)
    try:
        tables, note = table_sizes()
    finally:
        raw.set_authorizer(None)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA page_count")
        pages = cursor.fetchone()[0]
        cursor.execute("PRAGMA page_size")
        size = cursor.fetchone()[0]
    assert [(t.table, t.bytes) for t in tables] == [("(whole database file)", pages * size)]
    assert note.startswith("This SQLite has no dbstat table")
