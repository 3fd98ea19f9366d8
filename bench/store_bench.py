#!/usr/bin/env python
"""Statehouse store benchmark: the client against hand-written SQL on the same database.

    .venv/bin/python bench/store_bench.py --database-url sqlite:////tmp/bench.sqlite3
    .venv/bin/python bench/store_bench.py \
        --database-url postgres://postgres@127.0.0.1:5432/bench_statehouse
    ... --quick            # smaller counts, under a minute
    ... --json out.json    # also write the figures as JSON

The database named by --database-url is DESTROYED and created anew (SQLite: the file is
deleted; PostgreSQL: the database is dropped and created; its name must contain "bench"
unless --allow-drop is given), then migrated. The baseline ("raw SQL") does the same rows
through the raw driver (sqlite3 with the product's PRAGMAs, or psycopg 3) in its own
tables (bl_commits, bl_versions, bl_records) of the same database. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import placement  # noqa: E402

NAMESPACE = "bench"

# The original product (a Rust gRPC daemon), as published: what we compare against.
ORIGINAL = {
    "write1_tps": 240.0,
    "write1_p50_ms": 3.5,
    "write10_tps": 43.0,
    "procs_tps": 100.0,
    "get_p50_ms": 0.14,
    "replay_ops": 16_000.0,
}

T = TypeVar("T")


# --- sizes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    write1: int = 2000  # sequential 1-write transactions
    write10: int = 500  # sequential 10-write transactions
    steps: int = 500  # 1-write transactions of step keys (projection + lease)
    reads: int = 5000  # get_state calls
    list_keys_size: int = 1000  # keys of the list_keys agent
    list_keys_calls: int = 300
    replay_ops: int = 100_000  # operations in the replayed history
    replay_batch: int = 100  # operations per commit of that history
    procs: int = 4  # concurrent writer processes
    proc_txns: int = 300  # 1-write transactions per process
    deep_versions: int = 100_000  # versions of the "deep" record
    deep_reads: int = 2000  # get_state / list_keys calls on each of deep and shallow
    warmup: int = 20


FULL = Sizes()
QUICK = Sizes(
    write1=200,
    write10=40,
    steps=60,
    reads=1000,
    list_keys_calls=60,
    replay_ops=10_000,
    proc_txns=40,
    deep_versions=20_000,
    deep_reads=300,
    warmup=5,
)


# --- timing -----------------------------------------------------------------------------


@dataclass
class Sample:
    """Per-call latencies (seconds) and the wall time of the whole loop."""

    latencies: list[float]
    wall: float

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else float("nan")

    def pct_ms(self, q: float) -> float:
        """The q-th percentile (nearest rank) in milliseconds."""
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def p50_ms(self) -> float:
        return self.pct_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.pct_ms(99)


# The figures of a Sample a row can compare: their unit, and whether higher is better.
SAMPLE_FIGURES = {"rate": ("txn/s", True), "p50_ms": ("ms", False), "p99_ms": ("ms", False)}


def timed(call: Callable[[int], object], n: int, *, warmup: int = 0) -> Sample:
    """Call `call(i)` n times (after `warmup` untimed calls); time each call and the loop."""
    for i in range(warmup):
        call(-1 - i)
    latencies = []
    clock = time.perf_counter
    start = clock()
    for i in range(n):
        t0 = clock()
        call(i)
        latencies.append(clock() - t0)
    return Sample(latencies, clock() - start)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- database set-up --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    vendor: str  # "sqlite" | "postgresql"
    name: str  # file path or database name

    @classmethod
    def parse(cls, url: str) -> Target:
        import dj_database_url

        parsed = dj_database_url.parse(url)
        engine = parsed["ENGINE"]
        if engine.endswith("sqlite3"):
            return cls(url, "sqlite", str(parsed["NAME"]))
        if engine.endswith("postgresql"):
            return cls(url, "postgresql", str(parsed["NAME"]))
        raise SystemExit(f"unsupported database URL {url!r}: use sqlite:/// or postgres://")


def reset_database(target: Target, *, allow_drop: bool) -> None:
    """Delete (SQLite) or drop and create (PostgreSQL) the benchmark database."""
    if target.vendor == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal", ".migrate-lock"):
            Path(target.name + suffix).unlink(missing_ok=True)
        Path(target.name).parent.mkdir(parents=True, exist_ok=True)
        return
    if "bench" not in target.name and not allow_drop:
        raise SystemExit(
            f"refusing to drop database {target.name!r}: its name has no 'bench' "
            "(pass --allow-drop if you mean it)"
        )
    import psycopg
    from psycopg import sql

    admin = psycopg.conninfo.make_conninfo(target.url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        name = sql.Identifier(target.name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def setup_django(url: str, *, migrate: bool = False) -> None:
    """Point Django at `url` (before it is set up), set it up, optionally migrate."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)


