"""Liveness handles: seeing a lease holder's death at once, before its lease runs out.

A process that takes a lease first takes a handle that the system lets go of the moment
the process dies (docs/contract.md §3; docs/architecture.md, "Crash detection"):

- PostgreSQL: a session-level advisory lock on a key derived from the lease owner's
  token, held on a connection of its own (Django's connection and its transactions never
  touch it). The server frees it when that connection closes, which the kernel does
  when the process dies, SIGKILL included.
- SQLite (one host): an exclusive `flock` on `<STATEHOUSE_LIVENESS_DIR>/<token>.lock`,
  which the kernel frees when the process dies.

The lease row records the handle in `Agent.lease_watch` as "kind:value|host|pid", where
`host` is the host name, the kernel's boot id and the holder's pid namespace (`host_id`:
two machines of one name differ, and so do two containers that share a host name).
`expire_dead_holders` (run by the resume worker every STATEHOUSE_DETECT_INTERVAL) ends
the lease of every agent shown running whose handle is free: it turns interrupted (one
rule: the lease, `AgentQuerySet.status_rules`). A handle free while the holder's pid is
alive on this host is not a death (a dropped connection): such agents keep their lease.
The pid is checked only for a holder of this very host id, never for another host's
(its pids are not ours; docs/operations.md, "Two hosts"). A file lock is only checked on
its own host; a lost host or a cut link shows through its lease.

A handle is taken once per lease owner and process, before the commit that records it,
and given up (after the leases) when the client closes. A forked child drops the
handles it inherited without freeing them: its parent still holds them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection
from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent
from statehouse_agents.store import sql
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.counters import DIRECT_DETECTIONS, add_to_counter

logger = logging.getLogger("statehouse.liveness")

PG = "pg"
FLOCK = "flock"


@functools.cache
def host_id() -> str:
    """This host as handles name it: the host name, the kernel's boot id and this
    process's pid namespace.

    A pid means one process only within one pid namespace: two machines (their boot ids
    differ even under one name), or two containers of one machine that share a host name
    (`--network host`, their pid namespaces differ), reuse each other's pids. Only a
    holder of this very host id has its pid or its file lock checked here.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    try:
        pid_namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_namespace = "unknown-pidns"
    return f"{socket.gethostname()}/{boot}/{pid_namespace}"


