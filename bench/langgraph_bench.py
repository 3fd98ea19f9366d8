#!/usr/bin/env python
"""A LangGraph super-step on Statehouse against LangGraph's own savers, side by side.

    .venv/bin/pip install -e ".[dev,bench]"       # the peers: PostgresSaver, SqliteSaver
    .venv/bin/python bench/langgraph_bench.py --pg-url postgres://postgres@127.0.0.1:5432/lg_bench
    ... --only sqlite          # or postgresql
    ... --quick                # 50 steps, 1 round
    ... --profile statehouse   # also print where our saver's time goes (cProfile)

One graph, one node looping for `--steps` super-steps, `durability="sync"` (every
checkpoint written before the next step), run through `StatehouseSaver` (with
`statehouse.langgraph.invoke`, as users run it) and through LangGraph's `PostgresSaver` /
`SqliteSaver` (`graph.invoke`), for two states:

- constant: a step counter and a ~1 KB document replaced every step;
- growing: a step counter and a message list that every step appends one ~600 B message
  to (`operator.add`), up to `--steps` messages.

Every run is a fresh spawned process, warmed up untimed on another thread; rounds rotate
the order of the systems; figures are medians over rounds. A separate untimed probe run
per system measures the bytes stored by each super-step (the rows' data in the system's
tables; see bench/README.md). The PostgreSQL database named and the SQLite files under
--sqlite-dir are DESTROYED first.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import itertools
import operator
import pstats
import random
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peer_bench import (  # noqa: E402
    OnLangGraphSaver,
    OnStatehouse,
    bench_parser,
    log,
    loop_graph,
    med,
    one_process_placement,
    pct,
    reset_pg,
    run_databases,
    spawn,
    step_times,
    warmed,
)

SYSTEMS = ("statehouse", "langgraph")
WORKLOADS = ("constant", "growing")
LABELS = {"statehouse": "Statehouse (StatehouseSaver)", "langgraph": "LangGraph {saver}"}
# The defaults of the options every peer comparison takes (bench_parser), and what
# --quick sets instead.
DEFAULTS = {
    "pg_url": "postgres://postgres@127.0.0.1:5432/lg_bench",
    "sqlite_dir": "lg-bench",
    "steps": 200,
}
QUICK = {"steps": 50, "rounds": 1, "warmup": 5}


def text(size: int, seed: int) -> str:
    """`size` characters that do not compress (PostgreSQL compresses large values, so a
    repeated letter would measure its compression, not what is stored)."""
    return base64.b64encode(random.Random(seed).randbytes(size * 3 // 4)).decode()[:size]


DOC_SIZE = 1000  # the constant state's document: ~1 KB of JSON
MESSAGE_SIZE = 560  # the growing state's message: ~600 B of JSON with its fields


@dataclass(frozen=True)
class Where:
    """One database under test and how each system reaches it."""

    vendor: str  # "postgresql" | "sqlite"
    statehouse_url: str  # a DATABASE_URL
    langgraph_url: str  # a psycopg conninfo, or an SQLite file path


# --- the graph --------------------------------------------------------------------------


class Constant(TypedDict):
    n: int
    limit: int
    doc: dict[str, Any]


class Growing(TypedDict):
    n: int
    limit: int
    messages: Annotated[list[dict[str, Any]], operator.add]


def build(checkpointer: Any, workload: str, on_step: Callable[[int], None]) -> Any:
    """The bench graph: one node looping until `n` reaches `limit`; `on_step(n)` is called
    as each super-step's node starts (the previous checkpoint is then durable)."""

    def constant(state: Constant) -> dict[str, Any]:
        on_step(n := state["n"])
        return {"n": state["n"] + 1, "doc": {"step": state["n"], "text": text(DOC_SIZE, n)}}

    def growing(state: Growing) -> dict[str, Any]:
        on_step(state["n"])
        content = text(MESSAGE_SIZE, state["n"])
        message = {"role": "assistant", "step": state["n"], "content": content}
        return {"n": state["n"] + 1, "messages": [message]}

    if workload == "constant":
        return loop_graph(Constant, constant, checkpointer)
    return loop_graph(Growing, growing, checkpointer)


