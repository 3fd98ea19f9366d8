#!/usr/bin/env python
"""Transaction ids in time order against random ones: WAL after a checkpoint, index size.

    .venv/bin/python bench/txn_id_bench.py --pg-url postgres://postgres@127.0.0.1:5432/txn_bench
    ... --history 200000 --steps 500 --rounds 3
    ... --quick                # 20,000 commits of history, 200 steps, 2 rounds

Every commit inserts its `txn_id` into a unique index. With random ids (UUID version 4,
what Statehouse made before) each insert lands on a random page of that index; on
PostgreSQL the first change of a page after a checkpoint writes the whole 8 KB page to the
WAL, so once the index has more pages than a checkpoint interval has commits, nearly every
commit pays a page image. Time-ordered ids (version 7, `statehouse/_ids.py`) land on the
index's last page.

On one PostgreSQL database (DESTROYED first) holding --history commits of earlier history
with random ids (an existing installation's), it runs, in rounds that rotate their order
and each start with a CHECKPOINT: Statehouse agent steps (`client.step`: pending, then
done, two commits) with the ids it makes now, the same steps with random ids, and the raw
floor of peer_bench.py (autocommit psycopg inserting the same pending and done rows, no
id). It prints per system the medians of WAL bytes per step and p50 per step, and the
size of the id index per commit for each kind of id, on PostgreSQL (`uuid` column) and on
SQLite (`char(32)`, as Django stores a UUIDField there). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.peer_bench import (  # noqa: E402
    RawSystem,
    StatehouseSystem,
    Where,
    django_setup,
    log,
    pg_lsn,
    pg_wal_bytes,
    reset_pg,
)
from statehouse._ids import new_txn_id  # noqa: E402

SYSTEMS = ("time-ordered ids", "random ids", "raw floor")
QUICK = {"history": 20_000, "steps": 200, "rounds": 2}


def random_txn_id() -> str:
    return str(uuid.uuid4())


def pg(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def seed_history(url: str, commits: int) -> None:
    """`commits` earlier commits with random ids (no versions: only the id index matters)."""
    from statehouse_agents.models import Commit

    with pg(url) as conn:
        conn.execute(
            f"INSERT INTO {Commit._meta.db_table} (txn_id, namespace, committed_at, op_count) "
            "SELECT gen_random_uuid(), 'history', now(), 1 FROM generate_series(1, %s)",
            [commits],
        )
        conn.execute(f"VACUUM ANALYZE {Commit._meta.db_table}")


class Steps(StatehouseSystem):
    """peer_bench.py's Statehouse steps, with the txn ids of `make_id`."""

    def __init__(self, where: Where, make_id: Callable[[], str]) -> None:
        super().__init__(where)
        self.make_id = make_id
        self.open()

    def steps(self, run: str, count: int) -> list[float]:
        import statehouse.client

        statehouse.client.new_txn_id = self.make_id  # type: ignore[attr-defined]  # the bench's choice
        return super().steps(run, count)


def index_bytes_per_id(
    make_id: Callable[[], str], count: int, url: str, folder: Path
) -> tuple[float, float]:
    """The size of a unique index of `count` ids made by `make_id`, per id, on PostgreSQL
    (a temporary table in the bench database) and on SQLite; made in order, as commits
    make them."""
    ids = [make_id() for _ in range(count)]
    return _pg_index_bytes(ids, url) / count, _sqlite_index_bytes(ids, folder) / count


def _pg_index_bytes(ids: list[str], url: str) -> int:
    with pg(url) as conn:
        conn.execute("CREATE TEMPORARY TABLE ids (txn_id uuid NOT NULL UNIQUE)")
        with conn.cursor().copy("COPY ids (txn_id) FROM STDIN") as copy:
            for txn_id in ids:
                copy.write_row([txn_id])
        row = conn.execute("SELECT pg_relation_size('ids_txn_id_key')").fetchone()
        return int(row[0])  # type: ignore[index]  # one row


