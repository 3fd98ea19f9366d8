"""The code of docs `example-resume-after-crash.md`, as users copy it (docs/contract.md §1).

`agent_loop`, `find_resume_point` and `resume_agent` are the document's, word for word,
except for the one known bug: the step number is `key.split(":")[1]`. The document leaves
`decide_next_action`, `execute_action`, `is_complete`, `MAX_STEPS` and
`agent_loop_from_step` to the reader; they are filled in here as a user would, and tests
replace `execute_action` to make a run stop part-way.
"""

from __future__ import annotations

from typing import Any

MAX_STEPS = 20
DONE_AT = 5  # the step whose result completes the task

executed: list[int] = []  # the steps whose action ran, in order (for the tests)


def decide_next_action(step: int) -> dict[str, Any]:
    return {"type": "compute", "id": f"action-{step}", "n": step}


def execute_action(action: dict[str, Any]) -> dict[str, Any]:
    executed.append(action["n"])
    return {"value": action["n"] * 10, "final": action["n"] >= DONE_AT}


def is_complete(result: dict[str, Any]) -> bool:
    return bool(result["final"])


def agent_loop(client, agent_id, task):  # type: ignore[no-untyped-def]
    # Store the task
    with client.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key="task", value={"task": task})

    step = 0
    while step < MAX_STEPS:
        # Think and act
        action = decide_next_action(step)

        # Store before executing (intention)
        with client.begin_transaction() as tx:
            tx.write(
                agent_id=agent_id,
                key=f"step:{step}",
                value={"action": action, "status": "pending"},
            )

        # Execute
        result = execute_action(action)

        # Store result (completion)
        with client.begin_transaction() as tx:
            tx.write(
                agent_id=agent_id,
                key=f"step:{step}",
                value={"action": action, "status": "done", "result": result},
            )

        if is_complete(result):
            return result

        step += 1


def find_resume_point(client, agent_id) -> int:  # type: ignore[no-untyped-def]
    """Find the last completed step."""
    keys = client.list_keys(agent_id=agent_id)

    last_complete = -1
    for key in keys:
        if key.startswith("step:"):
            step_num = int(key.split(":")[1])  # the document has [0]: its one bug
            state = client.get_state(agent_id=agent_id, key=key)
            if state.value.get("status") == "done":
                last_complete = max(last_complete, step_num)

    return last_complete


def resume_agent(client, agent_id):  # type: ignore[no-untyped-def]
    """Resume an interrupted agent."""
    # Check if there's work to resume
    task_state = client.get_state(agent_id=agent_id, key="task")
    if not task_state.exists:
        print("No task to resume")
        return

    task = task_state.value["task"]
    last_step = find_resume_point(client, agent_id)

    print(f"Resuming from step {last_step + 1}")

    # Continue from last completed step
    return agent_loop_from_step(client, agent_id, task, start_step=last_step + 1)


def agent_loop_from_step(client, agent_id, task, start_step):  # type: ignore[no-untyped-def]
    """`agent_loop` without storing the task again, starting at `start_step`."""
    step = start_step
    while step < MAX_STEPS:
        action = decide_next_action(step)

        with client.begin_transaction() as tx:
            tx.write(
                agent_id=agent_id,
                key=f"step:{step}",
                value={"action": action, "status": "pending"},
            )

        result = execute_action(action)

        with client.begin_transaction() as tx:
            tx.write(
                agent_id=agent_id,
                key=f"step:{step}",
                value={"action": action, "status": "done", "result": result},
            )

        if is_complete(result):
            return result

        step += 1


def resume_to_the_end(client, agent_id):  # type: ignore[no-untyped-def]
    """The resume entry point a worker runs: the document's `resume_agent`, then the
    `answer` key (the contract's "finished"), as a user's agent would write it."""
    result = resume_agent(client, agent_id)
    with client.begin_transaction() as tx:
        tx.write(agent_id=agent_id, key="answer", value=result)
    return result
