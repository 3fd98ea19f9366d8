"""The resume lifecycle (docs/contract.md §4): every write is atomic and locks the agent's row.

request → (claim → run → settle)* → succeeded | stopped | failed | cancelled

At most one open request exists per agent (a partial unique constraint), a claim takes the
agent's lease for the worker (passed on to the process it starts), and settling a run
either finishes the request or queues it again with back-off. A worker that dies stops
renewing its claim; `recover_abandoned` settles such runs as lost.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F
from django.db.models.functions import Now
from statehouse_agents import metrics
from statehouse_agents.conf import StatehouseSettings, get_settings
from statehouse_agents.models import (
    Agent,
    OperatorAction,
    ResumeAttempt,
    ResumeRequest,
    ResumeSource,
    Step,
)
from statehouse_agents.store import sql
from statehouse_agents.store.atomic import run_atomic_chunks
from statehouse_agents.store.audit import ActionRecord, record_actions
from statehouse_agents.store.doubt import (
    ReviewHold,
    doubtful_steps,
    review_required,
    skip_steps,
)
from statehouse_agents.store.locking import AgentRow, lock_rows, locked_agent
from statehouse_agents.store.writes import lock_agents, run_atomic

from statehouse.errors import NotResumableError
from statehouse.validation import check_entry_point

logger = logging.getLogger("statehouse.resume")

RESUMABLE = Agent.RESUMABLE_STATUSES


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    name: str
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker needs to run one resume, and to settle it afterwards."""

    request_pk: int
    attempt_pk: int
    agent_pk: int
    namespace: str
    agent_id: str
    entry_point: str
    lease_token: str
    attempt: int

    @classmethod
    def of(
        cls, request: ResumeRequest, run: ResumeAttempt | None, agent: Agent, lease_token: str
    ) -> Claim:
        """The claim of `request` by its attempt `run` (None: no run was recorded) of
        `agent`, whose lease the claim holds as `lease_token`."""
        return cls(
            request_pk=request.pk,
            attempt_pk=run.pk if run else 0,
            agent_pk=agent.pk,
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            entry_point=run.entry_point if run else "",
            lease_token=lease_token,
            attempt=request.attempts,
        )


def resolve_entry_point(agent: Agent, settings: StatehouseSettings) -> str:
    """The agent's registered entry point, else the first settings pattern matching its id."""
    if agent.resume_entry_point:
        return agent.resume_entry_point
    for pattern, target in settings.resume_entry_points:
        if fnmatch.fnmatchcase(agent.agent_id, pattern):
            return target
    return ""


def register_entry_point(
    *, namespace: str, agent_id: str, entry_point: str, auto: bool = False
) -> None:
    """Set the agent's resume entry point ("" clears it), and whether a crash the
    detector sees resumes it at once (`auto`), under the agent's row lock."""
    if entry_point:
        check_entry_point(entry_point)

    def register() -> None:
        agents, _now, _records = lock_agents(namespace, [agent_id])
        Agent.objects.filter(pk=agents[agent_id].pk).update(
            resume_entry_point=entry_point, auto_resume=auto and bool(entry_point)
        )

    run_atomic(register, what="registering the resume entry point")


# --- requesting ---------------------------------------------------------------------------


def request_resume(
    *, namespace: str, agent_id: str, source: ResumeSource, requested_by: str = "", reason: str = ""
) -> tuple[ResumeRequest, bool]:
    """Queue a resume of one agent; return (request, created). An open request is reused.

    A new request is recorded in the audit log, in the same transaction; the agent's
    in-doubt `skip` steps are written done in it too. An in-doubt `review` step refuses
    the resume (StepReviewRequiredError naming it): nothing is queued or written.
    """

    def request() -> tuple[ResumeRequest, bool]:
        agent = locked_agent(namespace, agent_id)
        existing = ResumeRequest.objects.open().filter(agent=agent).first()
        if existing is not None:
            return existing, False
        if agent.status_value not in RESUMABLE:
            raise NotResumableError(
                f"agent {agent_id!r} is {agent.status_value}; only interrupted or failed "
                "agents can be resumed"
            )
        doubt = doubtful_steps([agent.pk])
        if agent.pk in doubt.review:
            raise review_required(
                doubt.review[agent.pk], namespace=agent.namespace, agent_id=agent.agent_id
            )
        created = _queue(
            agents=[(agent.pk, agent.namespace, agent.agent_id, agent.status_value)],
            source=source,
            requested_by=requested_by,
            reason=reason,
            skip=doubt.skip,
        )
        return created[0], True

    return run_atomic(request, what="resume request")


