"""The resume worker: claims resume requests and runs each agent in a supervised process.

`python manage.py resume_worker` wires this class to the command line; tests drive it
directly. Several workers on several hosts may share one PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from django.db import connection
from statehouse_agents.conf import get_settings
from statehouse_agents.launch import RunProcess, start_run
from statehouse_agents.models import ResumeAttempt, ResumeRequest
from statehouse_agents.resume_runner import EXIT_BAD_ENTRY_POINT
from statehouse_agents.store import liveness, resume
from statehouse_agents.store.resume import Claim, WorkerIdentity

from statehouse.errors import StatehouseError

logger = logging.getLogger("statehouse.worker")

_OUTPUT_TAIL = 4000


@dataclass
class Run:
    claim: Claim
    process: RunProcess
    output: IO[bytes]
    time_limit: float
    started: float = field(default_factory=time.monotonic)
    timed_out: bool = False
    cancelled: bool = False

    @property
    def deadline(self) -> float:
        return self.started + self.time_limit


class ResumeWorker:
    """Claim due resume requests and supervise one process per agent.

    `once=True` drains what is queued (retries waiting for their back-off included) and
    returns. `stop()` (SIGTERM, SIGINT) stops claiming, ends the runs and requeues them
    (each counts as an attempt). A run longer than its time limit
    (STATEHOUSE_RESUME_TIMEOUT_SECONDS, or its entry point's own in
    STATEHOUSE_RESUME_TIMEOUTS) is killed and recorded as timed out (docs/operations.md).
    Every STATEHOUSE_DETECT_INTERVAL it also ends the leases of agents whose holder died
    (`liveness.expire_dead_holders`), queuing their automatic resumes (`detect=False`:
    not this worker).
    """

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        once: bool = False,
        poll_interval: float = 1.0,
        lease_seconds: float | None = None,
        shutdown_grace: float = 10.0,
        log: Callable[[str], None] | None = None,
        detect: bool = True,
    ) -> None:
        settings = self.settings = get_settings()
        self.concurrency = concurrency or settings.worker_concurrency
        self.once = once
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds or settings.lease_seconds
        self.shutdown_grace = shutdown_grace
        self.log = log or (lambda message: logger.info("%s", message))
        host = socket.gethostname()
        self.identity = WorkerIdentity(
            name=f"{host}:{os.getpid()}:{uuid.uuid4().hex[:6]}", host=host, pid=os.getpid()
        )
        self.runs: dict[int, Run] = {}
        self.outcomes: list[tuple[str, str]] = []
        self._stopping = threading.Event()
        self._last_renewal = 0.0
        self._last_recovery = 0.0
        self._last_retention: float | None = None
        self._retention: threading.Thread | None = None
        self.detect = detect
        self.detect_interval = settings.detect_interval
        self._last_detection = 0.0
        self.detected = 0  # leases ended because their holder died
        self._last_cancel_check = 0.0

    # --- control ---

    def stop(self, *_args: object) -> None:
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> list[tuple[str, str]]:
        """Work until stopped (or, with `once`, until nothing is queued); return outcomes."""
        self.log(f"worker {self.identity.name} started (concurrency {self.concurrency})")
        try:
            while not self._stopping.is_set():
                self.tick()
                if self.once and not self.runs and not ResumeRequest.objects.queued().exists():
                    break
                self._stopping.wait(self._pause())
        finally:
            self._shutdown()
            self.wait_for_retention()
            connection.close()
        return self.outcomes

    def _pause(self) -> float:
        """Seconds to wait before the next round.

        While runs are supervised, never longer than a third of the lease: `tick` renews
        the claims, and a claim left to lapse (a poll interval longer than the lease) is
        recovered as lost by another worker while its run is still alive.
        """
        pause = self.poll_interval if not self.once else min(self.poll_interval, 0.2)
        if self.detect:
            next_detection = self._last_detection + self.detect_interval - time.monotonic()
            pause = max(0.01, min(pause, next_detection))
        if not self.runs:
            return pause
        next_deadline = min(run.deadline for run in self.runs.values()) - time.monotonic()
        return max(0.01, min(pause, self.lease_seconds / 3, next_deadline))

    def tick(self) -> None:
        """One round: settle finished runs, renew claims, recover lost ones, start new runs."""
        try:
            self._enforce_time_limits()
            self._stop_cancelled()
            self._reap()
            self._renew()
            self._recover()
            self._retain()
            self._detect()
            while len(self.runs) < self.concurrency and not self._stopping.is_set():
                claim = resume.claim_next(worker=self.identity, lease_seconds=self.lease_seconds)
                if claim is None:
                    break
                self._start(claim)
        except StatehouseError as exc:
            # A database outage must not kill the worker: its claims expire and are recovered.
            logger.error("worker round failed: %s", exc)
            connection.close()

    # --- runs ---

    def _start(self, claim: Claim) -> None:
        if not claim.entry_point:
            self._settle(
                claim,
                exit_code=None,
                error=(
                    f"no resume entry point for agent {claim.agent_id!r}: register one with "
                    "client.register_resume(agent_id, 'package.module:function') or "
                    "STATEHOUSE_RESUME_ENTRY_POINTS"
                ),
                outcome=ResumeAttempt.Outcome.FAILED,
                retry=False,
            )
            return
        output = tempfile.TemporaryFile(prefix="statehouse-run-")  # noqa: SIM115 (kept open while the run lives)
        try:
            process = start_run(claim, output)
        except OSError as exc:
            output.close()
            self._settle(claim, exit_code=None, error=f"cannot start the run: {exc}")
            return
        time_limit = self.settings.timeout_for(claim.entry_point)
        self.runs[claim.request_pk] = Run(
            claim=claim, process=process, output=output, time_limit=time_limit
        )
        resume.record_pid(claim=claim, pid=process.pid)
        self.log(
            f"resuming {claim.agent_id} (attempt {claim.attempt}) with {claim.entry_point} "
            f"in pid {process.pid}"
        )

    def _enforce_time_limits(self) -> None:
        """Kill the runs past their time limit; `_reap` records them as timed out."""
        now = time.monotonic()
        for run in self.runs.values():
            if not run.timed_out and now >= run.deadline:
                run.timed_out = True
                self.log(
                    f"{run.claim.agent_id}: attempt {run.claim.attempt} ran longer than "
                    f"{run.time_limit:g} s; killing pid {run.process.pid}"
                )
                _signal(run.process, signal.SIGKILL)

    def _stop_cancelled(self) -> None:
        """Kill the runs of agents an operator cancelled; `_reap` records them."""
        now = time.monotonic()
        if not self.runs or now - self._last_cancel_check < min(1.0, self.lease_seconds / 3):
            return
        self._last_cancel_check = now
        for request_pk in resume.cancelled_claims([run.claim for run in self.runs.values()]):
            run = self.runs[request_pk]
            if not run.cancelled:
                run.cancelled = True
                self.log(f"{run.claim.agent_id}: cancelled; killing pid {run.process.pid}")
                _signal(run.process, signal.SIGKILL)

    def _reap(self) -> None:
        for request_pk, run in list(self.runs.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.runs[request_pk]
            tail = _tail(run.output)
            if run.cancelled:
                self._settle(
                    run.claim,
                    exit_code=code,
                    error="the agent was cancelled by an operator",
                    outcome=ResumeAttempt.Outcome.CANCELLED,
                    retry=False,
                )
                continue
            if run.timed_out:
                error = (
                    f"timed out: ran longer than its time limit of {run.time_limit:g} s "
                    "(STATEHOUSE_RESUME_TIMEOUT_SECONDS) and was killed"
                ) + (f"\n{tail}" if tail else "")
                self._settle(
                    run.claim, exit_code=code, error=error, outcome=ResumeAttempt.Outcome.TIMED_OUT
                )
                continue
            error = "" if code == 0 else (tail or f"exited with status {code}")
            if code < 0:
                error = f"killed by signal {-code}" + (f"\n{tail}" if tail else "")
            self._settle(run.claim, exit_code=code, error=error, retry=code != EXIT_BAD_ENTRY_POINT)

    def _settle(self, claim: Claim, **kwargs: object) -> None:
        outcome = resume.settle(claim=claim, **kwargs)  # type: ignore[arg-type]  # the kwargs come from the run's report, checked by settle
        self.outcomes.append((claim.agent_id, outcome))
        self.log(f"{claim.agent_id}: attempt {claim.attempt} {outcome}")

    def _renew(self) -> None:
        now = time.monotonic()
        if self.runs and now - self._last_renewal >= self.lease_seconds / 3:
            resume.renew_claims(
                claims=[run.claim for run in self.runs.values()], lease_seconds=self.lease_seconds
            )
            self._last_renewal = now

    def _recover(self) -> None:
        now = time.monotonic()
        if now - self._last_recovery >= self.lease_seconds / 2:
            self._last_recovery = now
            recovered = resume.recover_abandoned(lease_seconds=self.lease_seconds)
            if recovered:
                self.log(f"recovered {recovered} resume(s) abandoned by a lost worker")

    def _retain(self) -> None:
        """Apply the retention policy every STATEHOUSE_RETENTION_INTERVAL_SECONDS (docs/
        retention.md), on a thread of its own: its batches never hold up the renewal of
        the claims this loop supervises. Several workers may prune at once: each batch
        deletes what is still there."""
        interval = self.settings.retention_interval_seconds
        policy = (self.settings.retention_finished_days, self.settings.retention_drop_days)
        if interval <= 0 or policy == (None, None):
            return
        now = time.monotonic()
        if self._retention is not None and self._retention.is_alive():
            return
        if self._last_retention is not None and now - self._last_retention < interval:
            return
        self._last_retention = now
        self._retention = threading.Thread(
            target=self._apply_retention, name="statehouse-retention", daemon=True
        )
        self._retention.start()

    def _apply_retention(self) -> None:
        from statehouse_agents.store.lifecycle import prune_by_policy

        try:
            report = prune_by_policy()
            if report is not None and (report.agents or report.versions):
                self.log(
                    f"retention: deleted {report.agents} finished agent(s), "
                    f"{report.versions} old version(s), {report.commits} empty commit(s)"
                )
        except StatehouseError as exc:
            logger.error("retention failed: %s", exc)
        finally:
            connection.close()

    def wait_for_retention(self, timeout: float = 60.0) -> None:
        """Wait for a retention pass under way (tests, and a clean shutdown)."""
        if self._retention is not None:
            self._retention.join(timeout)

    def _detect(self) -> None:
        now = time.monotonic()
        if self.detect and now - self._last_detection >= self.detect_interval:
            self._last_detection = now
            for detection in liveness.expire_dead_holders():
                self.detected += 1
                self.log(
                    f"{detection.agent_id}: its process {detection.host} pid {detection.pid} "
                    "died; interrupted" + (", resume queued" if detection.resume_queued else "")
                )

    def _shutdown(self) -> None:
        if not self.runs:
            return
        self.log(f"stopping {len(self.runs)} run(s)")
        for run in self.runs.values():
            _signal(run.process, signal.SIGTERM)
        deadline = time.monotonic() + self.shutdown_grace
        for run in self.runs.values():
            try:
                run.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(run.process, signal.SIGKILL)
                run.process.wait()
        for run in list(self.runs.values()):
            try:
                self._settle(
                    run.claim,
                    exit_code=run.process.returncode,
                    error="the worker shut down",
                    outcome=ResumeAttempt.Outcome.SHUTDOWN,
                )
            except StatehouseError as exc:  # its claim expires and another worker recovers it
                logger.error("could not requeue %s: %s", run.claim.agent_id, exc)
            run.output.close()
        self.runs.clear()


def _signal(process: RunProcess, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)


def _tail(output: IO[bytes]) -> str:
    try:
        output.seek(0, os.SEEK_END)
        size = output.tell()
        output.seek(max(0, size - _OUTPUT_TAIL))
        return output.read().decode("utf-8", "replace").strip()
    finally:
        output.close()
