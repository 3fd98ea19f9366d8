#!/usr/bin/env python
"""Issue 3 benchmark: operator reads and bulk resume at 100,000 agents and 1,000,000 steps.

    .venv/bin/python bench/resume_bench.py
    .venv/bin/python bench/resume_bench.py --database-url postgres://postgres@127.0.0.1:5432/bench_agents
    ... --no-seed          # reuse a database bench/seed.py filled (its states drift per run)
    ... --quick            # 10,000 agents, fewer repetitions

PostgreSQL only. Unless --no-seed, the database is dropped and filled by bench/seed.py
(its name must contain "bench"). Then it measures, in this order (each phase changes
the data the next one sees):

1. the first page (50) of interrupted agents, newest activity first, with the columns
   the dashboard shows (status annotated): p50/p95 over --runs runs; target p95 < 50 ms;
2. agents per operator status, one GROUP BY query: p50/p95; target p95 < 50 ms;
   both with EXPLAIN ANALYZE printed, to check the index use;
3. the request phase of resuming --resume interrupted agents:
   AgentFilter(status="interrupted").agent_pks(limit=...) + request_resumes(...);
   target < 5 s;
4. claim_next in a loop (--claims claims by one worker identity): claims/s;
5. ResumeWorker end to end (claim, start `python -m agents.resume_runner`, the entry point
   `bench.resume_bench:finish_agent` writes the agent's answer, settle) for
   --worker-resumes resumes: resumes/s at the worker's concurrency.
See bench/README-resume.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_agents"
ENTRY_POINT = "bench.resume_bench:finish_agent"
# The columns of the dashboard's agent table.
DASHBOARD_COLUMNS = (
    "namespace",
    "agent_id",
    "state",
    "task_summary",
    "steps_done",
    "steps_pending",
    "steps_failed",
    "last_step",
    "last_activity_at",
    "lease_owner",
    "lease_host",
    "lease_pid",
    "lease_expires_at",
)


def finish_agent(client: Any, agent_id: str) -> None:
    """The trivial resume entry point: finish the agent at once (one commit)."""
    client.finish(agent_id, {"resumed_by": "resume_bench"})


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    figure: str
    target: str = ""
    ok: bool | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def repeat_ms(call: Callable[[], object], runs: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), percentile(times, 0.95)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def explain(title: str, queryset: Any) -> str:
    plan = queryset.explain(analyze=True, buffers=True)
    print(f"\n--- EXPLAIN ANALYZE: {title}\n{plan}", flush=True)
    return plan


def index_use(plan: str) -> str:
    used = sorted(
        {
            line.split(" using ")[1].split()[0]
            for line in plan.splitlines()
            if " using " in line and "Index" in line
        }
    )
    seq = "Seq Scan" in plan
    return (", ".join(used) if used else "no index") + (" + seq scan" if seq else "")


# --- the phases ---------------------------------------------------------------------------


def interrupted_page() -> Any:
    from statehouse_agents.models import Agent

    return (
        Agent.objects.interrupted()
        .annotate_status()
        .only(*DASHBOARD_COLUMNS)
        .order_by("-last_activity_at", "pk")[:50]
    )


def status_counts() -> Any:
    from django.db.models import Count
    from statehouse_agents.models import Agent

    return (
        Agent.objects.annotate_status()
        .values("status_value")
        .annotate(n=Count("pk"))
        .order_by("status_value")
    )


def measure_reads(rows: list[Row], runs: int) -> None:
    page_p50, page_p95 = repeat_ms(lambda: list(interrupted_page()), runs)
    page_plan = explain("first page of interrupted agents", interrupted_page())
    rows.append(
        Row("list interrupted, page of 50 (p50)", f"{page_p50:.1f} ms", "", None),
    )
    rows.append(
        Row(
            "list interrupted, page of 50 (p95)",
            f"{page_p95:.1f} ms",
            "< 50 ms",
            page_p95 < 50,
        )
    )
    rows.append(Row("  index use", index_use(page_plan)))

    counts_p50, counts_p95 = repeat_ms(lambda: list(status_counts()), runs)
    count_plan = explain("agents per status", status_counts())
    rows.append(Row("count per status, 1 query (p50)", f"{counts_p50:.1f} ms"))
    rows.append(
        Row("count per status, 1 query (p95)", f"{counts_p95:.1f} ms", "< 50 ms", counts_p95 < 50)
    )
    rows.append(Row("  index use", index_use(count_plan)))
    counts = {row["status_value"]: row["n"] for row in status_counts()}
    log(f"statuses: {counts}")


def measure_request(rows: list[Row], how_many: int) -> None:
    from statehouse_agents.models import ResumeRequest
    from statehouse_agents.selection import AgentFilter
    from statehouse_agents.store.resume import request_resumes

    start = time.perf_counter()
    pks = AgentFilter(status="interrupted").agent_pks(limit=how_many)
    selected = time.perf_counter()
    queued = sum(
        request_resumes(
            agent_pks=pks, source=ResumeRequest.Source.COMMAND, requested_by="resume_bench"
        )
    )
    done = time.perf_counter()
    total = done - start
    rows.append(Row(f"select {len(pks):,} interrupted agents", f"{selected - start:.2f} s"))
    rows.append(
        Row(
            f"request resume of {len(pks):,} agents ({queued:,} queued)",
            f"{total:.2f} s ({queued / max(total, 1e-9):,.0f}/s)",
            "< 5 s",
            total < 5 and queued == len(pks) == how_many,
        )
    )


def measure_claims(rows: list[Row], how_many: int) -> None:
    from statehouse_agents.store.resume import WorkerIdentity, claim_next

    worker = WorkerIdentity(name="resume-bench", host=socket.gethostname(), pid=os.getpid())
    claimed = 0
    start = time.perf_counter()
    for _ in range(how_many):
        if claim_next(worker=worker, lease_seconds=3600) is None:
            break
        claimed += 1
    elapsed = time.perf_counter() - start
    rows.append(
        Row(
            f"claim_next x {claimed:,} (one worker, sequential)",
            f"{claimed / elapsed:,.0f} claims/s ({elapsed * 1000 / max(claimed, 1):.1f} ms each)",
        )
    )


def measure_worker(rows: list[Row], how_many: int, concurrency: int) -> None:
    from statehouse_agents.models import ResumeAttempt
    from statehouse_agents.worker import ResumeWorker

    class CountingWorker(ResumeWorker):
        """Stop after `how_many` settled runs (the queue holds thousands more)."""

        def _settle(self, claim: Any, **kwargs: object) -> None:
            super()._settle(claim, **kwargs)
            if len(self.outcomes) >= how_many:
                self.stop()

    worker = CountingWorker(concurrency=concurrency, poll_interval=0.02, log=lambda _m: None)
    start = time.perf_counter()
    outcomes = worker.run()
    elapsed = time.perf_counter() - start
    finished = [o for _agent, o in outcomes if o != ResumeAttempt.Outcome.SHUTDOWN]
    succeeded = sum(1 for o in finished if o == ResumeAttempt.Outcome.SUCCEEDED)
    rows.append(
        Row(
            f"ResumeWorker: claim + start process + finish, x {len(finished)}"
            f" (concurrency {concurrency})",
            f"{len(finished) / elapsed:.1f} resumes/s ({succeeded} succeeded)",
            "",
            None if succeeded == len(finished) else False,
        )
    )


def print_table(rows: list[Row], header: str) -> None:
    width = max(len(r.name) for r in rows)
    fig = max(len(r.figure) for r in rows)
    print(f"\n{header}\n")
    print(f"{'measure':<{width}}  {'figure':<{fig}}  {'target':<8}  result")
    print(f"{'-' * width}  {'-' * fig}  {'-' * 8}  ------")
    for r in rows:
        result = "" if r.ok is None else ("PASS" if r.ok else "FAIL")
        print(f"{r.name:<{width}}  {r.figure:<{fig}}  {r.target:<8}  {result}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded database")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--steps-per-agent", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--resume", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=2_000)
    parser.add_argument("--worker-resumes", type=int, default=40)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.runs, args.resume = 10_000, 20, 1_000
        args.claims, args.worker_resumes = 300, 10

    # Read by the settings at django.setup(), and inherited by the processes the worker starts.
    os.environ["STATEHOUSE_RESUME_ENTRY_POINTS"] = f"*={ENTRY_POINT}"
    os.environ.setdefault("STATEHOUSE_LOG_LEVEL", "WARNING")
    from bench.seed import seed, setup_django

    if args.no_seed:
        setup_django(args.database_url)
    else:
        log(f"seeding {args.agents:,} agents x {args.steps_per_agent} steps")
        summary = seed(args.database_url, agents=args.agents, steps_per_agent=args.steps_per_agent)
        log(f"seeded in {summary.seconds:.1f}s: {summary.statuses}")

    from django.db import connection
    from statehouse_agents.models import Agent, Step

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    header = (
        f"Statehouse resume bench: PostgreSQL {server}, {Agent.objects.count():,} agents, "
        f"{Step.objects.count():,} steps, {os.cpu_count()} CPU(s)"
    )
    rows: list[Row] = []
    measure_reads(rows, args.runs)
    measure_request(rows, args.resume)
    measure_claims(rows, args.claims)
    measure_worker(rows, args.worker_resumes, args.worker_concurrency)
    print_table(rows, header)
    if any(r.ok is False for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
