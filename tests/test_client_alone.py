"""The client alone (docs/packaging.md): installed into a fresh virtual environment without
Django or a database driver, it runs the example document's agent against a server started
from the project. The agent is SIGKILLed mid-run, shows as interrupted, is resumed by the
resume worker, and completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from statehouse import Statehouse

from .conftest import ROOT, make_token, server_env, start_server

pytestmark = pytest.mark.multiprocess

LEASE_SECONDS = 2
AGENT = "remote-research-1"

RUNNER = """
import sys, time
sys.path.insert(0, {agent_dir!r})
import example_agent as ex
from statehouse import Statehouse

client = Statehouse()  # STATEHOUSE_URL and STATEHOUSE_TOKEN
client.register_resume({agent!r}, "tests.example_agent:resume_to_the_end")
run_action = ex.execute_action

def execute_action(action):
    if action["n"] == 3:
        print("stuck at step 3", flush=True)
        time.sleep(300)  # SIGKILLed here
    return run_action(action)

ex.execute_action = execute_action
ex.agent_loop(client, {agent!r}, "research")
"""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the client distribution (clients/python)."""
    target = tmp_path_factory.mktemp("client-venv")
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(ROOT / "clients" / "python")],
        check=True,
        timeout=600,
    )
    return python


def wait_for(predicate, what: str, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


def test_the_client_alone_has_neither_django_nor_a_driver(client_venv: Path) -> None:
    result = subprocess.run(
        [
            str(client_venv),
            "-c",
            "import importlib.util as u, statehouse, statehouse.remote, statehouse.aio;"
            "print([m for m in ('django', 'psycopg', 'ninja') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ["PATH"]},
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


def test_example_agent_killed_remotely_is_resumed_by_the_worker_and_completes(
    client_venv: Path, transactional_db: None, test_database_url: str, tmp_path: Path
) -> None:
    knobs = {
        "STATEHOUSE_LEASE_SECONDS": str(LEASE_SECONDS),
        "STATEHOUSE_RESUME_BACKOFF_SECONDS": "0",
    }
    server, url = start_server(server_env(test_database_url, **knobs), workers=1, threads=4)
    agent = None
    try:
        _token, secret = make_token()
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        shutil.copy(ROOT / "tests" / "example_agent.py", agent_dir)
        client_env = {
            "PATH": os.environ["PATH"],
            "STATEHOUSE_URL": url.removeprefix("http://"),  # the original SDK's host:port form
            "STATEHOUSE_TOKEN": secret,
            "STATEHOUSE_LEASE_SECONDS": str(LEASE_SECONDS),
        }
        agent = subprocess.Popen(
            [str(client_venv), "-c", RUNNER.format(agent_dir=str(agent_dir), agent=AGENT)],
            env=client_env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "stuck at step 3"

        with Statehouse(url, token=secret) as watcher:
            assert watcher.status(AGENT) == "running"
            assert watcher.get_state(AGENT, "step:3").value["status"] == "pending"
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=30)
            wait_for(lambda: watcher.status(AGENT) == "interrupted", "interrupted", 30)

            watcher.request_resume(AGENT)
            worker_env = server_env(test_database_url, **knobs)
            subprocess.run(
                [sys.executable, "manage.py", "resume_worker", "--once"],
                cwd=ROOT,
                env=worker_env,
                check=True,
                timeout=180,
            )
            assert watcher.status(AGENT) == "completed"
            assert watcher.get_state(AGENT, "answer").value == {"value": 50, "final": True}
            assert watcher.last_completed_step(AGENT) == 5
            history = [
                op.value["status"]
                for event in watcher.replay(AGENT)
                for op in event.operations
                if op.key == "step:3"
            ]
            assert history == ["pending", "pending", "done"]
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        server.terminate()
        server.wait(timeout=30)
