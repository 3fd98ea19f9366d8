"""Operator controls (docs/contract.md §7, docs/operations.md): cancel, pause, unpause —
through the store, the client, the dashboard, the admin and the command; each audited
field by field; a live agent process and a running resume stopped by a cancel."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from statehouse_agents.models import Agent, OperatorAction, ResumeAttempt, ResumeRequest
from statehouse_agents.store.approvals import request_approval
from statehouse_agents.store.operator import cancel_agent, pause_agent, unpause_agent
from statehouse_agents.store.resume import request_resume

from statehouse import Statehouse
from statehouse.errors import AgentCancelledError, AgentPausedError, OperatorActionError
from tests.agents_for_tests import ENTRY, read_lines
from tests.factories import make_agent, make_agents, status_of, wait_until

ROOT = Path(__file__).resolve().parent.parent
HTMX = {"HTTP_HX_REQUEST": "true"}


def _only_row(**filters: Any) -> OperatorAction:
    rows = list(OperatorAction.objects.filter(**filters))
    assert len(rows) == 1, rows
    return rows[0]


# --- the store ----------------------------------------------------------------------------------


def test_cancel_is_terminal_closes_queued_resumes_and_is_audited(sh: Statehouse) -> None:
    agent = make_agent(sh, "doomed", status="resuming")
    record = cancel_agent(
        namespace="default", agent_id="doomed", actor="ops", reason="runaway", source="dashboard"
    )
    agent.refresh_from_db()
    assert status_of(agent) == "cancelled"
    assert agent.state == Agent.State.CANCELLED
    assert agent.finished_at is not None and agent.lease_owner == ""
    assert agent.error == "cancelled by ops: runaway"
    request = ResumeRequest.objects.get(agent=agent)
    assert (request.status, request.last_error) == ("cancelled", "the agent was cancelled")
    row = _only_row(action="cancel")
    assert row.pk == record.pk
    assert (row.actor, row.agent_id, row.namespace, row.agent_name) == (
        "ops",
        agent.pk,
        "default",
        "doomed",
    )
    assert row.reason == "runaway"
    assert row.before == {"status": "resuming"} and row.after == {"status": "cancelled"}
    assert row.detail == {"source": "dashboard", "resumes_cancelled": 1}
    # Finished agents cannot be cancelled (again): refused, nothing written.
    with pytest.raises(OperatorActionError, match="'doomed' is cancelled"):
        cancel_agent(namespace="default", agent_id="doomed", actor="ops")
    make_agent(sh, "done", status="completed")
    with pytest.raises(OperatorActionError, match="'done' is completed"):
        cancel_agent(namespace="default", agent_id="done", actor="ops")
    assert OperatorAction.objects.filter(action="cancel").count() == 1
    # A cancelled agent is not resumable.
    from statehouse.errors import NotResumableError

    with pytest.raises(NotResumableError):
        request_resume(namespace="default", agent_id="doomed", source="command")


def test_pause_and_unpause_round_trip_and_are_audited(sh: Statehouse) -> None:
    agent = make_agent(sh, "napper")
    pause_agent(namespace="default", agent_id="napper", actor="ops", reason="look first")
    agent.refresh_from_db()
    assert status_of(agent) == "paused" and agent.paused_at is not None
    with pytest.raises(OperatorActionError, match="only running, interrupted"):
        pause_agent(namespace="default", agent_id="napper", actor="ops")
    unpause_agent(namespace="default", agent_id="napper", actor="ops2")
    agent.refresh_from_db()
    assert status_of(agent) == "interrupted" and agent.paused_at is None
    with pytest.raises(OperatorActionError, match="only paused agents can be unpaused"):
        unpause_agent(namespace="default", agent_id="napper", actor="ops")
    pause, unpause = OperatorAction.objects.order_by("pk")
    assert (pause.actor, pause.action, pause.reason) == ("ops", "pause", "look first")
    assert pause.before == {"status": "interrupted"} and pause.after == {"status": "paused"}
    assert pause.detail == {"source": "dashboard"}
    assert (unpause.actor, unpause.action, unpause.reason) == ("ops2", "unpause", "")
    assert unpause.before == {"status": "paused"} and unpause.after == {"status": "interrupted"}
    assert unpause.detail["source"] == "dashboard" and "paused_at" in unpause.detail
    assert unpause.agent_id == agent.pk


# --- the client -----------------------------------------------------------------------------------


def test_a_cancelled_agents_next_step_raises_and_writes_nothing(sh: Statehouse) -> None:
    sh.start("worker-1", {"task": "t"})
    with sh.step("worker-1", 0, action="a"):
        pass
    assert sh.cancel("worker-1", reason="enough") == "cancelled"
    with (
        pytest.raises(AgentCancelledError, match="'worker-1' was cancelled") as raised,
        sh.step("worker-1", 1, action="b"),
    ):
        pass
    assert raised.value.agent_id == "worker-1"
    assert not sh.get_state("worker-1", "step:1").exists
    with pytest.raises(AgentCancelledError):
        sh.finish("worker-1", {"answer": 1})
    # Keys that are not the task, a step or the answer are still written.
    with sh.begin_transaction() as tx:
        tx.write("worker-1", "notes", {"after": "cancel"})
    row = _only_row(action="cancel")
    assert row.detail == {"source": "client", "resumes_cancelled": 0}
    assert row.reason == "enough" and row.actor  # the client's owner description


def test_a_paused_agents_step_waits_until_unpaused(sh: Statehouse) -> None:
    sh.start("sleeper", {"task": "t"})
    assert sh.pause("sleeper") == "paused"
    other = Statehouse()
    unpaused = threading.Event()

    def unpause_later() -> None:
        time.sleep(0.5)
        other.unpause("sleeper", reason="go on")
        unpaused.set()
        other.close()

    thread = threading.Thread(target=unpause_later)
    started = time.monotonic()
    thread.start()
    with sh.step("sleeper", 0, action="a"):
        pass
    thread.join(timeout=30)
    assert unpaused.is_set() and time.monotonic() - started >= 0.5
    assert sh.get_state("sleeper", "step:0").value["status"] == "done"
    assert status_of(Agent.objects.get(agent_id="sleeper")) == "running"


def assert_step_gives_up_paused(sh: Statehouse, agent_id: str, n: int) -> None:
    """Step `n` of the paused `agent_id` gives up after the pause timeout (0.3 s in these
    tests) with AgentPausedError, and nothing of it is written."""
    with (
        pytest.raises(AgentPausedError, match=r"not unpaused within 0\.3 s"),
        sh.step(agent_id, n),
    ):
        pass
    assert not sh.get_state(agent_id, f"step:{n}").exists


def test_a_paused_step_gives_up_after_the_pause_timeout(sh: Statehouse, settings: Any) -> None:
    settings.STATEHOUSE_PAUSE_TIMEOUT_SECONDS = 0.3
    sh.start("stuck", {"task": "t"})
    sh.pause("stuck")
    assert_step_gives_up_paused(sh, "stuck", 0)


def test_a_paused_agent_without_a_task_stops_at_its_next_step_under_its_lease(
    sh: Statehouse, settings: Any
) -> None:
    # No task: the agent is idle, and after its first step this client holds its lease,
    # so on PostgreSQL the next step would go through the commit function (migration
    # 0007) were it not paused.
    settings.STATEHOUSE_PAUSE_TIMEOUT_SECONDS = 0.3
    with sh.step("untasked", 0, action="a"):
        pass
    agent = Agent.objects.get(agent_id="untasked")
    assert (agent.state, agent.lease_owner) == (Agent.State.IDLE, sh.owner.token)
    sh.pause("untasked")
    assert_step_gives_up_paused(sh, "untasked", 1)
    assert Agent.objects.get(agent_id="untasked").steps_done == 1


def test_cancel_makes_a_live_agent_process_stop_at_its_next_step(
    sh: Statehouse, subprocess_env: dict[str, str]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", ENTRY, "steps", "live-1", '{"task": "tick"}'],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "stepping"
        assert status_of(Agent.objects.get(agent_id="live-1")) == "running"
        sh.cancel("live-1", reason="stop it")
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 3, out
    assert "was cancelled by an operator" in out
    agent = Agent.objects.get(agent_id="live-1")
    assert status_of(agent) == "cancelled"
    last = agent.last_step
    assert last is not None and not sh.get_state("live-1", f"step:{last + 1}").exists


@pytest.mark.multiprocess
def test_cancel_stops_a_running_resume_under_a_real_worker(
    statehouse_knobs: Any, tmp_path: Path
) -> None:
    env = statehouse_knobs(STATEHOUSE_LEASE_SECONDS=1, STATEHOUSE_RESUME_BACKOFF_SECONDS=0)
    marker = tmp_path / "hung"
    with Statehouse() as client:
        client.start("resumed", {"task": "t", "marker": str(marker)})
        client.register_resume("resumed", f"{ENTRY}:hangs")
    request, _ = request_resume(namespace="default", agent_id="resumed", source="command")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "resume_worker", "--poll-interval", "0.1", "--once"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: read_lines(marker), timeout=60)
        pid = int(read_lines(marker)[0].split()[1])
        cancel_agent(namespace="default", agent_id="resumed", actor="ops")
        out, _ = worker.communicate(timeout=60)  # --once: returns once the run is settled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
    assert worker.returncode == 0, out
    assert "cancelled; killing pid" in out
    attempt = ResumeAttempt.objects.get(agent__agent_id="resumed")
    assert (attempt.outcome, attempt.pid, attempt.exit_code) == ("cancelled", pid, -9)
    assert attempt.error == "the agent was cancelled by an operator"
    request.refresh_from_db()
    assert request.status == ResumeRequest.Status.CANCELLED
    assert status_of(Agent.objects.get(agent_id="resumed")) == "cancelled"
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_controls_without_javascript(sh: Statehouse, staff: Client) -> None:
    agent = make_agent(sh, "ctl")
    for action, expected in [
        ("pause", "paused"),
        ("unpause", "interrupted"),
        ("cancel", "cancelled"),
    ]:
        response = staff.post(
            reverse(f"agents:{action}", args=[agent.pk]),
            {"reason": f"why {action}", "next": agent.get_absolute_url()},
            follow=True,
        )
        assert response.redirect_chain[-1][0] == agent.get_absolute_url()
        assert status_of(agent) == expected
    html = response.content.decode()
    assert "Agent ctl cancelled." in html
    rows = list(OperatorAction.objects.order_by("pk"))
    assert [(r.action, r.actor, r.reason) for r in rows] == [
        ("pause", "ops", "why pause"),
        ("unpause", "ops", "why unpause"),
        ("cancel", "ops", "why cancel"),
    ]
    # Refused: a clear message, nothing written.
    response = staff.post(reverse("agents:cancel", args=[agent.pk]), follow=True)
    assert "Not cancelled: agent &#x27;ctl&#x27; is cancelled" in response.content.decode()
    assert OperatorAction.objects.count() == 3


def test_dashboard_control_with_htmx_returns_the_live_fragment(
    sh: Statehouse, staff: Client
) -> None:
    agent = make_agent(sh, "ctl-htmx")
    response = staff.post(
        reverse("agents:pause", args=[agent.pk]), HTTP_HX_TARGET="agent-live", **HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200 and 'id="agent-live"' in html
    assert "status-paused" in html and "Unpause" in html and 'hx-swap-oob="true"' in html


def test_non_staff_and_get_are_refused_and_nothing_changes(
    sh: Statehouse, viewer: Client, staff: Client
) -> None:
    agent = make_agent(sh, "guarded")
    for action in ("cancel", "pause"):
        assert viewer.post(reverse(f"agents:{action}", args=[agent.pk])).status_code == 403
        assert staff.get(reverse(f"agents:{action}", args=[agent.pk])).status_code == 405
    assert viewer.post(reverse("agents:bulk-cancel"), {"agent": [agent.pk]}).status_code == 403
    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(User.objects.get(username="ops"))
    assert csrf.post(reverse("agents:cancel", args=[agent.pk])).status_code == 403
    assert status_of(agent) == "interrupted"
    assert not OperatorAction.objects.exists()


def test_bulk_cancel_dry_run_then_for_real(sh: Statehouse, staff: Client) -> None:
    agents = make_agents(3)
    done = make_agent(sh, "finished", status="completed")
    asking = make_agent(sh, "asking")
    request_approval(namespace=asking.namespace, agent_id=asking.agent_id, name="go")
    chosen = {"agent": [str(a.pk) for a in [*agents, done, asking]], "reason": "cleanup"}
    response = staff.post(reverse("agents:bulk-cancel"), {**chosen, "dry_run": "1"}, follow=True)
    assert "Dry run: 3 of 5 selected agent(s) would be cancelled" in response.content.decode()
    assert not OperatorAction.objects.exists()
    assert all(status_of(a) == "interrupted" for a in agents)
    response = staff.post(reverse("agents:bulk-cancel"), chosen, **HTMX)
    assert response.status_code == 200
    assert (
        "Cancelled 3 agents. 2 skipped: already finished or waiting for a decision."
        in response.content.decode()
    )
    assert [status_of(a) for a in agents] == ["cancelled"] * 3
    # the same rule as cancelling one agent: a pending decision is answered, not cancelled
    assert (status_of(done), status_of(asking)) == ("completed", "waiting")
    rows = list(OperatorAction.objects.order_by("agent_name"))
    assert [(r.agent_name, r.actor, r.reason, r.before, r.after) for r in rows] == [
        (a.agent_id, "ops", "cleanup", {"status": "interrupted"}, {"status": "cancelled"})
        for a in agents
    ]
    assert all(r.detail == {"source": "dashboard", "bulk": True} for r in rows)


# --- the command, the admin ---------------------------------------------------------------------


def test_cancel_agents_command_with_filters_and_dry_run(sh: Statehouse) -> None:
    make_agents(3, prefix="batch")
    make_agent(sh, "other")
    out = io.StringIO()
    call_command("cancel_agents", "--agent", "batch-*", "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        "default/batch-000",
        "default/batch-001",
        "default/batch-002",
        "dry run: 3 agent(s) would be cancelled",
    ]
    assert not OperatorAction.objects.exists()
    out = io.StringIO()
    call_command("cancel_agents", "--agent", "batch-*", "--json", "--reason", "r", stdout=out)
    assert out.getvalue().strip() == '{"matched": 3, "cancelled": 3, "skipped": 0}'
    assert Agent.objects.with_status(Agent.Status.CANCELLED).count() == 3
    assert set(OperatorAction.objects.values_list("actor", "reason")) == {("cancel_agents", "r")}
    with pytest.raises(CommandError, match="agents that are completed cannot be cancelled"):
        call_command("cancel_agents", "--status", "completed")


def test_admin_actions_cancel_pause_unpause(sh: Statehouse, transactional_db: None) -> None:
    root = Client()
    root.force_login(User.objects.create_superuser("root", password="x"))
    a, b = make_agent(sh, "adm-a"), make_agent(sh, "adm-b")
    url = reverse("admin:agents_agent_changelist")
    root.post(url, {"action": "pause_agents", "_selected_action": [a.pk, b.pk]})
    assert [status_of(a), status_of(b)] == ["paused", "paused"]
    root.post(url, {"action": "unpause_agents", "_selected_action": [a.pk]})
    root.post(url, {"action": "cancel_agents", "_selected_action": [a.pk, b.pk]})
    assert [status_of(a), status_of(b)] == ["cancelled", "cancelled"]
    assert list(OperatorAction.objects.order_by("pk").values_list("action", "actor")) == [
        ("pause", "root"),
        ("pause", "root"),
        ("unpause", "root"),
        ("cancel", "root"),
        ("cancel", "root"),
    ]
    assert _only_row(action="unpause", agent=a).detail["source"] == "admin"


def test_remote_client_controls_and_the_wire_errors(
    api_server: str, api_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statehouse.errors import NotFoundError

    monkeypatch.setenv("STATEHOUSE_URL", api_server)
    monkeypatch.setenv("STATEHOUSE_TOKEN", api_token)
    with Statehouse() as remote:
        assert remote.mode == "remote"
        remote.start("far", {"task": "t"})
        assert remote.pause("far", reason="hold") == "paused"
        assert remote.unpause("far") == "running"
        assert remote.cancel("far", reason="stop", actor="remote-ops") == "cancelled"
        with (
            pytest.raises(AgentCancelledError, match="'far' was cancelled") as raised,
            remote.step("far", 0),
        ):
            pass
        assert raised.value.agent_id == "far"
        with pytest.raises(OperatorActionError, match="'far' is cancelled"):
            remote.cancel("far")
        with pytest.raises(NotFoundError):
            remote.pause("nobody")
    cancel = _only_row(action="cancel")
    assert (cancel.actor, cancel.reason, cancel.detail["source"]) == (
        "remote-ops",
        "stop",
        "client",
    )
    assert _only_row(action="pause").reason == "hold"