def initial(workload: str, count: int) -> dict[str, Any]:
    if workload == "constant":
        return {"n": 0, "limit": count, "doc": {}}
    return {"n": 0, "limit": count, "messages": []}


# --- the systems ------------------------------------------------------------------------


class System:
    """One checkpointer in this process: `open` it, then run threads (`steps`)."""

    def __init__(self, where: Where, workload: str) -> None:
        self.where = where
        self.workload = workload
        self.hook: Callable[[int], None] = lambda n: None
        self.marks: list[float] = []

    def _on_step(self, n: int) -> None:
        self.marks.append(time.perf_counter())
        self.hook(n)

    def prepare(self) -> None: ...

    def open(self) -> None:
        self.graph = build(self.checkpointer(), self.workload, self._on_step)

    def checkpointer(self) -> Any:
        raise NotImplementedError

    def invoke(self, thread: str, count: int) -> None:
        raise NotImplementedError

    def steps(self, thread: str, count: int) -> list[float]:
        """Run `count` super-steps on a new thread; the seconds each one took."""
        self.marks.clear()
        self.invoke(thread, count)
        return step_times(self.marks)

    def close(self) -> None: ...


class StatehouseSystem(OnStatehouse, System):
    def checkpointer(self) -> Any:
        client = self.connect("lgbench")
        from statehouse.langgraph import StatehouseSaver

        return StatehouseSaver(client)

    def invoke(self, thread: str, count: int) -> None:
        from statehouse.langgraph import invoke

        config: Any = {"recursion_limit": count + 10}
        invoke(self.graph, initial(self.workload, count), thread_id=thread, config=config)


class LangGraphSystem(OnLangGraphSaver, System):
    def invoke(self, thread: str, count: int) -> None:
        config: Any = {"configurable": {"thread_id": thread}, "recursion_limit": count + 10}
        self.graph.invoke(initial(self.workload, count), config, durability="sync")


CLASSES: dict[str, type[System]] = {"statehouse": StatehouseSystem, "langgraph": LangGraphSystem}


# --- bytes stored -----------------------------------------------------------------------

# Each system's tables: every row it writes for a thread is in one of these. Per vendor:
# the query of the tables whose names are LIKE a pattern, and each system's pattern.
TABLES = {
    "postgresql": (
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
        {"statehouse": "agents_%", "langgraph": "checkpoint%"},
    ),
    "sqlite": (
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? "
        "AND name NOT LIKE 'sqlite_%'",
        {"statehouse": "agents_%", "langgraph": "%"},  # SqliteSaver: its own file
    ),
}