def request_resumes(
    *,
    agent_pks: Sequence[int],
    source: ResumeSource,
    requested_by: str = "",
    reason: str = "",
    needs_review: list[ReviewHold] | None = None,
) -> Iterable[int]:
    """Queue resumes of many agents, a chunk per transaction; yield how many each queued.

    Agents that are no longer interrupted or failed, or already have an open request,
    are skipped, so a repeated or concurrent bulk resume queues each agent once. So are
    agents with an in-doubt `review` step: each is appended to `needs_review` (when
    given) for the caller to report. In-doubt `skip` steps are written done and skipped
    in the chunk's transaction.
    """

    def request_chunk(chunk: list[int]) -> int:
        resumable = lock_rows(Agent.objects.filter(pk__in=chunk).resumable())
        already = set(
            ResumeRequest.objects.open()
            .filter(agent_id__in=[row[0] for row in resumable])
            .values_list("agent_id", flat=True)
        )
        fresh = [row for row in resumable if row[0] not in already]
        doubt = doubtful_steps(row[0] for row in fresh)
        held = [
            ReviewHold(pk, namespace, agent_id, step.key, step.number)
            for pk, namespace, agent_id, _status in fresh
            if (step := doubt.review.get(pk)) is not None
        ]
        fresh = [row for row in fresh if row[0] not in doubt.review]
        _queue(
            agents=fresh,
            source=source,
            requested_by=requested_by,
            reason=reason,
            skip=doubt.skip,
        )
        if needs_review is not None:
            # Only once the chunk committed: a retried transaction reports it once.
            needs_review.extend(held)
        return len(fresh)

    return run_atomic_chunks(agent_pks, request_chunk, what="bulk resume request")


@dataclass
class BulkResume:
    """What a bulk resume did with the agents it was given: how many it queued, and which
    an in-doubt `review` step held back; the others it skipped (`request_resumes`)."""

    selected: int
    queued: int = 0
    needs_review: list[ReviewHold] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """No longer interrupted or failed, or a resume already requested."""
        return self.selected - self.queued - len(self.needs_review)


def resume_selected(
    agent_pks: Sequence[int],
    *,
    source: ResumeSource,
    requested_by: str,
    progress: Callable[[Iterable[int]], Iterable[int]] = iter,
) -> BulkResume:
    """`request_resumes` of the agents an operator chose (checked rows, the admin's
    selection, a command's filters), summed up; `progress` sees each chunk's count."""
    result = BulkResume(selected=len(agent_pks))
    chunks = request_resumes(
        agent_pks=agent_pks,
        source=source,
        requested_by=requested_by,
        needs_review=result.needs_review,
    )
    for count in progress(chunks):
        result.queued += count
    return result


def queue_auto_resume(agent: Agent) -> bool:
    """Queue a resume (source "auto") of `agent`, whose crash the detector just saw, if
    automatic resume is on for it (STATEHOUSE_AUTO_RESUME or its `auto_resume` flag) and
    it has an entry point; return whether one was queued. Call with its row locked.

    An open request (a worker's run of it that crashed) is left to its worker, which
    counts the attempt against STATEHOUSE_RESUME_MAX_ATTEMPTS. An agent with an
    in-doubt `review` step is not queued: it waits for an operator's decision.
    """
    settings = get_settings()
    if not (settings.auto_resume or agent.auto_resume):
        return False
    if not resolve_entry_point(agent, settings) or agent.state in Agent.TERMINAL_STATES:
        return False
    if ResumeRequest.objects.open().filter(agent=agent).exists():
        return False
    doubt = doubtful_steps([agent.pk])
    if agent.pk in doubt.review:
        logger.info("not resuming %s automatically: %s", agent, doubt.review[agent.pk])
        return False
    _queue(
        agents=[(agent.pk, agent.namespace, agent.agent_id, Agent.Status.INTERRUPTED.value)],
        source=ResumeSource.AUTO,
        requested_by="crash detector",
        reason="its process died (liveness handle freed); automatic resume",
        skip=doubt.skip,
    )
    return True