def advisory_key(token: str) -> int:
    """The advisory lock key of a lease owner: 64 bits of a hash of its token."""
    digest = hashlib.sha256(b"statehouse-lease:" + token.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class Watch:
    """A parsed `lease_watch`: the handle's kind and value, the holder's host and pid."""

    kind: str
    value: str
    host: str
    pid: int

    def render(self) -> str:
        return f"{self.kind}:{self.value}|{self.host}|{self.pid}"

    @classmethod
    def parse(cls, text: str) -> Watch | None:
        """The watch written by `render`, or None for anything else (checked by no one)."""
        head, _, tail = text.partition("|")
        kind, sep, value = head.partition(":")
        host, _, pid = tail.rpartition("|")
        if not sep or kind not in (PG, FLOCK) or not value or not host or not pid.isdigit():
            return None
        if kind == PG:
            try:
                int(value)
            except ValueError:
                return None
        return cls(kind, value, host, int(pid))


# --- the holder's side --------------------------------------------------------------------


class Handle:
    """One liveness handle held by this process."""

    watch: str

    def verify(self) -> None:
        """Take the handle again if it was lost (a dropped connection)."""

    def close(self) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        """In a forked child: forget the handle without freeing it (the parent holds it)."""
        raise NotImplementedError


class FlockHandle(Handle):
    def __init__(self, directory: str, token: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{token}.lock")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.watch = Watch(FLOCK, self.path, host_id(), os.getpid()).render()

    def close(self) -> None:
        # Unlink while still locked: a detector that opened the file meanwhile finds its
        # lock free only once we are gone, and then the owner is gone too.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def drop(self) -> None:
        # The lock belongs to the open file description the parent shares: closing the
        # child's descriptor leaves the parent's lock in place.
        with contextlib.suppress(OSError):
            os.close(self.fd)


# Connections a forked child inherited: never finalized there (that would end the
# parent's session, and with it the parent's advisory lock).
_inherited: list[Any] = []


class PgHandle(Handle):
    def __init__(self, token: str) -> None:
        self.key = advisory_key(token)
        self.conn = self._connect()
        self.watch = Watch(PG, str(self.key), host_id(), os.getpid()).render()

    def _connect(self) -> Any:
        import psycopg

        params = connection.get_connection_params()
        conn = psycopg.connect(**params, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
        if not row or not row[0]:
            conn.close()
            raise OSError(f"advisory lock {self.key} is held by another session")
        return conn

    def verify(self) -> None:
        try:
            self.conn.execute("SELECT 1")
        except Exception:
            logger.warning("liveness connection lost; taking the advisory lock again")
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = self._connect()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def drop(self) -> None:
        with contextlib.suppress(Exception):
            os.close(self.conn.fileno())
        _inherited.append(self.conn)


_handles: dict[str, Handle] = {}
_guard = threading.Lock()


def watch_for(token: str) -> str:
    """Take (once per owner and process) the liveness handle of lease owner `token`;
    return its `lease_watch`, or "" when handles are off or none can be taken."""
    handle = _handles.get(token)
    if handle is not None:
        return handle.watch
    settings = get_settings()
    if not settings.liveness_handles:
        return ""
    with _guard:
        handle = _handles.get(token)
        if handle is None:
            try:
                handle = (
                    FlockHandle(settings.liveness_dir, token)
                    if sql.is_sqlite()
                    else PgHandle(token)
                )
            except Exception as exc:  # no handle: the lease alone tells (never fatal)
                logger.warning("no liveness handle for this process (%s); lease only", exc)
                return ""
            _handles[token] = handle
    return handle.watch


def verify_handles() -> None:
    """Take again the handles whose connection was lost (the lease keeper calls this)."""
    for handle in list(_handles.values()):
        try:
            handle.verify()
        except Exception as exc:
            logger.warning("cannot take the liveness handle again: %s", exc)


def release_handle(token: str) -> None:
    """Give up owner `token`'s handle; call after releasing its leases."""
    with _guard:
        handle = _handles.pop(token, None)
    if handle is not None:
        handle.close()


def _drop_inherited() -> None:
    handles = list(_handles.values())
    _handles.clear()
    for handle in handles:
        handle.drop()


os.register_at_fork(after_in_child=_drop_inherited)


# --- the detector -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detection:
    namespace: str
    agent_id: str
    host: str
    pid: int | None
    resume_queued: bool


def expire_dead_holders(*, limit: int = 1000) -> list[Detection]:
    """End the lease of every agent shown running whose holder is seen dead; return them.

    Each is ended by compare-and-set (same owner, epoch and watch, still running), so a
    lease renewed, released or taken over meanwhile is left alone. With automatic resume
    (STATEHOUSE_AUTO_RESUME, or the agent's `auto_resume`) and an entry point, a resume
    request (source "auto") is queued in the same transaction.
    """
    rows = list(
        Agent.objects.running()
        .exclude(lease_watch="")
        .order_by("pk")
        .values_list("pk", "lease_owner", "lease_epoch", "lease_watch")[:limit]
    )
    if not rows:
        return []
    watches = {watch: Watch.parse(watch) for _pk, _owner, _epoch, watch in rows}
    dead = _dead_watches({text: w for text, w in watches.items() if w is not None})
    detections = []
    for pk, owner, epoch, watch in rows:
        if watch in dead:
            detection = _end_lease(pk, owner, epoch, watch)
            if detection is not None:
                detections.append(detection)
    return detections


def _dead_watches(watches: dict[str, Watch]) -> set[str]:
    here = host_id()
    free: set[str] = set()
    pg_keys = {int(w.value) for w in watches.values() if w.kind == PG}
    free_keys = _free_advisory_keys(pg_keys) if pg_keys and not sql.is_sqlite() else set()
    for text, w in watches.items():
        if (w.kind == PG and int(w.value) in free_keys) or (
            w.kind == FLOCK and w.host == here and _flock_free(w.value)
        ):
            free.add(text)
    # A free handle with the holder's pid alive on this host: its connection dropped, it
    # did not die. It takes the handle again (verify_handles); it keeps its lease.
    return {text for text in free if not (watches[text].host == here and _alive(watches[text].pid))}


def _free_advisory_keys(keys: set[int]) -> set[int]:
    """The keys no session holds: taken here for an instant, then let go at once."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", [sorted(keys)]
        )
        free = {row[0] for row in cursor.fetchall()}
        if free:
            cursor.execute(
                "SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", [sorted(free)]
            )
    return free


def _flock_free(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True  # taken before the lease, removed only after: its owner is gone
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        return False
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)  # its owner is dead: nobody takes this token's lock again
        return True
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this host; a zombie (dead, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: the pid exists
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _end_lease(pk: int, owner: str, epoch: int, watch: str) -> Detection | None:
    from statehouse_agents.store.resume import queue_auto_resume

    def end() -> Detection | None:
        agent = (
            Agent.objects.select_for_update()
            .running()
            .filter(pk=pk, lease_owner=owner, lease_epoch=epoch, lease_watch=watch)
            .first()
        )
        if agent is None:
            return None
        Agent.objects.filter(pk=pk).update(**Agent.NO_LEASE)
        # Counted for /metrics (docs/metrics.md) in this transaction, with the lease end.
        add_to_counter(name=DIRECT_DETECTIONS)
        queued = queue_auto_resume(agent)
        logger.warning(
            "%s: its holder %s pid %s died (liveness handle free); lease ended%s",
            agent,
            agent.lease_host,
            agent.lease_pid,
            ", resume queued" if queued else "",
        )
        return Detection(agent.namespace, agent.agent_id, agent.lease_host, agent.lease_pid, queued)

    return run_atomic(end, what="ending a dead holder's lease")


__all__ = [
    "Detection",
    "Watch",
    "expire_dead_holders",
    "release_handle",
    "verify_handles",
    "watch_for",
]
