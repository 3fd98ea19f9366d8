"""`manage.py resume_agents` and `resume_worker`: filters, dry runs, JSON, bad input."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models.functions import Now
from statehouse_agents.models import Agent, ResumeRequest

from statehouse import Statehouse

ROOT = Path(__file__).resolve().parent.parent


def resume_agents(*args: str) -> str:
    out = io.StringIO()
    call_command("resume_agents", *args, stdout=out)
    return out.getvalue()


def queued() -> list[str]:
    return sorted(
        str(agent)
        for agent in Agent.objects.filter(resume_requests__status=ResumeRequest.Status.QUEUED)
    )


def statuses() -> dict[str, str]:
    return {str(a): a.status_value for a in Agent.objects.annotate_status()}


@pytest.fixture
def fleet(sh: Statehouse) -> Statehouse:
    """Interrupted agents in two namespaces, plus running, completed and failed ones."""
    for namespace, agent_id in [
        ("default", "research-1"),
        ("default", "research-2"),
        ("default", "other-1"),
        ("lab", "research-3"),
    ]:
        with Statehouse(namespace=namespace) as client:
            client.start(agent_id, {"task": agent_id})
    sh.start("research-run", {"task": "still running"})
    with Statehouse() as client:
        client.start("research-done", {"task": "t"})
        client.finish("research-done", {"ok": True})
        client.start("research-fail", {"task": "t"})
        client.fail("research-fail", "broke")
    return sh


ALL_INTERRUPTED = ["lab/research-3", "other-1", "research-1", "research-2"]


def test_default_queues_every_interrupted_agent(fleet: Statehouse) -> None:
    out = resume_agents()

    assert out.strip() == "4 of 4 matching agent(s) queued for resume"
    assert queued() == ALL_INTERRUPTED
    assert ResumeRequest.objects.filter(requested_by="resume_agents", source="command").count() == 4
    shown = statuses()
    assert {shown[a] for a in ALL_INTERRUPTED} == {"resuming"}
    assert (shown["research-run"], shown["research-done"], shown["research-fail"]) == (
        "running",
        "completed",
        "failed",
    )
    # Again: nothing is interrupted any more.
    assert resume_agents().strip() == "0 of 0 matching agent(s) queued for resume"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--namespace", "lab"], ["lab/research-3"]),
        (["--agent", "research-*"], ["lab/research-3", "research-1", "research-2"]),
        (["--agent", "research-*", "--namespace", "default"], ["research-1", "research-2"]),
        (["--agent", "research-1"], ["research-1"]),
        (["--agent", "*-[12]"], ["other-1", "research-1", "research-2"]),
        (["--status", "failed"], ["research-fail"]),
        (["--limit", "1", "--namespace", "lab"], ["lab/research-3"]),
    ],
)
def test_filters_choose_the_agents(fleet: Statehouse, args: list[str], expected: list[str]) -> None:
    out = resume_agents(*args, "--requested-by", "ops")

    assert out.startswith(f"{len(expected)} of {len(expected)} matching agent(s) queued")
    assert queued() == expected
    assert set(ResumeRequest.objects.values_list("requested_by", flat=True)) == {"ops"}


def test_limit_caps_how_many_are_queued(fleet: Statehouse) -> None:
    assert resume_agents("--limit", "2").startswith("2 of 2 matching agent(s) queued")
    assert len(queued()) == 2


def test_idle_for_chooses_agents_quiet_that_long(fleet: Statehouse) -> None:
    Agent.objects.filter(agent_id__in=["research-1", "research-3"]).update(
        last_activity_at=Now() - timedelta(hours=2)
    )

    assert resume_agents("--idle-for", "1h30m").startswith("2 of 2 matching")
    assert queued() == ["lab/research-3", "research-1"]
    assert resume_agents("--idle-for", "3h").strip() == "0 of 0 matching agent(s) queued for resume"


def test_pattern_matching_nothing_says_so_and_changes_nothing(fleet: Statehouse) -> None:
    before = statuses()

    assert resume_agents("--agent", "nobody-*").strip() == (
        "0 of 0 matching agent(s) queued for resume"
    )
    assert json.loads(resume_agents("--agent", "nobody-*", "--json")) == {
        "matched": 0,
        "queued": 0,
        "skipped": 0,
        "needs_review": [],
    }
    assert statuses() == before
    assert not ResumeRequest.objects.exists()


def test_dry_run_lists_and_changes_nothing(fleet: Statehouse) -> None:
    before = statuses()

    out = resume_agents("--dry-run", "--agent", "research-*")
    as_json = json.loads(resume_agents("--dry-run", "--json"))

    assert out.splitlines() == [
        "default/research-1",
        "default/research-2",
        "lab/research-3",
        "dry run: 3 agent(s) would be queued for resume",
    ]
    assert as_json["matched"] == 4
    assert as_json["dry_run"] is True
    assert {(a["namespace"], a["agent_id"]) for a in as_json["agents"]} == {
        ("default", "research-1"),
        ("default", "research-2"),
        ("default", "other-1"),
        ("lab", "research-3"),
    }
    assert statuses() == before
    assert not ResumeRequest.objects.exists()


def test_json_output_parses(fleet: Statehouse) -> None:
    resume_agents("--agent", "research-1")

    result = json.loads(resume_agents("--json"))

    assert result == {"matched": 3, "queued": 3, "skipped": 0, "needs_review": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "bogus"], "unknown status 'bogus'"),
        (["--status", "running"], "agents that are running cannot be resumed"),
        (["--status", "completed"], "agents that are completed cannot be resumed"),
        (["--idle-for", "10x"], "'10x' is not a duration"),
        (["--idle-for", "m"], "'m' is not a duration"),
        (["--limit", "0"], "--limit must be an integer from 1 to 9223372036854775807, not 0"),
        (["--limit", "-3"], "--limit must be an integer from 1 to 9223372036854775807, not -3"),
        (
            ["--limit", "9" * 23],
            f"--limit must be an integer from 1 to {2**63 - 1}, not {'9' * 23}",
        ),
        (["--idle-for", "9" * 23 + "d"], "is longer than any duration can be"),
    ],
)
def test_bad_input_is_a_command_error_and_changes_nothing(
    fleet: Statehouse, args: list[str], message: str
) -> None:
    before = statuses()

    with pytest.raises(CommandError) as raised:
        resume_agents(*args)

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert statuses() == before
    assert not ResumeRequest.objects.exists()


def test_bad_input_from_the_shell_is_one_line_on_stderr(subprocess_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "resume_agents", "--idle-for", "10x"],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "CommandError: '10x' is not a duration; use a number and a unit s, m, h, d or w "
        "(e.g. 10m, 1h30m)"
    ]


def test_worker_command_leaves_the_signal_handlers_as_it_found_them(
    sh: Statehouse,
    monkeypatch: pytest.MonkeyPatch,
    test_database_url: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", test_database_url)
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = io.StringIO()

    call_command("resume_worker", "--once", "--poll-interval", "0.1", stdout=out)

    assert "worker stopped: nothing" in out.getvalue()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