def _queue(
    *,
    agents: list[AgentRow],
    source: ResumeSource,
    requested_by: str,
    reason: str,
    skip: dict[int, list[Step]],
) -> list[ResumeRequest]:
    """Queue requests for `agents` (pk, namespace, agent_id, status) and audit each;
    first write their in-doubt `skip` steps done (`skip`, by agent pk)."""
    if not agents:
        return []
    skipped = {
        pk: skip_steps(namespace=namespace, agent_id=agent_id, steps=skip.get(pk, []))
        for pk, namespace, agent_id, _status in agents
    }
    agent_pks = [row[0] for row in agents]
    now = sql.db_now()  # the database's clock, as every other write (claims compare with it)
    requests = ResumeRequest.objects.bulk_create(
        [
            ResumeRequest(
                agent_id=pk,
                source=source,
                requested_by=requested_by,
                requested_at=now,
                run_after=now,
            )
            for pk in agent_pks
        ]
    )
    queued = Agent.objects.filter(pk__in=agent_pks)
    fields = {"state": Agent.State.RESUMING, "error": "", **Agent.NO_LEASE}
    # A resumable agent with a holder recorded is one whose lease ran out: count them as
    # they are cleared (docs/metrics.md).
    lapsed = queued.exclude(lease_owner="").update(**fields)
    queued.filter(lease_owner="").update(**fields)
    metrics.record_lease_expiry(lapsed)
    record_actions(
        actor=requested_by or source,
        action=OperatorAction.Action.RESUME,
        reason=reason,
        rows=[
            ActionRecord.status_change(
                row,
                Agent.Status.RESUMING.value,
                {
                    "source": source,
                    "request": request.pk,
                    **({"skipped_steps": skipped[row[0]]} if skipped[row[0]] else {}),
                },
            )
            for row, request in zip(agents, requests, strict=True)
        ],
    )
    return requests


# --- claiming and settling ------------------------------------------------------------------


def claim_next(*, worker: WorkerIdentity, lease_seconds: float) -> Claim | None:
    """Claim the next due request, or return None when none is due.

    Row locks with SKIP LOCKED let many workers on many hosts claim concurrently on
    PostgreSQL; on SQLite the write lock serializes claims.
    """
    settings = get_settings()
    while True:
        outcome = run_atomic(
            lambda: _claim_one(worker=worker, lease_seconds=lease_seconds, settings=settings),
            what="resume claim",
        )
        if outcome is not _SKIPPED:
            return outcome  # type: ignore[return-value]  # the sentinel was ruled out above


_SKIPPED = object()


def _claim_one(
    *, worker: WorkerIdentity, lease_seconds: float, settings: StatehouseSettings
) -> Claim | object | None:
    request = (
        ResumeRequest.objects.due()
        .select_for_update(skip_locked=True)
        .order_by("run_after", "id")
        .first()
    )
    if request is None:
        return None
    agent = Agent.objects.select_for_update().annotate(db_now=Now()).get(pk=request.agent_id)
    now = sql.to_datetime(agent.db_now)
    if agent.state in (Agent.State.COMPLETED, Agent.State.CANCELLED):
        done = "had already completed" if agent.state == Agent.State.COMPLETED else "was cancelled"
        _close(request, ResumeRequest.Status.CANCELLED, now, f"the agent {done}")
        return _SKIPPED
    if agent.state == Agent.State.PAUSED:
        # Not run while paused (docs/operations.md): looked at again a lease later.
        request.run_after = now + timedelta(seconds=lease_seconds)
        request.save(update_fields=["run_after"])
        return _SKIPPED
    if agent.lease_owner and agent.lease_is_live(now):
        # A live process runs the agent: it is not interrupted, so nothing to resume.
        _close(
            request,
            ResumeRequest.Status.CANCELLED,
            now,
            f"the agent is running on {agent.lease_host} pid {agent.lease_pid}",
        )
        if agent.state == Agent.State.RESUMING:
            Agent.objects.filter(pk=agent.pk).update(state=Agent.State.ACTIVE)
        return _SKIPPED

    # A run resumed before may have stopped at a new in-doubt step (docs/operations.md,
    # "In-doubt steps"): a review step ends the request until an operator decides it, and
    # skip steps are written done before the agent runs again.
    doubt = doubtful_steps([agent.pk])
    if agent.pk in doubt.review:
        refusal = review_required(
            doubt.review[agent.pk], namespace=agent.namespace, agent_id=agent.agent_id
        )
        _close(request, ResumeRequest.Status.CANCELLED, now, str(refusal))
        Agent.objects.filter(pk=agent.pk).update(state=Agent.State.ACTIVE, finished_at=None)
        return _SKIPPED
    skip_steps(
        namespace=agent.namespace, agent_id=agent.agent_id, steps=doubt.skip.get(agent.pk, [])
    )
    if agent.lease_owner:  # its holder let the lease run out: it crashed or was cut off
        metrics.record_lease_expiry()
    expires = now + timedelta(seconds=lease_seconds)
    token = uuid.uuid4().hex
    request.status = ResumeRequest.Status.CLAIMED
    request.claimed_by = worker.name
    request.claim_expires_at = expires
    request.attempts += 1
    request.save(update_fields=["status", "claimed_by", "claim_expires_at", "attempts"])
    entry_point = resolve_entry_point(agent, settings)
    attempt = ResumeAttempt.objects.create(
        request=request,
        agent=agent,
        number=request.attempts,
        requested_by=request.requested_by,
        worker=worker.name,
        host=worker.host,
        entry_point=entry_point,
        started_at=now,
    )
    Agent.objects.filter(pk=agent.pk).update(
        state=Agent.State.RESUMING,
        lease_epoch=F("lease_epoch") + 1,  # fences off the run that crashed, should it wake
        lease_owner=token,
        lease_host=worker.host,
        lease_pid=worker.pid,
        lease_expires_at=expires,
        lease_watch="",  # the crashed holder's handle is free: not this claim's
    )
    return Claim.of(request, attempt, agent, token)


