"""PostgreSQL's one-call commit (docs/architecture.md, "The commit function"): the same
commits through `statehouse_commit` and through the general path leave identical rows
in every table, and raise the same typed errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F
from psycopg import pq
from statehouse_agents.models import Agent, Commit, Record, Step, Task, Version
from statehouse_agents.store import commit as commit_module
from statehouse_agents.store.commit_function import GUARDED_COLUMNS, _guard
from statehouse_agents.store.operations import CommitResult, LeaseOwner, StagedOp
from statehouse_agents.store.writes import commit

from statehouse.errors import (
    AlreadyExistsError,
    ConflictError,
    LeaseHeldError,
    ValidationError,
)
from statehouse.validation import encode_value
from tests.conftest import database_url_of_test_db
from tests.factories import LATEST_FUNCTION, function_text, migration, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the commit function is PostgreSQL's"
    ),
]

LEASE = 30.0
OWNER = LeaseOwner(token="owner-1", host="host-a", pid=101)
OTHER = LeaseOwner(token="owner-2", host="host-b", pid=202)
PAST = datetime(2001, 1, 1, tzinfo=datetime.now().astimezone().tzinfo)
FUTURE = datetime(2999, 1, 1, tzinfo=PAST.tzinfo)

# (key, value or None for a delete, expected_version), the owner, and what it raises.
Txn = tuple[list[tuple[str, Any, int | None]], LeaseOwner | None, type[Exception] | None]
SEQUENCE: list[Txn] = [
    ([("task", {"task": "compare"}, None)], OWNER, None),
    ([("step:0", {"status": "pending", "action": {"q": 1}}, None)], OWNER, None),
    ([("step:0", {"status": "done", "result": "r"}, 1), ("notes", [1], 0)], OWNER, None),
    ([("step:1", {"status": "pending"}, None), ("notes", [2], 1)], OWNER, None),
    ([("step:1", {"status": "failed", "error": "boom"}, None)], OWNER, None),
    ([("step:1", {"status": "pending"}, None)], OWNER, None),  # a re-run starts anew
    ([("step:1", {"status": "done"}, 2)], OWNER, ConflictError),
    ([("step/1", {"status": "done"}, None)], OWNER, ValidationError),  # one key per step
    ([("step:2", {"status": "pending"}, None)], OTHER, LeaseHeldError),
    ([("notes", [3], None)], OTHER, None),  # other keys take no lease
    ([("step:1", {"status": "done"}, None), ("step:5", "odd", None)], OWNER, None),
    ([("scratch", None, None)], OWNER, None),  # a delete: the general path
    ([("step:3", {"status": "pending"}, None), ("scratch", {"x": 1}, None)], OWNER, None),
    ([("answer", {"ok": True}, None)], OWNER, None),
    ([("step:4", {"status": "done"}, None)], OWNER, None),  # a finished agent runs again
    # Step policies (docs/contract.md §3): written to the step row by both paths.
    ([("step:6", {"status": "pending", "policy": "review"}, None)], OWNER, None),
    ([("step:6", {"status": "done", "policy": "skip"}, None)], OWNER, None),
    ([("step:7", {"status": "pending", "policy": "never"}, None)], OWNER, ValidationError),
    ([("step:7", {"status": "pending", "policy": "skip"}, None)], OWNER, None),
    # A step stopped for input (docs/langgraph.md): both paths mark its record waiting,
    # and unmark it when the step moves on.
    ([("step:8", {"status": "pending", "waiting": "input"}, None)], OWNER, None),
    ([("step:8", {"status": "done", "result": "answered"}, None)], OWNER, None),
    ([("step:9", {"status": "pending", "waiting": "input"}, None)], OWNER, None),
]


def compact(value: Any) -> str:
    """A value's JSON text as the store encodes it."""
    return encode_value(value, key="test", max_bytes=2**20)


