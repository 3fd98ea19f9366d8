"""Test factories: agents in each status, written through the real client, and polling.

Shared by the test modules (views, dashboard queries, admin, browser tests, workers).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from statehouse_agents.models import Agent
from statehouse_agents.store.resume import request_resume

from statehouse import Statehouse


def write_steps(client: Statehouse, agent_id: str, steps: int, *, last_pending: bool) -> None:
    for n in range(steps):
        pending = last_pending and n == steps - 1
        value: dict[str, Any] = {"status": "pending" if pending else "done", "action": {"n": n}}
        if not pending:
            value["result"] = {"value": n * 10}
        with client.begin_transaction() as tx:
            tx.write(agent_id=agent_id, key=f"step:{n}", value=value)


def make_agent(
    sh: Statehouse,
    agent_id: str,
    *,
    status: str = "interrupted",
    steps: int = 2,
    namespace: str = "default",
    task: Any = None,
) -> Agent:
    """An agent in the given operator status, written through the client.

    running: `sh` keeps holding it (its lease is renewed until `sh` closes).
    interrupted: written by another client that then closes, releasing the lease.
    """
    task = task if task is not None else {"task": f"do the work of {agent_id}"}
    if status == "idle":
        with sh.begin_transaction(namespace=namespace) as tx:
            tx.write(agent_id=agent_id, key="notes", value={"n": 1})
        return Agent.objects.get(namespace=namespace, agent_id=agent_id)
    client = sh if status == "running" else Statehouse(namespace=namespace)
    client.start(agent_id, task, namespace=namespace)
    write_steps(client, agent_id, steps, last_pending=status in ("running", "interrupted"))
    if status == "completed":
        client.finish(agent_id, {"answer": 42})
    elif status == "failed":
        client.fail(agent_id, "it broke")
    if client is not sh:
        client.close()
    if status == "resuming":
        request_resume(namespace=namespace, agent_id=agent_id, source="command", requested_by="t")
    return Agent.objects.get(namespace=namespace, agent_id=agent_id)


def make_agents(count: int, *, prefix: str = "bulk", steps: int = 1) -> list[Agent]:
    """`count` interrupted agents (with `steps` steps, the last pending), written in one
    transaction by a client that then closes, releasing their leases."""
    client = Statehouse()
    with client.begin_transaction() as tx:
        for i in range(count):
            agent_id = f"{prefix}-{i:03d}"
            tx.write(agent_id=agent_id, key="task", value={"task": f"task {i}"})
            for n in range(steps):
                status = "done" if n < steps - 1 else "pending"
                tx.write(agent_id=agent_id, key=f"step:{n}", value={"status": status, "n": n})
    client.close()
    return list(Agent.objects.filter(agent_id__startswith=f"{prefix}-").order_by("agent_id"))


def status_of(agent: Agent) -> str:
    return Agent.objects.filter(pk=agent.pk).annotate_status().get().status_value


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def run_async(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` to its end on a thread of its own, and return its result.

    The browser tests' Playwright keeps an event loop running on the main thread for the
    whole session, where `asyncio.run` refuses to start another."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = asyncio.run(coroutine)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="test-async")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


# --- the commit function's migrations (PostgreSQL) ---------------------------------------


def migration(name: str) -> Any:
    """The agents app's migration module `name` (e.g. "0004_records_point_at_versions")."""
    return importlib.import_module(f"statehouse_agents.migrations.{name}")


# The migration that last gave the commit function its text: what a database migrated to
# the latest state has.
LATEST_FUNCTION = "0008_commit_ids_without_a_catalog_lookup"


def function_text() -> str:
    """The body of the commit function the database has now."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'statehouse_commit'")
        return str(cursor.fetchone()[0])
