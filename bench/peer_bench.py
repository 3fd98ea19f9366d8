#!/usr/bin/env python
"""Statehouse against its peers, per agent step (pending + done), side by side.

    .venv/bin/pip install -e ".[dev,bench]"        # the peers: LangGraph savers, DBOS
    .venv/bin/python bench/peer_bench.py --pg-url postgres://postgres@127.0.0.1:5432/h1_bench
    ... --only sqlite          # or postgresql
    ... --quick                # fewer steps and rounds
    ... --json figures.json

Systems: Statehouse (`client.step(...)`: `step:<n>` pending, then done with its result,
two durable commits), LangGraph with PostgresSaver / SqliteSaver (`durability="sync"`,
one node per super-step), DBOS Transact (a `@DBOS.workflow` calling one `@DBOS.step` per
step), and a raw-driver floor inserting the same pending and done rows (autocommit
psycopg / sqlite3 in WAL mode with synchronous=FULL). Every system runs in a fresh
spawned process, warmed up, in rounds that rotate the order of the systems; figures are
medians over rounds. The PostgreSQL databases named (and `<name>_dbos` for DBOS) and the
SQLite files under --sqlite-dir are DESTROYED first. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import placement  # noqa: E402

ACTION = {"tool": "search", "query": "q" * 170}  # ~200 B of JSON
RESULT = {"text": "r" * 1000}  # ~1 KB
SYSTEMS = ("statehouse", "langgraph", "dbos", "raw")
LABELS = {
    "statehouse": "Statehouse",
    "langgraph": "LangGraph {saver} (sync)",
    "dbos": "DBOS Transact",
    "raw": "raw {driver}, same 2 rows",
}
# The defaults of the options every peer comparison takes (bench_parser), and what
# --quick sets instead.
DEFAULTS = {
    "pg_url": "postgres://postgres@127.0.0.1:5432/bench_peers",
    "sqlite_dir": "peer-bench",
    "steps": 500,
}
QUICK = {"steps": 100, "rounds": 1, "probe_steps": 200, "warmup": 5}


@dataclass(frozen=True)
class Where:
    """One database under test: its kind and how each system reaches it."""

    vendor: str  # "postgresql" | "sqlite"
    statehouse_url: str
    raw_url: str
    langgraph_url: str
    dbos_url: str


# --- the systems -----------------------------------------------------------------------
# Each runs in its own process: `prepare` once (schema), then `open` + `steps`.


class System:
    def __init__(self, where: Where) -> None:
        self.where = where

    def prepare(self) -> None: ...

    def open(self) -> None: ...

    def steps(self, run: str, count: int) -> list[float]:
        """Run `count` steps of a new agent/thread/workflow `run`; per-step seconds."""
        raise NotImplementedError

    def close(self) -> None: ...


def django_setup(database_url: str) -> None:
    """Point Django at `database_url` and set it up (once per bench process)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    import django

    django.setup()


class OnStatehouse:
    """A system on Statehouse at `where.statehouse_url` (a mixin of a bench's System):
    `prepare` migrates its database, `connect` opens a client in this process."""

    where: Any
    client: Any

    def prepare(self) -> None:
        django_setup(self.where.statehouse_url)
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)

    def connect(self, namespace: str) -> Any:
        django_setup(self.where.statehouse_url)
        from statehouse import Statehouse

        self.client = Statehouse(namespace=namespace)
        return self.client

    def close(self) -> None:
        self.client.close()


class OnLangGraphSaver:
    """A system on LangGraph's own saver for `where` (SqliteSaver or PostgresSaver; a
    mixin of a bench's System): `checkpointer` opens it, `prepare` creates its tables."""

    where: Any
    conn: Any

    def checkpointer(self) -> Any:
        if self.where.vendor == "sqlite":
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            self.conn = sqlite3.connect(self.where.langgraph_url, check_same_thread=False)
            saver: Any = SqliteSaver(self.conn)
        else:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row

            self.conn = psycopg.connect(
                self.where.langgraph_url, autocommit=True, prepare_threshold=0, row_factory=dict_row
            )
            saver = PostgresSaver(self.conn)
        saver.setup()
        return saver

    def prepare(self) -> None:
        self.checkpointer()
        self.close()

    def close(self) -> None:
        self.conn.close()


