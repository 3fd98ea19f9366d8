"""Values stored once (docs/architecture.md, "Values stored once"): a record names its
current version and keeps no copy of the value; every read of a current value, and the
"waits for input" mark the commit writes beside it, follow the version."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from statehouse_agents.models import Record, Step, Version
from statehouse_agents.store import reads

from statehouse import Statehouse
from tests.factories import LATEST_FUNCTION, function_text, migration

pytestmark = pytest.mark.django_db(transaction=True)

WAITING = {"status": "pending", "waiting": "input", "prompt": "approve?"}


def record_columns() -> set[str]:
    with connection.cursor() as cursor:
        described = connection.introspection.get_table_description(cursor, "agents_record")
    return {column.name for column in described}


def current(agent_id: str) -> dict[str, tuple[int, str | None]]:
    """Each record of the agent: (version, value) as the dashboard reads them."""
    records = Record.objects.filter(agent__agent_id=agent_id).with_values().order_by("key")
    return {r.key: (r.version, r.value_json) for r in records}


def waiting(agent_id: str) -> list[str]:
    found = Record.objects.filter(agent__agent_id=agent_id, waits_for_input=True)
    return sorted(found.values_list("key", flat=True))


def test_a_value_is_stored_once_in_its_version_and_read_through_the_record(
    sh: Statehouse,
) -> None:
    assert "value_json" not in record_columns()
    sh.start("a1", {"task": "values"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="notes", value={"n": 1})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="notes", value={"n": 2})
        tx.write(agent_id="a1", key="plan", value=["look", "leap"])

    assert current("a1") == {
        "notes": (2, '{"n":2}'),
        "plan": (1, '["look","leap"]'),
        "task": (1, '{"task":"values"}'),
    }
    assert sh.get_state("a1", "notes").value == {"n": 2}
    assert sh.get_state("a1", "notes").version == 2
    assert {r.key: r.value for r in sh.scan_prefix("a1", "")} == {
        "notes": {"n": 2},
        "plan": ["look", "leap"],
        "task": {"task": "values"},
    }
    # Each value written once: as many stored values as versions.
    history = Version.objects.filter(agent__agent_id="a1", key="notes").order_by("version")
    assert list(history.values_list("version", "value_json")) == [(1, '{"n":1}'), (2, '{"n":2}')]


def test_a_deleted_key_is_a_tombstone_with_no_value(sh: Statehouse) -> None:
    sh.start("a1", {"task": "values"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="scratch", value={"x": 1})
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="scratch")

    record = Record.objects.with_values().get(agent__agent_id="a1", key="scratch")
    assert (record.version, record.deleted, record.value_json) == (2, True, None)
    state = sh.get_state("a1", "scratch")
    assert (state.version, state.exists, state.value) == (2, False, None)
    assert [r.key for r in sh.scan_prefix("a1", "")] == ["task"]

    with sh.begin_transaction() as tx:  # written again: live, one version past the tombstone
        tx.write(agent_id="a1", key="scratch", value={"x": 2})
    state = sh.get_state("a1", "scratch")
    assert (state.version, state.exists, state.value) == (3, True, {"x": 2})
    assert state.commit_ts == Record.objects.get(agent__agent_id="a1", key="scratch").commit_ts
    assert [r.key for r in sh.scan_prefix("a1", "")] == ["scratch", "task"]


def test_the_waiting_mark_follows_the_current_value(sh: Statehouse) -> None:
    sh.start("a1", {"task": "ask"})
    with sh.begin_transaction() as tx:  # a step stopped for input
        tx.write(agent_id="a1", key="step:0", value=WAITING)
    assert waiting("a1") == ["step:0"]
    assert list(Step.objects.waiting_for_input().values_list("key", flat=True)) == ["step:0"]

    with sh.begin_transaction() as tx:  # answered: the step moves on
        tx.write(agent_id="a1", key="step:0", value={"status": "done", "result": "yes"})
    with sh.begin_transaction() as tx:  # another key, written through the general path
        tx.write(agent_id="a1", key="inbox", value={"waiting": "input"})
        tx.delete(agent_id="a1", key="task")
    assert waiting("a1") == ["inbox"]
    assert not Step.objects.waiting_for_input().exists()

    with sh.begin_transaction() as tx:  # deleted: a tombstone waits for nothing
        tx.delete(agent_id="a1", key="inbox")
    assert waiting("a1") == []


def test_unapplying_0004_copies_each_value_back_and_applying_it_marks_waiting_records(
    sh: Statehouse,
) -> None:
    sh.start("a1", {"task": "migrate"})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="notes", value={"n": 1})
        tx.write(agent_id="a1", key="step:0", value=WAITING)
    with sh.begin_transaction() as tx:
        tx.write(agent_id="a1", key="notes", value={"n": 2})
        tx.write(agent_id="a1", key="scratch", value=1)
    with sh.begin_transaction() as tx:
        tx.delete(agent_id="a1", key="scratch")
    sh.close()
    before = current("a1")

    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("agents")
    executor.migrate([("agents", "0003_step_commits_by_index")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT key, value_json, waits_for_input FROM agents_record ORDER BY key"
            )
            rows = cursor.fetchall()
        assert [(key, value, bool(waits)) for key, value, waits in rows] == [
            ("notes", '{"n":2}', False),
            ("scratch", None, False),
            ("step:0", '{"status":"pending","waiting":"input","prompt":"approve?"}', True),
            ("task", '{"task":"migrate"}', False),
        ]
        if connection.vendor == "postgresql":
            assert function_text() in migration("0003_step_commits_by_index").FUNCTION
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)

    assert "value_json" not in record_columns()
    assert current("a1") == before
    assert waiting("a1") == ["step:0"]
    if connection.vendor == "postgresql":
        assert function_text() in migration(LATEST_FUNCTION).FUNCTION


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's generic plans")
def test_get_state_reads_one_version_however_long_the_history(sh: Statehouse) -> None:
    sh.start("a1", {"task": "history"})
    for n in range(200):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="a1", key="notes", value={"n": n})
    state = sh.get_state("a1", "notes")
    assert (state.version, state.value) == (200, {"n": 199})
    # The plan a prepared statement settles on, whatever the parameters (a generic plan).
    query = reads._GET_STATE.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%s", "$3", 1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE get_state_plan AS {query}")
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE get_state_plan('default', 'a1', 'notes')"
        )
        (explained,) = cursor.fetchone()
        cursor.execute("DEALLOCATE get_state_plan")
    nodes = plan_nodes(explained[0]["Plan"])
    versions = [n for n in nodes if n.get("Relation Name") == "agents_version"]
    # The latest version, looked up at the end of the index, not all 200 sorted.
    assert [n["Actual Rows"] for n in versions] == [1]
    assert not [n for n in nodes if n["Node Type"] == "Sort"]
