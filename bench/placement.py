"""Where a measuring process and its PostgreSQL server processes run, for latency figures
that compare two systems (bench/README.md, "Reading the figures").

A round trip to a server process on the client's own CPU takes about 50 µs on the 2-core
test machine; to one on the other CPU it takes about 130 µs. The scheduler places each
connection's server process as it happens, so two systems measured one after the other
can get different round trips from placement alone. `pinned` puts this process on one CPU
and the given server processes on another, so every system pays the same cross-CPU round
trip, as it would to a database on another host.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator


def is_local(url: str) -> bool:
    """Whether the PostgreSQL server of `url` runs on this machine (its processes can be
    moved: a remote server's process ids mean nothing here)."""
    import dj_database_url

    host = str(dj_database_url.parse(url).get("HOST") or "")
    return host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")


def own_server_pids(url: str) -> list[int]:
    """The server processes of this process's TCP connections to `url`'s server: the
    local ports of this process's sockets, looked up in `pg_stat_activity`."""
    import psycopg

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", [sorted(ports)]
        ).fetchall()
    return [int(pid) for (pid,) in rows]


@contextlib.contextmanager
def pinned(server_pids: Iterable[int]) -> Iterator[str]:
    """This process on one CPU and `server_pids` on another while the block runs; yields
    a note saying where, or why not (one CPU only, or not allowed to move a process)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield "not pinned: this process may run on one CPU only"
        return
    before: dict[int, set[int]] = {}
    try:
        for pid in (0, *server_pids):
            before[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, {cpus[0] if pid == 0 else cpus[1]})
    except OSError as exc:
        _restore(before)
        yield f"not pinned ({exc.strerror}): a round trip's cost depends on placement"
        return
    try:
        yield (
            f"this process on CPU {cpus[0]}, its database server processes on CPU {cpus[1]} "
            "(the same cross-CPU round trip for every system)"
        )
    finally:
        _restore(before)


def _restore(before: dict[int, set[int]]) -> None:
    """Each process back on the CPUs it could run on before (one that ended is skipped)."""
    for pid, cpus in before.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)
