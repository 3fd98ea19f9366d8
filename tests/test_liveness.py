"""Crash detection (docs/contract.md §3, docs/operations.md "Crash detection"): a lease
holder's liveness handle, ended by `expire_dead_holders` when its process dies, with real
processes killed by SIGKILL, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, ResumeRequest
from statehouse_agents.store.counters import DIRECT_DETECTIONS, counter_values
from statehouse_agents.store.liveness import Watch, advisory_key, expire_dead_holders, host_id

from statehouse import Statehouse, ValidationError
from tests.factories import wait_until

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parent.parent
KIND = "flock" if connection.vendor == "sqlite" else "pg"


def status(agent_id: str) -> str | None:
    return (
        Agent.objects.filter(agent_id=agent_id)
        .annotate_status()
        .values_list("status_value", flat=True)
        .first()
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


def start_agent(
    env: dict[str, str], processes: list[subprocess.Popen[str]], agent_id: str, *args: str
) -> subprocess.Popen[str]:
    """Start tests/liveness_agent.py; return once it holds the agent."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.liveness_agent", agent_id, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    processes.append(process)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", line + process.stdout.read()
    return process


def start_worker(
    env: dict[str, str], processes: list[subprocess.Popen[str]], log: Path
) -> subprocess.Popen[str]:
    """A resume worker with the default settings (its detector included), logging to
    `log`; return once it runs."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "resume_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    processes.append(process)
    wait_until(lambda: "started" in log.read_text(), timeout=60, what="the worker to start")
    return process


# --- the holder's handle ---------------------------------------------------------------


def test_a_lease_records_the_holders_liveness_handle(transactional_db: None) -> None:
    with Statehouse() as client:
        client.start("held", {"task": "t"})
        agent = Agent.objects.get(agent_id="held")
        watch = Watch.parse(agent.lease_watch)
        assert watch is not None
        assert (watch.kind, watch.host, watch.pid) == (KIND, host_id(), os.getpid())
        if KIND == "flock":
            assert Path(watch.value).is_file()
        # Taken once: a second agent of the same client records the same handle.
        client.start("held-too", {"task": "t"})
        assert Agent.objects.get(agent_id="held-too").lease_watch == agent.lease_watch
        assert expire_dead_holders() == []
        assert status("held") == "running"
    released = Agent.objects.get(agent_id="held")
    assert (released.lease_owner, released.lease_watch) == ("", "")
    if KIND == "flock":
        assert not Path(watch.value).exists()


def test_plain_keys_take_no_handle(transactional_db: None) -> None:
    with Statehouse() as client, client.begin_transaction() as tx:
        tx.write("notes-only", "notes", {"n": 1})
    assert Agent.objects.get(agent_id="notes-only").lease_watch == ""


def test_handles_off_leaves_the_lease_alone(transactional_db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_LIVENESS_HANDLES = False
    with Statehouse() as client:
        client.start("lease-only", {"task": "t"})
        assert Agent.objects.get(agent_id="lease-only").lease_watch == ""


def test_a_dead_holder_is_interrupted_by_the_detector(run_python) -> None:  # type: ignore[no-untyped-def]
    """The child takes the lease and exits without closing its client (as if killed)."""
    run_python(
        """
        import os
        from statehouse import Statehouse
        client = Statehouse()
        client.start("orphan", {"task": "t"})
        os._exit(0)
        """
    )
    agent = Agent.objects.get(agent_id="orphan")
    assert agent.lease_watch.startswith(f"{KIND}:")
    assert status("orphan") == "running"  # its lease has 30 s left
    (detection,) = expire_dead_holders()
    assert (detection.namespace, detection.agent_id, detection.resume_queued) == (
        "default",
        "orphan",
        False,
    )
    agent.refresh_from_db()
    assert (agent.lease_owner, agent.lease_watch, agent.lease_expires_at) == ("", "", None)
    assert status("orphan") == "interrupted"
    assert expire_dead_holders() == []  # ended once
    assert counter_values()[DIRECT_DETECTIONS] == 1  # /metrics reads it (docs/metrics.md)
    assert not ResumeRequest.objects.exists()


def test_a_watch_that_does_not_parse_is_left_to_the_lease(transactional_db: None) -> None:
    with Statehouse() as client:
        client.start("odd", {"task": "t"})
        for text in ("garbage", "pg:notanumber|h/b|1", "flock:/x|h/b|pid", "nfs:/x|h/b|1"):
            Agent.objects.filter(agent_id="odd").update(lease_watch=text)
            assert Watch.parse(text) is None
            assert expire_dead_holders() == []
            assert status("odd") == "running"


def test_a_file_lock_of_another_host_is_not_checked_here(transactional_db: None) -> None:
    with Statehouse() as client:
        client.start("elsewhere", {"task": "t"})
        missing = Watch("flock", "/nonexistent/x.lock", "other-host/boot", 1).render()
        Agent.objects.filter(agent_id="elsewhere").update(lease_watch=missing)
        assert expire_dead_holders() == []
        assert status("elsewhere") == "running"


def test_a_free_handle_of_a_live_pid_here_is_not_a_death(transactional_db: None) -> None:
    """A dropped handle connection of a live process: it keeps its lease."""
    with Statehouse() as client:
        client.start("dropped", {"task": "t"})
        free = Watch("flock", "/nonexistent/x.lock", host_id(), os.getpid()).render()
        Agent.objects.filter(agent_id="dropped").update(lease_watch=free)
        assert expire_dead_holders() == []
        assert status("dropped") == "running"


def test_the_host_of_a_handle_is_its_host_name_boot_and_pid_namespace() -> None:
    name, boot, pid_namespace = host_id().split("/")
    assert name == socket.gethostname()
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert pid_namespace == str(os.stat("/proc/self/ns/pid").st_ino)


@pytest.mark.skipif(KIND != "pg", reason="an advisory lock is checked from any host")
@pytest.mark.parametrize("elsewhere", ["another host name", "another pid namespace"])
def test_a_free_handle_of_another_host_is_a_death_though_its_pid_lives_here(
    transactional_db: None, elsewhere: str
) -> None:
    """Another host's pids are not ours: a pid alive here (this very process) says
    nothing about a holder there (docs/operations.md, "Two hosts")."""
    name, boot, pid_namespace = host_id().split("/")
    host = (
        f"other-{name}/{boot}/{pid_namespace}"
        if elsewhere == "another host name"
        else (f"{name}/{boot}/1{pid_namespace}")
    )
    with Statehouse() as client:
        client.start("far", {"task": "t"})
        free = Watch("pg", str(advisory_key("held by no one")), host, os.getpid()).render()
        Agent.objects.filter(agent_id="far").update(lease_watch=free)
        (detection,) = expire_dead_holders()
        assert detection.agent_id == "far"
        assert status("far") == "interrupted"


def test_register_resume_auto_must_be_a_boolean(transactional_db: None) -> None:
    with Statehouse() as client, pytest.raises(ValidationError, match="auto must be True or False"):
        client.register_resume("a", "tests.agents_for_tests:complete", auto="yes")  # type: ignore[arg-type]
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STATEHOUSE_DETECT_INTERVAL", 0, "must be at least 0.05"),
        ("STATEHOUSE_DETECT_INTERVAL", "fast", "is not a number"),
        ("STATEHOUSE_LIVENESS_DIR", "relative/dir", "is not an absolute path"),
        ("STATEHOUSE_LIVENESS_HANDLES", "yes", "is not a boolean"),
        ("STATEHOUSE_AUTO_RESUME", 1, "is not a boolean"),
    ],
)
def test_nonsense_detection_settings_are_refused(settings, name, value, message) -> None:  # type: ignore[no-untyped-def]
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


# --- real processes, SIGKILL, the worker's detector --------------------------------------


def test_killed_agent_is_interrupted_within_2s_while_a_busy_live_agent_stays_running(
    subprocess_env: dict[str, str], processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Default settings (a 30 s lease): the death is seen directly, not by the lease."""
    assert get_settings().lease_seconds == 30
    start_worker(subprocess_env, processes, tmp_path / "worker.log")
    victim = start_agent(subprocess_env, processes, "victim")
    start_agent(subprocess_env, processes, "busy", "--busy")
    assert (status("victim"), status("busy")) == ("running", "running")

    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    seen = []
    while (now := time.monotonic()) - killed < 5:
        seen.append(status("busy"))
        if status("victim") == "interrupted":
            break
        time.sleep(0.02)
    elapsed = now - killed
    log = (tmp_path / "worker.log").read_text()
    assert status("victim") == "interrupted", (
        f"still {status('victim')} after {elapsed:.2f} s\n{log}"
    )
    assert elapsed < 2.0, f"interrupted after {elapsed:.2f} s"
    # The busy agent, sampled for several more seconds (and at least 40 times, however
    # slow each sample is on a loaded machine), is never reported interrupted.
    until, cap = time.monotonic() + 4, time.monotonic() + 60
    while (time.monotonic() < until or len(seen) <= 40) and time.monotonic() < cap:
        seen.append(status("busy"))
        time.sleep(0.05)
    assert set(seen) == {"running"}, seen
    assert len(seen) > 40
    # The worker logs the detection once its transaction has committed, so just after
    # the status turned: wait for the line rather than race it.
    line = f"victim: its process {os.uname().nodename} pid {victim.pid} died; interrupted"
    wait_until(
        lambda: line in (tmp_path / "worker.log").read_text(), timeout=30, what="the worker's log"
    )


