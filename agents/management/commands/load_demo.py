"""`python manage.py load_demo`: demo agents, so the dashboard is not empty on first look.

Completed, interrupted and failed agents are written through the client; running ones
are real processes of examples/research_agent.py with slow steps, which finish on their
own after a few minutes. Agents already there are left alone, so it can run again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from statehouse_agents.models import Agent
from statehouse_examples import research_agent

from statehouse import Statehouse, steps

EXAMPLE = Path(research_agent.__file__)
TASKS = [
    "compare open-source vector databases",
    "summarise this week's incident reports",
    "draft a migration plan to PostgreSQL 17",
    "find prior art for durable agent execution",
    "review the Q3 cloud bill for anomalies",
    "triage the open support tickets",
]


class Command(BaseCommand):
    help = "Load demo agents: running, interrupted, completed and failed ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--running", type=int, default=2, help="live agent processes to start")
        parser.add_argument("--step-seconds", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        if Agent.objects.filter(agent_id__startswith="demo-").exists():
            self.stdout.write("Demo agents are already loaded.")
            return
        with Statehouse() as client:
            for n, task in enumerate(TASKS[:3]):
                self._completed(client, f"demo-completed-{n}", task)
            for n, task in enumerate(TASKS[3:6]):
                self._interrupted(client, f"demo-interrupted-{n}", task, done=n + 1)
            self._failed(client, "demo-failed-0", "fetch the partner API catalogue")
        for n in range(options["running"]):
            self._running(f"demo-running-{n}", TASKS[n], options["step_seconds"])
        self.stdout.write(self.style.SUCCESS("Loaded the demo agents."))

    def _completed(self, client: Statehouse, agent_id: str, task: str) -> None:
        os.environ[research_agent.STEP_SECONDS_ENV] = "0"
        research_agent.run_agent(client, agent_id, task)

    def _interrupted(self, client: Statehouse, agent_id: str, task: str, *, done: int) -> None:
        client.register_resume(agent_id, research_agent.ENTRY_POINT)
        with Statehouse() as run:  # its own lease, released at close: the agent is interrupted
            run.start(agent_id, {"task": task})
            for step in range(done):
                action = research_agent.decide_next_action(agent_id, step)
                with run.step(agent_id, step, action=action) as current:
                    current.result = {"summary": f"notes from {action['query']}"}
            with run.begin_transaction() as tx:
                action = research_agent.decide_next_action(agent_id, done)
                tx.write(agent_id, f"step:{done}", {"action": action, "status": steps.PENDING})

    def _failed(self, client: Statehouse, agent_id: str, task: str) -> None:
        client.register_resume(agent_id, research_agent.ENTRY_POINT)
        client.start(agent_id, {"task": task})
        action = research_agent.decide_next_action(agent_id, 0)
        with client.begin_transaction() as tx:
            tx.write(
                agent_id,
                "step:0",
                {"action": action, "status": steps.FAILED, "error": "HTTP 503 from partner API"},
            )
        client.fail(agent_id, "the partner API kept answering 503")

    def _running(self, agent_id: str, task: str, step_seconds: float) -> None:
        env = dict(os.environ, **{research_agent.STEP_SECONDS_ENV: str(step_seconds)})
        subprocess.Popen(
            [sys.executable, str(EXAMPLE), agent_id, "--task", task],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
