"""Crash helpers: run an example agent in a real subprocess, SIGKILL it mid-run, resume it.

Shared by the LangGraph, durable-function and browser tests (each on SQLite and
PostgreSQL, by DATABASE_URL). The child counts its side effects in a file, one line per
node or step that really ran, so a test can tell that nothing finished ran twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from statehouse_agents.worker import ResumeWorker

from statehouse import Statehouse
from tests.conftest import ROOT
from tests.factories import wait_until


def kill_mid_run(
    script: str, agent_id: str, side_file: Path, env: dict[str, str], *, after: int
) -> None:
    """Start `script` for `agent_id`, SIGKILL it once `after` steps are recorded done, and
    wait until the agent shows as interrupted."""
    process = subprocess.Popen(
        [sys.executable, script, agent_id, "--side-file", str(side_file), "--delay", "0.6"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = Statehouse()
        wait_until(
            lambda: client.last_completed_step(agent_id) >= after,
            timeout=60,
            what=f"{agent_id} to finish step {after}",
        )
        assert client.status(agent_id) == "running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        wait_until(
            lambda: client.status(agent_id) == "interrupted",
            timeout=5,
            what=f"{agent_id} to show interrupted",
        )
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_worker_once() -> None:
    """Let one resume worker claim and run every due resume request, as `resume_worker
    --once` does (each resumed agent in a supervised subprocess)."""
    outcomes = ResumeWorker(once=True, poll_interval=0.1).run()
    assert outcomes, "the worker resumed nothing"


def resume_by_worker(agent_id: str) -> None:
    with Statehouse() as client:
        client.request_resume(agent_id, requested_by="test")
    run_worker_once()