def describe_durability(target: Target) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if target.vendor == "sqlite":
            cursor.execute("PRAGMA journal_mode")
            journal = cursor.fetchone()[0]
            cursor.execute("PRAGMA synchronous")
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cursor.fetchone()[0]]
            return f"SQLite {sqlite_version()}: journal_mode={journal}, synchronous={sync}"
        values = []
        for setting in ("server_version", "fsync", "synchronous_commit", "wal_sync_method"):
            cursor.execute(f"SHOW {setting}")
            values.append(f"{setting}={cursor.fetchone()[0]}")
        return "PostgreSQL " + ", ".join(values)


def analyze(target: Target) -> None:
    """PostgreSQL: refresh planner statistics after a bulk set-up (autovacuum would, later).

    Without it, plans right after loading 100,000 rows depend on whether autovacuum has
    run yet, which makes the figures irreproducible. SQLite gathers no statistics unless
    asked, and the product never asks, so it is left as it is.
    """
    if target.vendor != "postgresql":
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


# --- the two implementations under test -------------------------------------------------


class Engine(Protocol):
    label: str

    def write(self, agent: str, items: Sequence[tuple[str, Any]]) -> None: ...
    def get_state(self, agent: str, key: str) -> Any: ...
    def list_keys(self, agent: str) -> list[str]: ...
    def replay_ops(self, agent: str) -> int: ...
    def bulk_history(self, agent: str, key: str, versions: int) -> None: ...
    def version_of(self, agent: str, key: str) -> int: ...
    def close(self) -> None: ...


class StatehouseEngine:
    """The product, through its public client (bulk set-up goes through the store layer)."""

    label = "Statehouse"

    def __init__(self) -> None:
        from statehouse import Statehouse

        self.client = Statehouse(namespace=NAMESPACE)

    def write(self, agent: str, items: Sequence[tuple[str, Any]]) -> None:
        with self.client.begin_transaction() as tx:
            for key, value in items:
                tx.write(agent_id=agent, key=key, value=value)

    def get_state(self, agent: str, key: str) -> Any:
        return self.client.get_state(agent, key).value

    def list_keys(self, agent: str) -> list[str]:
        return self.client.list_keys(agent)

    def replay_ops(self, agent: str) -> int:
        return sum(len(event.operations) for event in self.client.replay(agent))

    def version_of(self, agent: str, key: str) -> int:
        return self.client.get_state(agent, key).version

    def commit_raw(self, agent: str, items: Sequence[tuple[str, Any]]) -> None:
        """A bulk commit through the store's own commit (no client-side validation)."""
        from statehouse_agents.store.writes import StagedOp, commit

        ops = [StagedOp(agent, key, json.dumps(value), value) for key, value in items]
        commit(namespace=NAMESPACE, ops=ops)

    def bulk_history(self, agent: str, key: str, versions: int) -> None:
        """Give (agent, key) `versions` versions: the rows that many 1-write commits make.

        The first version is a real commit; the others are inserted in bulk (one commit
        row and one version row each), then the current record and agent are moved on.
        """
        from django.db import transaction
        from django.utils import timezone
        from statehouse_agents.models import Agent, Commit, Record, Version

        self.write(agent, [(key, {"v": 1})])
        now = timezone.now()
        chunk = 10_000
        with transaction.atomic():
            agent_row = Agent.objects.get(namespace=NAMESPACE, agent_id=agent)
            for first in range(2, versions + 1, chunk):
                numbers = range(first, min(first + chunk, versions + 1))
                commits = Commit.objects.bulk_create(
                    Commit(txn_id=uuid.uuid4(), namespace=NAMESPACE, committed_at=now, op_count=1)
                    for _ in numbers
                )
                Version.objects.bulk_create(
                    Version(
                        agent=agent_row,
                        key=key,
                        version=n,
                        commit=c,
                        value_json=json.dumps({"v": n}),
                    )
                    for n, c in zip(numbers, commits, strict=True)
                )
                last = commits[-1].pk
            Record.objects.filter(agent=agent_row, key=key).update(version=versions, commit_ts=last)
            Agent.objects.filter(pk=agent_row.pk).update(last_commit_ts=last)

    def close(self) -> None:
        self.client.close()