def run(agent_id: str, sequence: list[Txn]) -> list[Any]:
    """Commit the sequence to `agent_id`; return each commit's result or error type."""
    outcomes: list[Any] = []
    held: dict[str, int] = {}
    for index, (writes, owner, raises) in enumerate(sequence):
        # Steer the clock-driven choices the same way for both agents: the activity
        # time moves (or, far ahead, stays), and once the lease is due for renewal.
        agents = Agent.objects.filter(agent_id=agent_id)
        agents.update(last_activity_at=PAST if index % 2 else FUTURE)
        if index == 4:
            agents.update(lease_expires_at=F("lease_expires_at") - timedelta(seconds=LEASE - 1))
        ops = [
            StagedOp(agent_id, key, None if v is None else compact(v), v, expected)
            for key, v, expected in writes
        ]
        try:
            result = commit(
                namespace="default",
                ops=ops,
                owner=owner,
                lease_seconds=LEASE,
                held=held if owner is OWNER else {},
                durable=True,
            )
        except Exception as exc:
            assert type(exc) is raises, exc
            message = re.sub(r"until \S+;", "until …;", str(exc).replace(agent_id, "AGENT"))
            outcomes.append((type(exc).__name__, message))
            continue
        assert raises is None
        if owner is OWNER:
            held.update(result.leased)
        outcomes.append(
            (
                {(k, v) for (_, k), v in result.versions.items()},
                list(result.leased.values()),
                len(result.released),
            )
        )
    return outcomes


def rows(agent_id: str) -> dict[str, Any]:
    """Every column of every row the agent has, with ids and times made comparable:
    a commit by its rank among the agent's commits, a time by the commit it was made at."""
    agent = Agent.objects.get(agent_id=agent_id)
    commits = list(Commit.objects.filter(versions__agent=agent).distinct().order_by("pk").values())
    rank = {c["id"]: n for n, c in enumerate(commits)}
    at = {c["committed_at"]: n for n, c in enumerate(commits)}

    def when(value: datetime | None) -> str | None:
        if value is None or value in (PAST, FUTURE):
            return None if value is None else str(value.year)
        if value in at:
            return f"c{at[value]}"
        if value - timedelta(seconds=LEASE) in at:
            return f"c{at[value - timedelta(seconds=LEASE)]}+lease"
        return "other"

    def norm(row: dict[str, Any], ids: tuple[str, ...] = ()) -> dict[str, Any]:
        out = {}
        for name, value in row.items():
            if name in ("id", "agent_id", "txn_id"):
                continue
            if name in ids:
                value = rank.get(value, value)
            elif isinstance(value, datetime):
                value = when(value)
            out[name] = value
        return out

    agent_row = Agent.objects.filter(pk=agent.pk).values().get()
    agent_row["created_at"] = None  # written before any commit
    return {
        "agent": norm(agent_row, ("last_commit_ts",)),
        "task": [norm(r) for r in Task.objects.filter(agent=agent).values()],
        "steps": [norm(r) for r in Step.objects.filter(agent=agent).order_by("key").values()],
        "records": [
            norm(r, ("commit_ts",))
            for r in Record.objects.filter(agent=agent).order_by("key").values()
        ],
        "versions": [
            norm(r, ("commit_id",))
            for r in Version.objects.filter(agent=agent).order_by("key", "version").values()
        ],
        "commits": [norm(c) | {"rank": rank[c["id"]]} for c in commits],
    }


def run_both_paths(sequence: list[Txn], settings: Any, monkeypatch: Any) -> int:
    """Commit `sequence` to the agent "general" by the general path alone and to "fast"
    with the commit function; check that every commit answered alike; return how many
    the function committed (the others it handed back, or never got)."""
    calls: list[CommitResult | None] = []
    real = commit_module.commit_in_one_call

    def spy(**kwargs: Any) -> CommitResult | None:
        calls.append(real(**kwargs))
        return calls[-1]

    monkeypatch.setattr(commit_module, "commit_in_one_call", spy)
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = False
    general = run("general", sequence)
    assert calls == []
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    fast = run("fast", sequence)
    assert fast == general
    return len([c for c in calls if c is not None])