def cancelled_claims(claims: Sequence[Claim]) -> set[int]:
    """The request ids among `claims` whose agent an operator has cancelled (one query)."""
    if not claims:
        return set()
    by_agent = {c.agent_pk: c.request_pk for c in claims}
    cancelled = Agent.objects.filter(pk__in=by_agent, state=Agent.State.CANCELLED)
    return {by_agent[pk] for pk in cancelled.values_list("pk", flat=True)}


def record_pid(*, claim: Claim, pid: int) -> None:
    run_atomic(
        lambda: ResumeAttempt.objects.filter(pk=claim.attempt_pk).update(pid=pid),
        what="recording the resume process",
    )


def renew_claims(*, claims: Sequence[Claim], lease_seconds: float) -> None:
    """Extend the claims and the agents' leases of the runs a worker supervises."""
    if not claims:
        return
    expires = Now() + timedelta(seconds=lease_seconds)

    def renew() -> None:
        ResumeRequest.objects.filter(
            pk__in=[c.request_pk for c in claims], status=ResumeRequest.Status.CLAIMED
        ).update(claim_expires_at=expires)
        Agent.objects.filter(lease_owner__in=[c.lease_token for c in claims]).update(
            lease_expires_at=expires
        )

    run_atomic(renew, what="claim renewal")


def settle(
    *,
    claim: Claim,
    exit_code: int | None,
    error: str = "",
    outcome: str | None = None,
    retry: bool = True,
) -> str:
    """Record how a run ended and decide the request's fate; return the attempt's outcome."""
    return run_atomic(
        lambda: _settle(
            claim=claim,
            exit_code=exit_code,
            error=error,
            forced=outcome,
            retry=retry,
        ),
        what="settling a resume",
    )


def _settle(
    *, claim: Claim, exit_code: int | None, error: str, forced: str | None, retry: bool
) -> str:
    settings = get_settings()
    agent = Agent.objects.select_for_update().annotate(db_now=Now()).get(pk=claim.agent_pk)
    request = ResumeRequest.objects.select_for_update().get(pk=claim.request_pk)
    now = sql.to_datetime(agent.db_now)
    Outcome = ResumeAttempt.Outcome
    # Settle each run once, and only while its request is still this run's claim. A run
    # may be reported twice (two workers recovering the same abandoned claim; a worker
    # whose claim lapsed and was recovered, reaping its run late): a stale report must not
    # requeue, close or re-lease a request another worker has claimed since, nor rewrite
    # the attempt's recorded outcome. The agent row lock above orders the reports.
    recorded = (
        ResumeAttempt.objects.filter(pk=claim.attempt_pk).values_list("outcome", flat=True).first()
    )
    stale = claim.attempt_pk and recorded != Outcome.RUNNING
    if request.status != ResumeRequest.Status.CLAIMED or stale:
        return str(recorded or forced or Outcome.LOST)
    agent_fields: dict[str, object] = {}
    outcome: str
    # A lost worker's child may still run (and renew the lease): then keep its lease, so
    # that the next claim sees the agent running instead of starting a second copy.
    orphan_alive = forced == Outcome.LOST and agent.lease_is_live(now)
    if agent.lease_owner == claim.lease_token and not orphan_alive:
        agent_fields.update(Agent.NO_LEASE)

    if agent.state == Agent.State.CANCELLED:
        # An operator cancelled the agent; its worker stopped the run (docs/contract.md §7).
        outcome = Outcome.CANCELLED
        error = error or "the agent was cancelled"
        _close(request, ResumeRequest.Status.CANCELLED, now, error)
    elif agent.state == Agent.State.COMPLETED:
        # The agent finished (even if its worker was lost, or the run was stopped after
        # writing its answer): a success, with no error beside it.
        outcome = Outcome.SUCCEEDED
        error = ""
        _close(request, ResumeRequest.Status.SUCCEEDED, now)
    elif agent.state == Agent.State.FAILED:
        outcome = Outcome.FAILED
        error = error or agent.error
        _close(request, ResumeRequest.Status.FAILED, now, error)
    elif forced == Outcome.SHUTDOWN and request.attempts < settings.resume_max_attempts:
        outcome = Outcome.SHUTDOWN
        # Counted (a run that stops every worker it meets must end), and queued again at
        # once for the next worker: the stop was not the agent's doing.
        _requeue(request, now, error)
        agent_fields["state"] = Agent.State.RESUMING
    elif exit_code == 0 and forced is None:
        outcome = Outcome.STOPPED
        _close(request, ResumeRequest.Status.STOPPED, now, "the entry point returned early")
        agent_fields["state"] = Agent.State.ACTIVE
    else:
        outcome = forced or (
            Outcome.CRASHED if exit_code is None or exit_code < 0 else Outcome.FAILED
        )
        if retry and request.attempts < settings.resume_max_attempts:
            backoff = settings.resume_backoff_seconds * 2 ** (request.attempts - 1)
            _requeue(request, now + timedelta(seconds=backoff), error)
            agent_fields["state"] = Agent.State.RESUMING
        else:
            _close(request, ResumeRequest.Status.FAILED, now, error)
            agent_fields.update(
                state=Agent.State.FAILED,
                finished_at=now,
                error=f"resume failed after {request.attempts} attempt(s): {error}".strip(),
            )
    if agent_fields:
        Agent.objects.filter(pk=agent.pk).update(**agent_fields)
    ResumeAttempt.objects.filter(pk=claim.attempt_pk).update(
        ended_at=now, outcome=outcome, exit_code=exit_code, error=error[-10_000:]
    )
    return str(outcome)


