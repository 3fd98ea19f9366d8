#!/usr/bin/env python
"""Load test: agents, resume workers and the dashboard at once, on one database, loopback only.

    .venv/bin/python bench/load_test.py                         # 60 s on a fresh temp SQLite
    .venv/bin/python bench/load_test.py --seconds 20
    .venv/bin/python bench/load_test.py --fresh \\
        --database-url postgres://postgres@127.0.0.1:5432/load_statehouse

For `--seconds`, `--agents` (8) agent processes run agents one after another (bench/
load_agent.py: task, N steps pending→done, answer); some crash on purpose (os._exit) so
their agents turn interrupted when the lease (`--lease-seconds`) expires. This process
queues resumes of interrupted agents every second, `--workers` (2) `manage.py
resume_worker` processes run them (entry point bench.load_agent:resume), and a poller
logged in as a superuser made for the run fetches `/`, `/agents/?status=interrupted` and
`/healthz` of a gunicorn serving the dashboard on a free loopback port (pages that are
not there yet fall back to `/admin/`). Then agent processes stop, resumes drain for up to
`--drain` seconds, and everything is stopped.

Checks (exit status 1 if one fails): every agent of the run is either completed with each
step done exactly once (Step rows, step counters and version history agree), or not
finished with a consistent prefix of steps (done…done, then at most one pending); no step
history is out of order; no two resume attempts of one agent overlapped; no dashboard
request got a 5xx or failed to connect. Prints transactions per second, dashboard
p50/p95 latency and counts.

`--fresh` drops and recreates a PostgreSQL database (or deletes a SQLite file) first;
without it an existing database is used (migrated), and only this run's agents (ids
prefixed by a run id) are checked — so the tests can run it on the test database.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "manage.py"
AGENT_SCRIPT = ROOT / "bench" / "load_agent.py"
CRASH_EXIT = 17  # bench/load_agent.py's exit status for an on-purpose crash
ADMIN_USER = "loadtest-admin"


# --- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_checked(cmd: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    result = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def stop(process: subprocess.Popen[Any], *, timeout: float = 20, group: bool = False) -> None:
    """SIGTERM (the process group with `group`), then SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        process.wait(timeout=10)


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database of `url`, or delete the SQLite file."""
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        path = Path(parts.path[1:] if parts.path.startswith("//") else parts.path)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SystemExit(f"refusing to recreate a database named {name!r}")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- the dashboard poller -----------------------------------------------------------------


@dataclass
class Poller:
    port: int
    password: str
    stopping: threading.Event = field(default_factory=threading.Event)
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        all_headers = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                self.cookies[key.strip()] = val.strip()
        return response.status, dict(response.getheaders()), text, elapsed

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, *_ = self.request("GET", "/accounts/login/")
                if status < 500:
                    return
            time.sleep(0.2)
        raise SystemExit("the dashboard did not come up")

    def log_in(self) -> None:
        for login in ("/accounts/login/", "/admin/login/"):
            status, _headers, page, _t = self.request("GET", login)
            if status != 200:
                continue
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
            if not token:
                continue
            form = urlencode(
                {
                    "username": ADMIN_USER,
                    "password": self.password,
                    "csrfmiddlewaretoken": token.group(1),
                    "next": "/",
                }
            )
            status, _headers, _page, _t = self.request(
                "POST",
                login,
                body=form,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Referer": f"http://127.0.0.1:{self.port}{login}",
                },
            )
            if status in (302, 303) and "sessionid" in self.cookies:
                self.notes.append(f"logged in through {login}")
                return
        raise SystemExit("could not log in to the dashboard")

    def pick_urls(self) -> list[str]:
        """The dashboard pages, or /admin/ where a page is not there (yet)."""
        urls = []
        for path in ("/", "/agents/?status=interrupted", "/healthz"):
            status, *_ = self.request("GET", path)
            if status == 404:
                fallback = "/admin/" if path != "/healthz" else None
                self.notes.append(f"{path} answered 404; polling {fallback or 'nothing'} instead")
                if fallback and fallback not in urls:
                    urls.append(fallback)
            else:
                urls.append(path)
        return urls

    def run(self, urls: list[str], pause: float) -> None:
        while not self.stopping.is_set():
            for path in urls:
                try:
                    status, headers, _text, elapsed = self.request("GET", path)
                except OSError as exc:
                    self.errors.append(f"GET {path}: {exc}")
                    continue
                self.statuses[(path, status)] += 1
                self.samples[path].append(elapsed)
                if status >= 500:
                    self.errors.append(f"GET {path}: {status}")
                elif status in (301, 302) and "login" in headers.get("Location", ""):
                    self.errors.append(f"GET {path}: sent to the login page (session lost)")
                self.stopping.wait(pause)


# --- the run ------------------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    prefix: str
    env: dict[str, str]
    agent_procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    exits: Counter[str] = field(default_factory=Counter)
    logdir: Path = Path(".")
    seeds: int = 0
    resumes_queued: int = 0
    failures: list[str] = field(default_factory=list)


def start_agent(run: Run, index: int, until: float) -> subprocess.Popen[bytes]:
    run.seeds += 1
    seed = run.args.seed * 100_000 + run.seeds
    with open(run.logdir / f"agent-{seed}.log", "wb") as log:  # the child keeps its copy
        return subprocess.Popen(
            [
                sys.executable,
                str(AGENT_SCRIPT),
                f"--prefix={run.prefix}",
                f"--index={index}",
                f"--until={until}",
                f"--steps={run.args.steps}",
                f"--crash-rate={run.args.crash_rate}",
                f"--seed={seed}",
            ],
            env=run.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def reap_agents(run: Run, until: float | None) -> None:
    """Count the agent processes that ended; start another in each free slot until `until`."""
    for index, process in list(run.agent_procs.items()):
        code = process.poll()
        if code is None:
            continue
        del run.agent_procs[index]
        run.exits["crashed on purpose" if code == CRASH_EXIT else f"exit {code}"] += 1
        if code not in (0, CRASH_EXIT):
            log = Path(process.args[-1].replace("--seed=", str(run.logdir / "agent-")) + ".log")
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            run.failures.append(f"agent process (exit {code}): {tail}")
        if until is not None and time.time() < until - 0.5:
            run.agent_procs[index] = start_agent(run, index, until)


def queue_resumes(prefix: str) -> int:
    from statehouse_agents.models import Agent, ResumeRequest
    from statehouse_agents.store.resume import request_resumes

    pks = list(
        Agent.objects.filter(agent_id__startswith=prefix).interrupted().values_list("pk", flat=True)
    )
    if not pks:
        return 0
    return sum(
        request_resumes(
            agent_pks=pks, source=ResumeRequest.Source.COMMAND, requested_by="load test"
        )
    )


def unsettled(prefix: str) -> int:
    from statehouse_agents.models import Agent, ResumeRequest

    agents = Agent.objects.filter(agent_id__startswith=prefix)
    open_requests = ResumeRequest.objects.open().filter(agent__agent_id__startswith=prefix)
    return (
        agents.interrupted().count()
        + agents.with_status(Agent.Status.RESUMING).count()
        + agents.running().count()
        + open_requests.count()
    )


_STEP_HISTORY = re.compile(r"^p+d?$")  # pending (re-run after a crash), then done at most once


def check_agents(prefix: str) -> tuple[list[str], Counter[str], dict[str, int]]:
    """Return (problems, statuses, figures) for the agents of this run."""
    from statehouse_agents.models import Agent, Record, ResumeAttempt, Step, Version

    problems: list[str] = []
    agents = {a.pk: a for a in Agent.objects.filter(agent_id__startswith=prefix).annotate_status()}
    statuses = Counter(a.status_value for a in agents.values())
    histories: dict[int, dict[str, list[tuple[int, Any]]]] = defaultdict(lambda: defaultdict(list))
    for agent_pk, key, version, value_json in (
        Version.objects.filter(agent_id__in=list(agents))
        .order_by("agent_id", "key", "version")
        .values_list("agent_id", "key", "version", "value_json")
        .iterator(chunk_size=5000)
    ):
        histories[agent_pk][key].append((version, json.loads(value_json) if value_json else None))
    steps: dict[int, dict[int, str]] = defaultdict(dict)
    for agent_pk, number, status in Step.objects.filter(agent_id__in=list(agents)).values_list(
        "agent_id", "number", "status"
    ):
        steps[agent_pk][number] = status
    records = {
        (agent_pk, key): value_json
        for agent_pk, key, value_json in (
            Record.objects.filter(agent_id__in=list(agents), deleted=False)
            .with_values()
            .values_list("agent_id", "key", "value_json")
        )
    }
    done_versions = 0
    for pk, agent in agents.items():
        name = agent.agent_id
        keys = histories[pk]
        for key, history in keys.items():
            if [v for v, _ in history] != list(range(1, len(history) + 1)):
                problems.append(f"{name}/{key}: versions {[v for v, _ in history]} not 1..n")
        task = records.get((pk, "task"))
        if task is None:
            problems.append(f"{name}: no task")
            continue
        wanted = json.loads(task)["steps"]
        step_keys = sorted((int(k.split(":", 1)[1]), k) for k in keys if k.startswith("step:"))
        numbers = [n for n, _ in step_keys]
        if numbers != list(range(len(numbers))):
            problems.append(f"{name}: step numbers {numbers} are not a prefix 0..n")
        flags = []
        for number, key in step_keys:
            seq = "".join(value["status"][0] for _v, value in keys[key])
            if not _STEP_HISTORY.match(seq):
                problems.append(f"{name}/{key}: step history {seq!r} (p=pending, d=done)")
            done_versions += seq.count("d")
            flags.append(seq[-1])
            final = keys[key][-1][1]["status"]
            if steps[pk].get(number) != final:
                problems.append(f"{name}/{key}: Step row {steps[pk].get(number)!r} != {final!r}")
        if set(steps[pk]) != set(numbers):
            problems.append(f"{name}: Step rows {sorted(steps[pk])} != step keys {numbers}")
        if agent.steps_done != flags.count("d") or agent.steps_pending != flags.count("p"):
            problems.append(
                f"{name}: counters done={agent.steps_done} pending={agent.steps_pending} "
                f"!= {flags.count('d')}/{flags.count('p')}"
            )
        answer = records.get((pk, "answer"))
        if agent.status_value == Agent.Status.COMPLETED:
            if numbers != list(range(wanted)) or set(flags) != {"d"}:
                problems.append(f"{name}: completed with steps {''.join(flags)!r} of {wanted}")
            if answer is None or json.loads(answer) != {"steps": wanted}:
                problems.append(f"{name}: completed without the right answer ({answer})")
        else:
            if agent.status_value == Agent.Status.FAILED:
                problems.append(f"{name}: failed ({agent.error})")
            if "p" in flags[:-1]:
                problems.append(f"{name}: a pending step before a done one: {''.join(flags)!r}")
            if answer is not None:
                problems.append(f"{name}: has an answer but is {agent.status_value}")
    # At most one process held an agent at a time: its attempts never overlapped.
    attempts: dict[int, list[tuple[Any, Any]]] = defaultdict(list)
    for agent_pk, started, ended in (
        ResumeAttempt.objects.filter(agent_id__in=list(agents))
        .order_by("agent_id", "started_at", "id")
        .values_list("agent_id", "started_at", "ended_at")
    ):
        attempts[agent_pk].append((started, ended))
    for agent_pk, runs in attempts.items():
        for (_s1, e1), (s2, _e2) in itertools.pairwise(runs):
            if e1 is None or e1 > s2:
                problems.append(f"{agents[agent_pk].agent_id}: resume attempts overlap")
    outcomes = Counter(
        ResumeAttempt.objects.filter(agent_id__in=list(agents)).values_list("outcome", flat=True)
    )
    figures = {
        "agents": len(agents),
        "steps done": done_versions,
        "resume attempts": sum(outcomes.values()),
        **{f"resumes {k}": v for k, v in sorted(outcomes.items())},
    }
    return problems, statuses, figures


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="load phase (default 60)")
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database")
    parser.add_argument("--agents", type=int, default=8, help="agent processes (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="resume workers (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="steps per agent (default 5)")
    parser.add_argument("--crash-rate", type=float, default=0.15)
    # Short enough that crashed agents turn interrupted during the run, long enough that a
    # live process starved by 2 cores and a busy SQLite lock keeps its lease (a 2 s lease
    # lost mutual exclusion here: a 12 s stall let a resumed run repeat a finished agent).
    parser.add_argument("--lease-seconds", type=float, default=10.0)
    parser.add_argument("--drain", type=float, default=45.0, help="max seconds to finish resumes")
    parser.add_argument("--poll-pause", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.seed = args.seed if args.seed is not None else random.randrange(10_000)

    workdir = Path(tempfile.mkdtemp(prefix="statehouse-load-"))
    url = args.database_url or f"sqlite:///{workdir / 'load.sqlite3'}"
    if args.fresh:
        recreate_database(url)
    prefix = f"load-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(16)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "DEBUG": "false",
        "STATEHOUSE_DATA_DIR": str(workdir),
        "STATEHOUSE_LEASE_SECONDS": str(args.lease_seconds),
        "STATEHOUSE_RESUME_BACKOFF_SECONDS": "0.5",
        "STATEHOUSE_RESUME_MAX_ATTEMPTS": "5",
        "DJANGO_SETTINGS_MODULE": "statehouse_site.settings",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "LOG_LEVEL": "ERROR",
        "STATEHOUSE_LOG_LEVEL": "WARNING",
    }
    env.pop("STATEHOUSE_TEST_DB_SUFFIX", None)
    print(f"load test {prefix}: {url} for {args.seconds:g}s (seed {args.seed})", flush=True)

    py = sys.executable
    run_checked([py, str(MANAGE), "migrate", "--noinput", "-v0"], env, 300, "migrate")
    make_admin = (
        "from django.contrib.auth import get_user_model\n"
        "U = get_user_model()\n"
        f"u, _ = U.objects.get_or_create(username={ADMIN_USER!r})\n"
        "u.is_staff = u.is_superuser = True\n"
        f"u.set_password({password!r})\n"
        "u.save()\n"
    )
    run_checked([py, str(MANAGE), "shell", "-c", make_admin], env, 120, "creating the admin")

    os.environ.update({k: env[k] for k in ("DATABASE_URL", "SECRET_KEY", "STATEHOUSE_DATA_DIR")})
    os.environ.update({k: env[k] for k in ("STATEHOUSE_LEASE_SECONDS", "DJANGO_SETTINGS_MODULE")})
    sys.path.insert(0, str(ROOT))
    from statehouse import _django

    _django.ensure_ready()
    from django.db.models import Max
    from statehouse_agents.models import Commit

    port = free_port()
    web = subprocess.Popen(
        [
            py,
            "-m",
            "gunicorn",
            "statehouse_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=None if args.verbose else subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[subprocess.Popen[bytes]] = []
    run = Run(args=args, prefix=prefix, env=env, logdir=workdir)
    poller = Poller(port=port, password=password)
    poll_thread: threading.Thread | None = None
    problems: list[str] = []
    try:
        poller.wait_until_up()
        poller.log_in()
        urls = poller.pick_urls()
        for _ in range(args.workers):
            workers.append(
                subprocess.Popen(
                    [py, str(MANAGE), "resume_worker", "--poll-interval", "0.3"],
                    env=env,
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=None if args.verbose else subprocess.DEVNULL,
                )
            )
        baseline = Commit.objects.aggregate(n=Max("id"))["n"] or 0
        poll_thread = threading.Thread(target=poller.run, args=(urls, args.poll_pause))
        poll_thread.start()

        # Load phase.
        started = time.time()
        until = started + args.seconds
        for index in range(args.agents):
            run.agent_procs[index] = start_agent(run, index, until)
        while time.time() < until:
            time.sleep(1.0)
            reap_agents(run, until)
            run.resumes_queued += queue_resumes(prefix)
        load_end = time.time()
        commits_in_load = Commit.objects.filter(pk__gt=baseline).count()

        # Agent processes finish their current agent and stop.
        stop_by = time.monotonic() + 60
        while run.agent_procs and time.monotonic() < stop_by:
            time.sleep(0.2)
            reap_agents(run, None)
        for process in run.agent_procs.values():
            problems.append(f"agent process {process.pid} did not stop; killed")
            stop(process, timeout=5)
        reap_agents(run, None)

        # Drain: interrupted agents are resumed by the workers.
        drain_by = time.monotonic() + args.drain
        while time.monotonic() < drain_by:
            run.resumes_queued += queue_resumes(prefix)
            if not unsettled(prefix):
                break
            time.sleep(0.5)
        drained = time.monotonic() < drain_by
    finally:
        poller.stopping.set()
        if poll_thread is not None:
            poll_thread.join(timeout=60)
        for process in run.agent_procs.values():
            stop(process, timeout=5)
        for process in workers:
            stop(process, timeout=30)
        stop(web, timeout=20, group=True)

    agent_problems, statuses, figures = check_agents(prefix)
    problems += agent_problems
    problems += [f"dashboard: {e}" for e in poller.errors[:20]]
    if len(poller.errors) > 20:
        problems.append(f"dashboard: … and {len(poller.errors) - 20} more errors")
    if not poller.samples:
        problems.append("dashboard: no request answered")
    unexpected_exits = {k: v for k, v in run.exits.items() if k not in ("exit 0",)}
    unexpected_exits.pop("crashed on purpose", None)
    if unexpected_exits:
        problems.append(f"agent processes ended unexpectedly: {unexpected_exits}")
        problems += run.failures[:5]

    load_seconds = load_end - started
    all_samples = [s for values in poller.samples.values() for s in values]
    print(f"\n== load test {prefix} ({'PostgreSQL' if 'postgres' in url else 'SQLite'}) ==")
    print(
        f"load phase             {load_seconds:.1f} s, {args.agents} agent processes, "
        f"{args.workers} resume workers"
    )
    print(
        f"transactions           {commits_in_load} committed, "
        f"{commits_in_load / load_seconds:.1f} per second"
    )
    print(f"agent processes        {sum(run.exits.values())} ended: {dict(run.exits)}")
    print(f"agents                 {figures.pop('agents')} started: {dict(statuses)}")
    for name, value in figures.items():
        print(f"{name:<22} {value}")
    print(
        f"resumes queued         {run.resumes_queued}; "
        f"drain {'complete' if drained else 'timed out (agents left resuming)'}"
    )
    print(
        f"dashboard              {len(all_samples)} requests, "
        f"p50 {percentile(all_samples, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(all_samples, 0.95) * 1000:.0f} ms, {len(poller.errors)} errors"
    )
    for path, values in poller.samples.items():
        codes = {code: n for (p, code), n in poller.statuses.items() if p == path}
        print(
            f"  {path:<28} n={len(values):<5} p50 {percentile(values, 0.5) * 1000:.0f} ms  "
            f"p95 {percentile(values, 0.95) * 1000:.0f} ms  "
            f"mean {statistics.fmean(values) * 1000:.0f} ms  status {codes}"
        )
    for note in poller.notes:
        print(f"  note: {note}")
    if problems:
        print(f"\nFAILED: {len(problems)} problem(s)")
        for problem in problems[:50]:
            print(f"  - {problem}")
        return 1
    print("\nOK: no lost or duplicated step, no overlapping resume, no dashboard error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
