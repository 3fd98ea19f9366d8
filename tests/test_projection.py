"""The agent/task/step projection of the key conventions (docs/contract.md §3), kept in the
same database transaction as the store write, and the status QuerySet methods."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.utils import timezone
from statehouse_agents.models import Agent, Step, Task

from statehouse import ConflictError, LeaseHeldError, Statehouse


def agent(agent_id: str = "a1") -> Agent:
    return Agent.objects.get(agent_id=agent_id)


def steps(agent_id: str = "a1") -> list[tuple[str, int, str]]:
    return list(
        Step.objects.filter(agent__agent_id=agent_id).values_list("key", "number", "status")
    )


def counters(agent_id: str = "a1") -> tuple[int, int, int, int | None]:
    a = agent(agent_id)
    return a.steps_done, a.steps_pending, a.steps_failed, a.last_step


def snapshot(agent_id: str = "a1") -> tuple[object, ...]:
    """Everything the projection keeps about an agent."""
    a = agent(agent_id)
    task = Task.objects.filter(agent=a).values_list("value_json", "version").first()
    rows = list(
        Step.objects.filter(agent=a)
        .with_values()
        .values_list("key", "status", "version", "value_json", "started_at", "ended_at")
    )
    return (
        a.state,
        a.has_task,
        a.task_summary,
        a.steps_done,
        a.steps_pending,
        a.steps_failed,
        a.last_step,
        a.last_commit_ts,
        a.finished_at,
        task,
        rows,
    )


def test_task_is_projected_with_its_summary_and_version(sh: Statehouse) -> None:
    sh.start("a1", {"task": "compare   vector\ndatabases", "budget": 3})

    a = agent()
    assert (a.has_task, a.task_summary, a.state) == (True, "compare vector databases", "active")
    task = Task.objects.get(agent=a)
    assert json.loads(task.value_json) == {"task": "compare   vector\ndatabases", "budget": 3}
    assert (task.summary, task.version) == ("compare vector databases", 1)

    sh.start("a1", "a plain string task")
    task.refresh_from_db()
    assert (task.summary, task.version) == ("a plain string task", 2)
    assert agent().task_summary == "a plain string task"


def test_step_keys_in_every_spelling_are_projected(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "task", {"task": "t"})
        tx.write("a1", "step:0", {"status": "done", "action": {"q": 1}, "result": "r0"})
        tx.write("a1", "step/1", {"status": "pending", "action": "search"})
        tx.write("a1", "step:007", {"status": "failed", "error": "timeout"})
        tx.write("a1", "step/010", {"status": "done"})
        tx.write("a1", "stepping", {"status": "done"})  # not a step key
        tx.write("a1", "step:x", {"status": "done"})  # nor this

    assert steps() == [
        ("step:0", 0, "done"),
        ("step/1", 1, "pending"),
        ("step:007", 7, "failed"),
        ("step/010", 10, "done"),
    ]
    assert counters() == (2, 1, 1, 10)
    zero = Step.objects.with_values().get(key="step:0")
    assert (json.loads(zero.action_json), json.loads(zero.result_json), zero.error_json) == (
        {"q": 1},
        "r0",
        "",
    )
    assert zero.ended_at is not None
    seven = Step.objects.with_values().get(key="step:007")
    assert (json.loads(seven.error_json), seven.version) == ("timeout", 1)
    assert Step.objects.get(key="step/1").ended_at is None


def test_step_status_changes_move_the_counters(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with sh.step("a1", 0, action="first") as step:
        assert counters() == (0, 1, 0, 0)
        step.result = 42
    assert counters() == (1, 0, 0, 0)
    with pytest.raises(ValueError), sh.step("a1", 1, action="second"):
        raise ValueError("nope")
    assert counters() == (1, 0, 1, 1)
    assert json.loads(Step.objects.with_values().get(key="step:1").error_json) == "ValueError: nope"
    # A re-run of a failed step: pending again, then done.
    with sh.step("a1", 1, action="second") as step:
        assert counters() == (1, 1, 0, 1)
    assert counters() == (2, 0, 0, 1)
    assert Step.objects.get(key="step:1").version == 4
    # A value without a known status counts nowhere.
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:2", "just text")
    assert steps()[-1] == ("step:2", 2, "unknown")
    assert counters() == (2, 0, 0, 2)


def test_deleting_steps_updates_counters_and_last_step(sh: Statehouse) -> None:
    with sh.begin_transaction() as tx:
        tx.write("a1", "task", {"task": "t"})
        for n, status in enumerate(["done", "done", "pending", "failed"]):
            tx.write("a1", f"step:{n}", {"status": status})
    assert counters() == (2, 1, 1, 3)

    with sh.begin_transaction() as tx:
        tx.delete("a1", "step:3")
        tx.delete("a1", "step:0")
    assert counters() == (1, 1, 0, 2)
    assert [key for key, _, _ in steps()] == ["step:1", "step:2"]

    with sh.begin_transaction() as tx:
        tx.delete("a1", "step:1")
        tx.delete("a1", "step:2")
        tx.delete("a1", "step:99")  # never written: nothing to remove
    assert counters() == (0, 0, 0, None)
    assert steps() == []


def test_answer_completes_and_deleting_it_reopens(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    sh.finish("a1", {"final": "yes"})

    a = agent()
    assert (a.state, a.error) == ("completed", "")
    assert a.finished_at is not None
    assert sh.status("a1") == "completed"

    with sh.begin_transaction() as tx:
        tx.delete("a1", "answer")
    a = agent()
    assert (a.state, a.finished_at) == ("active", None)
    assert sh.status("a1") == "running"  # this process wrote (deleted) an answer key


def test_failure_fails_and_deleting_the_task_makes_the_agent_idle(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    sh.fail("a1", "out of budget")
    a = agent()
    assert (a.state, a.error) == ("failed", "out of budget")

    sh.start("a2", {"task": "t"})
    with sh.begin_transaction() as tx:
        tx.delete("a2", "task")
    a2 = agent("a2")
    assert (a2.has_task, a2.task_summary, a2.state) == (False, "", "idle")
    assert not Task.objects.filter(agent=a2).exists()


def test_aborted_transaction_changes_no_projection(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with sh.step("a1", 0) as step:
        step.result = 1
    before = snapshot()

    with pytest.raises(RuntimeError), sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "pending"})
        tx.write("a1", "answer", {"x": 1})
        tx.delete("a1", "step:0")
        raise RuntimeError("abort")
    tx = sh.begin_transaction()
    tx.write("a1", "task", {"task": "other"})
    tx.abort()
    with pytest.raises(RuntimeError), sh.begin_transaction() as tx:
        tx.write("brand-new", "task", {"task": "t"})
        raise RuntimeError("abort")

    assert snapshot() == before
    assert not Agent.objects.filter(agent_id="brand-new").exists()


def test_conflicted_transaction_changes_no_projection(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    with sh.step("a1", 0) as step:
        step.result = 1
    before = snapshot()

    with pytest.raises(ConflictError), sh.begin_transaction() as tx:
        tx.write("a1", "step:1", {"status": "done"})
        tx.delete("a1", "step:0")
        tx.write("a1", "task", {"task": "changed"})
        tx.write("a1", "answer", {"x": 1})
        tx.write("a1", "notes", 1, expected_version=5)

    assert snapshot() == before


def test_refused_lease_changes_no_projection(sh: Statehouse) -> None:
    sh.start("a1", {"task": "t"})
    before = snapshot()

    with Statehouse() as other, pytest.raises(LeaseHeldError), other.begin_transaction() as tx:
        tx.write("a1", "step:0", {"status": "done"})
        tx.write("a1", "answer", 1)

    assert snapshot() == before


# --- statuses ----------------------------------------------------------------------------------


def test_queryset_status_methods_agree_with_annotate_status(transactional_db: None) -> None:
    now = timezone.now()
    leases = {
        "none": ("", None),
        "live": ("tok", now + timedelta(hours=1)),
        "expired": ("tok", now - timedelta(hours=1)),
        "live-no-owner": ("", now + timedelta(hours=1)),
        "expired-no-owner": ("", now - timedelta(hours=1)),
    }
    for n, (state, lease) in enumerate(itertools.product(Agent.State.values, leases)):
        owner, expires = leases[lease]
        Agent.objects.create(
            namespace="ns",
            agent_id=f"{state}-{lease}-{n}",
            state=state,
            has_task=state != Agent.State.IDLE,
            created_at=now,
            last_activity_at=now,
            lease_owner=owner,
            lease_expires_at=expires,
        )

    annotated = dict(Agent.objects.annotate_status().values_list("agent_id", "status_value"))
    by_method = {
        status: set(Agent.objects.with_status(status).values_list("agent_id", flat=True))
        for status in Agent.Status.values
    }
    for agent_id, status in annotated.items():
        holders = [s for s, ids in by_method.items() if agent_id in ids]
        assert holders == [status], agent_id
    expected = {
        "active-none-5": "interrupted",
        "active-live-6": "running",
        "active-expired-7": "interrupted",
        "resuming-none-10": "resuming",
        "resuming-live-11": "resuming",
        "resuming-expired-12": "interrupted",
        "idle-none-0": "idle",
        "idle-live-1": "running",
        "completed-live-16": "completed",
        "failed-expired-22": "failed",
    }
    assert {a: annotated[a] for a in expected} == expected
    if hasattr(Agent.objects, "status_counts"):
        counts = Agent.objects.all().status_counts()
        assert counts == {s: len(ids) for s, ids in by_method.items()}
    with pytest.raises(ValueError, match="unknown status 'bogus'"):
        Agent.objects.with_status("bogus")
    # The status properties agree with the status sets (read from the annotation).
    for agent in Agent.objects.annotate_status():
        assert agent.is_resumable == (agent.status_value in Agent.RESUMABLE_STATUSES)
        assert agent.is_held == (agent.status_value in Agent.HELD_STATUSES)
        assert agent.is_paused == (agent.status_value == Agent.Status.PAUSED)
    assert not Agent().is_live  # read without the annotation: no status


def test_idle_for_and_finished(transactional_db: None) -> None:
    now = timezone.now()
    for agent_id, state, age in [
        ("old", "active", 3600),
        ("new", "active", 0),
        ("done", "completed", 7200),
        ("gone", "failed", 10),
    ]:
        Agent.objects.create(
            namespace="default",
            agent_id=agent_id,
            state=state,
            created_at=now,
            last_activity_at=now - timedelta(seconds=age),
        )
    idle = Agent.objects.idle_for(timedelta(minutes=30)).values_list("agent_id", flat=True)
    assert sorted(idle) == ["done", "old"]
    assert sorted(Agent.objects.finished().values_list("agent_id", flat=True)) == ["done", "gone"]
    assert Agent.objects.filter(last_activity_at__lte=Now()).count() == 4


def test_a_step_row_keeps_no_copy_of_its_value(sh: Statehouse) -> None:
    """The step's action, result and error are read from its key's current value."""
    sh.start("a1", {"task": "t"})
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:0", {"status": "pending", "action": {"tool": "search"}})
    columns = {f.name for f in Step._meta.concrete_fields}
    assert columns & {"action_json", "result_json", "error_json", "value_json"} == set()
    step = Step.objects.with_values().get(key="step:0")
    assert (json.loads(step.action_json), step.result_json, step.error_json) == (
        {"tool": "search"},
        "",
        "",
    )
    with sh.begin_transaction() as tx:
        tx.write("a1", "step:0", {"status": "done", "action": {"tool": "search"}, "result": [1]})
    step = Step.objects.with_values().get(key="step:0")
    assert (step.status, step.version, json.loads(step.result_json)) == ("done", 2, [1])
    assert Step.objects.get(key="step:0").action_json == ""  # not annotated: nothing to show
