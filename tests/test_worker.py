"""The resume worker (docs/contract.md §4): supervised runs, outcomes, retries, crashes, shutdown.

In-process workers (`ResumeWorker(...).run()`) read settings in this process and start
children that inherit os.environ, so both are pointed at the test database with short
leases. Worker subprocesses (`manage.py resume_worker`) get `subprocess_env`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from statehouse_agents.models import Agent, ResumeAttempt, ResumeRequest
from statehouse_agents.store.reads import agent_status
from statehouse_agents.store.resume import recover_abandoned, request_resume
from statehouse_agents.worker import ResumeWorker

from statehouse import Statehouse
from statehouse.errors import NotResumableError
from tests.agents_for_tests import ENTRY, read_lines
from tests.factories import wait_until

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 1
Outcome = ResumeAttempt.Outcome


@pytest.fixture
def worker_env(statehouse_knobs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Short leases, two attempts, no back-off: for this process and every child."""
    return statehouse_knobs(
        STATEHOUSE_LEASE_SECONDS=LEASE_SECONDS,
        STATEHOUSE_RESUME_BACKOFF_SECONDS=0,
        STATEHOUSE_RESUME_MAX_ATTEMPTS=2,
    )


def make_interrupted(
    agent_id: str, entry_point: str | None = None, task: dict[str, Any] | None = None
) -> Agent:
    """An agent whose process wrote its task and a pending step, then stopped."""
    with Statehouse() as client:
        client.start(agent_id, task or {"task": f"work of {agent_id}"})
        if entry_point:
            client.register_resume(agent_id, entry_point)
    agent = Agent.objects.get(agent_id=agent_id)
    assert status(agent_id) == "interrupted"
    return agent


def status(agent_id: str) -> str | None:
    return agent_status("default", agent_id)


def queue(agent_id: str) -> ResumeRequest:
    request, created = request_resume(
        namespace="default", agent_id=agent_id, source="command", requested_by="tester"
    )
    assert created
    return request


def run_worker(**options: Any) -> list[tuple[str, str]]:
    options.setdefault("once", True)
    options.setdefault("poll_interval", 0.1)
    return ResumeWorker(**options).run()


def attempts(agent_id: str) -> list[ResumeAttempt]:
    return list(ResumeAttempt.objects.filter(agent__agent_id=agent_id).order_by("number", "pk"))


def start_worker_process(env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "resume_worker", "--poll-interval", "0.1", *extra],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed at the end whatever happened."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return True
    return state in "ZX"