def loop_graph(state: Any, step: Callable[..., dict[str, Any]], checkpointer: Any) -> Any:
    """A LangGraph graph of the one node `step`, run again and again (a super-step each)
    until the state's `n` reaches its `limit`."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(state)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges(
        "step", lambda s: END if s["n"] >= s["limit"] else "step", ["step", END]
    )
    return graph.compile(checkpointer=checkpointer)


def step_times(marks: list[float]) -> list[float]:
    """The seconds each step took, from the times each one started (the last ends now)."""
    return [b - a for a, b in itertools.pairwise([*marks, time.perf_counter()])]


def warmed(runner: Any, warmup: int) -> Any:
    """`runner` (a System) opened, and warmed up by `warmup` untimed steps of a run of
    their own."""
    runner.open()
    runner.steps(f"warm-{uuid.uuid4().hex[:8]}", warmup)
    return runner


class StatehouseSystem(OnStatehouse, System):
    def open(self) -> None:
        self.connect("peer")

    def steps(self, run: str, count: int) -> list[float]:
        client, clock, out = self.client, time.perf_counter, []
        client.start(run, {"task": "peer bench"})
        for n in range(count):
            t0 = clock()
            with client.step(run, n, action=ACTION) as step:
                step.result = RESULT
            out.append(clock() - t0)
        client.finish(run, {"steps": count})
        return out


class RawSystem(System):
    DDL = (
        "CREATE TABLE IF NOT EXISTS floor_steps (agent_id TEXT NOT NULL, n INTEGER NOT NULL, "
        "status TEXT NOT NULL, value_json TEXT NOT NULL, PRIMARY KEY (agent_id, n, status))"
    )

    def _connect(self) -> Any:
        if self.where.vendor == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.where.raw_url, isolation_level=None, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
            return conn
        import psycopg

        return psycopg.connect(self.where.raw_url, autocommit=True)

    def prepare(self) -> None:
        conn = self._connect()
        conn.execute(self.DDL)
        conn.close()

    def open(self) -> None:
        self.conn = self._connect()
        mark = "?" if self.where.vendor == "sqlite" else "%s"
        self.insert = f"INSERT INTO floor_steps VALUES ({mark}, {mark}, {mark}, {mark})"

    def steps(self, run: str, count: int) -> list[float]:
        conn, insert, clock, out = self.conn, self.insert, time.perf_counter, []
        for n in range(count):
            t0 = clock()
            pending = {"action": ACTION, "status": "pending"}
            conn.execute(insert, (run, n, "pending", json.dumps(pending)))
            done = {"action": ACTION, "status": "done", "result": RESULT}
            conn.execute(insert, (run, n, "done", json.dumps(done)))
            out.append(clock() - t0)
        return out

    def close(self) -> None:
        self.conn.close()


class LangGraphSystem(OnLangGraphSaver, System):
    def open(self) -> None:
        from typing import TypedDict

        class State(TypedDict):
            n: int
            limit: int
            action: dict[str, Any]
            result: dict[str, Any]

        self.marks: list[float] = []
        marks = self.marks

        def step(state: State) -> dict[str, Any]:
            marks.append(time.perf_counter())
            return {"n": state["n"] + 1, "action": ACTION, "result": RESULT}

        self.graph = loop_graph(State, step, self.checkpointer())

    def steps(self, run: str, count: int) -> list[float]:
        self.marks.clear()
        config = {"configurable": {"thread_id": run}, "recursion_limit": count + 10}
        self.graph.invoke(
            {"n": 0, "limit": count, "action": {}, "result": {}}, config, durability="sync"
        )
        return step_times(self.marks)


class DBOSSystem(System):
    def _launch(self) -> None:
        from dbos import DBOS

        DBOS(
            config={
                "name": "peerbench",
                "system_database_url": self.where.dbos_url,
                "log_level": "WARNING",
                "run_admin_server": False,
                # Its own executor: a process launching does not recover (re-run) the
                # workflows another bench process is running.
                "executor_id": f"peer-bench-{os.getpid()}",
            }  # type: ignore[typeddict-unknown-key]  # DBOS reads more keys than its TypedDict
        )
        marks: list[float] = []
        self.marks = marks

        @DBOS.step()
        def act(n: int, action: dict[str, Any]) -> dict[str, Any]:
            return RESULT

        @DBOS.workflow()
        def agent(count: int) -> int:
            for n in range(count):
                marks.append(time.perf_counter())
                act(n, ACTION)
            return count

        self.workflow = agent
        DBOS.launch()

    def prepare(self) -> None:
        self._launch()
        from dbos import DBOS

        DBOS.destroy()

    def open(self) -> None:
        self._launch()

    def steps(self, run: str, count: int) -> list[float]:
        from dbos import SetWorkflowID

        self.marks.clear()
        with SetWorkflowID(run):
            self.workflow(count)
        return step_times(self.marks)

    def close(self) -> None:
        from dbos import DBOS

        DBOS.destroy()


CLASSES: dict[str, type[System]] = {
    "statehouse": StatehouseSystem,
    "raw": RawSystem,
    "langgraph": LangGraphSystem,
    "dbos": DBOSSystem,
}


# --- counting statements, WAL and storage -----------------------------------------------


class StatementTracer:
    """Count the SQL statements every database connection of this process sends.

    SQLite: the driver's trace callback (one call per statement run). PostgreSQL:
    libpq's protocol trace, counting the client's Query and Execute messages (a
    statement each), and ReadyForQuery replies (round trips).
    """

    def __init__(self) -> None:
        self.sqlite: list[Any] = []
        self.pg: list[Any] = []
        self.files: list[Any] = []
        self.active = False
        self.sqlite_count = 0

    def install(self) -> None:
        import sqlite3
        import sqlite3.dbapi2

        original_sqlite = sqlite3.connect

        def sqlite_connect(*args: Any, **kwargs: Any) -> Any:
            conn = original_sqlite(*args, **kwargs)
            self.sqlite.append(conn)
            if self.active:
                conn.set_trace_callback(self._count)
            return conn

        sqlite3.connect = sqlite_connect  # type: ignore[assignment]  # counting statements
        sqlite3.dbapi2.connect = sqlite_connect  # type: ignore[assignment]  # the same
        try:
            import psycopg
        except ImportError:
            return
        original_pg = psycopg.Connection.connect.__func__  # type: ignore[attr-defined]  # a classmethod

        def pg_connect(cls: Any, *args: Any, **kwargs: Any) -> Any:
            conn = original_pg(cls, *args, **kwargs)
            self.pg.append(conn)
            if self.active:
                self._trace(conn)
            return conn

        psycopg.Connection.connect = classmethod(pg_connect)  # type: ignore[method-assign,assignment]  # counting
        psycopg.connect = psycopg.Connection.connect  # type: ignore[assignment]  # the same

    def _count(self, _statement: str) -> None:
        self.sqlite_count += 1

    def _trace(self, conn: Any) -> None:
        from psycopg.pq import Trace

        if conn.closed:
            return
        handle = tempfile.NamedTemporaryFile("w+", prefix="pgtrace-", delete=False)  # noqa: SIM115
        self.files.append(handle)
        conn.pgconn.trace(handle.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

    def start(self) -> None:
        self.active = True
        for conn in self.sqlite:
            with contextlib.suppress(Exception):  # closed since
                conn.set_trace_callback(self._count)
        for conn in self.pg:
            self._trace(conn)

    def stop(self) -> tuple[int, int]:
        """(statements, round trips) since start (round trips: PostgreSQL only)."""
        self.active = False
        for conn in self.sqlite:
            with contextlib.suppress(Exception):  # closed since
                conn.set_trace_callback(None)
        for conn in self.pg:
            if not conn.closed:
                conn.pgconn.untrace()
        statements, trips = self.sqlite_count, 0
        for handle in self.files:
            handle.flush()
            handle.seek(0)
            for line in handle:
                parts = line.split("\t")
                if len(parts) > 2 and parts[0] == "F" and parts[2] in ("Query", "Execute"):
                    statements += 1
                elif len(parts) > 2 and parts[0] == "B" and parts[2] == "ReadyForQuery":
                    trips += 1
            handle.close()
            os.unlink(handle.name)
        self.files.clear()
        return statements, trips


# Tables each system writes (PostgreSQL), to measure their growth.
PG_TABLES = {
    "statehouse": ("agents_%", None),
    "raw": ("floor_%", None),
    "langgraph": ("checkpoint%", None),
    "dbos": ("%", "dbos"),  # every table of its schema, in its own database
}


def pg_storage(url: str, system: str) -> int:
    import psycopg

    pattern, schema = PG_TABLES[system]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND c.relname LIKE %s AND s.nspname = coalesce(%s, 'public')",
            [pattern, schema],
        ).fetchone()
    return int(row[0]) if row else 0


def pg_lsn(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])  # type: ignore[index]  # one row


def pg_wal_bytes(url: str, start: str, end: str) -> int:
    """WAL written between two positions for this database alone (other databases of a
    shared server write WAL too): its records, plus the commit records of their xids."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        db = f"/{oid.fetchone()[0]}/"  # type: ignore[index]  # one row
        row = conn.execute(
            "WITH w AS (SELECT * FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)), "
            "mine AS (SELECT DISTINCT xid FROM w WHERE block_ref LIKE %s AND xid <> '0') "
            "SELECT coalesce(sum(record_length), 0) FROM w WHERE block_ref LIKE %s "
            "OR (resource_manager = 'Transaction' AND xid IN (SELECT xid FROM mine))",
            [start, end, f"%{db}%", f"%{db}%"],
        ).fetchone()
    return int(row[0]) if row else 0