def _sqlite_index_bytes(ids: list[str], folder: Path) -> int:
    path = folder / "ids.sqlite3"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ids (id integer PRIMARY KEY, txn_id char(32) NOT NULL UNIQUE)")
    with conn:
        conn.executemany("INSERT INTO ids (txn_id) VALUES (?)", ((uuid.UUID(i).hex,) for i in ids))
    row = conn.execute(
        "SELECT sum(pgsize) FROM dbstat WHERE name = 'sqlite_autoindex_ids_1'"
    ).fetchone()
    conn.close()
    return int(row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/txn_bench")
    parser.add_argument("--history", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--allow-drop", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20,000 commits, 200 steps, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        vars(args).update(QUICK)
    name = args.pg_url.rpartition("/")[2]
    reset_pg(args.pg_url, name, allow_drop=args.allow_drop)
    django_setup(args.pg_url)
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    log(f"seeding {args.history:,} commits of history with random ids")
    seed_history(args.pg_url, args.history)
    where = Where("postgresql", args.pg_url, args.pg_url, "", "")
    raw = RawSystem(where)
    raw.prepare()
    raw.open()
    systems: dict[str, Any] = {
        "time-ordered ids": Steps(where, new_txn_id),
        "random ids": Steps(where, random_txn_id),
        "raw floor": raw,
    }
    for name_, system in systems.items():  # warm up: connections, prepared statements
        system.steps(f"warm-{name_[:4]}-{uuid.uuid4().hex[:6]}", 20)
    wal: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    p50: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    with pg(args.pg_url) as conn:
        for round_ in range(args.rounds):
            order = SYSTEMS[round_ % 3 :] + SYSTEMS[: round_ % 3]
            for system_name in order:
                conn.execute("CHECKPOINT")
                start = pg_lsn(args.pg_url)
                times = systems[system_name].steps(f"r{round_}-{uuid.uuid4().hex[:8]}", args.steps)
                # This database's WAL records, page images included (peer_bench.py).
                written = pg_wal_bytes(args.pg_url, start, pg_lsn(args.pg_url))
                wal[system_name].append(written / args.steps)
                p50[system_name].append(statistics.median(times) * 1000)
            log(f"round {round_ + 1}/{args.rounds} done")
    raw.close()
    folder = Path(tempfile.mkdtemp(prefix="txn-bench-"))
    density = {
        "time-ordered ids": index_bytes_per_id(new_txn_id, args.history, args.pg_url, folder),
        "random ids": index_bytes_per_id(random_txn_id, args.history, args.pg_url, folder),
    }
    load = os.getloadavg()[0]
    print(
        f"\n{args.history:,} commits of history (random ids), {args.steps} steps a run "
        f"(action ~200 B, result ~1 KB; pending + done), {args.rounds} rounds, each run "
        f"right after a CHECKPOINT; medians. Load average {load:.1f}.\n"
    )
    print("| per step | time-ordered ids (now) | random ids (before) | raw floor |")
    print("| --- | --- | --- | --- |")
    ours = statistics.median(wal["time-ordered ids"])
    cells = [f"{statistics.median(wal[s]):,.0f} B" for s in SYSTEMS]
    cells[1] += f" ({statistics.median(wal['random ids']) / ours:.2f}x)"
    cells[2] += f" (ours: {ours / statistics.median(wal['raw floor']):.2f}x)"
    print(f"| WAL after a checkpoint | {' | '.join(cells)} |")
    print(f"| p50 | {' | '.join(f'{statistics.median(p50[s]):.2f} ms' for s in SYSTEMS)} |")
    print(
        f"\nThe id index per commit ({args.history:,} ids made in order): time-ordered "
        f"{density['time-ordered ids'][0]:.1f} B on PostgreSQL, "
        f"{density['time-ordered ids'][1]:.1f} B on SQLite; random "
        f"{density['random ids'][0]:.1f} B on PostgreSQL, {density['random ids'][1]:.1f} B "
        "on SQLite."
    )


if __name__ == "__main__":
    main()
