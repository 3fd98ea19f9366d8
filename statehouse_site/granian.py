"""granian's settings for Statehouse, the web server `statehouse serve --server granian`
runs instead of gunicorn (docs/deploy.md, "The web server"): a WSGI server whose HTTP
handling is written in Rust, serving the same `statehouse_site.wsgi:application`.

The same processes and threads as gunicorn's (statehouse_site/gunicorn.py: one process
a core, four threads each, `WEB_CONCURRENCY` and `STATEHOUSE_WEB_THREADS`). granian
closes a keep-alive connection that sends no request for its header read timeout (30 s
unless set), so it is set to granian's longest, 60 s: longer than a client keeps an idle
connection (statehouse/_http.py, IDLE_SECONDS), so the server never closes one first.
"""

from __future__ import annotations

import sys

from statehouse_site.gunicorn import threads, workers

KEEPALIVE_MS = 60_000


def command(host: str, port: int, *options: str, app: str = "statehouse_site.wsgi") -> list[str]:
    """The command line that serves the product (or another WSGI `app`, as bench/ does for
    its HTTP floor) on host:port with these settings; `options` are granian's own flags,
    and one given twice takes its last value, so they override these."""
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host,
        "--port",
        str(port),
        "--no-ws",
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--http1-header-read-timeout",
        str(KEEPALIVE_MS),
        *options,
        f"{app}:application",
    ]
