"""The web servers the product runs (docs/deploy.md, "The web server"): gunicorn and
granian keep an agent's idle connection open longer than its client keeps it, so a
request is never sent on a connection the server is closing."""

from __future__ import annotations

import re
import select
import socket
import time

import pytest

from bench.remote_bench import serve
from statehouse._http import IDLE_SECONDS
from statehouse_site import granian, gunicorn
from statehouse_site.web_servers import SERVERS
from tests.conftest import server_env, stop_server


def test_each_server_keeps_an_idle_connection_longer_than_a_client_does() -> None:
    assert {"gunicorn": gunicorn.keepalive, "granian": granian.KEEPALIVE_MS / 1000} == {
        "gunicorn": 75,
        "granian": 60,
    }
    assert min(gunicorn.keepalive, granian.KEEPALIVE_MS / 1000) > IDLE_SECONDS + 5
    assert granian.command("127.0.0.1", 8000)[-3:] == [
        "--http1-header-read-timeout",
        "60000",
        "statehouse_site.wsgi:application",
    ]


def _ask(sock: socket.socket) -> bytes:
    """Send a request; return its answer, read to the end (a server may send the head
    and the body in two writes)."""
    sock.sendall(b"GET /any/path HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        body += sock.recv(4096)
    return answer


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_a_connection_idle_as_long_as_a_client_keeps_one_is_still_served(server: str) -> None:
    """A real wait of IDLE_SECONDS and one more (granian closes an idle connection after
    30 s unless told otherwise)."""
    env = server_env("postgres://nobody@127.0.0.1:1/none")  # the floor needs no database
    process, url = serve(env, workers=1, threads=2, app="bench.http_floor", server=server)
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            assert _ask(sock).startswith(b"HTTP/1.1 200")
            time.sleep(IDLE_SECONDS + 1)
            readable, _, _ = select.select([sock], [], [], 0)
            assert readable == []  # nothing to read: not closed by the server
            assert _ask(sock).startswith(b"HTTP/1.1 200")
    finally:
        stop_server(process)
