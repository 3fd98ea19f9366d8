#!/usr/bin/env python
"""Remote client against embedded client on the same database (docs/api.md).

    .venv/bin/python bench/remote_bench.py --database-url postgres://postgres@127.0.0.1:5432/h3_bench
    .venv/bin/python bench/remote_bench.py --database-url sqlite:////tmp/remote_bench.sqlite3

The database must be migrated (SQLite: created on first use). The script starts gunicorn
serving the product on a free 127.0.0.1 port (--workers, gthread), makes an API token, and
measures, in interleaved rounds (so a busy machine slows both sides alike):

1. single-write commit latency, embedded vs remote (p50, p90; the difference at p50);
2. get_state latency, embedded vs remote;
3. the HTTP floor beside them: the same client transport sending the same POST and a GET
   to a bare WSGI app (bench/http_floor.py) on a second server of the same settings,
   so the difference can be split into the HTTP round trip and the server's own work;
4. commits per second of 4 remote agent processes (each its own agent), for --seconds,
   and the CPU the server's processes spent a commit meanwhile (/proc).

`--servers gunicorn,granian` puts the product and its floor behind each server named, all
measured in the same rounds: granian (the `granian` extra) is the WSGI server, written in
Rust, that `statehouse serve --server granian` runs, with its settings
(statehouse_site/granian.py; bench/README.md, "Another WSGI server").

Targets (docs/api.md): remote commit p50 within 1 ms of embedded; 4 remote agents at least
1,000 commits/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statehouse import Statehouse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from statehouse_site import web_servers  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    env: dict[str, str],
    *,
    workers: int | None = None,
    threads: int | None = None,
    app: str = "statehouse_site.wsgi",
    server: str = "gunicorn",
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `server` serving the product (or another WSGI `app`) on a free 127.0.0.1
    port; return it and its URL.

    With the product's process and thread counts (statehouse_site/gunicorn.py); `workers`
    and `threads` override them."""
    port = free_port()
    process = subprocess.Popen(
        web_servers.command(
            server,
            "127.0.0.1",
            port,
            workers=workers,
            threads=threads,
            options=("--log-level", "warning"),
            app=app,
        ),
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=2).close()
            return process, url
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the server did not start: {exc}") from exc
            time.sleep(0.1)


def server_env(database_url: str) -> dict[str, str]:
    # Persistent database connections, as in production (docs/deploy.md): without them
    # every request would open a new one.
    env = {"CONN_MAX_AGE": "600", **os.environ, "DATABASE_URL": database_url}
    env["SECRET_KEY"] = "bench-only"
    env.pop("STATEHOUSE_URL", None)
    return env


def start_server(
    database_url: str, workers: int | None, server: str = "gunicorn"
) -> tuple[subprocess.Popen[bytes], str]:
    return serve(server_env(database_url), workers=workers, server=server)


def start_floor(
    database_url: str, workers: int | None, server: str = "gunicorn"
) -> tuple[subprocess.Popen[bytes], str]:
    """`server` with the product's settings serving bench/http_floor.py instead."""
    return serve(server_env(database_url), workers=workers, app="bench.http_floor", server=server)


def make_token() -> str:
    from django.contrib.auth.models import User
    from statehouse_agents.store.tokens import create_token

    user, _ = User.objects.get_or_create(username="bench")
    return create_token(user=user, name="remote_bench", rate_limit=10_000_000)[1]


def timed(operation: Callable[[int], object], count: int) -> list[float]:
    samples = []
    for n in range(count):
        start = time.perf_counter()
        operation(n)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def commit_op(client: Statehouse, agent: str) -> Callable[[int], None]:
    def op(n: int) -> None:
        with client.begin_transaction() as tx:
            tx.write(agent_id=agent, key=f"k{n % 50}", value={"n": n, "payload": "x" * 100})

    return op


def read_op(client: Statehouse, agent: str) -> Callable[[int], object]:
    return lambda n: client.get_state(agent, f"k{n % 50}")


def floor_ops(
    url: str, token: str, agent: str
) -> tuple[Callable[[int], object], Callable[[int], object]]:
    """A POST of a single-write commit's body and a GET of a read's query, sent by the
    remote client's own transport to the HTTP floor at `url`."""
    from statehouse._http import transport

    http = transport(url, token=token, timeout=30)

    def post(n: int) -> object:
        value = {"n": n, "payload": "x" * 100}
        write = {"op": "write", "agent_id": agent, "key": f"k{n % 50}", "value": value}
        return http.post("/transactions", {"namespace": "bench", "operations": [write]})

    def get(n: int) -> object:
        return http.get("/state", {"namespace": "bench", "agent_id": agent, "key": f"k{n % 50}"})

    return post, get


def agent_process(url: str | None, token: str, seconds: float, results: Any) -> None:
    """One agent recording steps for `seconds`; `url` None: embedded (DATABASE_URL)."""
    from statehouse import Statehouse

    agent = f"bench-agent-{uuid.uuid4().hex[:8]}"
    with Statehouse(url, token=None if url is None else token, namespace="bench") as client:
        client.start(agent, {"task": "bench"})  # the agent's lease, renewed over HTTP
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            with client.step(agent, count, action="a") as step:
                step.result = count
            count += 2  # a step is two commits: pending, then done
        results.put(count)


