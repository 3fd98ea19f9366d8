"""bench/http_floor.py, the baseline of bench/remote_bench.py: gunicorn with the product's
settings serves it in place of the product, and the remote client's transport gets the
same fixed answer to any request, with no Django, API or database behind it
(bench/README.md, "Remote client")."""

from __future__ import annotations

from bench.remote_bench import serve
from statehouse._http import transport
from tests.conftest import server_env, stop_server


def test_the_floor_answers_the_clients_requests_without_the_product() -> None:
    # No database at all: a request that reached Django would fail on it.
    env = server_env("postgres://nobody@127.0.0.1:1/none")
    process, url = serve(env, workers=1, threads=2, app="bench.http_floor")
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
    finally:
        stop_server(process)
