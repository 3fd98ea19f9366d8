"""A durable function: its steps record themselves; a re-run skips the finished ones.

    python examples/durable_agent.py dur-001 --side-file /tmp/dur.log --delay 1 &
    kill -9 $!                                                  # mid-run
    python manage.py resume_agents && python manage.py resume_worker --once

`pipeline` calls the step `work` five times; each call appends "ran <agent> <n>" to the
side file (examples/crash_demo.py). Resumed (through `statehouse.durable:resume`), the
calls whose `done` was recorded return their recorded result without running.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `statehouse` and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import statehouse
from examples.crash_demo import parse_args, record_effect
from statehouse import Statehouse

STEPS = 5


@statehouse.step
def work(agent_id: str, number: int, side_file: str, delay: float) -> str:
    time.sleep(delay)
    record_effect(side_file, f"ran {agent_id} {number}")
    return f"result {number}"


@statehouse.durable
def pipeline(agent_id: str, side_file: str, delay: float) -> list[str]:
    return [work(agent_id, n, side_file, delay) for n in range(STEPS)]


def main() -> None:
    options = parse_args(__doc__, "agent_id")
    with Statehouse() as client:
        print(
            pipeline.run(
                options.agent_id, options.agent_id, options.side_file, options.delay, client=client
            )
        )


if __name__ == "__main__":
    main()
