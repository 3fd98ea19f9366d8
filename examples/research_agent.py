"""The research agent of the "resume after crash" document, runnable and resumable.

    python examples/research_agent.py research-001 --task "compare vector databases"
    python examples/research_agent.py research-002 --task "…" --crash-at-step 2   # SIGKILLs itself
    python manage.py resume_agents && python manage.py resume_worker --once       # finishes it

It stores every step the way the document does (pending before acting, done after) and
registers `statehouse_examples.research_agent:resume` as its resume entry point, so a resume worker
continues it from the step after the last completed one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `statehouse` and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from statehouse import Statehouse

MAX_STEPS = 5
ENTRY_POINT = "statehouse_examples.research_agent:resume"
CRASH_ENV = "RESEARCH_AGENT_CRASH_AT_STEP"
STEP_SECONDS_ENV = "RESEARCH_AGENT_STEP_SECONDS"


def decide_next_action(agent_id: str, step: int) -> dict[str, Any]:
    return {"type": "search", "id": f"{agent_id}-step-{step}", "query": f"source {step}"}


def execute_action(action: dict[str, Any]) -> dict[str, Any]:
    time.sleep(float(os.environ.get(STEP_SECONDS_ENV, "0.2")))  # the "expensive LLM call"
    return {"summary": f"notes from {action['query']}", "idempotency_key": action["id"]}


def is_complete(step: int) -> bool:
    return step >= MAX_STEPS - 1


def _maybe_crash(step: int) -> None:
    if os.environ.get(CRASH_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no cleanup, no lease release


def store(client: Statehouse, agent_id: str, key: str, value: Any) -> None:
    """Write one key in a transaction of its own: durable once this returns."""
    with client.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key=key, value=value)


def agent_loop(client: Statehouse, agent_id: str, task: str, start_step: int = 0) -> Any:
    """Store the intention before acting and the result after, one transaction each."""
    step = start_step
    while step < MAX_STEPS:
        action = decide_next_action(agent_id, step)
        store(client, agent_id, f"step:{step}", {"action": action, "status": "pending"})
        _maybe_crash(step)
        result = execute_action(action)
        done = {"action": action, "status": "done", "result": result}
        store(client, agent_id, f"step:{step}", done)
        if is_complete(step):
            answer = {"task": task, "steps": step + 1, "final": result["summary"]}
            store(client, agent_id, "answer", answer)
            return answer
        step += 1
    return None


def find_resume_point(client: Statehouse, agent_id: str) -> int:
    """The last completed step (the document's function, with its parsing bug fixed)."""
    last_complete = -1
    for key in client.list_keys(agent_id=agent_id, prefix="step:"):
        step_num = int(key.split(":")[1])
        state = client.get_state(agent_id=agent_id, key=key)
        if state.value.get("status") == "done":
            last_complete = max(last_complete, step_num)
    return last_complete


def run_agent(client: Statehouse, agent_id: str, task: str) -> Any:
    client.register_resume(agent_id, ENTRY_POINT)
    store(client, agent_id, "task", {"task": task})
    return agent_loop(client, agent_id, task)


def resume(client: Statehouse, agent_id: str) -> Any:
    """The resume entry point a worker calls: continue after the last completed step."""
    task_state = client.get_state(agent_id=agent_id, key="task")
    if not task_state.exists:
        print("No task to resume")
        return None
    answer = client.get_state(agent_id=agent_id, key="answer")
    if answer.exists:
        print(f"Task already complete: {answer.value}")
        return answer.value
    last_step = find_resume_point(client, agent_id)
    print(f"Resuming from step {last_step + 1}")
    return agent_loop(client, agent_id, task_state.value["task"], start_step=last_step + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent_id")
    parser.add_argument("--task", default="survey the literature on agent memory")
    parser.add_argument("--crash-at-step", type=int, default=None, help="SIGKILL itself there")
    args = parser.parse_args(argv)
    if args.crash_at_step is not None:
        os.environ[CRASH_ENV] = str(args.crash_at_step)

    with Statehouse() as client:
        if client.get_state(agent_id=args.agent_id, key="task").exists:
            result = resume(client, args.agent_id)
        else:
            result = run_agent(client, args.agent_id, args.task)
    print(f"Answer: {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