@pytest.mark.parametrize("opt_in", ["flag", "setting"])
def test_with_auto_resume_a_killed_agent_is_resumed_with_no_command(
    subprocess_env: dict[str, str],
    processes: list[subprocess.Popen[str]],
    tmp_path: Path,
    opt_in: str,
) -> None:
    env = dict(subprocess_env)
    if opt_in == "setting":
        env["STATEHOUSE_AUTO_RESUME"] = "true"
        env["STATEHOUSE_RESUME_ENTRY_POINTS"] = "phoenix=tests.agents_for_tests:complete"
        args: tuple[str, ...] = ()
    else:
        args = ("--auto", "tests.agents_for_tests:complete")
    start_worker(env, processes, tmp_path / "worker.log")
    agent = start_agent(env, processes, "phoenix", *args)
    assert Agent.objects.get(agent_id="phoenix").auto_resume is (opt_in == "flag")

    os.kill(agent.pid, signal.SIGKILL)
    wait_until(
        lambda: ResumeRequest.objects.filter(status="succeeded").exists(),
        timeout=60,
        what="the automatic resume to succeed",
    )
    assert status("phoenix") == "completed"
    (request,) = ResumeRequest.objects.filter(agent__agent_id="phoenix")
    assert (request.source, request.status, request.requested_by, request.attempts) == (
        "auto",
        "succeeded",
        "crash detector",
        1,
    )


def test_without_auto_resume_a_killed_agent_stays_interrupted(run_python) -> None:  # type: ignore[no-untyped-def]
    run_python(
        """
        import os
        from statehouse import Statehouse
        client = Statehouse()
        client.register_resume("manual", "tests.agents_for_tests:complete")
        client.start("manual", {"task": "t"})
        os._exit(0)
        """
    )
    (detection,) = expire_dead_holders()
    assert detection.resume_queued is False
    assert status("manual") == "interrupted"
    assert not ResumeRequest.objects.exists()


def test_auto_resume_without_an_entry_point_queues_nothing(run_python, settings) -> None:  # type: ignore[no-untyped-def]
    settings.STATEHOUSE_AUTO_RESUME = True
    run_python(
        """
        import os
        from statehouse import Statehouse
        Statehouse().start("no-entry", {"task": "t"})
        os._exit(0)
        """
    )
    (detection,) = expire_dead_holders()
    assert detection.resume_queued is False
    assert status("no-entry") == "interrupted"
    assert not ResumeRequest.objects.exists()
