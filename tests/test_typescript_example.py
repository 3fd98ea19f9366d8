"""The TypeScript agent of docs/api.md (examples/typescript/agent.ts) runs against a real
server with a token: killed with SIGKILL mid-run, it shows as interrupted, and run again
it resumes from its last completed step and completes.

It is compiled by the TypeScript compiler the example's committed lockfile pins
(`npm ci`, run here when node_modules is missing), then run by Node (`fetch` only)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from statehouse import Statehouse
from tests.factories import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typescript"
AGENT = "research-ts-1"
STEPS = 5  # the example's loop: steps 0 to 4, then the answer


@pytest.fixture(scope="module")
def compiled_agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/typescript/agent.ts compiled (strict) to JavaScript; return the .js file."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed to run the TypeScript example"
    if not (EXAMPLE / "node_modules" / ".package-lock.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True, timeout=300
        )
    out = tmp_path_factory.mktemp("ts-agent")
    subprocess.run(
        [str(EXAMPLE / "node_modules" / ".bin" / "tsc"), "-p", str(EXAMPLE), "--outDir", str(out)],
        check=True,
        timeout=120,
    )
    # The compiled file is an ES module, as package.json says ("type": "module").
    shutil.copy(EXAMPLE / "package.json", out / "package.json")
    return out / "agent.js"


def agent_env(api_server: str, api_token: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "STATEHOUSE_URL": api_server,
        "STATEHOUSE_TOKEN": api_token,
        "STATEHOUSE_LEASE_SECONDS": "2",
        **extra,
    }


def statuses(client: Statehouse, key: str) -> list[str]:
    """The statuses `key` was written with, in commit order."""
    return [
        op.value["status"]
        for event in client.replay(AGENT)
        for op in event.operations
        if op.key == key
    ]


def test_typescript_agent_resumes_after_sigkill_from_its_last_completed_step(
    compiled_agent: Path, api_server: str, api_token: str, transactional_db: None
) -> None:
    watcher = Statehouse()
    first = subprocess.Popen(
        ["node", str(compiled_agent), AGENT],
        env=agent_env(api_server, api_token, WORK_MS="400"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: watcher.last_completed_step(AGENT) >= 1, timeout=60, what="step 1 done")
        assert watcher.status(AGENT) == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL
    killed_after = watcher.last_completed_step(AGENT)
    assert 1 <= killed_after < STEPS - 1
    assert not watcher.get_state(AGENT, "answer").exists
    # No renewal reaches the server any more: the 2 s lease lapses.
    wait_until(
        lambda: watcher.status(AGENT) == "interrupted", timeout=30, what="shown as interrupted"
    )

    second = subprocess.run(
        ["node", str(compiled_agent), AGENT],
        env=agent_env(api_server, api_token),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0, second.stdout + second.stderr

    assert watcher.status(AGENT) == "completed"
    assert watcher.get_state(AGENT, "answer").value == {"steps": STEPS}
    assert watcher.get_state(AGENT, "task").version == 1  # the task was not written again
    for n in range(STEPS):
        state = watcher.get_state(AGENT, f"step:{n}")
        assert state.value == {
            "action": {"type": "compute", "n": n},
            "status": "done",
            "result": n * 10,
        }
        # Completed steps ran once; the one the kill interrupted (if it had begun) ran again.
        if n <= killed_after:
            assert statuses(watcher, f"step:{n}") == ["pending", "done"]
        elif n == killed_after + 1:
            assert statuses(watcher, f"step:{n}") in (
                ["pending", "done"],
                ["pending", "pending", "done"],
            )
        else:
            assert statuses(watcher, f"step:{n}") == ["pending", "done"]
    watcher.close()


def test_typescript_agent_with_a_wrong_token_writes_nothing(
    compiled_agent: Path, api_server: str, transactional_db: None
) -> None:
    result = subprocess.run(
        ["node", str(compiled_agent), "ts-intruder"],
        env=agent_env(api_server, "sh_not-a-token"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unauthorized: unknown API token" in result.stderr
    with Statehouse() as watcher:
        assert watcher.list_keys("ts-intruder") == []
        assert watcher.status("ts-intruder") is None