def sqlite_storage(path: str) -> int:
    import sqlite3

    total = 0
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("", "-wal"):
        file = Path(path + suffix)
        total += file.stat().st_size if file.exists() else 0
    return total


def storage(where: Where, system: str) -> int:
    url = getattr(where, f"{system}_url")
    if where.vendor == "sqlite":
        return sqlite_storage(url.removeprefix("sqlite:///"))
    return pg_storage(url, system)


# --- the processes ----------------------------------------------------------------------


def _prepare(system: str, where: Where, queue: Any) -> None:
    CLASSES[system](where).prepare()
    queue.put({})


def _timed(system: str, where: Where, count: int, warmup: int, barrier: Any, queue: Any) -> None:
    """One process: warm up, wait for the others, run `count` steps, report. Alone on a
    local PostgreSQL, it runs pinned (`one_process_placement`)."""
    runner = warmed(CLASSES[system](where), warmup)
    if barrier is not None:
        barrier.wait()
    with one_process_placement(where, system, alone=barrier is None) as note:
        start = time.monotonic()
        latencies = runner.steps(f"run-{uuid.uuid4().hex[:8]}", count)
        end = time.monotonic()
    runner.close()
    queue.put({"latencies": latencies, "start": start, "end": end, "placement": note})


@contextlib.contextmanager
def one_process_placement(where: Where, system: str, *, alone: bool) -> Iterator[str]:
    """A system measured alone on a local PostgreSQL: this process on one CPU and its
    server processes on another (bench/placement.py), so that every system's round trips
    cost the same. Otherwise (SQLite, 4 processes, a remote server) nothing is pinned."""
    url = getattr(where, f"{system}_url")
    if not alone or where.vendor != "postgresql" or not placement.is_local(url):
        yield ""
        return
    with placement.pinned(placement.own_server_pids(url)) as note:
        yield note