# --- runs and their outcomes ---------------------------------------------------------------


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_worker_runs_the_registered_entry_point_to_completion(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    monkeypatch.setenv("STATEHOUSE_WORKER_START", start)  # forked from the worker, or new
    make_interrupted("a1", f"{ENTRY}:complete")
    request = queue("a1")
    assert status("a1") == "resuming"

    assert run_worker() == [("a1", Outcome.SUCCEEDED)]

    agent = Agent.objects.get(agent_id="a1")
    assert status("a1") == "completed"
    assert (agent.lease_owner, agent.lease_expires_at) == ("", None)
    request.refresh_from_db()
    assert (request.status, request.attempts) == ("succeeded", 1)
    [attempt] = attempts("a1")
    assert request.claimed_by == attempt.worker
    assert attempt.outcome == Outcome.SUCCEEDED
    assert (attempt.exit_code, attempt.error, attempt.number) == (0, "", 1)
    assert attempt.entry_point == f"{ENTRY}:complete"
    assert attempt.requested_by == "tester"
    assert attempt.pid and attempt.pid != os.getpid()
    assert attempt.worker and attempt.host and attempt.ended_at
    with Statehouse() as client:
        assert client.get_state("a1", "answer").value == {"done": True}


def test_entry_point_from_settings_pattern_is_used(
    worker_env: dict[str, str],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.STATEHOUSE_RESUME_ENTRY_POINTS = [f"report-*={ENTRY}:complete"]
    make_interrupted("report-7")
    queue("report-7")

    assert run_worker() == [("report-7", Outcome.SUCCEEDED)]
    assert attempts("report-7")[0].entry_point == f"{ENTRY}:complete"


def test_entry_point_returning_early_is_stopped_and_the_agent_interrupted(
    worker_env: dict[str, str],
) -> None:
    make_interrupted("a1", f"{ENTRY}:returns_early")
    request = queue("a1")

    assert run_worker() == [("a1", Outcome.STOPPED)]

    request.refresh_from_db()
    assert request.status == ResumeRequest.Status.STOPPED
    assert status("a1") == "interrupted"
    # It can be resumed again.
    assert queue("a1").pk != request.pk


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_entry_point_that_raises_is_retried_then_the_agent_failed(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, start: str
) -> None:
    monkeypatch.setenv("STATEHOUSE_WORKER_START", start)  # its traceback is recorded either way
    make_interrupted("a1", f"{ENTRY}:raises")
    request = queue("a1")

    assert run_worker() == [("a1", Outcome.FAILED), ("a1", Outcome.FAILED)]

    tried = attempts("a1")
    assert [(a.number, a.outcome, a.exit_code) for a in tried] == [
        (1, Outcome.FAILED, 1),
        (2, Outcome.FAILED, 1),
    ]
    for attempt in tried:
        assert "RuntimeError: boom from a1" in attempt.error
    request.refresh_from_db()
    assert (request.status, request.attempts) == (ResumeRequest.Status.FAILED, 2)
    assert "boom from a1" in request.last_error
    agent = Agent.objects.get(agent_id="a1")
    assert status("a1") == "failed"
    assert agent.error.startswith("resume failed after 2 attempt(s)")
    assert "boom from a1" in agent.error
    assert agent.lease_owner == ""


def test_retries_wait_for_their_back_off(
    worker_env: dict[str, str],
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.STATEHOUSE_RESUME_BACKOFF_SECONDS = 1.0
    make_interrupted("a1", f"{ENTRY}:raises")
    queue("a1")

    run_worker()

    first, second = attempts("a1")
    assert second.started_at - first.ended_at >= timedelta(seconds=0.9)


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("no_such_module_xyz:resume", "cannot import module 'no_such_module_xyz'"),
        (f"{ENTRY}:no_such_function", f"module '{ENTRY}' has no attribute 'no_such_function'"),
        (f"{ENTRY}:wrong_signature", "cannot be called as function(client, agent_id)"),
        (f"{ENTRY}:not_callable", "is not callable"),
    ],
)
def test_bad_entry_point_is_recorded_not_retried_and_the_worker_survives(
    worker_env: dict[str, str], entry_point: str, message: str
) -> None:
    make_interrupted("bad", entry_point)
    make_interrupted("good", f"{ENTRY}:complete")
    queue("bad")
    queue("good")

    outcomes = run_worker(concurrency=1)

    assert sorted(outcomes) == [("bad", Outcome.FAILED), ("good", Outcome.SUCCEEDED)]
    [attempt] = attempts("bad")
    assert attempt.exit_code == 3
    assert "bad resume entry point" in attempt.error
    assert message in attempt.error
    assert "Traceback" not in attempt.error
    agent = Agent.objects.get(agent_id="bad")
    assert status("bad") == "failed"
    assert message in agent.error


def test_agent_without_entry_point_fails_with_a_clear_error(worker_env: dict[str, str]) -> None:
    make_interrupted("orphan")
    queue("orphan")

    assert run_worker() == [("orphan", Outcome.FAILED)]

    [attempt] = attempts("orphan")
    assert attempt.pid is None
    assert "no resume entry point for agent 'orphan'" in attempt.error
    assert "register_resume" in attempt.error
    assert "no resume entry point" in Agent.objects.get(agent_id="orphan").error
    assert status("orphan") == "failed"


# --- crashes ------------------------------------------------------------------------------


def test_resumed_process_killed_part_way_is_recorded_crashed_and_retried(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "crashed"
    make_interrupted("a1", f"{ENTRY}:crash_once", {"task": "t", "marker": str(marker)})
    queue("a1")

    assert run_worker() == [("a1", Outcome.CRASHED), ("a1", Outcome.SUCCEEDED)]

    crashed, succeeded = attempts("a1")
    assert crashed.exit_code == -signal.SIGKILL
    assert crashed.error.startswith(f"killed by signal {int(signal.SIGKILL)}")
    assert succeeded.exit_code == 0
    assert read_lines(marker)[0] == f"crash {crashed.pid}"
    assert status("a1") == "completed"
    with Statehouse() as client:
        history = [
            op.value["status"]
            for event in client.replay("a1")
            for op in event.operations
            if op.key == "step:0"
        ]
    assert history == ["pending", "pending", "done"]


def test_worker_killed_part_way_leaves_the_agent_interrupted_then_another_finishes_it(
    worker_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    marker = tmp_path / "hung"
    make_interrupted("a1", f"{ENTRY}:hang_once", {"task": "t", "marker": str(marker)})
    queue("a1")
    worker = start_worker_process(worker_env)
    processes.append(worker)
    line = wait_until(lambda: read_lines(marker), timeout=60, what="the resumed run")[0]
    child = int(line.split()[1])
    assert status("a1") == "running"

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    wait_until(lambda: pid_gone(child), timeout=10, what="the run to die with its worker")
    killed_at = time.monotonic()
    wait_until(lambda: status("a1") == "interrupted", timeout=LEASE_SECONDS + 10)
    assert time.monotonic() - killed_at <= LEASE_SECONDS + 2
    for _ in range(3):  # and it stays so: never stuck as resuming
        assert status("a1") == "interrupted"
        time.sleep(LEASE_SECONDS / 2)

    # Another worker recovers the abandoned claim and finishes the agent.
    wait_until(lambda: ResumeRequest.objects.abandoned().exists(), timeout=10)
    assert run_worker() == [("a1", Outcome.SUCCEEDED)]
    lost, succeeded = attempts("a1")
    assert lost.outcome == Outcome.LOST
    assert "stopped renewing its claim" in lost.error
    assert succeeded.exit_code == 0
    assert status("a1") == "completed"


def test_sigterm_stops_the_worker_cleanly_and_requeues_its_run(
    worker_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    marker = tmp_path / "hung"
    make_interrupted("a1", f"{ENTRY}:hang_once", {"task": "t", "marker": str(marker)})
    request = queue("a1")
    worker = start_worker_process(worker_env)
    processes.append(worker)
    line = wait_until(lambda: read_lines(marker), timeout=60, what="the resumed run")[0]
    child = int(line.split()[1])

    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0, out
    assert "worker stopped: 1 shutdown" in out
    assert pid_gone(child)
    [attempt] = attempts("a1")
    assert (attempt.outcome, attempt.error) == (Outcome.SHUTDOWN, "the worker shut down")
    request.refresh_from_db()
    # The interrupted run counts as an attempt; the request is queued again at once.
    assert (request.status, request.attempts) == (ResumeRequest.Status.QUEUED, 1)
    agent = Agent.objects.get(agent_id="a1")
    assert (agent.state, agent.lease_owner) == (Agent.State.RESUMING, "")
    assert status("a1") == "resuming"

    assert run_worker() == [("a1", Outcome.SUCCEEDED)]
    assert status("a1") == "completed"
    assert [a.number for a in attempts("a1")] == [1, 2]


def test_a_run_stopped_by_sigterm_at_its_last_attempt_fails_the_agent(
    worker_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """A run that every worker is stopped in (a deploy loop, an OOM-killed host) must end."""
    env = {**worker_env, "STATEHOUSE_RESUME_MAX_ATTEMPTS": "1"}
    marker = tmp_path / "hung"
    make_interrupted("a1", f"{ENTRY}:hangs", {"task": "t", "marker": str(marker)})
    request = queue("a1")
    worker = start_worker_process(env)
    processes.append(worker)
    wait_until(lambda: read_lines(marker), timeout=60, what="the resumed run")

    worker.send_signal(signal.SIGTERM)
    out, _ = worker.communicate(timeout=30)

    assert worker.returncode == 0, out
    request.refresh_from_db()
    assert (request.status, request.attempts) == (ResumeRequest.Status.FAILED, 1)
    assert status("a1") == "failed"
    assert Agent.objects.get(agent_id="a1").error == (
        "resume failed after 1 attempt(s): the worker shut down"
    )


# --- time limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["fork", "spawn"])
@pytest.mark.parametrize("limit", ["default", "per entry point"])
def test_a_run_that_never_returns_is_killed_at_its_time_limit_and_counted(
    worker_env: dict[str, str],
    tmp_path: Path,
    processes: list[subprocess.Popen[str]],
    start: str,
    limit: str,
) -> None:
    knobs = (
        {"STATEHOUSE_RESUME_TIMEOUT_SECONDS": "3"}  # a spawned run starts in about 1 s
        if limit == "default"
        else {
            "STATEHOUSE_RESUME_TIMEOUT_SECONDS": "600",
            "STATEHOUSE_RESUME_TIMEOUTS": f"{ENTRY}:hangs=3",
        }
    )
    env = {**worker_env, **knobs, "STATEHOUSE_WORKER_START": start}
    marker = tmp_path / "hung"
    make_interrupted("a1", f"{ENTRY}:hangs", {"task": "t", "marker": str(marker)})
    request = queue("a1")

    worker = start_worker_process(env, "--once")
    processes.append(worker)
    out, _ = worker.communicate(timeout=90)  # `--once` returns: nothing runs forever

    assert worker.returncode == 0, out
    assert "worker stopped: 2 timed_out" in out
    tried = attempts("a1")
    assert [(a.number, a.outcome, a.exit_code) for a in tried] == [
        (1, Outcome.TIMED_OUT, -signal.SIGKILL),
        (2, Outcome.TIMED_OUT, -signal.SIGKILL),
    ]
    for attempt in tried:
        assert attempt.error.startswith("timed out: ran longer than its time limit of 3 s")
        assert attempt.duration is not None and attempt.duration < timedelta(seconds=30)
    pids = [int(line.split()[1]) for line in read_lines(marker)]
    # A spawned run slowed down by a busy machine may be killed before it notes its pid.
    assert pids and set(pids) <= {a.pid for a in tried}
    assert all(pid_gone(pid) for pid in pids)
    request.refresh_from_db()
    assert (request.status, request.attempts) == (ResumeRequest.Status.FAILED, 2)
    assert status("a1") == "failed"
    agent = Agent.objects.get(agent_id="a1")
    assert agent.error.startswith("resume failed after 2 attempt(s): timed out")
    assert agent.lease_owner == ""


def test_worker_polling_slower_than_its_lease_keeps_its_claim_alive(
    worker_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    task = {"task": "t", "log": str(tmp_path / "log"), "lock_dir": str(tmp_path)}
    make_interrupted("a1", f"{ENTRY}:exclusive", {**task, "run_seconds": 3 * LEASE_SECONDS})
    queue("a1")
    processes.append(start_worker_process(worker_env, "--poll-interval", "5"))

    # Meanwhile, another worker looks for abandoned claims: it must find none.
    def finished() -> bool:
        assert recover_abandoned() == 0, "a live run's claim lapsed"
        return status("a1") == "completed"

    wait_until(finished, timeout=60, interval=0.1, what="the run to finish")
    wait_until(lambda: not ResumeRequest.objects.open().exists(), timeout=10)
    assert [a.outcome for a in attempts("a1")] == [Outcome.SUCCEEDED]


# --- at most one process per agent ------------------------------------------------------------


def _click(
    agent_ids: list[str], stop: threading.Event, created: list[str], passes: list[int]
) -> None:
    """An operator clicking "resume" on every agent, over and over; `passes` counts the
    rounds over every agent this thread finished."""
    try:
        while not stop.is_set():
            for agent_id in agent_ids:
                try:
                    _request, made = request_resume(
                        namespace="default", agent_id=agent_id, source="dashboard"
                    )
                except NotResumableError:
                    continue
                if made:
                    created.append(agent_id)
            passes.append(1)
            time.sleep(0.02)
    finally:
        connection.close()


CLICKER = """
import sys, time
from statehouse import Statehouse, NotResumableError
client = Statehouse()
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    for agent_id in sys.argv[2:]:
        try:
            client.request_resume(agent_id, requested_by="clicker")
        except NotResumableError:
            pass
    if all(client.status(a) == "completed" for a in sys.argv[2:]):
        break
    time.sleep(0.02)
"""


def test_two_workers_and_repeated_clicks_never_run_an_agent_twice_at_once(
    worker_env: dict[str, str], tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    env = {**worker_env, "STATEHOUSE_LEASE_SECONDS": "5"}
    log = tmp_path / "runs.log"
    agent_ids = [f"ex-{n}" for n in range(4)]
    for agent_id in agent_ids:
        task = {
            "task": "exclusive",
            "log": str(log),
            "lock_dir": str(tmp_path),
            "run_seconds": 0.3,
            "stop_runs": 1,  # the first run stops early, so the agent is resumed twice
        }
        make_interrupted(agent_id, f"{ENTRY}:exclusive", task)

    # Duplicate requests, at once from many threads: one request per agent.
    created: list[str] = []
    stop = threading.Event()
    passes: list[list[int]] = [[] for _ in range(4)]
    barrier_threads = [
        threading.Thread(target=_click, args=(agent_ids, stop, created, done)) for done in passes
    ]
    for thread in barrier_threads:
        thread.start()
    try:
        # Every thread has clicked every agent at least twice (however slow the machine),
        # or stopped on an error.
        wait_until(
            lambda: all(
                len(done) >= 2 or not thread.is_alive()
                for done, thread in zip(passes, barrier_threads, strict=True)
            ),
            timeout=60,
            what="two rounds of clicks from every thread",
        )
        assert sorted(created) == agent_ids
        assert ResumeRequest.objects.count() == len(agent_ids)

        for _ in range(2):
            processes.append(start_worker_process(env, "--concurrency", "2"))
        clicker = subprocess.Popen(
            [sys.executable, "-c", CLICKER, "90", *agent_ids],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(clicker)
        wait_until(
            lambda: (
                Agent.objects.filter(agent_id__in=agent_ids)
                .with_status(Agent.Status.COMPLETED)
                .count()
                == len(agent_ids)
            ),
            timeout=90,
            interval=0.2,
            what="every agent to complete",
        )
    finally:
        stop.set()
        for thread in barrier_threads:
            thread.join(timeout=30)
    clicker.communicate(timeout=30)
    for worker in processes[:2]:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out

    lines = read_lines(log)
    assert not [line for line in lines if line.startswith("overlap")], lines
    for agent_id in agent_ids:
        events = [line.split() for line in lines if line.split()[1] == agent_id]
        # begin/end strictly alternate in time: no two runs of one agent overlap.
        events.sort(key=lambda e: float(e[3]))
        assert [e[0] for e in events] == ["begin", "end"] * 2, events
        with Statehouse() as client:
            assert client.get_state(agent_id, "runs").value == 2
            assert client.get_state(agent_id, "answer").value == {"runs": 2}
        requests = ResumeRequest.objects.filter(agent__agent_id=agent_id)
        assert requests.filter(status=ResumeRequest.Status.SUCCEEDED).count() == 1
        assert not requests.open().exists()
        ran = attempts(agent_id)
        assert [a.outcome for a in ran if a.outcome != Outcome.RUNNING].count(
            Outcome.SUCCEEDED
        ) == 1
        assert all(a.outcome in (Outcome.STOPPED, Outcome.SUCCEEDED) for a in ran), [
            (a.outcome, a.error) for a in ran
        ]


def test_worker_command_rejects_bad_options() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--concurrency must be at least 1"):
        call_command("resume_worker", "--concurrency", "0")
    with pytest.raises(CommandError, match="--poll-interval must be positive"):
        call_command("resume_worker", "--poll-interval", "0")
