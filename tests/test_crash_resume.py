"""Crash and resume end to end with real processes (issue 3, docs/contract.md §3-§4).

Agent processes are SIGKILLed at random moments (seeded; the seed is printed, and
STATEHOUSE_CRASH_SEED replays a run), turn interrupted when their lease expires, are
resumed by `resume_agents` and `resume_worker --once`, and finish. Afterwards every step
is done exactly once, every two-key transaction is whole, and no action whose `done` was
committed ran again (bench/crash_stress.py holds the trial and its checks).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from bench.crash_stress import run_trial

pytestmark = pytest.mark.multiprocess

LEASE_SECONDS = 1
ROUNDS = 10  # x AGENTS_PER_ROUND agents, each killed at its own random moment
AGENTS_PER_ROUND = 3
BASE_SEED = int(os.environ.get("STATEHOUSE_CRASH_SEED") or random.SystemRandom().randrange(2**32))


@pytest.fixture
def crash_env(statehouse_knobs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Short leases and immediate retries for the agents, the worker and its children."""
    return statehouse_knobs(
        STATEHOUSE_LEASE_SECONDS=LEASE_SECONDS,
        STATEHOUSE_RESUME_BACKOFF_SECONDS=0,
        STATEHOUSE_RESUME_MAX_ATTEMPTS=10,
    )


def _run(seed: int, tmp_path: Path, env: dict[str, str], **options: object) -> None:
    print(f"crash trial seed {seed} (STATEHOUSE_CRASH_SEED={BASE_SEED})")
    report = run_trial(
        seed=seed,
        prefix=f"crash-{seed}",
        side_dir=tmp_path,
        env=env,
        lease_seconds=LEASE_SECONDS,
        **options,  # type: ignore[arg-type]
    )
    print(report.describe())
    assert report.ok, report.describe()


@pytest.mark.parametrize("round_number", range(ROUNDS))
def test_agents_killed_at_random_moments_resume_and_finish_exactly_once(
    crash_env: dict[str, str], tmp_path: Path, round_number: int
) -> None:
    _run(BASE_SEED + round_number, tmp_path, crash_env, agents=AGENTS_PER_ROUND)


def test_resumed_processes_killed_too_are_retried_and_finish_exactly_once(
    crash_env: dict[str, str], tmp_path: Path
) -> None:
    _run(BASE_SEED + ROUNDS, tmp_path, crash_env, agents=2, kill_resumed=True)


@pytest.mark.slow
def test_crash_stress(crash_env: dict[str, str], tmp_path: Path) -> None:
    """40 rounds of 4 agents, 10 steps each; every other round kills resumed processes too."""
    failures = []
    for round_number in range(40):
        seed = BASE_SEED + 1000 + round_number
        report = run_trial(
            seed=seed,
            prefix=f"stress-{seed}",
            side_dir=tmp_path / str(round_number),
            env=crash_env,
            lease_seconds=LEASE_SECONDS,
            agents=4,
            steps=10,
            step_seconds=0.02,
            kill_resumed=round_number % 2 == 1,
        )
        if not report.ok:
            failures.append(report.describe())
    assert not failures, "\n".join(failures)
