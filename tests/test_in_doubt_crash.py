"""A real crash inside a `review` step (docs/operations.md, "In-doubt steps"): the process
is SIGKILLed after the payment's side effect and before its `done`; no resume (single,
bulk, automatic) runs the payment again until an operator decides, and once they mark it
done with its result the worker's resume continues after it. The side file counts what
really ran. On SQLite and PostgreSQL, by DATABASE_URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction
from statehouse_agents.models import Agent, ResumeRequest, Step
from statehouse_agents.store.decisions import decide_step
from statehouse_agents.store.resume import queue_auto_resume, request_resumes

from statehouse import Statehouse
from statehouse.errors import StepReviewRequiredError
from tests.agents_for_tests import read_lines
from tests.conftest import ROOT
from tests.crashes import run_worker_once
from tests.factories import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def kill_inside(agent_id: str, side: Path, line: str, env: dict[str, str], *flags: str) -> None:
    """Run tests/review_agent.py for `agent_id`, SIGKILL it once `line` is in the side file
    (inside the step that wrote it), and wait until the agent shows as interrupted."""
    process = subprocess.Popen(
        [sys.executable, "tests/review_agent.py", agent_id, "o-1", str(side), "--hang", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: line in read_lines(side), timeout=60, what=f"{line!r} to run")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with Statehouse() as client:
        wait_until(lambda: client.status(agent_id) == "interrupted", timeout=10, what="interrupted")


def test_a_payment_killed_mid_step_waits_for_review_then_resumes_past_it(
    lease_env: dict[str, str], tmp_path: Path, settings: object
) -> None:
    side = tmp_path / "effects.log"
    kill_inside("shop-1", side, "pay o-1", lease_env)
    client = Statehouse()

    step = Step.objects.needing_review().get(agent__agent_id="shop-1")
    assert (step.key, step.status, step.policy) == ("step:1", "pending", "review")
    # Single, bulk and automatic resume all hold it back.
    with pytest.raises(StepReviewRequiredError):
        client.request_resume("shop-1")
    agent = Agent.objects.get(agent_id="shop-1")
    assert sum(request_resumes(agent_pks=[agent.pk], source="command")) == 0
    settings.STATEHOUSE_AUTO_RESUME = True  # type: ignore[attr-defined]
    with transaction.atomic():
        assert queue_auto_resume(Agent.objects.select_for_update().get(pk=agent.pk)) is False
    assert not ResumeRequest.objects.exists()

    # The operator checks the payment provider: it went through.
    decide_step(
        namespace="default",
        agent_id="shop-1",
        key="step:1",
        decision="done",
        actor="ops",
        reason="the provider shows the charge",
        result_text='"paid o-1"',
    )
    client.request_resume("shop-1", requested_by="ops")
    run_worker_once()

    assert client.status("shop-1") == "completed"
    assert client.get_state("shop-1", "answer").value == "paid o-1"
    assert read_lines(side) == ["look o-1", "pay o-1"]  # the payment ran once
    client.close()


def test_a_notification_killed_mid_step_is_skipped_by_the_resume(
    lease_env: dict[str, str], tmp_path: Path
) -> None:
    side = tmp_path / "effects.log"
    kill_inside("news-1", side, "notify o-1", lease_env, "--announce")
    with Statehouse() as client:
        client.request_resume("news-1", requested_by="ops")
        # Written in the resume request's transaction: done, no result, skipped.
        assert client.get_state("news-1", "step:1").value["skipped"] is True
        run_worker_once()
        assert client.status("news-1") == "completed"
        assert client.get_state("news-1", "answer").value == "o-1: None"
    assert read_lines(side) == ["look o-1", "notify o-1", "after notify: None"]