def test_the_function_and_the_general_path_write_the_same_rows(
    settings: Any, monkeypatch: Any
) -> None:
    committed_by_function = run_both_paths(SEQUENCE, settings, monkeypatch)
    # The rest were handed back: those the function does not handle, every failed check,
    # and the step that takes the lease (it records the liveness handle).
    assert committed_by_function == 14
    assert rows("fast") == rows("general")
    waiting = Record.objects.filter(agent__agent_id="fast", waits_for_input=True)
    assert list(waiting.values_list("key", flat=True)) == ["step:9"]
    policies = dict(Step.objects.filter(agent__agent_id="fast").values_list("key", "policy"))
    assert policies == {
        "step:0": "retry",
        "step:1": "retry",
        "step:3": "retry",
        "step:4": "retry",
        "step:5": "retry",
        "step:6": "skip",
        "step:7": "skip",
        "step:8": "retry",
        "step:9": "retry",
    }


def test_steps_of_an_agent_without_a_task_go_through_the_function_with_the_same_rows(
    settings: Any, monkeypatch: Any
) -> None:
    # The same commits with no task written first: the agent is idle until its answer,
    # and the function commits its steps as it does an active agent's (migration 0007).
    committed_by_function = run_both_paths(SEQUENCE[1:], settings, monkeypatch)
    assert rows("fast") == rows("general")
    assert rows("fast")["agent"]["has_task"] is False
    # Until the answer, what it commits for an agent with a task: every commit but the
    # one that takes the lease and those whose checks fail. The answer finishes the agent,
    # and without a task a step does not make it active again: the general path from there.
    assert committed_by_function == 7
    states = Agent.objects.filter(agent_id__in=["fast", "general"]).values_list("state", flat=True)
    assert list(states) == ["completed", "completed"]


def messages_of_the_next_step(agent_id: str, sequence: list[Txn]) -> list[str]:
    """Commit `sequence` (which leaves step:0 pending and the lease taken), then step:0
    done (which prepares the call's statement); the protocol messages step:1 pending
    sends."""
    run(agent_id, sequence)
    op = StagedOp(agent_id, "step:0", json.dumps({"status": "done"}), {"status": "done"})
    commit(namespace="default", ops=[op], owner=OWNER)
    op = StagedOp(agent_id, "step:1", json.dumps({"status": "pending"}), {"status": "pending"})
    return _messages_of(lambda: commit(namespace="default", ops=[op], owner=OWNER))


# No BEGIN and no COMMIT: in autocommit, the call is its own transaction.
ONE_ROUND_TRIP = ["Bind", "Describe", "Execute", "Sync"]


def test_a_step_of_an_agent_without_a_task_is_one_round_trip(settings: Any) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    assert messages_of_the_next_step("idle", SEQUENCE[1:2]) == ONE_ROUND_TRIP
    agent = Agent.objects.get(agent_id="idle")
    assert (agent.state, agent.steps_done, agent.steps_pending, agent.last_step) == (
        Agent.State.IDLE,
        1,
        1,
        1,
    )


def test_a_step_by_the_function_is_one_statement(settings: Any) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])
    op = StagedOp("a1", "step:0", json.dumps({"status": "done"}), {"status": "done"})
    statements = _statements_of(lambda: commit(namespace="default", ops=[op], owner=OWNER))
    assert [s.split("(")[0] for s in statements] == [
        "SELECT commit_ts, versions, lease_epoch FROM statehouse_commit"
    ]


def test_a_step_outside_a_transaction_is_one_round_trip(settings: Any) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    assert messages_of_the_next_step("a1", SEQUENCE[:2]) == ONE_ROUND_TRIP
    assert Step.objects.get(agent__agent_id="a1", key="step:0").status == "done"


def test_a_step_sent_again_in_one_round_trip_applies_nothing(settings: Any) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])
    op = StagedOp("a1", "step:0", json.dumps({"status": "done"}), {"status": "done"})
    txn_id = "e3e70682-c209-2cac-a29f-6fbed82c07cd"
    commit(namespace="default", ops=[op], owner=OWNER, txn_id=txn_id)
    again = StagedOp("a1", "step:0", json.dumps({"status": "failed"}), {"status": "failed"})
    with pytest.raises(AlreadyExistsError, match=f"^transaction {txn_id} was already committed"):
        commit(namespace="default", ops=[again], owner=OWNER, txn_id=txn_id)
    step = Step.objects.get(agent__agent_id="a1", key="step:0")
    assert (step.status, step.version) == ("done", 2)