def _probe(system: str, where: Where, count: int, queue: Any) -> None:
    """One process: SQL statements, round trips, WAL and storage of `count` steps."""
    tracer = StatementTracer()
    tracer.install()
    runner = warmed(CLASSES[system](where), 5)
    before = storage(where, system)
    url = getattr(where, f"{system}_url")
    lsn = pg_lsn(url) if where.vendor == "postgresql" else ""
    tracer.start()
    runner.steps(f"probe-{uuid.uuid4().hex[:8]}", count)
    statements, trips = tracer.stop()
    wal = pg_wal_bytes(url, lsn, pg_lsn(url)) if where.vendor == "postgresql" else None
    runner.close()
    queue.put(
        {
            "statements": statements / count,
            "round_trips": trips / count if where.vendor == "postgresql" else None,
            "wal": wal / count if wal is not None else None,
            "storage": (storage(where, system) - before) / count,
        }
    )


def _guarded(target: Callable[..., None], *args: Any) -> None:
    """Run `target` in this child; a failure goes back to the parent as an "error"."""
    queue = args[-1]
    try:
        target(*args)
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def spawn(target: Callable[..., None], *args: Any, procs: int = 1) -> list[dict[str, Any]]:
    """Run `target(*args, [barrier,] queue)` in `procs` fresh processes; their reports."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(procs, timeout=300) if procs > 1 else None
    extra = (barrier,) if target is _timed else ()
    workers = [
        ctx.Process(target=_guarded, args=(target, *args, *extra, queue), daemon=True)
        for _ in range(procs)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=900) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        if worker.is_alive():
            worker.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(errors[0])
    return results


# --- figures ----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Figures:
    system: str
    label: str
    rates: list[float] = field(default_factory=list)  # steps/s per round
    p50s: list[float] = field(default_factory=list)  # ms
    p99s: list[float] = field(default_factory=list)
    rates4: list[float] = field(default_factory=list)
    p50s4: list[float] = field(default_factory=list)
    p99s4: list[float] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    placement: str = ""  # where the 1-process runs ran (`one_process_placement`)


def one_round(system: str, where: Where, args: argparse.Namespace, fig: Figures) -> None:
    (result,) = spawn(_timed, system, where, args.steps, args.warmup)
    lat = result["latencies"]
    fig.placement = result["placement"]
    fig.rates.append(len(lat) / (result["end"] - result["start"]))
    fig.p50s.append(pct(lat, 50) * 1000)
    fig.p99s.append(pct(lat, 99) * 1000)


def four_round(system: str, where: Where, args: argparse.Namespace, fig: Figures) -> None:
    results = spawn(_timed, system, where, args.steps, args.warmup, procs=args.procs)
    lat = [x for r in results for x in r["latencies"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    fig.rates4.append(len(lat) / wall)
    fig.p50s4.append(pct(lat, 50) * 1000)
    fig.p99s4.append(pct(lat, 99) * 1000)


def measure(where: Where, args: argparse.Namespace) -> list[Figures]:
    driver = "psycopg" if where.vendor == "postgresql" else "sqlite3"
    saver = "PostgresSaver" if where.vendor == "postgresql" else "SqliteSaver"
    figures = {s: Figures(s, LABELS[s].format(saver=saver, driver=driver)) for s in args.systems}
    for system in args.systems:
        try:
            spawn(_prepare, system, where)
        except Exception as exc:
            figures[system].error = f"cannot run on {where.vendor}: {exc!r}"
    live = [s for s in args.systems if not figures[s].error]
    for round_ in range(args.rounds):
        order = live[round_ % len(live) :] + live[: round_ % len(live)]
        for system in order:
            log(f"{where.vendor} round {round_ + 1}/{args.rounds}: {system}, 1 process")
            one_round(system, where, args, figures[system])
        for system in reversed(order):
            log(f"{where.vendor} round {round_ + 1}/{args.rounds}: {system}, {args.procs} procs")
            four_round(system, where, args, figures[system])
    for system in live:
        log(f"{where.vendor}: probing {system} ({args.probe_steps} steps)")
        (figures[system].probe,) = spawn(_probe, system, where, args.probe_steps)
    return [figures[s] for s in args.systems]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs and theirs == theirs else ""


def table(where: Where, figures: list[Figures], args: argparse.Namespace) -> str:
    ours, procs = next(f for f in figures if f.system == "statehouse"), args.procs
    head = "| per step (pending + done) | " + " | ".join(f.label for f in figures) + " |"
    lines = [f"### {where.vendor}", "", head, "| --- " * (len(figures) + 1) + "|"]

    def row(name: str, cell: Callable[[Figures], str]) -> None:
        lines.append(
            f"| {name} | " + " | ".join(cell(f) if not f.error else "—" for f in figures) + " |"
        )

    def rate_ratio(f: Figures, rates: list[float]) -> str:
        # Time ratio: ours over theirs (their rate over ours); < 1 means we are faster.
        return ratio(med(getattr(f, rates)), med(getattr(ours, rates)))

    row("steps/s, 1 process", lambda f: f"{med(f.rates):,.0f}")
    row("p50 / p99, 1 process", lambda f: f"{med(f.p50s):.2f} / {med(f.p99s):.2f} ms")
    row("Statehouse's time / this, 1 process", lambda f: rate_ratio(f, "rates"))
    row(f"steps/s, {procs} processes", lambda f: f"{med(f.rates4):,.0f}")
    row(f"p50 / p99, {procs} processes", lambda f: f"{med(f.p50s4):.2f} / {med(f.p99s4):.2f} ms")
    row(f"Statehouse's time / this, {procs} processes", lambda f: rate_ratio(f, "rates4"))
    row("SQL statements", lambda f: f"{f.probe.get('statements', float('nan')):.1f}")
    if where.vendor == "postgresql":
        row("round trips", lambda f: f"{f.probe.get('round_trips', float('nan')):.1f}")
        row("WAL per step", lambda f: f"{f.probe.get('wal', float('nan')) / 1024:.2f} KB")
    name = "table + index data per step" if where.vendor == "postgresql" else "file growth per step"
    row(name, lambda f: f"{f.probe.get('storage', float('nan')) / 1024:.2f} KB")
    notes = [f"- {f.label}: {f.error}" for f in figures if f.error]
    notes += [f"- 1 process: {ours.placement}"] if ours.placement else []
    return "\n".join(lines + notes)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- set-up -----------------------------------------------------------------------------


def reset_pg(url: str, name: str, *, allow_drop: bool) -> None:
    import psycopg
    from psycopg import sql

    if "bench" not in name and not allow_drop:
        raise SystemExit(f"refusing to drop database {name!r}: its name has no 'bench'")
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def pg_where(url: str, *, allow_drop: bool) -> Where:
    base, _, name = url.rpartition("/")
    reset_pg(url, name, allow_drop=allow_drop)
    reset_pg(url, f"{name}_dbos", allow_drop=allow_drop)
    base = "postgresql://" + base.split("://", 1)[1]
    return Where(
        vendor="postgresql",
        statehouse_url=url,
        raw_url=url,
        langgraph_url=url,
        dbos_url=f"{base}/{name}_dbos",
    )


def sqlite_where(folder: Path) -> Where:
    folder.mkdir(parents=True, exist_ok=True)
    for file in folder.glob("*.sqlite3*"):
        file.unlink()
    return Where(
        vendor="sqlite",
        statehouse_url=f"sqlite:///{folder / 'statehouse.sqlite3'}",
        raw_url=str(folder / "raw.sqlite3"),
        langgraph_url=str(folder / "langgraph.sqlite3"),
        dbos_url=f"sqlite:///{folder / 'dbos.sqlite3'}",
    )


def bench_parser(doc: str, *, pg_url: str, sqlite_dir: str, steps: int) -> Any:
    """The options every peer comparison takes: where the databases are, how many steps
    and rounds, and where to write the figures as JSON (described by the first paragraph
    of the script's `doc`)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--pg-url", default=pg_url)
    parser.add_argument("--sqlite-dir", default=str(Path(tempfile.gettempdir()) / sqlite_dir))
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--allow-drop", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    return parser


def run_databases(
    args: argparse.Namespace,
    sqlite_where: Callable[[Path], Any],
    pg_where: Callable[..., Any],
    measure: Callable[[Any, argparse.Namespace], list[Any]],
    table: Callable[[Any, list[Any], argparse.Namespace], str],
    heading: Callable[[argparse.Namespace], str],
    load_digits: int,
) -> None:
    """Measure each database `--only` leaves in (SQLite, then PostgreSQL), print the
    heading (then the load averages before and after, to `load_digits` decimals) and each
    database's table, and keep the figures."""
    report: dict[str, Any] = {"load_start": os.getloadavg()}
    wheres = {
        "sqlite": lambda: sqlite_where(Path(args.sqlite_dir)),
        "postgresql": lambda: pg_where(args.pg_url, allow_drop=args.allow_drop),
    }
    out = []
    for vendor, make_where in wheres.items():
        if args.only in (None, vendor):
            where = make_where()
            figures = measure(where, args)
            out.append(table(where, figures, args))
            report[where.vendor] = [asdict(f) for f in figures]
    report["load_end"] = os.getloadavg()
    load = [f"{report[when][0]:.{load_digits}f}" for when in ("load_start", "load_end")]
    print(f"\n{heading(args)} Load average {load[0]} -> {load[1]}.\n")
    print("\n\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def heading(args: argparse.Namespace) -> str:
    return (
        f"{args.steps} steps per run (action ~200 B, result ~1 KB), {args.rounds} rounds "
        f"(medians), {args.procs} processes x {args.steps} steps; statements, WAL and "
        f"storage over {args.probe_steps} steps."
    )


def main() -> None:
    parser = bench_parser(__doc__, **DEFAULTS)
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, of {', '.join(SYSTEMS)} (statehouse is always run)",
    )
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--probe-steps", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 steps, 1 round, probe 200")
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        parser.error(
            f"--systems: no system named {', '.join(unknown)} (known: {', '.join(SYSTEMS)})"
        )
    if "statehouse" not in args.systems:
        args.systems.insert(0, "statehouse")
    if args.quick:
        vars(args).update(QUICK)
    run_databases(args, sqlite_where, pg_where, measure, table, heading, load_digits=1)


if __name__ == "__main__":
    main()
