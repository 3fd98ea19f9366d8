"""Two hosts against one PostgreSQL (docs/operations.md, "Two hosts"): agents and a
resume worker on each of two "hosts", each host a set of Linux namespaces of its own:
network (a veth pair to us, its only way to the database), host name (UTS), pids and
mounts. Host A is then lost, its link cut or all its processes SIGKILLed; its agents
turn interrupted (at the end of the lease, or at once when the database saw its
connections close), while host B's agents stay running throughout.

Each host's processes share one pid namespace whose first process is an idle init; they
are started in the same order on both hosts, so their pids collide across the hosts (a
pid is checked only for a holder on the detector's own host: agents/store/liveness.py).
PostgreSQL listens on 127.0.0.1 only: each host reaches it through a small TCP forwarder
in this process, listening on our end of the host's veth. A cut link (our end set down)
stalls the connections instead of closing them, as a lost network does: the server keeps
the advisory locks of host A's sessions, so only the lease tells.

Needs root and a kernel that lets it create namespaces; PostgreSQL only.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection
from django.db.models.functions import Now
from statehouse_agents.models import Agent
from statehouse_agents.store.counters import DIRECT_DETECTIONS, counter_values

from tests.factories import wait_until

ROOT = Path(__file__).resolve().parent.parent
LEASE = 6.0  # seconds; renewed every 2 s
AGENTS = ("1", "2")

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL test"),
    pytest.mark.skipif(os.geteuid() != 0, reason="creating namespaces needs root"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("ip", "unshare", "nsenter")),
        reason="needs ip, unshare and nsenter",
    ),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Forwarder:
    """Forward every TCP connection accepted on (address, port) to 127.0.0.1:`target`;
    when either side closes, close the other (the server then ends that session)."""

    def __init__(self, address: str, port: int, target: int) -> None:
        self.target = target
        self.listener = socket.create_server((address, port))
        self.sockets: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                downstream, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            self.sockets += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            try:
                while not self.stopped.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
            except OSError:
                return
            finally:
                for end in (a, b):
                    with contextlib.suppress(OSError):
                        end.close()

    def stop(self) -> None:
        self.stopped.set()
        for sock in (self.listener, *self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class Host:
    """One host: a network namespace linked to us by a veth pair, and an init process
    holding its own UTS (host name), pid and mount namespaces."""

    name: str
    netns: str
    outside: str  # our end of the veth
    inside: str
    subnet: int
    init: subprocess.Popen[bytes] | None = None
    init_pid: int = 0
    forwarder: Forwarder | None = None
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"10.213.{self.subnet}.1"

    def up(self) -> None:
        ip("netns", "add", self.netns)
        ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        ip("link", "set", self.inside, "netns", self.netns)
        ip("addr", "add", f"{self.gateway}/30", "dev", self.outside)
        ip("link", "set", self.outside, "up")
        ip("-n", self.netns, "addr", "add", f"10.213.{self.subnet}.2/30", "dev", self.inside)
        ip("-n", self.netns, "link", "set", self.inside, "up")
        ip("-n", self.netns, "link", "set", "lo", "up")
        self.forwarder = Forwarder(self.gateway, 5432, connection.settings_dict.get("PORT") or 5432)
        # --kill-child: the init dies with `unshare`; killing the init kills every process
        # of its pid namespace (the host).
        self.init = subprocess.Popen(
            [
                *("ip", "netns", "exec", self.netns),
                *("unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"),
                *("sh", "-c", f"hostname {self.name}; exec sleep 600"),
            ],
            stdin=subprocess.DEVNULL,
        )
        children = Path(f"/proc/{self.init.pid}/task/{self.init.pid}/children")
        self.init_pid = int(
            wait_until(lambda: children.read_text().split(), timeout=30, what="the init")[0]
        )
        wait_until(
            lambda: Path(f"/proc/{self.init_pid}/comm").read_text().strip() == "sleep",
            timeout=30,
            what=f"{self.name}'s host name to be set",
        )

    def start(self, argv: list[str], env: dict[str, str], **popen: object) -> subprocess.Popen[str]:
        """Run `argv` on this host (its namespaces), with DATABASE_URL through its link."""
        env = {**env, "DATABASE_URL": self.database_url(env["DATABASE_URL"])}
        process = subprocess.Popen(
            [
                *("nsenter", "-t", str(self.init_pid), "--net", "--uts", "--pid", "--mount"),
                f"--wd={ROOT}",
                *argv,
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            text=True,
            **popen,  # type: ignore[call-overload]
        )
        self.processes.append(process)
        return process

    def database_url(self, url: str) -> str:
        user_host, _, name = url.removeprefix("postgres://").partition("/")
        user = user_host.partition("@")[0]
        return f"postgres://{user}@{self.gateway}:5432/{name}"

    def cut(self) -> None:
        """Cut the link: connections stall (nothing closes them), as on a lost network."""
        ip("link", "set", self.outside, "down")

    def kill(self) -> None:
        """SIGKILL every process of the host (its pid namespace dies with its init)."""
        os.kill(self.init_pid, signal.SIGKILL)

    def destroy(self) -> None:
        if self.init_pid:
            with contextlib.suppress(OSError):
                os.kill(self.init_pid, signal.SIGKILL)
        for process in [*self.processes, *([self.init] if self.init else [])]:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=30)
        if self.forwarder is not None:
            self.forwarder.stop()
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)


@pytest.fixture
def two_hosts(subprocess_env: dict[str, str]) -> Iterator[tuple[Host, Host]]:
    """Hosts "host-a" and "host-b"; taken down at the end whatever happened."""
    tag = os.getpid() % 100000
    subnet = (os.getpid() % 63) * 4
    hosts = tuple(
        Host(
            name=f"host-{letter}",
            netns=f"sh-{letter}-{tag}",
            outside=f"sh{letter}o{tag}",
            inside=f"sh{letter}i{tag}",
            subnet=subnet + index,
        )
        for index, letter in enumerate("ab")
    )
    try:
        for host in hosts:
            try:
                host.up()
            except (subprocess.CalledProcessError, OSError, AssertionError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                pytest.skip(f"cannot create the namespaces of {host.name}: {detail}")
        yield hosts  # type: ignore[misc]
    finally:
        for host in hosts:
            host.destroy()


def start_host(host: Host, env: dict[str, str], tmp_path: Path) -> None:
    """A resume worker (its detector on) and two agents on `host`, in that order."""
    log = tmp_path / f"{host.name}-worker.log"
    with log.open("w") as output:
        host.start(
            [sys.executable, "manage.py", "resume_worker"],
            env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    wait_until(lambda: "started" in log.read_text(), timeout=60, what=f"{host.name}'s worker")
    for suffix in AGENTS:
        agent = host.start(
            [sys.executable, "-m", "tests.liveness_agent", f"{host.name}-{suffix}"],
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert agent.stdout is not None
        started, _, _ = select.select([agent.stdout], [], [], 60)  # bounded, as every wait
        assert started, f"{host.name}-{suffix} did not start within 60 s"
        line = agent.stdout.readline()
        assert line.strip() == "ready", line + agent.stdout.read()


@dataclass(frozen=True)
class Row:
    agent_id: str
    status: str
    lease_owner: str
    lease_host: str
    lease_pid: int | None
    lease_expires_at: datetime | None
    now: datetime


def sample() -> dict[str, Row]:
    """Every agent's status and lease, with the database's clock, in one query."""
    rows = (
        Agent.objects.annotate_status()
        .annotate(db_now=Now())
        .values_list(
            "agent_id",
            "status_value",
            "lease_owner",
            "lease_host",
            "lease_pid",
            "lease_expires_at",
            "db_now",
        )
    )
    return {row[0]: Row(*row) for row in rows}


@pytest.mark.parametrize("loss", ["cut-link", "kill-processes"])
def test_a_lost_host_interrupts_its_agents_and_no_other(
    two_hosts: tuple[Host, Host], subprocess_env: dict[str, str], tmp_path: Path, loss: str
) -> None:
    a, b = two_hosts
    env = {**subprocess_env, "STATEHOUSE_LEASE_SECONDS": str(LEASE)}
    for host in (a, b):
        start_host(host, env, tmp_path)
    on_a = [f"host-a-{suffix}" for suffix in AGENTS]
    on_b = [f"host-b-{suffix}" for suffix in AGENTS]
    before = sample()
    assert {agent: before[agent].status for agent in on_a + on_b} == dict.fromkeys(
        on_a + on_b, "running"
    )
    # Each holder is recorded with its own host's name and its pid there; started in the
    # same order, the two hosts' agents have the same pids.
    assert {before[agent].lease_host for agent in on_a} == {"host-a"}
    assert {before[agent].lease_host for agent in on_b} == {"host-b"}
    assert [before[agent].lease_pid for agent in on_a] == [
        before[agent].lease_pid for agent in on_b
    ]

    if loss == "cut-link":
        a.cut()
    else:
        a.kill()
    lost = time.monotonic()
    seen: list[dict[str, Row]] = []
    while time.monotonic() - lost < LEASE + 20:  # bounded: the lease, and slack for load
        seen.append(sample())
        if all(seen[-1][agent].status == "interrupted" for agent in on_a):
            break
        time.sleep(0.05)
    last = seen[-1]
    assert {agent: last[agent].status for agent in on_a} == dict.fromkeys(on_a, "interrupted"), (
        f"after {time.monotonic() - lost:.1f} s; host-b's worker log:\n"
        + (tmp_path / "host-b-worker.log").read_text()
    )

    if loss == "cut-link":
        # The stalled sessions keep their advisory locks: nothing is detected directly,
        # the lease runs out. Running in every sample until it does, interrupted after.
        for agent in on_a:
            assert last[agent].lease_owner != ""
            expires = last[agent].lease_expires_at
            assert expires is not None
            assert expires > before[agent].now  # it was not interrupted at the cut
            statuses = {(s[agent].now < expires, s[agent].status) for s in seen}
            assert statuses <= {(True, "running"), (False, "interrupted")}, statuses
        assert counter_values().get(DIRECT_DETECTIONS, 0) == 0
    else:
        # The killed processes' connections closed: host B's worker saw the advisory
        # locks free and ended the leases directly, before they ran out, though host
        # B's own processes have the very pids the dead holders had.
        log = (tmp_path / "host-b-worker.log").read_text()
        for agent in on_a:
            assert (last[agent].lease_owner, last[agent].lease_expires_at) == ("", None)
            expires = before[agent].lease_expires_at
            assert expires is not None
            assert last[agent].now < expires
            assert f"{agent}: its process host-a pid {before[agent].lease_pid} died" in log
        assert counter_values()[DIRECT_DETECTIONS] == 2

    # Host B's agents were never reported otherwise than running, and stay so for more
    # than a whole lease after host A's were interrupted (host B renews and detects on),
    # sampled at least 40 times however slow each sample is on a loaded machine.
    until, cap = time.monotonic() + LEASE + 1, time.monotonic() + 60
    while (time.monotonic() < until or len(seen) <= 40) and time.monotonic() < cap:
        seen.append(sample())
        time.sleep(0.1)
    assert {s[agent].status for s in seen for agent in on_b} == {"running"}
    assert len(seen) > 40