# Hand-written SQL, written with %s placeholders ("?" for sqlite3) and {now} for the clock.
_DDL = {
    "sqlite": [
        """CREATE TABLE bl_commits (
            id INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL UNIQUE,
            namespace TEXT NOT NULL, committed_at TEXT NOT NULL, op_count INTEGER NOT NULL)""",
        "CREATE INDEX bl_commits_at ON bl_commits (committed_at)",
        """CREATE TABLE bl_versions (
            id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, agent_id TEXT NOT NULL,
            key TEXT NOT NULL, version INTEGER NOT NULL,
            commit_id INTEGER NOT NULL REFERENCES bl_commits (id),
            value_json TEXT, deleted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (namespace, agent_id, key, version))""",
        "CREATE INDEX bl_versions_replay ON bl_versions (namespace, agent_id, commit_id)",
        """CREATE TABLE bl_records (
            id INTEGER PRIMARY KEY, namespace TEXT NOT NULL, agent_id TEXT NOT NULL,
            key TEXT NOT NULL, version INTEGER NOT NULL, commit_ts INTEGER NOT NULL,
            value_json TEXT, deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
            UNIQUE (namespace, agent_id, key))""",
    ],
    "postgresql": [
        """CREATE TABLE bl_commits (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            txn_id UUID NOT NULL UNIQUE, namespace VARCHAR(255) NOT NULL,
            committed_at TIMESTAMPTZ NOT NULL, op_count INTEGER NOT NULL)""",
        "CREATE INDEX bl_commits_at ON bl_commits (committed_at)",
        """CREATE TABLE bl_versions (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            namespace VARCHAR(255) NOT NULL, agent_id VARCHAR(255) NOT NULL,
            key VARCHAR(255) NOT NULL, version INTEGER NOT NULL,
            commit_id BIGINT NOT NULL REFERENCES bl_commits (id),
            value_json TEXT, deleted BOOLEAN NOT NULL DEFAULT FALSE,
            UNIQUE (namespace, agent_id, key, version))""",
        "CREATE INDEX bl_versions_replay ON bl_versions (namespace, agent_id, commit_id)",
        """CREATE TABLE bl_records (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            namespace VARCHAR(255) NOT NULL, agent_id VARCHAR(255) NOT NULL,
            key VARCHAR(255) NOT NULL, version INTEGER NOT NULL, commit_ts BIGINT NOT NULL,
            value_json TEXT, deleted BOOLEAN NOT NULL DEFAULT FALSE,
            updated_at TIMESTAMPTZ NOT NULL, UNIQUE (namespace, agent_id, key))""",
    ],
}
_NOW = {"sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')", "postgresql": "now()"}

