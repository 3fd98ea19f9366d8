"""A durable agent whose payment step needs an operator's review if interrupted
(docs/operations.md, "In-doubt steps"), for tests/test_in_doubt_crash.py.

    python tests/review_agent.py AGENT ORDER SIDE_FILE [--hang-in-pay]

Each step that really runs appends a line to SIDE_FILE; `--hang-in-pay` blocks inside the
payment, after its side effect, so that the test can SIGKILL the process there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `statehouse` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import statehouse
from statehouse import Statehouse
from tests.agents_for_tests import append_line

HANG = {"on": False}


@statehouse.step
def look(order: str, side_file: str) -> str:
    append_line(side_file, f"look {order}")
    return order


@statehouse.step(policy="review")
def pay(order: str, side_file: str) -> str:
    append_line(side_file, f"pay {order}")
    while HANG["on"]:
        time.sleep(0.1)  # killed here
    return f"paid {order}"


@statehouse.durable
def checkout(order: str, side_file: str) -> str:
    return pay(look(order, side_file), side_file)


def main(argv: list[str]) -> None:
    agent_id, order, side_file = argv[:3]
    HANG["on"] = "--hang-in-pay" in argv
    with Statehouse() as client:
        print(checkout.run(agent_id, order, side_file, client=client))


if __name__ == "__main__":
    main(sys.argv[1:])
