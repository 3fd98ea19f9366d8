"""statehouse/_http.py: the blocking client's `http.client` transport (docs/api.md,
"Latency") — one kept connection reused call after call, a connection the server closed
replaced before use, and httpx through a proxy named in the environment."""

from __future__ import annotations

import socket

import pytest

from statehouse import Statehouse
from statehouse._http import HttpxTransport, Transport, _closed_by_server, transport


def test_without_a_proxy_the_blocking_client_sends_on_http_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert type(transport("http://127.0.0.1:9", token="t", timeout=5)) is Transport


def test_through_a_proxy_the_blocking_client_sends_on_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert type(transport("http://agents.example:8000", token="t", timeout=5)) is HttpxTransport
    monkeypatch.setenv("no_proxy", "agents.example")
    assert type(transport("http://agents.example:8000", token="t", timeout=5)) is Transport


def test_calls_reuse_one_kept_connection(api_server: str, api_token: str) -> None:
    with Statehouse(api_server, token=api_token) as client:
        client.start("a1", {"task": "t"})
        http = client._backend._http  # type: ignore[attr-defined]  # the remote backend's
        assert isinstance(http, Transport)
        (first, _since), *more = http._connections._idle
        assert not more
        for n in range(5):
            client.get_state("a1", "task")
            with client.begin_transaction() as tx:
                tx.write(agent_id="a1", key=f"k{n}", value=n)
        assert [connection for connection, _since in http._connections._idle] == [first]


def test_a_connection_the_server_closed_is_replaced_before_use(
    api_server: str, api_token: str
) -> None:
    with Statehouse(api_server, token=api_token) as client:
        client.health()
        http = client._backend._http  # type: ignore[attr-defined]  # the remote backend's
        (kept, _since), *_ = http._connections._idle
        assert not _closed_by_server(kept)
        kept.sock.shutdown(socket.SHUT_RD)  # reads as the server's end would: nothing more
        assert _closed_by_server(kept)
        assert client.get_state("a1", "task").exists is False  # on a new connection
        assert [c for c, _since in http._connections._idle] != [kept]
