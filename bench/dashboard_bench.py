#!/usr/bin/env python
"""Dashboard benchmark: server time of each dashboard page at 100,000 agents, 1,000,000 steps.

    .venv/bin/python bench/dashboard_bench.py
    .venv/bin/python bench/dashboard_bench.py --no-seed          # reuse a seeded database
    .venv/bin/python bench/dashboard_bench.py --no-seed --explain --profile search

PostgreSQL only. Unless --no-seed, the database (its name must contain "bench") is dropped
and filled by bench/seed.py: 100,000 agents with 10 steps each, plus `agent-big` (1,000
steps, 100 keys x 3 versions, written through the store).

Each page is requested in-process with Django's test client (`django.test.Client`, a staff
user logged in with `force_login`, host "testserver"), so the figure is the whole server
side: middleware (session, auth, CSP, htmx), the view, its queries and the template, but
no network and no browser. Per page: --warmup requests, then --runs timed requests
(p50, p95, max), then one more request under `CaptureQueriesContext` for the number of
SQL queries and the slowest one (not timed: capturing adds overhead). Target: p95 < 100 ms.

--explain prints EXPLAIN (ANALYZE, BUFFERS) of the slowest query of every page that
misses the target (of every page with --explain-all); --profile NAME prints the cProfile
of NAME's view (cumulative time, top 30). Exit status 1 if a page misses the target.
See bench/README-resume.md, section "Dashboard pages".
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_dashboard"
TARGET_MS = 100.0
SEARCH_TEXT = "customer 42"  # task summaries read "Summarize report #<i> for customer <i % 997>"
SEARCH_ID = "agent-0424"  # agent ids agent-042400 ... agent-042499
HISTORY_KEY = "note:050"


@dataclass
class Page:
    name: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)
    queries: int = 0
    slowest_sql: str = ""
    slowest_ms: float = 0.0
    db_ms: float = 0.0
    status_code: int = 0
    size: int = 0

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95(self) -> float:
        return percentile(self.times_ms, 0.95)

    @property
    def ok(self) -> bool:
        return self.status_code == 200 and self.p95 < TARGET_MS


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def prepare_environment() -> None:
    """The test client sends Host: testserver; settings read ALLOWED_HOSTS from the env.

    DEBUG stays off (as in production: cached templates, no query log)."""
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    for host in ("testserver", "127.0.0.1", "localhost"):
        if host not in hosts:
            hosts.append(host)
    os.environ["ALLOWED_HOSTS"] = ",".join(hosts)
    # With DEBUG off on PostgreSQL, settings need a SECRET_KEY (sessions are signed).
    os.environ.setdefault("SECRET_KEY", "dashboard-bench-only-" + os.urandom(16).hex())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")


def setup(url: str, *, reseed: bool, agents: int, steps: int) -> None:
    from bench.seed import seed, setup_django

    if reseed:
        started = time.perf_counter()
        summary = seed(url, agents=agents, steps_per_agent=steps)
        log(
            f"seeded {summary.agents:,} agents, {summary.steps:,} steps in "
            f"{time.perf_counter() - started:.1f} s; statuses {summary.statuses}"
        )
        seed_operator_rows()
    else:
        setup_django(url)
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("this bench needs PostgreSQL")


def seed_operator_rows() -> None:
    """What the operator pages read: one audit record per agent (a cancel or a resume, a
    pause for every tenth), and a pending approval (status waiting) for one agent in 100."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO agents_operatoraction (
                actor, at, agent_id, namespace, agent_name, action, reason, before, after, detail)
            SELECT 'operator-' || (id % 5), last_activity_at, id, namespace, agent_id,
                   CASE WHEN id % 10 = 0 THEN 'pause' WHEN id % 2 = 0 THEN 'cancel'
                        ELSE 'resume' END,
                   'bench', '{"status": "interrupted"}'::jsonb,
                   '{"status": "cancelled"}'::jsonb, '{"source": "command"}'::jsonb
            FROM agents_agent
            """
        )
        cursor.execute(
            """
            INSERT INTO agents_approval (
                agent_id, name, kind, payload, status, requested_at, decided_by, comment)
            SELECT id, 'deploy', 'request', '{"plan": "ship it"}'::jsonb, 'pending',
                   last_activity_at, '', ''
            FROM agents_agent WHERE id % 100 = 7 AND state NOT IN ('completed', 'failed')
            """
        )
        cursor.execute(
            """
            UPDATE agents_agent SET waiting_since = last_activity_at
            WHERE id IN (SELECT agent_id FROM agents_approval WHERE status = 'pending')
            """
        )
        cursor.execute("ANALYZE")
    log("seeded the audit log (one record per agent) and pending approvals")


def staff_client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(
        username="dashboard-bench", defaults={"is_staff": True}
    )
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    client = Client()  # Host "testserver", raises the view's exceptions
    client.force_login(user)
    return client


def later_page_path(page_number: int) -> str:
    """The URL of the list's page `page_number`, reached by following "Next" (the keyset
    cursor of the previous page), as an operator clicking Next would."""
    from django.http import QueryDict
    from statehouse_agents import dashboard

    url = "/agents/"
    for _ in range(page_number - 1):
        query = url.split("?", 1)[1] if "?" in url else ""
        next_url = dashboard.agent_list(QueryDict(query)).next_url
        if not next_url:
            break
        url = next_url
    return url


def build_pages(later: int) -> list[Page]:
    from statehouse_agents.models import Agent, Version

    from bench.seed import BIG_AGENT

    big = Agent.objects.get(namespace="default", agent_id=BIG_AGENT)
    other = Agent.objects.exclude(pk=big.pk).order_by("pk").first()
    # The last replay page: the page before a position past the newest operation.
    newest = Version.objects.filter(agent=big).order_by("-commit_id", "-id").first()
    past_end = f"{newest.commit_id}_{newest.pk + 1}" if newest else "1_1"
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "agent-table"}
    return [
        Page("overview", "/"),
        Page("list", "/agents/"),
        Page(f"list-page-{later}", later_page_path(later)),
        Page("interrupted", "/agents/?status=interrupted"),
        Page("search", "/agents/?q=" + SEARCH_TEXT.replace(" ", "+")),
        Page("search-id", f"/agents/?q={SEARCH_ID}"),
        Page("list-htmx", "/agents/", {**htmx, "HTTP_HX_CURRENT_URL": "http://testserver/agents/"}),
        Page("agent-big", f"/agents/{big.pk}/"),
        Page("history", f"/agents/{big.pk}/history/?key={HISTORY_KEY}"),
        Page("replay", f"/agents/{big.pk}/replay/"),
        Page("replay-last", f"/agents/{big.pk}/replay/?before={past_end}"),
        Page("waiting", "/agents/?status=waiting"),
        Page("audit", "/audit/"),
        Page("audit-cancel", "/audit/?action=cancel"),
        Page("audit-agent", f"/audit/?agent={other.agent_id if other else BIG_AGENT}"),
        Page("compare", f"/agents/compare/?a={big.pk}&b={other.pk if other else big.pk}"),
        Page("storage", "/storage/"),
        Page("cancel-preview", "/agents/cancel-matching/?status=interrupted"),
    ]


def measure(client: Any, page: Page, runs: int, warmup: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        response = client.get(page.path, **page.headers)
    page.status_code = response.status_code
    page.size = len(response.content)
    for _ in range(runs):
        start = time.perf_counter()
        client.get(page.path, **page.headers)
        page.times_ms.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get(page.path, **page.headers)
    page.queries = len(captured.captured_queries)
    timed = [(float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries]
    page.db_ms = sum(t for t, _ in timed)
    if timed:
        page.slowest_ms, page.slowest_sql = max(timed, key=lambda item: item[0])


def explain(page: Page) -> None:
    from django.db import connection

    if not page.slowest_sql:
        return
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + page.slowest_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    print(f"\n--- {page.name}: slowest query ({page.slowest_ms:.1f} ms)\n{page.slowest_sql}")
    print(f"--- EXPLAIN (ANALYZE, BUFFERS)\n{plan}", flush=True)


def profile(client: Any, page: Page, runs: int = 10) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        client.get(page.path, **page.headers)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
    print(f"\n--- cProfile of {page.name} ({runs} requests), cumulative\n{out.getvalue()}")


def print_table(pages: list[Page]) -> None:
    header = (
        f"{'page':<16} {'path':<44} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'queries':>7} {'db ms':>6} {'status':>6}  target     result"
    )
    print()
    print(header)
    print("-" * len(header))
    for p in pages:
        path = p.path if len(p.path) <= 44 else p.path[:41] + "..."
        print(
            f"{p.name:<16} {path:<44} {p.p50:7.1f} {p.p95:7.1f} {max(p.times_ms):7.1f} "
            f"{p.queries:7d} {p.db_ms:6.1f} {p.status_code:6d}  p95 < {TARGET_MS:.0f}  "
            f"{'PASS' if p.ok else 'FAIL'}"
        )
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--no-seed", action="store_true", help="reuse the seeded database")
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--steps-per-agent", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first")
    parser.add_argument("--later-page", type=int, default=20, help="list page to reach")
    parser.add_argument("--only", action="append", default=[], help="measure only NAME")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN pages that FAIL")
    parser.add_argument("--explain-all", action="store_true", help="EXPLAIN every page")
    parser.add_argument("--profile", action="append", default=[], help="cProfile page NAME")
    args = parser.parse_args(argv)

    prepare_environment()
    setup(
        args.database_url,
        reseed=not args.no_seed,
        agents=args.agents,
        steps=args.steps_per_agent,
    )
    client = staff_client()
    pages = build_pages(args.later_page)
    if args.only:
        pages = [p for p in pages if p.name in args.only]
    for page in pages:
        measure(client, page, args.runs, args.warmup)
        log(f"{page.name}: p95 {page.p95:.1f} ms, {page.queries} queries, {page.size:,} bytes")
    print_table(pages)
    for page in pages:
        if args.explain_all or (args.explain and not page.ok):
            explain(page)
    for page in pages:
        if page.name in args.profile:
            profile(client, page)
    return 0 if all(p.ok for p in pages) else 1


if __name__ == "__main__":
    sys.exit(main())