_SQL = {
    "current": (
        "SELECT key, version FROM bl_records "
        "WHERE namespace = %s AND agent_id = %s AND key IN ({keys}){lock}"
    ),
    "insert_commit": (
        "INSERT INTO bl_commits (txn_id, namespace, committed_at, op_count) "
        "VALUES (%s, %s, {now}, %s) RETURNING id"
    ),
    "insert_version": (
        "INSERT INTO bl_versions (namespace, agent_id, key, version, commit_id, value_json, "
        "deleted) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ),
    "upsert_record": (
        "INSERT INTO bl_records (namespace, agent_id, key, version, commit_ts, value_json, "
        "deleted, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, {now}) "
        "ON CONFLICT (namespace, agent_id, key) DO UPDATE SET version = excluded.version, "
        "commit_ts = excluded.commit_ts, value_json = excluded.value_json, "
        "deleted = excluded.deleted, updated_at = excluded.updated_at"
    ),
    "get_state": (
        "SELECT value_json, version, commit_ts, deleted FROM bl_records "
        "WHERE namespace = %s AND agent_id = %s AND key = %s"
    ),
    "list_keys": (
        "SELECT key FROM bl_records WHERE namespace = %s AND agent_id = %s AND deleted = %s "
        "ORDER BY key"
    ),
    "replay_page": (
        "SELECT v.commit_id, c.txn_id, c.committed_at, v.id, v.key, v.version, v.value_json, "
        "v.deleted FROM bl_versions v JOIN bl_commits c ON c.id = v.commit_id "
        "WHERE v.namespace = %s AND v.agent_id = %s AND (v.commit_id, v.id) > (%s, %s) "
        "ORDER BY v.commit_id, v.id LIMIT %s"
    ),
}


class BaselineEngine:
    """The same rows by hand-written SQL through the raw driver: the floor to compare with.

    A commit: BEGIN (IMMEDIATE on SQLite); read the current versions of the keys (FOR UPDATE
    on PostgreSQL); insert the commit row; insert the version rows; upsert the current
    records; COMMIT. No agent rows, leases or step projection.
    """

    label = "raw SQL"
    page_size = 2000

    def __init__(self, target: Target) -> None:
        self.vendor = target.vendor
        if self.vendor == "sqlite":
            import sqlite3

            # The product's PRAGMAs (statehouse_site/settings.py), autocommit outside BEGIN.
            synchronous = os.environ.get("STATEHOUSE_SQLITE_SYNCHRONOUS", "FULL").upper()
            self.conn = sqlite3.connect(target.name, timeout=30.0, isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                f"synchronous={synchronous}",
                "foreign_keys=ON",
                "busy_timeout=30000",
            ):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            import psycopg

            self.conn = psycopg.connect(target.url, autocommit=True)
        now = _NOW[self.vendor]
        self.sql = {
            name: self._placeholders(text.replace("{now}", now)) for name, text in _SQL.items()
        }

    def _placeholders(self, text: str) -> str:
        return text.replace("%s", "?") if self.vendor == "sqlite" else text

    def create_tables(self) -> None:
        with self.transaction() as cur:
            for statement in _DDL[self.vendor]:
                cur.execute(statement)

    class _Tx:
        def __init__(self, engine: BaselineEngine) -> None:
            self.engine = engine

        def __enter__(self) -> Any:
            engine = self.engine
            if engine.vendor == "sqlite":
                engine.conn.execute("BEGIN IMMEDIATE")
                return engine.conn.cursor()
            self.pg_tx = engine.conn.transaction()
            self.pg_tx.__enter__()
            return engine.conn.cursor()

        def __exit__(self, *exc: object) -> None:
            engine = self.engine
            if engine.vendor == "sqlite":
                engine.conn.execute("ROLLBACK" if exc[0] else "COMMIT")
            else:
                self.pg_tx.__exit__(*exc)  # type: ignore[arg-type]  # the exception being handled

    def transaction(self) -> BaselineEngine._Tx:
        return BaselineEngine._Tx(self)

    def write(self, agent: str, items: Sequence[tuple[str, Any]]) -> None:
        staged = {
            key: json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            for key, value in items
        }
        keys = list(staged)
        current_sql = self.sql["current"].format(
            keys=", ".join(["?" if self.vendor == "sqlite" else "%s"] * len(keys)),
            lock=" FOR UPDATE" if self.vendor == "postgresql" else "",
        )
        with self.transaction() as cur:
            cur.execute(current_sql, (NAMESPACE, agent, *keys))
            current = dict(cur.fetchall())
            cur.execute(self.sql["insert_commit"], (str(uuid.uuid4()), NAMESPACE, len(keys)))
            commit_id = cur.fetchone()[0]
            rows = [
                (NAMESPACE, agent, key, current.get(key, 0) + 1, commit_id, value_json, False)
                for key, value_json in staged.items()
            ]
            cur.executemany(self.sql["insert_version"], rows)
            cur.executemany(self.sql["upsert_record"], rows)

    def commit_raw(self, agent: str, items: Sequence[tuple[str, Any]]) -> None:
        self.write(agent, items)

    def _fetch(self, name: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        cur.execute(self.sql[name], params)
        return cur.fetchall()

    def get_state(self, agent: str, key: str) -> Any:
        rows = self._fetch("get_state", (NAMESPACE, agent, key))
        if not rows or rows[0][3]:
            return None
        return json.loads(rows[0][0])

    def version_of(self, agent: str, key: str) -> int:
        rows = self._fetch("get_state", (NAMESPACE, agent, key))
        return rows[0][1] if rows else 0

    def list_keys(self, agent: str) -> list[str]:
        return [row[0] for row in self._fetch("list_keys", (NAMESPACE, agent, False))]

    def replay(self, agent: str) -> Iterator[dict[str, Any]]:
        """Events (one per commit) with decoded operations, streamed by keyset pages."""
        event: dict[str, Any] | None = None
        after = (-1, -1)
        while True:
            rows = self._fetch("replay_page", (NAMESPACE, agent, *after, self.page_size))
            for commit_id, txn_id, committed_at, row_id, key, version, value_json, deleted in rows:
                if event is None or event["commit_ts"] != commit_id:
                    if event is not None:
                        yield event
                    event = {
                        "commit_ts": commit_id,
                        "txn_id": str(txn_id),
                        "committed_at": committed_at,
                        "operations": [],
                    }
                value = None if deleted else json.loads(value_json)
                event["operations"].append((key, value, version, bool(deleted)))
                after = (commit_id, row_id)
            if len(rows) < self.page_size:
                break
        if event is not None:
            yield event

    def replay_ops(self, agent: str) -> int:
        return sum(len(event["operations"]) for event in self.replay(agent))

    def bulk_history(self, agent: str, key: str, versions: int) -> None:
        """As StatehouseEngine.bulk_history: one real commit, the rest inserted in bulk."""
        self.write(agent, [(key, {"v": 1})])
        with self.transaction() as cur:
            cur.execute("SELECT COALESCE(MAX(id), 0) FROM bl_commits")
            first = cur.fetchone()[0] + 1
            ids = range(first, first + versions - 1)
            if self.vendor == "sqlite":
                now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%f")
                cur.executemany(
                    "INSERT INTO bl_commits (id, txn_id, namespace, committed_at, op_count) "
                    "VALUES (?, ?, ?, ?, 1)",
                    ((i, str(uuid.uuid4()), NAMESPACE, now) for i in ids),
                )
                cur.executemany(
                    self.sql["insert_version"],
                    (
                        (NAMESPACE, agent, key, n, i, json.dumps({"v": n}), False)
                        for n, i in enumerate(ids, start=2)
                    ),
                )
            else:
                now = datetime.now(UTC)
                with cur.copy(
                    "COPY bl_commits (id, txn_id, namespace, committed_at, op_count) FROM STDIN"
                ) as copy:
                    for i in ids:
                        copy.write_row((i, uuid.uuid4(), NAMESPACE, now, 1))
                with cur.copy(
                    "COPY bl_versions (namespace, agent_id, key, version, commit_id, "
                    "value_json, deleted) FROM STDIN"
                ) as copy:
                    for n, i in enumerate(ids, start=2):
                        copy.write_row((NAMESPACE, agent, key, n, i, json.dumps({"v": n}), False))
                cur.execute(
                    "SELECT setval(pg_get_serial_sequence('bl_commits', 'id'), %s)", (ids[-1],)
                )
            cur.execute(
                self._placeholders(
                    "UPDATE bl_records SET version = %s, commit_ts = %s, value_json = %s "
                    "WHERE namespace = %s AND agent_id = %s AND key = %s"
                ),
                (versions, ids[-1], json.dumps({"v": versions}), NAMESPACE, agent, key),
            )

    def close(self) -> None:
        self.conn.close()


def child_engine(kind: str, url: str) -> StatehouseEngine | BaselineEngine:
    """The engine `kind` in a fresh child process (ours needs Django set up first)."""
    if kind == "statehouse":
        setup_django(url)
        return StatehouseEngine()
    return BaselineEngine(Target.parse(url))


# --- results ----------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `ratio` is the cost of ours relative to the baseline."""

    key: str
    label: str
    unit: str
    ours: float
    base: float | None
    higher_is_better: bool
    target: str = ""
    target_met: bool | None = None
    original: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.original is None:
            self.original = ORIGINAL.get(self.key)

    @property
    def ratio(self) -> float | None:
        """How many times the baseline's cost ours is (time, or 1/rate); >1 means slower."""
        if self.base is None or not self.base or not self.ours or self.unit == "x":
            return None
        return self.base / self.ours if self.higher_is_better else self.ours / self.base

    @property
    def beats_original(self) -> bool | None:
        if self.original is None:
            return None
        return self.ours >= self.original if self.higher_is_better else self.ours <= self.original


@dataclass
class Report:
    database: str
    durability: str
    quick: bool
    sizes: dict[str, int]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def compare(
        self,
        key: str,
        label: str,
        figure: str,
        ours: Sample,
        base: Sample,
        *,
        cost_at_most: float | None = None,
        note: str = "",
    ) -> None:
        """A row of one figure of two samples (see SAMPLE_FIGURES), with a target on the
        cost if `cost_at_most` is given."""
        unit, higher_is_better = SAMPLE_FIGURES[figure]
        row = self.add(
            Row(
                key,
                label,
                unit,
                getattr(ours, figure),
                getattr(base, figure),
                higher_is_better,
                note=note,
            )
        )
        if cost_at_most is not None:
            row.target = f"cost <= {cost_at_most:g}x"
            row.target_met = row.ratio is not None and row.ratio <= cost_at_most


# --- the measurements -------------------------------------------------------------------


def payload(i: int) -> dict[str, Any]:
    """A small but realistic value: a step-like object of ~120 bytes of JSON."""
    return {"i": i, "status": "done", "action": "search", "result": {"hits": i % 7, "q": "x" * 40}}


ROUNDS = 5


def both(
    engines: dict[str, Any], run: Callable[[Any, int], Sample], count: int
) -> tuple[Sample, Sample]:
    """Run one measurement of `count` calls on ours and on the baseline, interleaved in
    ROUNDS rounds (ours first, then the baseline first, and so on), and pool each side's
    calls: a machine that slows down or speeds up meanwhile weighs on both alike."""
    samples: dict[str, list[Sample]] = {"statehouse": [], "baseline": []}
    with PLACEMENT.pinned():
        for round_ in range(ROUNDS):
            order = ("statehouse", "baseline") if round_ % 2 == 0 else ("baseline", "statehouse")
            for name in order:
                samples[name].append(run(engines[name], max(1, count // ROUNDS)))
    return pooled(samples["statehouse"]), pooled(samples["baseline"])


class Placement:
    """Where this process and its PostgreSQL server processes run while both sides are
    measured (bench/placement.py): with a local server, this process on one CPU and the
    server processes of its connections (ours and the baseline's) on another, so that
    each side pays the same round trip. Unpinned, `get_state` measured anywhere from 1.1x
    to 4.3x the baseline between runs of unchanged code."""

    def __init__(self) -> None:
        self.note = ""
        self.url = ""  # set: pin around measurements

    def enable(self, target: Target) -> None:
        if target.vendor != "postgresql":
            return
        if placement.is_local(target.url):
            self.url = target.url
        else:
            self.note = "not pinned: the database server is not on this machine"

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        if not self.url:
            yield
            return
        with placement.pinned(placement.own_server_pids(self.url)) as note:
            self.note = f"measured in turns: {note}"
            yield


PLACEMENT = Placement()


def pooled(samples: list[Sample]) -> Sample:
    """The calls of several rounds as one sample (their latencies, their summed wall time)."""
    return Sample([t for s in samples for t in s.latencies], sum(s.wall for s in samples))


def back_to_back(engines: dict[str, Any], run: Callable[[Any], T]) -> tuple[T, T]:
    """Run one measurement on ours, then on the baseline (for those made of several)."""
    with PLACEMENT.pinned():
        return run(engines["statehouse"]), run(engines["baseline"])


def measure_write1(report: Report, engines: dict[str, Any], sizes: Sizes) -> None:
    def run(engine: Any, count: int) -> Sample:
        return timed(lambda i: engine.write("w1", [("k", payload(i))]), count, warmup=sizes.warmup)

    ours, base = both(engines, run, sizes.write1)
    report.compare("write1_tps", "1. 1-write txn, sequential", "rate", ours, base, cost_at_most=2)
    report.compare(
        "write1_p50_ms", "   1-write txn latency p50", "p50_ms", ours, base, cost_at_most=2
    )
    report.compare("write1_p99_ms", "   1-write txn latency p99", "p99_ms", ours, base)


def measure_write10(report: Report, engines: dict[str, Any], sizes: Sizes) -> None:
    keys = [f"k{j}" for j in range(10)]

    def run(engine: Any, count: int) -> Sample:
        return timed(
            lambda i: engine.write("w10", [(k, payload(i)) for k in keys]),
            count,
            warmup=sizes.warmup,
        )

    ours, base = both(engines, run, sizes.write10)
    report.compare("write10_tps", "2. 10-write txn, sequential", "rate", ours, base)
    report.compare("write10_p50_ms", "   10-write txn latency p50", "p50_ms", ours, base)


def measure_steps(report: Report, engines: dict[str, Any], sizes: Sizes) -> None:
    """Extra: what agents really write (step keys take a lease and update the Step rows)."""
    numbers = itertools.count()  # one step number per write, across both sides' rounds

    def run(engine: Any, count: int) -> Sample:
        return timed(
            lambda i: engine.write("steps", [(f"step:{next(numbers)}", payload(i))]),
            count,
            warmup=sizes.warmup,
        )

    ours, base = both(engines, run, sizes.steps)
    report.compare(
        "steps_tps",
        "   (extra) 1-write txn of a step key",
        "rate",
        ours,
        base,
        note="step keys take the agent's lease and update its Step row",
    )


def measure_get_state(report: Report, engines: dict[str, Any], sizes: Sizes) -> None:
    def run(engine: Any, count: int) -> Sample:
        assert engine.get_state("w1", "k") is not None
        return timed(lambda _: engine.get_state("w1", "k"), count, warmup=sizes.warmup)

    ours, base = both(engines, run, sizes.reads)
    report.compare("get_p50_ms", "3. get_state latency p50", "p50_ms", ours, base, cost_at_most=3)
    report.compare("get_p99_ms", "   get_state latency p99", "p99_ms", ours, base)


def measure_list_keys(
    report: Report, engines: dict[str, Any], sizes: Sizes, target: Target
) -> None:
    n = sizes.list_keys_size
    for engine in engines.values():
        for start in range(0, n, 100):
            engine.commit_raw("lk", [(f"key:{j:05d}", {"j": j}) for j in range(start, start + 100)])
    analyze(target)

    def run(engine: Any, count: int) -> Sample:
        assert len(engine.list_keys("lk")) == n
        return timed(lambda _: engine.list_keys("lk"), count, warmup=3)

    ours, base = both(engines, run, sizes.list_keys_calls)
    report.compare("list_keys_p50_ms", f"4. list_keys, {n:,} keys, p50", "p50_ms", ours, base)


def _current_rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in kB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def _reset_peak_rss() -> bool:
    """Reset VmHWM (peak RSS) to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def replay_child(kind: str, url: str, agent: str, expected: int, out: Any) -> None:
    """In a fresh process: time one replay, measure its peak RSS, then its tracemalloc peak."""
    engine = child_engine(kind, url)
    engine.get_state(agent, "r0")  # connect, warm up imports and caches
    exact = _reset_peak_rss()
    rss0, _ = _current_rss_kb()
    t0 = time.perf_counter()
    count = engine.replay_ops(agent)
    elapsed = time.perf_counter() - t0
    _, hwm = _current_rss_kb()
    if not exact:
        import resource

        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    engine.replay_ops(agent)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.close()
    out.put(
        {
            "ops": count,
            "expected": expected,
            "seconds": elapsed,
            "rss_peak_delta_mb": max(0, hwm - rss0) / 1024,
            "rss_exact": exact,
            "tracemalloc_peak_mb": traced_peak / 2**20,
        }
    )


def _in_child(func: Callable[..., None], *args: object) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=func, args=(*args, out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def measure_replay(report: Report, engines: dict[str, Any], sizes: Sizes, target: Target) -> None:
    batches = sizes.replay_ops // sizes.replay_batch
    t0 = time.perf_counter()
    for kind, engine in engines.items():
        for b in range(batches):
            engine.commit_raw(
                "replay", [(f"r{j}", {"b": b, "j": j}) for j in range(sizes.replay_batch)]
            )
        log(f"  {kind}: history of {batches * sizes.replay_batch:,} ops written")
    analyze(target)
    log(f"  history set-up took {time.perf_counter() - t0:.1f} s")
    results = {}
    for kind in engines:
        results[kind] = _in_child(replay_child, kind, target.url, "replay", sizes.replay_ops)
        res = results[kind]
        if res["ops"] != sizes.replay_ops:
            raise SystemExit(f"{kind} replayed {res['ops']} operations, not {sizes.replay_ops}")
    ours, base = results["statehouse"], results["baseline"]
    report.add(
        Row(
            "replay_ops",
            f"5. replay {sizes.replay_ops:,} ops",
            "ops/s",
            ours["ops"] / ours["seconds"],
            base["ops"] / base["seconds"],
            True,
        )
    )
    for key, label in (
        ("rss_peak_delta_mb", "   replay peak memory (RSS growth)"),
        ("tracemalloc_peak_mb", "   replay peak memory (tracemalloc)"),
    ):
        report.add(
            Row(
                f"replay_{key}",
                label,
                "MB",
                ours[key],
                base[key],
                False,
                target="< 50 MB",
                target_met=ours[key] < 50,
            )
        )


def writer_child(
    kind: str, url: str, agent: str, n: int, warmup: int, ready: Any, go: Any, out: Any
) -> None:
    """One of the concurrent writers: warm up, wait for the start signal, write n txns."""
    engine = child_engine(kind, url)
    for i in range(warmup):
        engine.write(agent, [("k", payload(-i))])
    ready.put(os.getpid())
    go.wait()
    sample = timed(lambda i: engine.write(agent, [("k", payload(i))]), n)
    end = time.monotonic()
    engine.close()
    out.put({"end": end, "wall": sample.wall, "latencies": sample.latencies})


def run_writers(kind: str, target: Target, sizes: Sizes) -> Sample:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=writer_child,
            args=(kind, target.url, f"proc{p}", sizes.proc_txns, sizes.warmup, ready, go, out),
        )
        for p in range(sizes.procs)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    start = time.monotonic()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    latencies = [lat for r in results for lat in r["latencies"]]
    return Sample(latencies, max(r["end"] for r in results) - start)


def measure_procs(report: Report, engines: dict[str, Any], sizes: Sizes, target: Target) -> None:
    ours = run_writers("statehouse", target, sizes)
    base = run_writers("baseline", target, sizes)
    report.compare("procs_tps", f"6. {sizes.procs} processes writing, total", "rate", ours, base)
    report.compare(
        "procs_p99_ms", f"   {sizes.procs} processes, txn latency p99", "p99_ms", ours, base
    )


def measure_deep(report: Report, engines: dict[str, Any], sizes: Sizes, target: Target) -> None:
    n = sizes.deep_versions
    t0 = time.perf_counter()
    for kind, engine in engines.items():
        engine.write("shallow", [("k", {"v": 1})])
        engine.bulk_history("deep", "k", n)
        if engine.version_of("deep", "k") != n:
            raise SystemExit(f"{kind}: the deep record is not at version {n}")
    analyze(target)
    log(f"  {n:,}-version history set-up took {time.perf_counter() - t0:.1f} s")

    def run(engine: Any) -> dict[str, float]:
        figures = {}
        for name, call in (("get", engine.get_state), ("list", engine.list_keys)):
            for agent in ("shallow", "deep"):
                args = (agent, "k") if name == "get" else (agent,)
                sample = timed(lambda _, c=call, a=args: c(*a), sizes.deep_reads, warmup=20)
                figures[f"{name}_{agent}"] = sample.p50_ms
        return figures

    ours, base = back_to_back(engines, run)
    for name, label in (("get", "get_state"), ("list", "list_keys")):
        for agent, row_label in (
            ("deep", f"7. {label} p50, {n:,}-version record"),
            ("shallow", f"   {label} p50, 1-version record"),
        ):
            figure = f"{name}_{agent}"
            report.add(
                Row(f"{agent}_{name}_p50_ms", row_label, "ms", ours[figure], base[figure], False)
            )
        ours_ratio = ours[f"{name}_deep"] / ours[f"{name}_shallow"]
        base_ratio = base[f"{name}_deep"] / base[f"{name}_shallow"]
        report.add(
            Row(
                f"deep_{name}_ratio",
                f"   {label}: {n:,} versions / 1 version",
                "x",
                ours_ratio,
                base_ratio,
                False,
                target="<= 1.5x",
                target_met=ours_ratio <= 1.5,
            )
        )


MEASUREMENTS = ("write1", "write10", "steps", "get", "list", "replay", "procs", "deep")


# --- output -----------------------------------------------------------------------------


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:,.0f} {unit}"


def _yes_no(flag: bool | None) -> str:
    return "" if flag is None else ("yes" if flag else "NO")


def print_report(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Statehouse store benchmark - {report.database}"
        + (" (--quick)" if report.quick else ""),
        caption=report.durability,
    )
    for name, justify in (
        ("measurement", "left"),
        ("Statehouse", "right"),
        ("raw SQL", "right"),
        ("cost", "right"),
        ("target", "left"),
        ("met", "center"),
        ("original", "right"),
        ("beats orig.", "center"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]  # rich's Literal
    for row in report.rows:
        ratio = row.ratio
        table.add_row(
            row.label,
            _fmt(row.ours, row.unit),
            _fmt(row.base, row.unit),
            "-" if ratio is None else f"{ratio:.2f}x",
            row.target,
            _yes_no(row.target_met),
            _fmt(row.original, row.unit) if row.original is not None else "",
            _yes_no(row.beats_original),
        )
    console = Console(width=max(150, Console().width))
    console.print(table)
    console.print(
        "cost: Statehouse's time (or 1/throughput) divided by the raw SQL baseline's; "
        "original: the Rust gRPC daemon's published figure"
    )
    for note in report.notes:
        console.print(f"note: {note}")


def write_json(report: Report, path: str) -> None:
    data = asdict(report)
    for row, out in zip(report.rows, data["rows"], strict=True):
        out["ratio"] = row.ratio
        out["beats_original"] = row.beats_original
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="sqlite:////tmp/statehouse-bench.sqlite3",
        help="database to (re)create and benchmark (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (< 1 minute)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--allow-drop",
        action="store_true",
        help="drop a PostgreSQL database even if its name has no 'bench'",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    args.only = set(args.only.split(",")) if args.only else set(MEASUREMENTS)
    unknown = args.only - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    target = Target.parse(args.database_url)
    started = time.perf_counter()
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    log(f"recreating {target.vendor} database {target.name}")
    reset_database(target, allow_drop=args.allow_drop)
    setup_django(target.url, migrate=True)
    baseline = BaselineEngine(target)
    baseline.create_tables()
    engines = {"statehouse": StatehouseEngine(), "baseline": baseline}

    report = Report(
        database=f"{target.vendor} {target.name}",
        durability=describe_durability(target),
        quick=args.quick,
        sizes=asdict(sizes),
    )
    report.notes.append(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; other jobs may share "
        "the machine, so figures are noisy"
    )
    PLACEMENT.enable(target)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("write1", lambda: measure_write1(report, engines, sizes)),
        ("write10", lambda: measure_write10(report, engines, sizes)),
        ("steps", lambda: measure_steps(report, engines, sizes)),
        ("get", lambda: measure_get_state(report, engines, sizes)),
        ("list", lambda: measure_list_keys(report, engines, sizes, target)),
        ("replay", lambda: measure_replay(report, engines, sizes, target)),
        ("procs", lambda: measure_procs(report, engines, sizes, target)),
        ("deep", lambda: measure_deep(report, engines, sizes, target)),
    ]
    for name, step in steps:
        if name in args.only:
            log(f"measuring {name}")
            t0 = time.perf_counter()
            step()
            log(f"  {name} done in {time.perf_counter() - t0:.1f} s")
    for engine in engines.values():
        engine.close()

    if PLACEMENT.note:
        report.notes.append(PLACEMENT.note)
    load_end = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    report.notes.append(
        f"whole run: {time.perf_counter() - started:.0f} s; load average at start {load_start}, "
        f"at end {load_end} (1/5/15 min)"
    )
    print_report(report)
    if args.json:
        write_json(report, args.json)
        log(f"figures written to {args.json}")
    missed = [row.label.strip() for row in report.rows if row.target_met is False]
    if missed:
        log("targets missed: " + "; ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
