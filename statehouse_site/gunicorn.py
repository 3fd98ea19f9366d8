"""gunicorn's settings for Statehouse: `gunicorn -c python:statehouse_site.gunicorn
statehouse_site.wsgi` (docs/deploy.md); `statehouse serve` and bench/ use them too.

gthread workers: an agent's client keeps its connection open between calls (docs/api.md,
"Latency"), and a thread waits on it while others serve, so a few processes serve many
agents. One process a core (each runs Python on one at a time), four threads each: the
threads of a process overlap their database waits. Command-line options override these.
"""

from __future__ import annotations

import os
import sys

from statehouse_site.env import env_int

worker_class = "gthread"
workers = env_int("WEB_CONCURRENCY", max(2, os.cpu_count() or 1), minimum=1)
threads = env_int("STATEHOUSE_WEB_THREADS", 4, minimum=1)
# Longer than a client's pause between two calls: a connection is reused, not remade.
# (gunicorn sets TCP_NODELAY on its sockets; the client's httpx does on its own.)
keepalive = 75
graceful_timeout = 5


def command(bind: str, *options: str, app: str = "statehouse_site.wsgi") -> list[str]:
    """The command line that serves the product (or another WSGI `app`, as bench/ does for
    its HTTP floor) on `bind` with these settings (gunicorn reads only its own setting
    names from this module, so this function is not one)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:statehouse_site.gunicorn",
        app,
        "--bind",
        bind,
        *options,
    ]