# A claim whose worker is alive on this host is late (its renewal is queued behind other
# writers, as on a busy SQLite file), not lost: it is recovered only once this many leases
# overdue (docs/operations.md).
LATE_CLAIM_LEASES = 10


def _worker_alive_here(worker_name: str) -> bool:
    """Whether the worker named "host:pid:…" (WorkerIdentity.name) runs on this host."""
    host, _, rest = worker_name.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_abandoned(*, lease_seconds: float | None = None) -> int:
    """Settle the runs of workers that stopped renewing their claims; return how many.

    A claim that expired while its worker is alive on this host is only late: it is left
    alone (and logged) until LATE_CLAIM_LEASES leases overdue.
    """
    recovered = 0
    late_after = timedelta(
        seconds=LATE_CLAIM_LEASES * (lease_seconds or get_settings().lease_seconds)
    )
    now = sql.db_now()
    for request in ResumeRequest.objects.abandoned().select_related("agent")[:100]:
        expired = request.claim_expires_at
        overdue = now - expired if expired else late_after
        if overdue < late_after and _worker_alive_here(request.claimed_by):
            logger.warning(
                "the claim of %s by %s is %.1f s late; its worker is alive: not recovered",
                request.agent,
                request.claimed_by,
                overdue.total_seconds(),
            )
            continue
        attempt = request.runs.filter(outcome=ResumeAttempt.Outcome.RUNNING).first()
        claim = Claim.of(request, attempt, request.agent, request.agent.lease_owner)
        still_abandoned = run_atomic(
            lambda request=request: (  # type: ignore[misc]  # a lambda with a default
                ResumeRequest.objects.abandoned().select_for_update().filter(pk=request.pk).exists()
            ),
            what="resume recovery",
        )
        if not still_abandoned:
            continue
        settle(
            claim=claim,
            exit_code=None,
            error=f"worker {request.claimed_by} stopped renewing its claim (crashed or killed)",
            outcome=ResumeAttempt.Outcome.LOST,
        )
        logger.warning("recovered abandoned resume of %s", request.agent)
        recovered += 1
    return recovered


def _requeue(request: ResumeRequest, run_after: datetime, error: str = "") -> None:
    request.status = ResumeRequest.Status.QUEUED
    request.run_after = run_after
    request.claimed_by = ""
    request.claim_expires_at = None
    request.last_error = error
    request.save(
        update_fields=[
            "status",
            "run_after",
            "claimed_by",
            "claim_expires_at",
            "last_error",
            "attempts",
        ]
    )


def _close(request: ResumeRequest, status: str, now: datetime, error: str = "") -> None:
    request.status = status
    request.finished_at = now
    request.claim_expires_at = None
    request.last_error = error
    request.save(update_fields=["status", "finished_at", "claim_expires_at", "last_error"])