def test_a_step_inside_the_callers_transaction_joins_it(settings: Any) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])
    op = StagedOp("a1", "step:0", json.dumps({"status": "done"}), {"status": "done"})
    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        result = commit(namespace="default", ops=[op], owner=OWNER)
        assert result.durable is False
        raise RuntimeError("rolled back")
    assert Step.objects.get(agent__agent_id="a1", key="step:0").status == "pending"


def test_a_step_the_function_hands_back_runs_the_general_path_in_a_transaction(
    settings: Any,
) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])
    op = StagedOp("a1", "step:1", json.dumps({"status": "done"}), {"status": "done"})
    messages = _messages_of(lambda: commit(namespace="default", ops=[op], owner=OTHER))
    # The call, handed back (the lease is another owner's), then the general path in a
    # transaction of its own: BEGIN (a simple query), its statements, and ROLLBACK after
    # its LeaseHeldError.
    begin = messages.index("Query")
    assert messages[begin - 2 : begin] == ["Execute", "Sync"]
    assert messages[-1] == "Query"
    assert not Step.objects.filter(agent__agent_id="a1", key="step:1").exists()


def _messages_of(body: Callable[[], Any]) -> list[str]:
    """The protocol messages this thread's connection sends while `body` runs (libpq's
    trace), by type: a round trip ends with `Sync` (or is one simple `Query`)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            with contextlib.suppress(Exception):
                body()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return [line.split("\t")[2].strip() for line in trace if line.startswith("F\t")]


def _statements_of(body: Callable[[], Any]) -> list[str]:
    """The statements sent on this thread's connection while `body` runs."""
    import psycopg

    connection.ensure_connection()
    raw = connection.connection
    seen: list[str] = []
    original = psycopg.Cursor.execute

    def trace(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.connection is raw:
            seen.append(str(query))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = trace  # type: ignore[method-assign]
    try:
        body()
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]
    return seen


def test_the_function_guard_reads_every_column_a_guard_names() -> None:
    guard = _guard(OWNER, leasing=True)
    assert set(guard) == {"state", "paused_at", "lease_owner"}
    assert set(guard) <= GUARDED_COLUMNS
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('statehouse_commit'::regproc)")
        (definition,) = cursor.fetchone()
    (built,) = re.findall(r"jsonb_build_object\((.*?)\) @> p_guard", definition, re.S)
    for column in GUARDED_COLUMNS:
        assert re.search(rf"'{column}', (CASE )?a\.{column}\b", built), column
    assert "to_jsonb(a)" not in definition
    assert "plan_cache_mode" in definition