class RowBytes:
    """The bytes of data in a system's tables, read on a connection of its own.

    PostgreSQL: `pg_column_size` of every row (values as stored: compressed if TOASTed;
    row headers included, indexes and free space not). SQLite: the length of every
    column's value (text and blobs as stored, numbers as their text). Differences between
    two readings are what the steps in between stored.
    """

    def __init__(self, where: Where, system: str) -> None:
        self.vendor = where.vendor
        url = where.statehouse_url if system == "statehouse" else where.langgraph_url
        if where.vendor == "sqlite":
            import sqlite3

            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
        tables, patterns = TABLES[where.vendor]
        names = [row[0] for row in self.conn.execute(tables, [patterns[system]]).fetchall()]
        parts = [self._table_bytes(name) for name in names]
        self.query = "SELECT " + " + ".join(f"({p})" for p in parts)

    def _table_bytes(self, name: str) -> str:
        """The query of the bytes of data in the table `name`."""
        if self.vendor == "postgresql":
            return f'SELECT coalesce(sum(pg_column_size(t.*)), 0) AS b FROM "{name}" t'
        columns = [r[1] for r in self.conn.execute(f'PRAGMA table_info("{name}")')]
        lengths = " + ".join(f'coalesce(length("{c}"), 0)' for c in columns)
        return f'SELECT coalesce(sum({lengths}), 0) AS b FROM "{name}"'

    def read(self) -> int:
        return int(self.conn.execute(self.query).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


# --- the processes ----------------------------------------------------------------------


def _prepare(system: str, where: Where, queue: Any) -> None:
    CLASSES[system](where, "constant").prepare()
    queue.put({})


def _timed(system: str, workload: str, where: Where, count: int, warmup: int, queue: Any) -> None:
    runner = warmed(CLASSES[system](where, workload), warmup)
    with one_process_placement(where, system, alone=True) as note:
        latencies = runner.steps(f"run-{uuid.uuid4().hex[:8]}", count)
    runner.close()
    queue.put({"latencies": latencies, "placement": note})


def _probe(system: str, workload: str, where: Where, count: int, queue: Any) -> None:
    """Bytes stored by each super-step: a reading as each node starts, and one at the end."""
    runner = warmed(CLASSES[system](where, workload), 3)
    meter = RowBytes(where, system)
    readings: list[int] = []
    runner.hook = lambda n: readings.append(meter.read())
    # One step more than asked: readings[k] is taken as the node of step k + 1 starts, so
    # the difference to the next is step k + 1's writes and checkpoint, and the last step
    # asked for is not followed by the end of the run (Statehouse's `answer`).
    runner.steps(f"probe-{uuid.uuid4().hex[:8]}", count + 1)
    meter.close()
    runner.close()
    queue.put({"per_step": [b - a for a, b in itertools.pairwise(readings)]})


def _profile(system: str, workload: str, where: Where, count: int, queue: Any) -> None:
    """Where the checkpointer's time goes: its put, put_writes and get_tuple profiled on
    whatever thread LangGraph calls them (one at a time)."""
    import threading

    runner = warmed(CLASSES[system](where, workload), 5)
    profiler = cProfile.Profile()
    lock = threading.Lock()
    saver = runner.graph.checkpointer
    for name in ("put", "put_writes", "get_tuple"):
        method = getattr(saver, name)

        def profiled(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            with lock:
                return profiler.runcall(_method, *args, **kwargs)

        setattr(saver, name, profiled)
    runner.steps(f"prof-{uuid.uuid4().hex[:8]}", count)
    runner.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
    queue.put({"text": out.getvalue()})


# --- figures ----------------------------------------------------------------------------


@dataclass
class Figures:
    system: str
    workload: str
    label: str
    p50s: list[float] = field(default_factory=list)  # ms per super-step, per round
    p99s: list[float] = field(default_factory=list)
    lasts: list[float] = field(default_factory=list)  # median of the last 10% of steps
    per_step: list[int] = field(default_factory=list)  # bytes stored by each super-step
    error: str = ""
    placement: str = ""  # where the timed runs ran (`one_process_placement`)


def measure(where: Where, args: argparse.Namespace) -> list[Figures]:
    saver = "PostgresSaver" if where.vendor == "postgresql" else "SqliteSaver"
    figures = {
        (s, w): Figures(s, w, LABELS[s].format(saver=saver) + " (sync)")
        for s in SYSTEMS
        for w in args.workloads
    }
    for system in SYSTEMS:
        spawn(_prepare, system, where)
    tail = max(1, args.steps // 10)
    for round_ in range(args.rounds):
        for workload in args.workloads:
            order = SYSTEMS[round_ % 2 :] + SYSTEMS[: round_ % 2]
            for system in order:
                log(f"{where.vendor} round {round_ + 1}/{args.rounds}: {workload}, {system}")
                (result,) = spawn(_timed, system, workload, where, args.steps, args.warmup)
                lat = result["latencies"]
                fig = figures[(system, workload)]
                fig.placement = result["placement"]
                fig.p50s.append(pct(lat, 50) * 1000)
                fig.p99s.append(pct(lat, 99) * 1000)
                fig.lasts.append(med(lat[-tail:]) * 1000)
    for (system, workload), fig in figures.items():
        log(f"{where.vendor}: bytes per step, {workload}, {system}")
        (result,) = spawn(_probe, system, workload, where, args.steps)
        fig.per_step = result["per_step"]
    for system in args.profile:
        for workload in args.workloads:
            (result,) = spawn(_profile, system, workload, where, args.steps)
            print(f"\n--- profile: {system}, {workload}, {where.vendor} ---\n{result['text']}")
    return list(figures.values())


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else ""


def table(where: Where, figures: list[Figures], args: argparse.Namespace) -> str:
    lines: list[str] = []
    for workload in dict.fromkeys(f.workload for f in figures):
        lines += workload_table(where, [f for f in figures if f.workload == workload], args.steps)
    notes = dict.fromkeys(f.placement for f in figures if f.placement)
    lines += [f"- timed runs: {note}" for note in notes]
    return "\n".join(lines)


def workload_table(where: Where, row_figs: list[Figures], steps: int) -> list[str]:
    ours = next(f for f in row_figs if f.system == "statehouse")
    lines = [
        f"#### {row_figs[0].workload} state, {where.vendor}",
        "",
        "| per super-step | " + " | ".join(f.label for f in row_figs) + " |",
        "| --- " * (len(row_figs) + 1) + "|",
    ]

    def row(name: str, cell: Callable[[Figures], str], figs: list[Figures] = row_figs) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(f) for f in figs) + " |")

    def kb(value: float) -> str:
        return f"{value / 1024:.2f} KB"

    last = f"steps {steps - max(1, steps // 10) + 1}-{steps}"
    row("time p50 / p99", lambda f: f"{med(f.p50s):.2f} / {med(f.p99s):.2f} ms")
    row(f"time, median of {last}", lambda f: f"{med(f.lasts):.2f} ms")
    row(
        "Statehouse's time / this (p50)",
        lambda f: ratio(med(ours.p50s), med(f.p50s)),
    )
    row(
        f"Statehouse's time / this ({last})",
        lambda f: ratio(med(ours.lasts), med(f.lasts)),
    )
    row("stored by step 1", lambda f: kb(f.per_step[0]))
    row(f"stored by step {steps}", lambda f: kb(f.per_step[-1]))
    row(
        f"step {steps} / step 1",
        lambda f: ratio(f.per_step[-1], f.per_step[0]),
    )
    row(f"stored by {steps} steps", lambda f: kb(sum(f.per_step)))
    lines.append("")
    return lines


# --- set-up -----------------------------------------------------------------------------


def pg_where(url: str, *, allow_drop: bool) -> Where:
    name = url.rpartition("/")[2]
    reset_pg(url, name, allow_drop=allow_drop)
    return Where("postgresql", statehouse_url=url, langgraph_url=url)


def sqlite_where(folder: Path) -> Where:
    folder.mkdir(parents=True, exist_ok=True)
    for file in folder.glob("*.sqlite3*"):
        file.unlink()
    return Where(
        "sqlite",
        statehouse_url=f"sqlite:///{folder / 'statehouse.sqlite3'}",
        langgraph_url=str(folder / "langgraph.sqlite3"),
    )


def heading(args: argparse.Namespace) -> str:
    return (
        f"{args.steps} super-steps per thread, durability sync, {args.rounds} rounds "
        f"(medians); bytes stored per super-step from one probe run."
    )


def main() -> None:
    parser = bench_parser(__doc__, **DEFAULTS)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--profile", default="", help="systems to profile (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="50 steps, 1 round")
    args = parser.parse_args()
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.profile = [s for s in args.profile.split(",") if s]
    if unknown := set(args.workloads) - set(WORKLOADS):
        parser.error(f"unknown workloads {sorted(unknown)}; use {', '.join(WORKLOADS)}")
    if unknown := set(args.profile) - set(SYSTEMS):
        parser.error(f"unknown systems {sorted(unknown)}; use {', '.join(SYSTEMS)}")
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.quick:
        vars(args).update(QUICK)
    run_databases(args, sqlite_where, pg_where, measure, table, heading, load_digits=2)


if __name__ == "__main__":
    main()
