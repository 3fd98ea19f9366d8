"""An agent process for the crash-detection tests and bench (docs/operations.md, "Crash
detection"): it takes its agent's lease, says so, then idles or keeps a CPU busy until
killed (at most `--seconds`).

    python -m tests.liveness_agent AGENT_ID [--busy] [--auto ENTRY_POINT] [--seconds N]

It writes the task and a pending step (so it holds the lease, with its liveness handle)
and prints "ready" once both are committed. `--auto` registers ENTRY_POINT with
automatic resume first. `--busy` spins a pure-Python loop on the main thread, so the
lease keeper competes for the interpreter as in a CPU-bound agent.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("agent_id")
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--auto", default="")
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args(argv)

    from statehouse import Statehouse

    client = Statehouse()
    if args.auto:
        client.register_resume(args.agent_id, args.auto, auto=True)
    client.start(args.agent_id, {"task": f"liveness test {args.agent_id}"})
    with client.begin_transaction() as tx:
        tx.write(args.agent_id, "step:0", {"status": "pending", "action": "wait"})
    print("ready", flush=True)
    deadline = time.monotonic() + args.seconds
    spins = 0
    while time.monotonic() < deadline:
        if args.busy:
            for i in range(200_000):
                spins += i & 1
        else:
            time.sleep(0.05)
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
