"""Durable agents with in-doubt step policies (docs/operations.md, "In-doubt steps"), for
tests/test_in_doubt_crash.py: `checkout`, whose payment step needs an operator's review if
interrupted, and `announce`, whose notification is skipped if interrupted.

    python tests/review_agent.py AGENT ORDER SIDE_FILE [--hang] [--announce]

Each step that really runs appends a line to SIDE_FILE; `--hang` blocks inside the payment
(or the notification), after its side effect, so that the test can SIGKILL it there.
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


@statehouse.step(policy="skip")
def notify(order: str, side_file: str) -> str:
    append_line(side_file, f"notify {order}")
    while HANG["on"]:
        time.sleep(0.1)  # killed here
    return "notified"


@statehouse.durable
def announce(order: str, side_file: str) -> str:
    notified = notify(look(order, side_file), side_file)
    append_line(side_file, f"after notify: {notified}")
    return f"{order}: {notified}"


def main(argv: list[str]) -> None:
    agent_id, order, side_file = argv[:3]
    HANG["on"] = "--hang" in argv
    flow = announce if "--announce" in argv else checkout
    with Statehouse() as client:
        print(flow.run(agent_id, order, side_file, client=client))


if __name__ == "__main__":
    main(sys.argv[1:])
