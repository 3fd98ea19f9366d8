"""bench/remote_bench.py's measure of a web server's CPU: the server's own process and
every process under it, as gunicorn's and granian's workers are (bench/README.md,
"Another WSGI server")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bench.remote_bench import cpu_seconds
from statehouse_site import web_servers

# A child that spends 0.3 s of CPU, then waits to be stopped: what a worker does.
_WORKER = (
    "import time\n"
    "end = time.process_time() + 0.3\n"
    "while time.process_time() < end:\n"
    "    pass\n"
    "print('spent', flush=True)\n"
    "time.sleep(60)\n"
)


def test_cpu_seconds_counts_the_workers_under_a_server_process() -> None:
    master = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_WORKER!r}])",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: stopped with its child below
    )
    try:
        assert master.stdout is not None
        assert master.stdout.readline() == "spent\n"
        time.sleep(0.05)
        # The master itself only waits: nearly all of this is its child's.
        assert 0.3 <= cpu_seconds(master.pid) < 2.0
    finally:
        os.killpg(master.pid, signal.SIGKILL)
        master.wait()


def test_cpu_seconds_of_a_process_that_ended_is_zero() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert cpu_seconds(ended.pid) == 0.0


def test_a_web_server_the_product_does_not_know_is_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match=r"no web server named 'uvicorn' \(known: gunicorn, granian\)"
    ):
        web_servers.command("uvicorn", "127.0.0.1", 8000)


def test_each_web_server_gets_the_counts_and_the_request_log_in_its_own_flags() -> None:
    """Given last, they override the settings modules' counts (both servers take a flag's
    last value)."""
    gunicorn = web_servers.command(
        "gunicorn", "0.0.0.0", 80, workers=3, threads=5, log_requests=True
    )
    granian = web_servers.command("granian", "0.0.0.0", 80, workers=3, threads=5, log_requests=True)
    assert gunicorn[gunicorn.index("--bind") :] == [
        *("--bind", "0.0.0.0:80", "--workers", "3", "--threads", "5"),
        *("--access-logfile", "-"),
    ]
    assert granian[-6:] == [
        *("--workers", "3", "--blocking-threads", "5", "--access-log"),
        "statehouse_site.wsgi:application",
    ]


def test_a_web_server_that_is_not_installed_is_named_with_its_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """granian is an extra: `statehouse serve --server granian` and the bench say how to
    install it rather than fail in the child process."""
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ValueError,
        match=re.escape("granian is not installed: pip install 'statehouse-store[granian]'"),
    ):
        web_servers.command("granian", "127.0.0.1", 8000)
