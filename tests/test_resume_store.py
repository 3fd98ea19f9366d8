"""The resume lifecycle in the store (docs/contract.md §4): request, claim, settle, recover."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.functions import Now
from statehouse_agents.models import Agent, ResumeAttempt, ResumeRequest
from statehouse_agents.store.resume import (
    Claim,
    WorkerIdentity,
    claim_next,
    recover_abandoned,
    renew_claims,
    request_resume,
    request_resumes,
    settle,
)

from statehouse import Statehouse
from statehouse.errors import NotFoundError, NotResumableError

WORKER = WorkerIdentity(name="host-a:1:abc", host="host-a", pid=1)
OTHER = WorkerIdentity(name="host-b:2:def", host="host-b", pid=2)
Outcome = ResumeAttempt.Outcome


def interrupted(agent_id: str, namespace: str = "default") -> Agent:
    """An agent whose process wrote its task and stopped (its lease released)."""
    with Statehouse(namespace=namespace) as client:
        client.start(agent_id, {"task": agent_id})
        client.register_resume(agent_id, "tests.agents_for_tests:complete")
    return Agent.objects.get(namespace=namespace, agent_id=agent_id)


def status(agent_id: str) -> str:
    return Agent.objects.annotate_status().get(agent_id=agent_id).status_value


def ask(agent_id: str, source: str = "dashboard", **kwargs: str) -> tuple[ResumeRequest, bool]:
    return request_resume(namespace="default", agent_id=agent_id, source=source, **kwargs)


def expire(claim: Claim, *, lease: bool = True) -> None:
    """Make it look as if the claiming worker died a while ago."""
    past = Now() - timedelta(seconds=60)
    ResumeRequest.objects.filter(pk=claim.request_pk).update(claim_expires_at=past)
    if lease:
        Agent.objects.filter(pk=claim.agent_pk).update(lease_expires_at=past)


# --- requesting -------------------------------------------------------------------------------


def test_request_for_unknown_agent_is_not_found(sh: Statehouse) -> None:
    with pytest.raises(NotFoundError, match="no agent 'ghost'"):
        ask("ghost")


def test_running_completed_and_idle_agents_are_not_resumable(sh: Statehouse) -> None:
    sh.start("running", {"task": "t"})
    with Statehouse() as other:
        other.start("done", {"task": "t"})
        other.finish("done", {"ok": True})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="idle", key="notes", value=1)

    for agent_id, shown in (("running", "running"), ("done", "completed"), ("idle", "idle")):
        with pytest.raises(NotResumableError, match=f"is {shown}"):
            ask(agent_id)
    assert not ResumeRequest.objects.exists()
    assert status("running") == "running"


def test_request_queues_once_and_marks_the_agent_resuming(sh: Statehouse) -> None:
    interrupted("a1")

    request, created = ask("a1", requested_by="alice")
    again, created_again = ask("a1", source="admin", requested_by="bob")

    assert (created, created_again) == (True, False)
    assert again.pk == request.pk
    assert (request.status, request.source, request.requested_by) == (
        "queued",
        "dashboard",
        "alice",
    )
    assert request.attempts == 0
    assert ResumeRequest.objects.count() == 1
    assert status("a1") == "resuming"


def test_failed_agent_can_be_resumed(sh: Statehouse) -> None:
    interrupted("a1")
    with Statehouse() as client:
        client.fail("a1", "gave up")
    assert status("a1") == "failed"

    _request, created = ask("a1")

    assert created
    agent = Agent.objects.get(agent_id="a1")
    assert (status("a1"), agent.error) == ("resuming", "")


def test_concurrent_requests_from_threads_queue_one(sh: Statehouse) -> None:
    interrupted("a1")
    created: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def click() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(5):
                created.append(ask("a1")[1])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert sorted(created) == [False] * 39 + [True]
    assert ResumeRequest.objects.count() == 1


def test_bulk_request_queues_only_resumable_agents_once(sh: Statehouse) -> None:
    for agent_id in ("i1", "i2", "queued"):
        interrupted(agent_id)
    ask("queued")
    sh.start("running", {"task": "t"})
    with Statehouse() as other:
        other.start("done", {"task": "t"})
        other.finish("done", 1)
        other.start("failed", {"task": "t"})
        other.fail("failed", "no")
    pks = list(Agent.objects.values_list("pk", flat=True))

    assert sum(request_resumes(agent_pks=pks, source="command", requested_by="ops")) == 3
    assert sum(request_resumes(agent_pks=pks, source="command")) == 0

    queued = ResumeRequest.objects.queued()
    assert sorted(queued.values_list("agent__agent_id", flat=True)) == [
        "failed",
        "i1",
        "i2",
        "queued",
    ]
    assert set(queued.exclude(agent__agent_id="queued").values_list("requested_by", flat=True)) == {
        "ops"
    }
    assert (status("running"), status("done")) == ("running", "completed")


# --- claiming -----------------------------------------------------------------------------------


def test_claim_takes_the_request_and_the_agent_lease(sh: Statehouse) -> None:
    assert claim_next(worker=WORKER, lease_seconds=30) is None
    agent = interrupted("a1")
    request, _ = ask("a1", requested_by="alice")

    claim = claim_next(worker=WORKER, lease_seconds=30)

    assert claim is not None
    assert (claim.agent_id, claim.request_pk, claim.attempt) == ("a1", request.pk, 1)
    assert claim.entry_point == "tests.agents_for_tests:complete"
    request.refresh_from_db()
    assert (request.status, request.claimed_by, request.attempts) == ("claimed", WORKER.name, 1)
    attempt = ResumeAttempt.objects.get(pk=claim.attempt_pk)
    assert (attempt.outcome, attempt.worker, attempt.host, attempt.requested_by) == (
        Outcome.RUNNING,
        WORKER.name,
        "host-a",
        "alice",
    )
    agent.refresh_from_db()
    assert (agent.lease_owner, agent.lease_host, agent.lease_pid) == (
        claim.lease_token,
        "host-a",
        1,
    )
    assert status("a1") == "resuming"
    # Nothing else is due; asking again while claimed returns the same request.
    assert claim_next(worker=OTHER, lease_seconds=30) is None
    assert ask("a1") == (request, False)


def test_claim_cancels_the_request_of_an_agent_completed_meanwhile(sh: Statehouse) -> None:
    interrupted("a1")
    request, _ = ask("a1")
    sh.finish("a1", {"late": True})

    assert claim_next(worker=WORKER, lease_seconds=30) is None

    request.refresh_from_db()
    assert request.status == ResumeRequest.Status.CANCELLED
    assert "already completed" in request.last_error
    assert status("a1") == "completed"


def test_claim_cancels_the_request_of_an_agent_running_again(sh: Statehouse) -> None:
    interrupted("a1")
    request, _ = ask("a1")
    with sh.step("a1", 1, action="came back"):  # the original process came back to life
        pass

    assert claim_next(worker=WORKER, lease_seconds=30) is None

    request.refresh_from_db()
    assert request.status == ResumeRequest.Status.CANCELLED
    assert "the agent is running on" in request.last_error
    assert status("a1") == "running"
    assert not ResumeAttempt.objects.exists()


# --- settling -----------------------------------------------------------------------------------


def _claimed(agent_id: str = "a1") -> Claim:
    interrupted(agent_id)
    ask(agent_id)
    claim = claim_next(worker=WORKER, lease_seconds=30)
    assert claim is not None
    return claim


def test_settle_of_a_run_returning_early_leaves_the_agent_interrupted(sh: Statehouse) -> None:
    claim = _claimed()

    assert settle(claim=claim, exit_code=0) == Outcome.STOPPED

    assert ResumeRequest.objects.get().status == ResumeRequest.Status.STOPPED
    assert status("a1") == "interrupted"
    assert Agent.objects.get().lease_owner == ""


def test_failed_runs_are_requeued_with_growing_back_off_then_the_agent_fails(
    sh: Statehouse,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.STATEHOUSE_RESUME_MAX_ATTEMPTS = 3
    settings.STATEHOUSE_RESUME_BACKOFF_SECONDS = 10
    claim = _claimed()
    delays = []
    for expected in (Outcome.CRASHED, Outcome.FAILED):
        code = None if expected == Outcome.CRASHED else 1
        assert settle(claim=claim, exit_code=code, error=f"run {claim.attempt}") == expected
        request = ResumeRequest.objects.get()
        assert request.status == ResumeRequest.Status.QUEUED
        assert request.last_error == f"run {claim.attempt}"
        assert status("a1") == "resuming"
        delays.append(request.run_after - ResumeAttempt.objects.get(pk=claim.attempt_pk).ended_at)
        # Not due before its back-off; make it due to go on.
        assert claim_next(worker=WORKER, lease_seconds=30) is None
        ResumeRequest.objects.update(run_after=Now())
        claim = claim_next(worker=WORKER, lease_seconds=30)
        assert claim is not None
    assert delays == [timedelta(seconds=10), timedelta(seconds=20)]

    assert settle(claim=claim, exit_code=1, error="third time") == Outcome.FAILED

    request = ResumeRequest.objects.get()
    assert (request.status, request.attempts) == (ResumeRequest.Status.FAILED, 3)
    agent = Agent.objects.get()
    assert status("a1") == "failed"
    assert agent.error == "resume failed after 3 attempt(s): third time"
    assert agent.lease_owner == ""
    assert list(
        ResumeAttempt.objects.order_by("number").values_list("number", "outcome", "error")
    ) == [
        (1, Outcome.CRASHED, "run 1"),
        (2, Outcome.FAILED, "run 2"),
        (3, Outcome.FAILED, "third time"),
    ]


def test_shutdown_requeues_at_once_and_counts_the_attempt(sh: Statehouse) -> None:
    claim = _claimed()

    outcome = settle(claim=claim, exit_code=-15, error="the worker shut down", outcome="shutdown")

    assert outcome == Outcome.SHUTDOWN
    request = ResumeRequest.objects.get()
    assert (request.status, request.attempts) == (ResumeRequest.Status.QUEUED, 1)
    assert request.last_error == "the worker shut down"
    assert status("a1") == "resuming"
    assert claim_next(worker=OTHER, lease_seconds=30) is not None


def test_renewing_claims_extends_claim_and_lease(sh: Statehouse) -> None:
    claim = _claimed()
    expire(claim)
    assert status("a1") == "interrupted"

    renew_claims(claims=[claim], lease_seconds=30)

    assert status("a1") == "resuming"
    assert not ResumeRequest.objects.abandoned().exists()


# --- recovering from lost workers ---------------------------------------------------------------


def test_abandoned_claim_is_recovered_as_lost_and_requeued(sh: Statehouse) -> None:
    claim = _claimed()
    expire(claim)
    assert status("a1") == "interrupted"  # not stuck as resuming

    assert recover_abandoned() == 1
    assert recover_abandoned() == 0

    attempt = ResumeAttempt.objects.get()
    assert attempt.outcome == Outcome.LOST
    assert "stopped renewing its claim" in attempt.error
    request = ResumeRequest.objects.get()
    assert (request.status, request.attempts) == (ResumeRequest.Status.QUEUED, 1)
    assert (status("a1"), Agent.objects.get().lease_owner) == ("resuming", "")


def test_recovery_keeps_the_lease_of_a_run_still_alive(sh: Statehouse, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RESUME_BACKOFF_SECONDS = 0
    claim = _claimed()
    expire(claim, lease=False)  # the worker died, but its run still renews the agent's lease

    assert recover_abandoned() == 1

    assert Agent.objects.get().lease_owner == claim.lease_token
    # The next claim sees a live holder and does not start a second copy.
    assert claim_next(worker=OTHER, lease_seconds=30) is None
    assert ResumeRequest.objects.get().status == ResumeRequest.Status.CANCELLED
    assert ResumeAttempt.objects.count() == 1


def test_a_stale_settle_does_not_touch_a_request_claimed_again(sh: Statehouse, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RESUME_BACKOFF_SECONDS = 0
    # Worker A's claim lapsed and was recovered; worker B claimed the request again. A's
    # late report about its own run must not close or requeue B's run, nor rewrite history.
    first = _claimed()
    expire(first)
    assert recover_abandoned() == 1
    second = claim_next(worker=OTHER, lease_seconds=30)
    assert second is not None and second.request_pk == first.request_pk

    settle(claim=first, exit_code=0)
    settle(claim=first, exit_code=None, error="lost", outcome=Outcome.LOST)

    request = ResumeRequest.objects.get()
    assert (request.status, request.claimed_by, request.attempts) == ("claimed", OTHER.name, 2)
    assert Agent.objects.get().lease_owner == second.lease_token
    assert status("a1") == "resuming"
    assert list(ResumeAttempt.objects.order_by("number").values_list("outcome", flat=True)) == [
        Outcome.LOST,
        Outcome.RUNNING,
    ]

    assert settle(claim=second, exit_code=0) == Outcome.STOPPED
    assert ResumeRequest.objects.get().status == ResumeRequest.Status.STOPPED


def test_settling_twice_records_the_first_outcome_only(sh: Statehouse, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_RESUME_MAX_ATTEMPTS = 5
    claim = _claimed()

    assert settle(claim=claim, exit_code=None, error="gone") == Outcome.CRASHED
    settle(claim=claim, exit_code=None, error="gone again")

    request = ResumeRequest.objects.get()
    assert (request.status, request.attempts, request.last_error) == ("queued", 1, "gone")
    assert ResumeAttempt.objects.get().error == "gone"


def test_a_resume_request_is_stamped_by_the_database_clock(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims compare `run_after` with the database's clock: a skewed host must not delay
    (or hurry) its requests."""
    from datetime import UTC, datetime

    from django.utils import timezone
    from statehouse_agents.store.resume import request_resume

    with Statehouse() as crashed:
        crashed.start("skewed", {"task": "t"})
    monkeypatch.setattr(timezone, "now", lambda: datetime(2001, 1, 1, tzinfo=UTC))
    request, _ = request_resume(namespace="default", agent_id="skewed", source="command")
    request.refresh_from_db()
    assert request.requested_at.year > 2001
    assert request.run_after == request.requested_at
