"""bench/placement.py, which the benchmarks use to give every system the same round trip:
it finds the server processes of this process's own connections, pins, and puts every
process back where it may run afterwards (bench/README.md, "Reading the figures")."""

from __future__ import annotations

import os

import psycopg
import pytest
from django.db import connection

from bench import placement
from tests.conftest import database_url_of_test_db


def test_a_local_server_is_told_from_a_remote_one() -> None:
    assert placement.is_local("postgres://postgres@127.0.0.1:5432/db")
    assert placement.is_local("postgres://postgres@localhost/db")
    assert placement.is_local("postgres:///db")  # the local socket
    assert not placement.is_local("postgres://postgres@db.internal:5432/db")


@pytest.mark.django_db
def test_own_server_pids_are_those_of_this_process_connections_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("server processes are PostgreSQL's")
    url = database_url_of_test_db()
    with psycopg.connect(url) as mine, psycopg.connect(url) as also_mine:
        ours = {mine.info.backend_pid, also_mine.info.backend_pid}
        found = placement.own_server_pids(url)
        assert ours <= set(found)
        everyone = mine.execute("SELECT pid FROM pg_stat_activity").fetchall()
        # Background workers and other sessions of the server are left alone.
        assert len(found) < len(everyone)
    assert not ours & set(placement.own_server_pids(url))  # closed: no longer ours


@pytest.mark.django_db
def test_pinning_moves_this_process_and_the_servers_and_then_puts_them_back() -> None:
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("pinning needs two CPUs")
    if connection.vendor != "postgresql":
        servers: list[int] = []
    else:
        connection.ensure_connection()
        servers = [connection.connection.info.backend_pid]
    before = {pid: os.sched_getaffinity(pid) for pid in servers}
    with placement.pinned(servers) as note:
        if note.startswith("not pinned"):
            pytest.skip(f"this user may not move the server's processes: {note}")
        first, second = sorted(cpus)[:2]
        assert os.sched_getaffinity(0) == {first}
        assert all(os.sched_getaffinity(pid) == {second} for pid in servers)
        assert note.startswith(f"this process on CPU {first}")
    assert os.sched_getaffinity(0) == cpus
    assert {pid: os.sched_getaffinity(pid) for pid in servers} == before
