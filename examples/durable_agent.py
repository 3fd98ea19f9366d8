"""A durable function: its steps record themselves; a re-run skips the finished ones.

    python examples/durable_agent.py dur-001 --side-file /tmp/dur.log --delay 1 &
    kill -9 $!                                                  # mid-run
    python manage.py resume_agents && python manage.py resume_worker --once

`pipeline` calls the step `work` five times; each call appends "ran <agent> <n>" to the
side file. Resumed (through `statehouse.durable:resume`), the calls whose `done` was
recorded return their recorded result without running.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `statehouse` and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import statehouse
from statehouse import Statehouse

STEPS = 5


@statehouse.step
def work(agent_id: str, number: int, side_file: str, delay: float) -> str:
    time.sleep(delay)
    fd = os.open(side_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"ran {agent_id} {number}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return f"result {number}"


@statehouse.durable
def pipeline(agent_id: str, side_file: str, delay: float) -> list[str]:
    return [work(agent_id, n, side_file, delay) for n in range(STEPS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent_id")
    parser.add_argument("--side-file", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    options = parser.parse_args()
    with Statehouse() as client:
        print(
            pipeline.run(
                options.agent_id, options.agent_id, options.side_file, options.delay, client=client
            )
        )


if __name__ == "__main__":
    main()