def rows_read(table: str) -> int:
    """Rows of `table` this transaction has read so far (PostgreSQL's counters)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_returned(%s::regclass)"
            " + pg_stat_get_xact_tuples_fetched(%s::regclass)",
            [table, table],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh-statistics", "analyzed"])
def test_a_step_reads_only_its_own_rows_however_long_the_history(
    settings: Any, analyzed: bool
) -> None:
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("long", SEQUENCE[:2])
    history = [
        ([(f"step:{n}", {"status": status}, None), ("notes", [n], None)], OWNER, None)
        for n in range(1, 301)
        for status in ("pending", "done")
    ]
    run("long", history)
    if analyzed:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE agents_step; ANALYZE agents_record")

    def write(key: str, value: Any) -> StagedOp:
        return StagedOp("long", key, compact(value), value)

    # A new step, then its result with an existing key and a new one: inserts and updates.
    for ops in (
        [write("step:301", {"status": "pending"})],
        [write("step:301", {"status": "done"}), write("notes", [301]), write("other", 1)],
    ):
        with transaction.atomic():
            before = rows_read("agents_step"), rows_read("agents_record")
            commit(namespace="default", ops=ops, owner=OWNER)
            after = rows_read("agents_step"), rows_read("agents_record")
        # Lookups of the keys written (and of a new step's number), not a pass over the
        # agent's 301 steps and 302 records.
        assert after[0] - before[0] <= 3, ops
        assert after[1] - before[1] <= 2 * len(ops), ops
    assert Step.objects.get(agent__agent_id="long", key="step:301").status == "done"


# What each migration gives the function, fixed once it shipped: a database that applied
# it has this text, so the migration's code may change only in ways that keep it.
SHIPPED = {
    "0001_squashed_0021_bulk_dashboard_indexes": "8fc63855dcefc35be849e2b33a4c1c95",
    "0002_cheaper_step_commits": "3923a2fc44f36500ba5af7f9441cd9a2",
    "0003_step_commits_by_index": "57f1dc86ab964825a3c17935a0dd540d",
    "0004_records_point_at_versions": "3f310ba2cc0644a583c722115339915e",
    "0006_less_wal_per_step": "e6a2c94b2a606bd5ab44d77b6e542ff4",
    "0007_step_commits_without_a_task": "c81e5b17aabf32b43b8319b427f306e7",
    "0008_commit_ids_without_a_catalog_lookup": "8b43aa941043a8da450a1f277fc41ad6",
}


def test_a_shipped_migration_gives_the_function_the_text_it_shipped_with() -> None:
    digests = {
        name: hashlib.sha256(migration(name).FUNCTION.encode()).hexdigest()[:32] for name in SHIPPED
    }
    assert digests == SHIPPED


@contextlib.contextmanager
def migrated_back_to(name: str) -> Iterator[None]:
    """The agents app unapplied down to migration `name` inside the block, and migrated
    forward to its latest state again after it."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("agents")
    executor.migrate([("agents", name)])
    try:
        yield
    finally:
        executor.loader.build_graph()
        executor.migrate(latest)


def test_unapplying_the_lookup_by_key_restores_the_text_before_it() -> None:
    with migrated_back_to("0002_cheaper_step_commits"):
        text = function_text()
        assert "OFFSET 0" not in text
        assert text in migration("0002_cheaper_step_commits").FUNCTION
    assert "OFFSET 0" in function_text()
    assert function_text() in migration(LATEST_FUNCTION).FUNCTION


def test_unapplying_the_named_sequence_restores_the_catalog_lookup() -> None:
    with migrated_back_to("0007_step_commits_without_a_task"):
        text = function_text()
        assert "nextval(pg_get_serial_sequence('agents_commit', 'id'))" in text
        assert text in migration("0007_step_commits_without_a_task").FUNCTION
    assert "nextval('agents_commit_id_seq'::regclass)" in function_text()
    assert function_text() in migration(LATEST_FUNCTION).FUNCTION


def test_both_paths_draw_commit_ids_from_the_commit_tables_own_sequence(settings: Any) -> None:
    """The function names the sequence (migration 0008); the general path inserts with the
    column's default. Both must be the identity column's sequence, or ids would repeat."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_serial_sequence('agents_commit', 'id')::regclass "
            "= 'agents_commit_id_seq'::regclass"
        )
        assert cursor.fetchone() == (True,)
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])
    step = StagedOp("a1", "step:0", json.dumps({"status": "done"}), {"status": "done"})
    by_function = commit(namespace="default", ops=[step], owner=OWNER).commit_ts
    general = StagedOp("a1", "notes", None, None)  # a delete: the general path
    by_general_path = commit(namespace="default", ops=[general], owner=OWNER).commit_ts
    again = StagedOp("a1", "step:1", json.dumps({"status": "pending"}), {"status": "pending"})
    by_function_again = commit(namespace="default", ops=[again], owner=OWNER).commit_ts
    assert by_function is not None and by_general_path is not None
    assert by_function < by_general_path < by_function_again
    assert list(Commit.objects.order_by("-pk").values_list("pk", flat=True)[:3]) == [
        by_function_again,
        by_general_path,
        by_function,
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM agents_commit_id_seq")
        assert cursor.fetchone() == (by_function_again,)


def _scans_of_the_step_number_index() -> int:
    """How often `step_agent_number` was read, this connection's last commit included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'step_agent_number'"
        )
        return int(cursor.fetchone()[0])


