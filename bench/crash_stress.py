#!/usr/bin/env python
"""Crash stress: agents SIGKILLed at random moments are resumed and finish exactly once.

    .venv/bin/python bench/crash_stress.py                       # 50 trials, temp SQLite
    .venv/bin/python bench/crash_stress.py --trials 200 --agents 4 --seed 7
    .venv/bin/python bench/crash_stress.py --database-url postgres://postgres@127.0.0.1:5432/stress

Each trial starts `--agents` agent processes (the durable agent of tests/agents_for_tests.py,
two keys per transaction, one side-effect line per executed action), SIGKILLs each at a
random moment, waits for it to turn interrupted (lease expiry), queues resumes with
`resume_agents`, and runs a resume worker until they finish; with --kill-resumed, some
resumed processes are SIGKILLed too, and the worker must retry them. Then it checks that
every step is done exactly once, that every transaction is whole, and that no action whose
`done` was committed ran again. It prints each failing trial's seed, then "N/M trials
passed". A PostgreSQL database must exist; it is migrated, and agent ids are unique per run.
The tests (tests/test_crash_resume.py) run `run_trial` on the test database.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.agents_for_tests import ENTRY, read_lines  # noqa: E402
from tests.factories import wait_until  # noqa: E402

AGENT_MODULE = ENTRY


@dataclass
class TrialReport:
    seed: int
    agent_ids: list[str]
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        head = f"trial seed={self.seed}: " + ("ok" if self.ok else "FAILED")
        return "\n  ".join([head, *self.kills, *self.problems])


def run_trial(
    *,
    seed: int,
    prefix: str,
    side_dir: Path,
    env: dict[str, str],
    agents: int = 3,
    steps: int = 6,
    step_seconds: float = 0.03,
    lease_seconds: float = 1.0,
    kill_resumed: bool = False,
    timeout: float = 90.0,
) -> TrialReport:
    """Start, kill, resume and check `agents` durable agents; return what went wrong.

    `env` is the agents' environment (DATABASE_URL of this process's database, and
    STATEHOUSE_LEASE_SECONDS = `lease_seconds`); the resume worker runs in this process,
    its children inherit os.environ.
    """
    from statehouse_agents.models import Agent

    from statehouse import Statehouse

    rng = random.Random(seed)
    agent_ids = [f"{prefix}-{n}" for n in range(agents)]
    report = TrialReport(seed=seed, agent_ids=agent_ids)
    side_dir.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for agent_id in agent_ids:
            task = {
                "task": f"crash stress {agent_id}",
                "steps": steps,
                "step_seconds": step_seconds,
                "side_file": str(side_dir / f"{agent_id}.side"),
            }
            with open(side_dir / f"{agent_id}.out", "wb") as out:
                processes[agent_id] = subprocess.Popen(
                    [sys.executable, "-m", AGENT_MODULE, "start", agent_id, json.dumps(task)],
                    env=env,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        # Kill each one a random time after it started its loop (its task is committed).
        ready: dict[str, float] = {}
        for agent_id in agent_ids:
            wait_until(
                lambda a=agent_id: (
                    any(line.startswith("start ") for line in read_lines(side_dir / f"{a}.side"))
                    or processes[a].poll() is not None
                ),
                timeout=timeout,
                what=f"{agent_id} to start",
            )
            ready[agent_id] = time.monotonic()
            if not read_lines(side_dir / f"{agent_id}.side"):
                tail = (side_dir / f"{agent_id}.out").read_text()[-500:]
                report.problems.append(f"{agent_id} failed to start: {tail}")
                return report
        kill_at = {a: ready[a] + rng.uniform(0.0, steps * step_seconds * 1.4) for a in agent_ids}
        for agent_id in sorted(agent_ids, key=kill_at.__getitem__):
            time.sleep(max(0.0, kill_at[agent_id] - time.monotonic()))
            process = processes[agent_id]
            alive = process.poll() is None
            if alive:
                process.send_signal(signal.SIGKILL)
            report.kills.append(
                f"{agent_id}: kill after {kill_at[agent_id] - ready[agent_id]:.3f}s"
                + ("" if alive else f" (had exited {process.returncode})")
            )
        for process in processes.values():
            process.wait(timeout=timeout)

        # Each killed agent turns interrupted once its lease expires.
        with Statehouse() as client:
            for agent_id in agent_ids:
                status = wait_until(
                    lambda a=agent_id: _settled_status(client, a),
                    timeout=lease_seconds + 30,
                    what=f"{agent_id} to be interrupted",
                )
                report.kills.append(f"{agent_id}: {status} after the kill")

        _resume(prefix, report, rng=rng, kill_resumed=kill_resumed, timeout=timeout)

        with Statehouse() as client:
            for agent_id in agent_ids:
                report.problems += check_agent(
                    client, agent_id, steps=steps, side_file=side_dir / f"{agent_id}.side"
                )
        stuck = Agent.objects.filter(agent_id__in=agent_ids).exclude(state=Agent.State.COMPLETED)
        report.problems += [f"{a}: not completed but {a.state}" for a in stuck]
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    return report


def _settled_status(client: Any, agent_id: str) -> str | None:
    status = client.status(agent_id)
    return status if status in ("interrupted", "completed") else None


def _resume(
    prefix: str, report: TrialReport, *, rng: random.Random, kill_resumed: bool, timeout: float
) -> None:
    """Queue resumes with `resume_agents`, then run a worker until everything is done."""
    from django.core.management import call_command
    from statehouse_agents.models import ResumeAttempt
    from statehouse_agents.worker import ResumeWorker

    out = io.StringIO()
    call_command("resume_agents", "--agent", f"{prefix}-*", stdout=out)
    report.kills.append(out.getvalue().strip())
    if not kill_resumed:
        call_command("resume_worker", "--once", "--concurrency", "4", stdout=io.StringIO())
        return
    # Drain in a thread (its children die with it) while this one kills some resumed runs.
    worker = ResumeWorker(once=True, concurrency=4, poll_interval=0.1)
    thread = threading.Thread(target=worker.run, name="crash-stress-worker")
    thread.start()
    try:
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            running = ResumeAttempt.objects.filter(
                agent__agent_id__startswith=f"{prefix}-",
                outcome=ResumeAttempt.Outcome.RUNNING,
                pid__isnull=False,
            ).values_list("pk", "pid", "agent__agent_id")
            for pk, pid, agent_id in running:
                if pk in killed:
                    continue
                killed.add(pk)
                if rng.random() < 0.5:
                    delay = rng.uniform(0.0, 0.6)
                    time.sleep(delay)
                    try:
                        os.kill(pid, signal.SIGKILL)
                        report.kills.append(
                            f"{agent_id}: resumed pid {pid} killed after {delay:.3f}s"
                        )
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(timeout=timeout)
    if thread.is_alive():
        report.problems.append("the resume worker did not stop")


def check_agent(client: Any, agent_id: str, *, steps: int, side_file: Path) -> list[str]:
    """Check one durable agent after its trial; return the problems found."""
    from statehouse_agents.models import Agent, Step

    problems: list[str] = []
    done_tokens: dict[int, list[str]] = defaultdict(list)
    pending = Counter()
    answers = 0
    for event in client.replay(agent_id):
        ops = {op.key: op for op in event.operations}
        keys = set(ops)
        if keys in ({"task"}, {"answer"}):
            answers += keys == {"answer"}
            continue
        numbers = {key.partition(":")[2] for key in keys}
        if len(keys) != 2 or len(numbers) != 1 or not numbers.pop().isdigit():
            problems.append(f"{agent_id}: torn or unknown transaction {sorted(keys)}")
            continue
        n = int(next(iter(keys)).partition(":")[2])
        step = ops.get(f"step:{n}")
        if keys == {f"step:{n}", f"intent:{n}"} and step.value["status"] == "pending":
            pending[n] += 1
        elif keys == {f"step:{n}", f"result:{n}"} and step.value["status"] == "done":
            token = ops[f"result:{n}"].value["token"]
            if step.value["result"]["token"] != token:
                problems.append(f"{agent_id}: step {n} done with a foreign result")
            done_tokens[n].append(token)
        else:
            problems.append(f"{agent_id}: torn or unknown transaction {sorted(keys)}")
    if answers != 1:
        problems.append(f"{agent_id}: answer written {answers} times")

    executed: dict[int, list[str]] = defaultdict(list)
    for line in read_lines(side_file):
        parts = line.split()
        if parts[0] == "exec" and parts[1] == agent_id:
            executed[int(parts[2])].append(parts[3])
    for n in range(steps):
        if len(done_tokens[n]) != 1:
            problems.append(f"{agent_id}: step {n} done {len(done_tokens[n])} times")
            continue
        if not executed[n] or executed[n][-1] != done_tokens[n][0]:
            # The done commit holds the token of the last execution: any later one would be
            # an action executed again after its `done` was committed.
            problems.append(
                f"{agent_id}: step {n} executed {executed[n]} but done with {done_tokens[n]}"
            )
        if len(executed[n]) > pending[n]:
            problems.append(f"{agent_id}: step {n} executed without a pending commit first")
    extra = set(done_tokens) - set(range(steps))
    if extra:
        problems.append(f"{agent_id}: unexpected steps {sorted(extra)}")

    agent = Agent.objects.get(namespace="default", agent_id=agent_id)
    rows = list(Step.objects.filter(agent=agent).values_list("number", "status"))
    if sorted(rows) != [(n, "done") for n in range(steps)]:
        problems.append(f"{agent_id}: step rows {sorted(rows)}")
    if (agent.steps_done, agent.steps_pending, agent.steps_failed) != (steps, 0, 0):
        problems.append(
            f"{agent_id}: counters done={agent.steps_done} pending={agent.steps_pending} "
            f"failed={agent.steps_failed}"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a new temporary SQLite file")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--agents", type=int, default=3, help="agents killed per trial")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--step-seconds", type=float, default=0.03)
    parser.add_argument("--lease-seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--kill-resumed", action="store_true", help="also SIGKILL some resumed processes"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="statehouse-crash-stress-"))
    url = args.database_url or f"sqlite:///{workdir / 'stress.sqlite3'}"
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="statehouse_site.settings",
        STATEHOUSE_LEASE_SECONDS=str(args.lease_seconds),
        STATEHOUSE_RESUME_BACKOFF_SECONDS="0",
        STATEHOUSE_RESUME_MAX_ATTEMPTS="20",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"crash stress: seed {seed}, {args.trials} trials of {args.agents} agent(s), {url}")
    run = uuid.uuid4().hex[:6]
    passed = 0
    started = time.monotonic()
    for trial in range(args.trials):
        report = run_trial(
            seed=seed + trial,
            prefix=f"stress-{run}-{trial}",
            side_dir=workdir / f"trial-{trial}",
            env=dict(os.environ),
            agents=args.agents,
            steps=args.steps,
            step_seconds=args.step_seconds,
            lease_seconds=args.lease_seconds,
            kill_resumed=args.kill_resumed,
        )
        passed += report.ok
        if not report.ok:
            print(report.describe(), flush=True)
        elif (trial + 1) % 10 == 0:
            print(f"  {trial + 1} trials, {passed} passed", flush=True)
    elapsed = time.monotonic() - started
    print(f"{passed}/{args.trials} trials passed ({elapsed:.0f}s; seed {seed}; files in {workdir})")
    return 0 if passed == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
