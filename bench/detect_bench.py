#!/usr/bin/env python
"""Issue 14 benchmark: how long a SIGKILLed agent shows as running (docs/operations.md,
"Crash detection").

    .venv/bin/python bench/detect_bench.py            # SQLite and PostgreSQL, 30 kills each
    .venv/bin/python bench/detect_bench.py --quick    # 8 kills each
    ... --database-url sqlite:////tmp/x.sqlite3       # one database only

For each database (a fresh SQLite file in a temporary folder; the PostgreSQL database
`bench_detect`, dropped and created), with the default settings (lease
STATEHOUSE_LEASE_SECONDS, detector every STATEHOUSE_DETECT_INTERVAL): one resume worker
runs; each round starts an agent process (tests/liveness_agent.py), waits until it holds
its agent, SIGKILLs it and polls the agent's status every 5 ms until it is interrupted.
Prints p50/p95/max of the detection time beside the lease duration, which is what a
crash took to show before (and still takes when a host or network is lost).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_URL = "postgres://postgres@127.0.0.1:5432/bench_detect"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEHOUSE_")}
    env["DATABASE_URL"] = url
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def fresh_postgres() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS bench_detect WITH (FORCE)")
        c.execute("CREATE DATABASE bench_detect")


def measure(url: str, kills: int) -> list[float]:
    """Run one database's rounds in this process (Django set up on `url`)."""
    env = env_for(url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    import django

    django.setup()
    from statehouse_agents.store.reads import agent_status

    def status(agent_id: str) -> str | None:
        return agent_status("default", agent_id)

    worker = subprocess.Popen(
        [sys.executable, "manage.py", "resume_worker"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    times = []
    try:
        time.sleep(2)  # the worker's start
        for n in range(kills):
            agent_id = f"detect-{os.getpid()}-{n}"
            agent = subprocess.Popen(
                [sys.executable, "-m", "tests.liveness_agent", agent_id, "--seconds", "60"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert agent.stdout is not None
            if agent.stdout.readline().strip() != "ready":
                raise SystemExit(f"agent {agent_id} did not start")
            time.sleep(0.1 + (n % 5) * 0.1)  # kill at various points of the detector's cycle
            os.kill(agent.pid, signal.SIGKILL)
            killed = time.monotonic()
            agent.wait()
            deadline = killed + 120
            while status(agent_id) != "interrupted":
                if time.monotonic() > deadline:
                    raise SystemExit(f"{agent_id} still not interrupted after 120 s")
                time.sleep(0.005)
            times.append(time.monotonic() - killed)
            agent.stdout.close()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    return times


def report(name: str, times: list[float], lease: float) -> str:
    return (
        f"{name:<11} kills {len(times):>3}  p50 {statistics.median(times):.2f} s  "
        f"p95 {percentile(times, 0.95):.2f} s  max {max(times):.2f} s  "
        f"| lease (the fallback, and the time before) {lease:g} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="one database (else both)")
    parser.add_argument("--quick", action="store_true", help="8 kills per database")
    parser.add_argument("--kills", type=int, default=None)
    args = parser.parse_args(argv)
    kills = args.kills or (8 if args.quick else 30)
    if args.database_url:
        times = measure(args.database_url, kills)
        from statehouse_agents.conf import get_settings

        name = "SQLite" if args.database_url.startswith("sqlite") else "PostgreSQL"
        print(report(name, times, get_settings().lease_seconds), flush=True)
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="detect-bench-") as tmp:
        fresh_postgres()
        for url in (f"sqlite:///{tmp}/bench.sqlite3", PG_URL):
            subprocess.run(
                [sys.executable, __file__, "--database-url", url, "--kills", str(kills)],
                cwd=ROOT,
                env={**env_for(url), "STATEHOUSE_DATA_DIR": tmp},
                check=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