def test_a_step_above_the_last_one_is_not_looked_up_by_number(settings: Any) -> None:
    """No key can hold a number above the agent's last step (migration 0008); a number at
    or below it is still looked up, and a second key of it refused."""
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("a1", SEQUENCE[:2])  # its task and step 0
    before = _scans_of_the_step_number_index()
    op = StagedOp("a1", "step:1", json.dumps({"status": "pending"}), {"status": "pending"})
    assert commit(namespace="default", ops=[op], owner=OWNER).commit_ts is not None
    assert _scans_of_the_step_number_index() == before
    clash = StagedOp("a1", "step/0", json.dumps({"status": "pending"}), {"status": "pending"})
    with pytest.raises(ValidationError, match="recorded under the key 'step:0'"):
        commit(namespace="default", ops=[clash], owner=OWNER)
    assert _scans_of_the_step_number_index() > before


def test_a_change_of_the_agent_made_while_a_step_commits_is_kept(settings: Any) -> None:
    """The function reads the agent's row without a lock; its update applies only to the
    row version it read. Another transaction changes the row in between: the step waits
    for it, then commits on the changed row (the general path), losing nothing."""
    settings.STATEHOUSE_PG_COMMIT_FUNCTION = True
    run("busy", SEQUENCE[:2])  # a task, and step:0 pending under OWNER's lease
    done = {"status": "done", "result": "r"}
    outcome: dict[str, Any] = {}

    def step() -> None:
        try:
            outcome["result"] = commit(
                namespace="default",
                ops=[StagedOp("busy", "step:0", compact(done), done, None)],
                owner=OWNER,
                lease_seconds=LEASE,
                durable=True,
            )
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc
        finally:
            connection.close()  # this thread's own connection

    url = database_url_of_test_db()
    with psycopg.connect(url) as other, psycopg.connect(url, autocommit=True) as monitor:
        other.execute(
            "UPDATE agents_agent SET steps_failed = steps_failed + 5, "
            "task_summary = 'changed meanwhile' WHERE agent_id = 'busy'"
        )
        committer = threading.Thread(target=step)
        committer.start()
        try:
            wait_until(
                lambda: monitor.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE %s",
                    ["%statehouse_commit%"],
                ).fetchone(),
                timeout=30,
                what="the step's commit waiting for the agent's row",
            )
        finally:
            other.commit()
            committer.join(timeout=30)
    assert not committer.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["result"].versions == {("busy", "step:0"): 2}
    agent = Agent.objects.get(agent_id="busy")
    assert (agent.steps_done, agent.steps_pending, agent.steps_failed) == (1, 0, 5)
    assert agent.task_summary == "changed meanwhile"
    assert agent.last_commit_ts == outcome["result"].commit_ts
    assert Step.objects.get(agent=agent, key="step:0").status == "done"


def index_method(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
            "WHERE c.relname = %s",
            [name],
        )
        return str(cursor.fetchone()[0])


def constrained_references(table: str) -> list[str]:
    """The columns of `table` that a foreign-key constraint checks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_constraint k JOIN pg_attribute a "
            "ON a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey) "
            "WHERE k.contype = 'f' AND k.conrelid = %s::regclass ORDER BY a.attname",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def test_unapplying_less_wal_per_step_restores_what_was_before() -> None:
    store_tables = ("agents_version", "agents_record", "agents_step")
    assert index_method("commit_committed_at") == "brin"
    assert [constrained_references(t) for t in store_tables] == [[], [], []]
    with migrated_back_to("0005_commit_ids_in_time_order"):
        assert function_text() in migration("0004_records_point_at_versions").FUNCTION
        assert index_method("commit_committed_at") == "btree"
        assert [constrained_references(t) for t in store_tables] == [
            ["agent_id", "commit_id"],
            ["agent_id"],
            ["agent_id"],
        ]
    assert function_text() in migration(LATEST_FUNCTION).FUNCTION
    assert index_method("commit_committed_at") == "brin"
    assert [constrained_references(t) for t in store_tables] == [[], [], []]
