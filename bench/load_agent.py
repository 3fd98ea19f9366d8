"""The agent process of the load test (bench/load_test.py), and its resume entry point.

    python bench/load_agent.py --prefix P --index 3 --until UNIX_TIME --steps 5 \
        --crash-rate 0.2 --seed 7

runs agents one after another until `--until`: each writes its `task`, then steps
0..N-1 (pending, then done, through `client.step`), then its `answer`. With probability
`--crash-rate` an agent crashes on purpose (`os._exit`) at a random point — after its
task, after a step's pending, or after a step's done — which ends this process and leaves
the agent interrupted once its lease expires. The load test then queues resumes, and a
resume worker runs `resume` below, which continues after the last done step.

Every agent registers `bench.load_agent:resume` as its resume entry point.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENTRY_POINT = "bench.load_agent:resume"
CRASH_EXIT = 17  # the exit status of an agent process that crashed on purpose


def run_steps(client: Any, agent_id: str, first: int, steps: int, crash: tuple | None) -> None:
    """Steps `first`..`steps`-1, then the answer. `crash` = (step, "pending" | "done")."""
    for number in range(first, steps):
        with client.step(agent_id, number, action={"op": "work", "n": number}) as step:
            if crash == (number, "pending"):
                os._exit(CRASH_EXIT)  # pending committed, done never written
            step.result = {"n": number, "square": number * number}
        if crash == (number, "done"):
            os._exit(CRASH_EXIT)  # done committed, the next step never started
    client.finish(agent_id, {"steps": steps})


def resume(client: Any, agent_id: str) -> int:
    """Resume entry point: continue after the last done step, then write the answer."""
    task = client.get_state(agent_id, "task")
    if not task.exists:
        raise RuntimeError(f"agent {agent_id!r} has no task")
    if client.get_state(agent_id, "answer").exists:
        return int(task.value["steps"])
    steps = int(task.value["steps"])
    run_steps(client, agent_id, client.last_completed_step(agent_id) + 1, steps, None)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--until", type=float, required=True, help="unix time to stop at")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crash-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from statehouse import Statehouse

    rng = random.Random(args.seed)
    client = Statehouse()
    number = 0
    while time.time() < args.until:
        agent_id = f"{args.prefix}-p{args.index}-s{args.seed}-{number}"
        number += 1
        crash: tuple | None = None
        if rng.random() < args.crash_rate:
            at = rng.randrange(-1, args.steps)
            crash = (at, rng.choice(["pending", "done"])) if at >= 0 else (-1, "task")
        client.register_resume(agent_id, ENTRY_POINT)
        client.start(agent_id, {"steps": args.steps, "process": args.index, "seed": args.seed})
        if crash == (-1, "task"):
            os._exit(CRASH_EXIT)  # task written, no step yet
        run_steps(client, agent_id, 0, args.steps, crash)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
