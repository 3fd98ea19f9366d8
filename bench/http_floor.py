"""The HTTP floor of bench/remote_bench.py: a WSGI application that answers every request
at once with a fixed JSON body. Served by gunicorn with the product's settings and called
through the remote client's own transport, it measures what the HTTP round trip costs
before any of Django, the API or the database runs (bench/README.md, "Remote client")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

BODY = b'{"status": "ok"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)  # a request body is read, as the API reads it
    start_response("200 OK", HEADERS)
    return [BODY]
