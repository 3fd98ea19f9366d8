"""bench/http_floor.py, the baseline of bench/remote_bench.py: each web server the bench
can run (gunicorn with the product's settings, and granian) serves it in place of the
product, and the remote client's transport gets the same fixed answer to any request,
with no Django, API or database behind it (bench/README.md, "Remote client" and "Another
WSGI server")."""

from __future__ import annotations

import urllib.request

import pytest

from bench.remote_bench import serve
from statehouse import Statehouse
from statehouse._http import transport
from statehouse_site.web_servers import SERVERS
from tests.conftest import database_url_of_test_db, make_token, server_env, stop_server


@pytest.mark.parametrize("server", SERVERS)
def test_the_floor_answers_the_clients_requests_without_the_product(server: str) -> None:
    # No database at all: a request that reached Django would fail on it.
    env = server_env("postgres://nobody@127.0.0.1:1/none")
    process, url = serve(env, workers=1, threads=2, app="bench.http_floor", server=server)
    try:
        http = transport(url, token="not-checked", timeout=10)
        write = {"op": "write", "agent_id": "a", "key": "k", "value": {"x": "y" * 5_000}}
        assert http.post("/transactions", {"namespace": "n", "operations": [write]}) == {
            "status": "ok"
        }
        # The same kept-alive connection serves the next request.
        assert http.get("/state", {"namespace": "n", "agent_id": "a", "key": "k"}) == {
            "status": "ok"
        }
        http.close()
        with urllib.request.urlopen(f"{url}/any/path") as answer:
            assert answer.headers["Server"] == server  # served by the server named
    finally:
        stop_server(process)


@pytest.mark.django_db(transaction=True)
def test_granian_serves_the_product_as_gunicorn_does() -> None:
    """The bench's other server (`--servers gunicorn,granian`) runs the product itself,
    so its figures are of the same requests: a commit and a read through the remote
    client, on the test database."""
    _, secret = make_token()
    env = server_env(database_url_of_test_db())
    process, url = serve(env, workers=1, threads=2, server="granian")
    try:
        with urllib.request.urlopen(f"{url}/api/v1/openapi.json") as answer:
            assert answer.headers["Server"] == "granian"
        with Statehouse(url, token=secret, namespace="n") as client:
            with client.begin_transaction() as tx:
                tx.write(agent_id="a", key="k", value={"x": "y" * 5_000})
            read = client.get_state("a", "k")
        assert (read.value, read.version) == ({"x": "y" * 5_000}, 1)
    finally:
        stop_server(process)
