"""`/metrics` (docs/metrics.md): every figure scraped equals the store's own count, and the
endpoint refuses scrapers that are neither in an allowed network nor hold the token."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models.functions import Now
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from statehouse_agents.conf import get_settings
from statehouse_agents.metrics import STEP_DURATION_BUCKETS, record_direct_detection
from statehouse_agents.models import Agent, Commit, ResumeAttempt, ResumeRequest, Step
from statehouse_agents.store.resume import WorkerIdentity, claim_next, request_resume, settle

from statehouse import Statehouse
from tests.factories import make_agent

WORKER = WorkerIdentity(name="host-m:1:abc", host="host-m", pid=1)
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-metrics-token-0123456789"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client | None = None, **headers: str) -> Samples:
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def one(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def crash_holding(agent_id: str) -> None:
    """Leave the agent as a SIGKILLed holder does: its lease recorded, and run out."""
    Agent.objects.filter(agent_id=agent_id).update(
        lease_owner="dead-holder",
        lease_host="gone",
        lease_pid=999_999,
        lease_expires_at=Now() - timedelta(seconds=5),
    )


def test_scrape_matches_the_store_after_commits_and_resumes(sh: Statehouse) -> None:
    before = scrape()
    make_agent(sh, "run-1", status="running")
    make_agent(sh, "int-1", status="interrupted")
    make_agent(sh, "int-2", status="interrupted")
    make_agent(sh, "done-1", status="completed", steps=3)
    make_agent(sh, "fail-1", status="failed")
    make_agent(sh, "idle-1", status="idle")
    # A holder that let its lease run out, taken over by another process's step.
    make_agent(sh, "lapsed", status="interrupted")
    crash_holding("lapsed")
    with Statehouse() as successor, successor.begin_transaction() as tx:
        tx.write(agent_id="lapsed", key="step:9", value={"status": "done", "result": 1})
    # A resume: claimed by a worker (whose own lease then lapses), run, and settled.
    for agent_id in ("int-1", "int-2"):
        request_resume(namespace="default", agent_id=agent_id, source="command", requested_by="t")
    claim = claim_next(worker=WORKER, lease_seconds=30)
    assert claim is not None
    settle(claim=claim, exit_code=1, error="boom")  # failed: queued again after a back-off
    record_direct_detection()
    record_direct_detection(2)
    commits_here = Commit.objects.count()

    after = scrape()

    for status in Agent.Status.values:
        assert one(after, "statehouse_agents", status=status) == (
            Agent.objects.with_status(status).count()
        )
    assert one(after, "statehouse_agents", status="running") == 1
    assert one(after, "statehouse_agents", status="completed") == 1
    assert one(after, "statehouse_agents", status="failed") == 1
    assert one(after, "statehouse_agents", status="idle") == 1
    assert one(after, "statehouse_commits_total") == Commit.objects.count() == commits_here
    # Commits of this process, timed where they ran.
    latency = one(after, "statehouse_commit_latency_seconds_count") - one(
        before, "statehouse_commit_latency_seconds_count"
    )
    assert latency == commits_here
    assert one(after, "statehouse_lease_expiries_total") == 1
    assert one(after, "statehouse_direct_detections_total") == 3

    ended = Step.objects.filter(ended_at__isnull=False)
    durations = [(s.ended_at - s.started_at).total_seconds() for s in ended if s.ended_at]
    assert one(after, "statehouse_step_duration_seconds_count") == len(durations) > 0
    assert one(after, "statehouse_step_duration_seconds_sum") == pytest.approx(sum(durations))
    for bound in STEP_DURATION_BUCKETS:
        assert one(after, "statehouse_step_duration_seconds_bucket", le=str(float(bound))) == (
            sum(1 for d in durations if d <= bound)
        )

    for status in ResumeRequest.Status.values:
        assert one(after, "statehouse_resume_requests", status=status) == (
            ResumeRequest.objects.filter(status=status).count()
        )
    assert one(after, "statehouse_resume_requests", status="queued") == 2
    for outcome in ResumeAttempt.Outcome.values:
        assert one(after, "statehouse_resume_attempts", outcome=outcome) == (
            ResumeAttempt.objects.filter(outcome=outcome).count()
        )
    assert one(after, "statehouse_resume_attempts", outcome="failed") == 1
    assert one(after, "statehouse_worker_queue_depth", which="queued") == 2
    # The stopped one waits out its back-off; the other is due now.
    assert one(after, "statehouse_worker_queue_depth", which="due") == 1
    assert ResumeRequest.objects.due().count() == 1
    oldest = ResumeRequest.objects.queued().order_by("requested_at").first()
    assert oldest is not None
    age = one(after, "statehouse_worker_oldest_queued_seconds")
    assert 0 < age < 60


def test_claiming_an_agent_whose_lease_ran_out_counts_one_expiry(sh: Statehouse) -> None:
    make_agent(sh, "lapsed", status="interrupted")
    sh.register_resume("lapsed", "tests.agents_for_tests:complete")
    crash_holding("lapsed")
    request_resume(namespace="default", agent_id="lapsed", source="command", requested_by="t")
    assert claim_next(worker=WORKER, lease_seconds=30) is not None
    assert one(scrape(), "statehouse_lease_expiries_total") == 1
    # Claimed by the worker, the agent is no longer counted again by its next claim.
    assert Agent.objects.get(agent_id="lapsed").lease_owner != "dead-holder"


def test_empty_store_scrapes_zeros(transactional_db: None) -> None:
    samples = scrape()
    assert one(samples, "statehouse_commits_total") == 0
    assert one(samples, "statehouse_worker_oldest_queued_seconds") == 0
    assert one(samples, "statehouse_step_duration_seconds_count") == 0
    assert one(samples, "statehouse_direct_detections_total") == 0
    assert all(one(samples, "statehouse_agents", status=s) == 0 for s in Agent.Status.values)


def test_the_sample_grafana_dashboard_queries_only_served_series(
    transactional_db: None,
) -> None:
    """docs/grafana-dashboard.json: every panel has a query, and every series it names is
    one /metrics serves."""
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(queries) >= len(dashboard["panels"]) == 9
    named = set(re.findall(r"statehouse_[a-z_]+", " ".join(queries)))
    served = {name for name, _labels in scrape()}
    assert named <= served, named - served
    assert {"statehouse_direct_detections_total", "statehouse_lease_expiries_total"} <= named


def test_scrape_query_budget_does_not_grow_with_the_store(
    sh: Statehouse, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        make_agent(sh, f"a-{n}", status="interrupted", steps=3)
    with django_assert_max_num_queries(7):
        scrape()


# --- who may scrape ---------------------------------------------------------------------


def test_outside_address_without_token_setting_is_forbidden(db: None) -> None:
    response = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert response.status_code == 403
    assert b"STATEHOUSE_METRICS_NETWORKS" in response.content


def test_token_required_outside_the_networks(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_METRICS_TOKEN = TOKEN
    outside = Client(REMOTE_ADDR="203.0.113.9")
    missing = outside.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="statehouse-metrics"'
    wrong = outside.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert wrong.status_code == 401
    basic = outside.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    assert basic.status_code == 401
    assert outside.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_allowed_network_needs_no_token(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_METRICS_TOKEN = TOKEN
    settings.STATEHOUSE_METRICS_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]
    assert Client(REMOTE_ADDR="10.20.30.40").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="2001:db8::5").get("/metrics").status_code == 200
    # Loopback is no longer in the list: only the token lets it in.
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401


def test_empty_network_list_admits_only_the_token(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_METRICS_NETWORKS = []
    assert Client().get("/metrics").status_code == 403


def test_metrics_refuse_post(db: None) -> None:
    assert Client().post("/metrics").status_code == 405


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STATEHOUSE_METRICS_TOKEN", "short", "at least 16 printable ASCII"),
        ("STATEHOUSE_METRICS_TOKEN", "a token with spaces in it", "without spaces"),
        ("STATEHOUSE_METRICS_TOKEN", 1234567890123456789, "is not a string"),
        ("STATEHOUSE_METRICS_NETWORKS", ["10.0.0.0/33"], "'10.0.0.0/33' is not a network"),
        ("STATEHOUSE_METRICS_NETWORKS", ["10.0.0.1/8"], "'10.0.0.1/8' is not a network"),
        ("STATEHOUSE_METRICS_NETWORKS", ["intranet"], "'intranet' is not a network"),
        ("STATEHOUSE_METRICS_NETWORKS", "10.0.0.0/8", "is not a list of networks"),
    ],
)
def test_nonsense_metrics_settings_are_refused(settings, name, value, message) -> None:  # type: ignore[no-untyped-def]
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()