def run_agents(ctx: Any, url: str | None, token: str, seconds: float) -> tuple[int, list[int]]:
    results = ctx.Queue()
    agents = [
        ctx.Process(target=agent_process, args=(url, token, seconds, results)) for _ in range(4)
    ]
    for process in agents:
        process.start()
    counts = [results.get(timeout=seconds + 120) for _ in agents]
    for process in agents:
        process.join(timeout=30)
    return sum(counts), counts


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) of process `pid` and all its descendants, from /proc
    (Linux): a web server's master and its workers."""
    total, pending = 0.0, [pid]
    while pending:
        proc = Path(f"/proc/{pending.pop()}")
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in (proc / "task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return total


def quantiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=10)
    return statistics.median(samples), cuts[8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=200, help="operations per round and side")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run length")
    parser.add_argument("--throughput-rounds", type=int, default=2, help="turns of each side")
    parser.add_argument(
        "--workers",
        type=int,
        help="web server processes (default: statehouse_site/gunicorn.py)",
    )
    parser.add_argument(
        "--servers",
        default="gunicorn",
        help=f"comma-separated, of {', '.join(web_servers.SERVERS)}: each serves the product "
        "and its floor, measured side by side in the same rounds",
    )
    args = parser.parse_args()
    servers = [name for name in args.servers.split(",") if name]
    if not servers or set(servers) - set(web_servers.SERVERS):
        parser.error(f"--servers: name one or more of {', '.join(web_servers.SERVERS)}")

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.pop("STATEHOUSE_URL", None)
    from statehouse import Statehouse, _django

    _django.ensure_ready()
    token = make_token()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        urls, floor_urls, pids = {}, {}, {}
        for name in servers:
            process, urls[name] = start_server(args.database_url, args.workers, name)
            processes.append(process)
            pids[name] = process.pid
            process, floor_urls[name] = start_floor(args.database_url, args.workers, name)
            processes.append(process)
        run = uuid.uuid4().hex[:8]
        clients = {"embedded": Statehouse(namespace="bench")}
        clients |= {name: Statehouse(urls[name], token=token, namespace="bench") for name in urls}
        floors = {name: floor_ops(floor_urls[name], token, f"floor-{run}") for name in servers}
        figures: dict[str, list[float]] = {}
        for side, client in clients.items():  # warm up
            timed(commit_op(client, f"warm-{side}-{run}"), 20)
        for post, _get in floors.values():
            timed(post, 20)
        for _ in range(args.rounds):
            for side, client in clients.items():
                agent = f"{side}-{run}"
                figures.setdefault(f"commit {side}", []).extend(
                    timed(commit_op(client, agent), args.ops)
                )
                figures.setdefault(f"get_state {side}", []).extend(
                    timed(read_op(client, agent), args.ops)
                )
            for name, (post, get) in floors.items():
                figures.setdefault(f"commit floor {name}", []).extend(timed(post, args.ops))
                figures.setdefault(f"get_state floor {name}", []).extend(timed(get, args.ops))
        print(
            f"database: {args.database_url.split('://')[0]}; {args.rounds} interleaved rounds "
            f"x {args.ops} operations a side; web server processes: "
            f"{args.workers or 'as configured'}; load average {os.getloadavg()[0]:.2f}"
        )
        for name in servers:
            print(f"-- {name}")
            for what, method in (("commit", "POST"), ("get_state", "GET")):
                e50, e90 = quantiles(figures[f"{what} embedded"])
                r50, r90 = quantiles(figures[f"{what} {name}"])
                f50, f90 = quantiles(figures[f"{what} floor {name}"])
                gap = r50 - e50
                print(
                    f"{what:10} embedded p50 {e50:.3f} ms p90 {e90:.3f} ms | remote p50 "
                    f"{r50:.3f} ms p90 {r90:.3f} ms | remote - embedded at p50: {gap:+.3f} ms"
                )
                print(
                    f"{'':10} {method:4} HTTP floor (bench/http_floor.py) p50 {f50:.3f} ms p90 "
                    f"{f90:.3f} ms | of the gap, {f50:.3f} ms is the floor and {gap - f50:+.3f} "
                    "ms the server's own work (Django, the API, the token)"
                )
        for client in clients.values():
            client.close()

        # Throughput: 4 agent processes per side (each server, then embedded, the
        # baseline), in turns.
        ctx = mp.get_context("spawn")
        sides: list[tuple[str, str | None]] = [*urls.items(), ("embedded", None)]
        for _ in range(args.throughput_rounds):
            for side, side_url in sides:
                before = cpu_seconds(pids[side]) if side in pids else 0.0
                total, counts = run_agents(ctx, side_url, token, args.seconds)
                server_cpu = ""
                if side in pids:
                    used = (cpu_seconds(pids[side]) - before) / max(total, 1)
                    server_cpu = f"; the server's CPU {used * 1e6:,.0f} µs a commit"
                print(
                    f"4 agents, {side}: {total} commits in {args.seconds:.1f} s = "
                    f"{total / args.seconds:,.0f} commits/s (per agent: {counts}){server_cpu}; "
                    f"load average {os.getloadavg()[0]:.2f}"
                )
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
