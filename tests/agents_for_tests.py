"""Resume entry points (and a runnable agent) used by the tests of issue 3.

Each entry point is called by `agents.resume_runner` as `function(client, agent_id)` in a
process a resume worker supervises. They read their parameters from the agent's `task`
value, so a test needs no environment of its own to steer them, and they record what
they do in files outside the database (appended with O_APPEND and fsync), so that a test
can check side effects against what the store committed.

    python -m tests.agents_for_tests start AGENT_ID TASK_JSON   # run the durable agent

The durable agent writes two keys per transaction: `step:<n>` pending with `intent:<n>`
before it acts, `step:<n>` done with `result:<n>` after; the action's side effect is a
line "exec <agent> <n> <token>" whose token the done commit records.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ENTRY = "tests.agents_for_tests"


# --- helpers shared by the tests -----------------------------------------------------------


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line durably: O_APPEND keeps lines whole across processes, fsync keeps them."""
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


def _task(client: Any, agent_id: str) -> dict[str, Any]:
    state = client.get_state(agent_id, "task")
    if not state.exists or not isinstance(state.value, dict):
        raise RuntimeError(f"agent {agent_id!r} has no task")
    return state.value


# --- entry points ---------------------------------------------------------------------------


def durable(client: Any, agent_id: str) -> Any:
    """Run (or continue after the last done step) the durable agent; write its answer."""
    task = _task(client, agent_id)
    side = task["side_file"]
    append_line(side, f"start {agent_id} {os.getpid()}")
    answer = client.get_state(agent_id, "answer")
    if answer.exists:
        return answer.value
    step = client.last_completed_step(agent_id) + 1
    while step < task["steps"]:
        with client.begin_transaction() as tx:
            tx.write(agent_id, f"step:{step}", {"status": "pending", "action": {"n": step}})
            tx.write(agent_id, f"intent:{step}", {"n": step, "pid": os.getpid()})
        token = uuid.uuid4().hex
        append_line(side, f"exec {agent_id} {step} {token}")  # the action's side effect
        time.sleep(task.get("step_seconds", 0.0))
        with client.begin_transaction() as tx:
            tx.write(
                agent_id,
                f"step:{step}",
                {"status": "done", "action": {"n": step}, "result": {"token": token}},
            )
            tx.write(agent_id, f"result:{step}", {"n": step, "token": token})
        step += 1
    client.finish(agent_id, {"steps": task["steps"]})
    return task["steps"]


def complete(client: Any, agent_id: str) -> str:
    """Do one step and finish."""
    with client.step(agent_id, 0, action="finish") as step:
        step.result = "ok"
    client.finish(agent_id, {"done": True})
    return "ok"


def returns_early(client: Any, agent_id: str) -> None:
    """Return without finishing: the run is recorded as stopped."""


def raises(client: Any, agent_id: str) -> None:
    raise RuntimeError(f"boom from {agent_id}")


def wrong_signature(client: Any) -> None:  # no agent_id: the runner must refuse it
    raise AssertionError("never called")


not_callable = 42


def crash_once(client: Any, agent_id: str) -> str:
    """The first run writes a pending step and SIGKILLs itself; a later run completes."""
    marker = Path(_task(client, agent_id)["marker"])
    if not marker.exists():
        append_line(marker, f"crash {os.getpid()}")
        with client.begin_transaction() as tx:
            tx.write(agent_id, "step:0", {"status": "pending", "action": "crash"})
        os.kill(os.getpid(), signal.SIGKILL)
    return complete(client, agent_id)


def hang_once(client: Any, agent_id: str) -> str:
    """The first run writes a pending step, notes its pid, then hangs; a later run completes."""
    task = _task(client, agent_id)
    marker = Path(task["marker"])
    if not marker.exists():
        with client.begin_transaction() as tx:
            tx.write(agent_id, "step:0", {"status": "pending", "action": "hang"})
        append_line(marker, f"hang {os.getpid()}")
        time.sleep(task.get("hang_seconds", 120))
        raise RuntimeError("hang_once was not killed")
    return complete(client, agent_id)


def hangs(client: Any, agent_id: str) -> None:
    """Never return (until killed): note the pid in the task's marker file first."""
    with client.begin_transaction() as tx:
        tx.write(agent_id, "step:0", {"status": "pending", "action": "hang"})
    append_line(_task(client, agent_id)["marker"], f"hang {os.getpid()}")
    while True:
        time.sleep(60)


def exclusive(client: Any, agent_id: str) -> str | None:
    """Prove no second copy runs at once: hold an O_EXCL lock file while running.

    The first `stop_runs` runs return early (the agent is interrupted again and can be
    resumed again); the next one finishes. Start and end lines go to the task's log.
    """
    task = _task(client, agent_id)
    log = task["log"]
    lock = Path(task["lock_dir"]) / f"{agent_id}.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        append_line(log, f"overlap {agent_id} {os.getpid()} {time.time():.6f}")
        raise RuntimeError(f"a second copy of {agent_id} is running") from None
    os.close(fd)
    append_line(log, f"begin {agent_id} {os.getpid()} {time.time():.6f}")
    try:
        runs = client.get_state(agent_id, "runs")
        number = (runs.value or 0) + 1
        with client.begin_transaction() as tx:
            tx.write(agent_id, "runs", number, expected_version=runs.version)
            tx.write(agent_id, f"step:{number}", {"status": "pending", "action": "run"})
        time.sleep(task.get("run_seconds", 0.2))
        with client.begin_transaction() as tx:
            tx.write(agent_id, f"step:{number}", {"status": "done", "action": "run"})
        if number <= task.get("stop_runs", 0):
            return None
        client.finish(agent_id, {"runs": number})
        return "done"
    finally:
        append_line(log, f"end {agent_id} {os.getpid()} {time.time():.6f}")
        lock.unlink()


# --- a runnable agent -------------------------------------------------------------------------


def stepper(client: Any, agent_id: str) -> int:
    """Write a step every 50 ms until an operator cancels the agent: exit status 3 then."""
    from statehouse.errors import AgentCancelledError

    try:
        for n in range(2400):  # bounded: 2 minutes at most
            with client.step(agent_id, n, action="tick"):
                pass
            if n == 0:
                print("stepping", flush=True)
            time.sleep(0.05)
    except AgentCancelledError as exc:
        print(f"cancelled: {exc}", flush=True)
        return 3
    return 0


def main(argv: list[str]) -> int:
    command, agent_id, task_json = argv
    if command == "steps":
        from statehouse import Statehouse

        with Statehouse() as client:
            client.start(agent_id, json.loads(task_json))
            return stepper(client, agent_id)
    if command != "start":
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    from statehouse import Statehouse

    with Statehouse() as client:
        client.start(agent_id, json.loads(task_json))
        client.register_resume(agent_id, f"{ENTRY}:durable")
        print("ready", flush=True)
        durable(client, agent_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
