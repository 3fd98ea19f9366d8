"""The web servers that serve the product, one command line for each (docs/deploy.md, "The
web server"): gunicorn, the default, and granian. `statehouse serve` and bench/ start
them through `command`, each with its settings module (statehouse_site/gunicorn.py,
statehouse_site/granian.py)."""

from __future__ import annotations

import importlib.util

from statehouse_site import granian, gunicorn

SERVERS = ("gunicorn", "granian")
# Each server's name for the threads of one process.
_THREADS_FLAG = {"gunicorn": "--threads", "granian": "--blocking-threads"}
# How each comes to be installed: gunicorn with the product, granian as an extra.
_INSTALL = {
    "gunicorn": "pip install statehouse-store",
    "granian": "pip install 'statehouse-store[granian]'",
}


def command(
    server: str,
    host: str,
    port: int,
    *,
    workers: int | None = None,
    threads: int | None = None,
    log_requests: bool = False,
    options: tuple[str, ...] = (),
    app: str = "statehouse_site.wsgi",
) -> list[str]:
    """The command line of `server` serving `app` on host:port with the product's settings:
    `workers` and `threads` override its counts, `log_requests` logs each request to
    standard output, and `options` are flags both servers take alike (`--log-level`).
    Raises ValueError for a server not in SERVERS, or one not installed (granian is an
    extra)."""
    if server not in SERVERS:
        raise ValueError(f"no web server named {server!r} (known: {', '.join(SERVERS)})")
    if importlib.util.find_spec(server) is None:
        raise ValueError(f"{server} is not installed: {_INSTALL[server]}")
    flags: list[str] = []
    if workers is not None:
        flags += ["--workers", str(workers)]
    if threads is not None:
        flags += [_THREADS_FLAG[server], str(threads)]
    if server == "gunicorn":
        log = ["--access-logfile", "-"] if log_requests else []
        return gunicorn.command(f"{host}:{port}", *flags, *log, *options, app=app)
    log = ["--access-log"] if log_requests else []
    return granian.command(host, port, *flags, *log, *options, app=app)
