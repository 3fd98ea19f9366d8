"""Starting the process that runs one resume: forked from the worker (fast), or spawned.

Forking the worker, whose Django is already set up, starts a run in milliseconds rather
than the ~0.5 s of a new interpreter importing Django. The child drops (without closing:
that would end the worker's database session) the connections it inherited and opens
its own. `STATEHOUSE_WORKER_START=spawn` starts `python -m agents.resume_runner` instead.
Either way the run dies with its worker (Linux PDEATHSIG) and inherits the claim's lease
token, and the handle answers like `subprocess.Popen` (pid, poll, wait, send_signal).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Protocol

from statehouse_agents.conf import get_settings
from statehouse_agents.store.resume import Claim

_PR_SET_PDEATHSIG = 1


class RunProcess(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, signum: int) -> None: ...


def start_method() -> str:
    return get_settings().worker_start


def start_run(claim: Claim, output: IO[bytes]) -> RunProcess:
    """Start the run of `claim`, its stdout and stderr going to `output`."""
    if start_method() == "fork":
        return ForkedRun.start(claim, output)
    return _spawn(claim, output)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the run is killed when its worker dies, so no orphan outlives its supervisor."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _spawn(claim: Claim, output: IO[bytes]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, STATEHOUSE_LEASE_TOKEN=claim.lease_token)
    env.setdefault("DJANGO_SETTINGS_MODULE", "statehouse_site.settings")
    project_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "statehouse_agents.resume_runner",
            claim.namespace,
            claim.agent_id,
            claim.entry_point,
        ],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
    )


class ForkedRun:
    """A child forked from the worker, reaped with waitpid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(cls, claim: Claim, output: IO[bytes]) -> ForkedRun:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # or the child would write the worker's pending output again
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; coverage cannot follow os._exit
            _child(claim, output.fileno())
        return cls(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)


def _child(claim: Claim, output_fd: int) -> None:  # pragma: no cover - runs in the child
    code = 1
    try:
        die_with_parent()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        _fresh_streams()
        from statehouse import _django

        _django.forget_inherited_connections()  # done at the fork already; kept explicit
        os.environ["STATEHOUSE_LEASE_TOKEN"] = claim.lease_token

        from statehouse_agents.resume_runner import main

        _django.mark_ready()  # the worker's claims prove the schema is there
        code = main([claim.namespace, claim.agent_id, claim.entry_point])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _fresh_streams() -> None:  # pragma: no cover - runs in the child
    """Point Python's streams and log handlers at the run's output (fds 1 and 2)."""
    old = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in old:
                handler.setStream(sys.stdout)
