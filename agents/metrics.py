"""Prometheus metrics (docs/metrics.md): what `/metrics` shows and the events other code
reports.

Totals come from the database at scrape time, so every web process on every host shows
the same figures whatever process (an agent, a worker, another host) caused them: agents
by status, commits, step durations, resume requests and attempts by outcome, the worker
queue, and the event counters kept in `MetricCounter` (lease expiries, direct detections).
Only the commit latency is measured in the process that commits (nothing records it in
the database); it covers the process serving `/metrics` (commits through the HTTP API),
or every process of the host with prometheus-client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from statehouse_agents.models import Agent, Commit, ResumeAttempt, ResumeRequest, Step
from statehouse_agents.store.counters import (
    DIRECT_DETECTIONS,
    LEASE_EXPIRIES,
    PRUNED_COMMITS,
    add_to_counter,
    counter_values,
)

# Commit latency: from the start of the database transaction to its end, in seconds.
COMMIT_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Step durations (pending to done or failed), in seconds.
STEP_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

COMMIT_LATENCY = Histogram(
    "statehouse_commit_latency_seconds",
    "Time to apply one transaction (commits made by this process or host).",
    buckets=COMMIT_LATENCY_BUCKETS,
)


def observe_commit(seconds: float) -> None:
    """Record the latency of one commit that succeeded."""
    COMMIT_LATENCY.observe(seconds)


def record_direct_detection(count: int = 1) -> None:
    """Count holders found dead directly (their connection closed, their lock released,
    their pid gone), without waiting for their lease to run out (docs/contract.md §3).

    Kept in the database, in the caller's transaction if one is open."""
    add_to_counter(name=DIRECT_DETECTIONS, amount=count)


def record_lease_expiry(count: int = 1) -> None:
    """Count leases taken over after they ran out (a holder that neither renewed nor
    released its lease). Kept in the database, in the caller's transaction if one is open."""
    add_to_counter(name=LEASE_EXPIRIES, amount=count)


class StoreCollector(Collector):
    """The figures read from the database at each scrape: a handful of aggregate queries,
    none of which reads rows one by one."""

    def collect(self) -> Iterator[Metric]:
        agents = GaugeMetricFamily(
            "statehouse_agents", "Agents by the status an operator sees.", labels=["status"]
        )
        for status, count in Agent.objects.status_counts().items():
            agents.add_metric([status], count)
        yield agents

        counters = counter_values()
        # Commit rows pruned by retention still count: the total never goes down.
        commits = Commit.objects.count() + counters[PRUNED_COMMITS]
        yield CounterMetricFamily(
            "statehouse_commits", "Transactions committed (every process, every host).", commits
        )
        yield CounterMetricFamily(
            "statehouse_lease_expiries",
            "Leases taken over after running out (the holder neither renewed nor released).",
            counters[LEASE_EXPIRIES],
        )
        yield CounterMetricFamily(
            "statehouse_direct_detections",
            "Dead lease holders detected directly, before their lease ran out.",
            counters[DIRECT_DETECTIONS],
        )
        yield _step_durations()

        yield _count_by(
            "statehouse_resume_requests",
            "Resume requests by status.",
            ResumeRequest.objects.all(),
            "status",
            ResumeRequest.Status.values,
        )
        yield _count_by(
            "statehouse_resume_attempts",
            "Resume attempts by outcome.",
            ResumeAttempt.objects.all(),
            "outcome",
            ResumeAttempt.Outcome.values,
        )

        queue = (
            ResumeRequest.objects.queued()
            .order_by()
            .aggregate(
                depth=Count("pk"),
                due=Count("pk", filter=Q(run_after__lte=timezone.now())),
                oldest=Min("requested_at"),
            )
        )
        depth = GaugeMetricFamily(
            "statehouse_worker_queue_depth",
            "Resume requests waiting for a worker (all queued; due: their back-off is over).",
            labels=["which"],
        )
        depth.add_metric(["queued"], queue["depth"])
        depth.add_metric(["due"], queue["due"])
        yield depth
        oldest = queue["oldest"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "statehouse_worker_oldest_queued_seconds",
            "Age of the oldest queued resume request (0 when none waits).",
            max(age, 0.0),
        )


def _count_by(
    name: str, documentation: str, rows: QuerySet[Any], field: str, values: list[str]
) -> GaugeMetricFamily:
    """A gauge of `rows` counted per value of `field`, every value listed (0 when none)."""
    gauge = GaugeMetricFamily(name, documentation, labels=[field])
    counts = dict(
        rows.order_by().values_list(field).annotate(n=Count("pk")).values_list(field, "n")
    )
    for value in values:
        gauge.add_metric([value], counts.get(value, 0))
    return gauge


def _step_durations() -> HistogramMetricFamily:
    """Durations of the ended steps (done or failed), from their rows: one aggregate."""
    ended = Step.objects.filter(ended_at__isnull=False).order_by()
    duration = ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())
    buckets = {
        f"le_{i}": Count("pk", filter=Q(ended_at__lte=F("started_at") + timedelta(seconds=b)))
        for i, b in enumerate(STEP_DURATION_BUCKETS)
    }
    figures = ended.aggregate(total=Count("pk"), seconds=Sum(duration), **buckets)
    total_seconds = figures["seconds"].total_seconds() if figures["seconds"] else 0.0
    family = HistogramMetricFamily(
        "statehouse_step_duration_seconds", "Durations of ended steps (pending to done/failed)."
    )
    family.add_metric(
        [],
        [(_bound(b), figures[f"le_{i}"]) for i, b in enumerate(STEP_DURATION_BUCKETS)]
        + [("+Inf", figures["total"])],
        sum_value=total_seconds,
    )
    return family


def _bound(value: float) -> str:
    return str(float(value))


def render() -> bytes:
    """The text exposition of every metric: this process's (or, in multiprocess mode,
    the host's) own, then the database's."""
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        local = CollectorRegistry()
        multiprocess.MultiProcessCollector(local)
    else:
        local = REGISTRY
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector())
    return generate_latest(local) + generate_latest(store)
