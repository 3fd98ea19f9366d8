"""The remote client's HTTP transports: pooled keep-alive connections, timeouts, retries
of idempotent reads only, and errors turned into the store's own exceptions
(statehouse/_wire.py).

`Transport` serves the blocking client on the standard library's `http.client`, which
costs a quarter of httpx's client-side CPU time per request and sends a request's headers
and body in one write (docs/api.md, "Latency"); through a proxy named in the environment
it hands over to httpx, which honours it (`transport()`). `AsyncTransport` serves the
asyncio one (`AsyncStatehouse`) on httpx. All send the same `Call`s (built once, in
statehouse/remote.py) and share everything but the waiting.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import httpx

from statehouse import __version__
from statehouse._wire import error_from_body
from statehouse.errors import ConnectionError, StatehouseError

__all__ = ["AsyncTransport", "Call", "HttpxTransport", "Transport", "transport"]

T = TypeVar("T")

READ_ATTEMPTS = 3
RETRY_STATUSES = {502, 503, 504}
BACKOFF_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the API, and how its JSON answer becomes the client's result.

    `args`: the query parameters of a GET (None values left out), or the body of a POST
    (an object, or JSON text already encoded)."""

    method: Literal["GET", "POST"]
    path: str
    args: dict[str, Any] | str
    parse: Callable[[Any], T]


class _Base:
    """What both transports share: the connection settings, encoding and error mapping."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        headers = {"User-Agent": f"statehouse-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url
        self._headers = headers
        self._timeout = timeout

    def _client_options(self) -> dict[str, Any]:
        # httpx keeps connections alive in its pool and sets TCP_NODELAY on each, so a
        # request is one write and one read on an open socket (docs/api.md, "Latency").
        return {
            "base_url": f"{self.base_url}/api/v1",
            "headers": self._headers,
            "timeout": httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
            "limits": httpx.Limits(
                max_connections=20,
                max_keepalive_connections=MAX_IDLE_CONNECTIONS,
                keepalive_expiry=IDLE_SECONDS,
            ),
        }

    @staticmethod
    def _params(args: dict[str, Any] | str) -> dict[str, Any]:
        assert isinstance(args, dict), "a GET's arguments are query parameters"
        return {name: value for name, value in args.items() if value is not None}

    @staticmethod
    def _body(args: dict[str, Any] | str) -> bytes:
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False, allow_nan=False)
        return args.encode("utf-8")

    _post_headers = {"Content-Type": "application/json"}

    @staticmethod
    def _line(line: str) -> dict[str, Any] | None:
        """One decoded line of an NDJSON stream (None for a blank one)."""
        if not line:
            return None
        item: dict[str, Any] = json.loads(line)
        if "code" in item and "message" in item:  # an error after the headers were sent
            raise error_from_body(503, item)
        return item

    def _unreachable(self, exc: httpx.TransportError) -> ConnectionError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
        return ConnectionError(f"the Statehouse server at {self.base_url} {kind}: {exc}")

    @staticmethod
    def _retry(status: int | None, attempt: int) -> bool:
        """Whether a read is sent again: after a lost connection (no status) or a
        gateway's error status, while attempts remain (a read is safe to send twice)."""
        if attempt + 1 >= READ_ATTEMPTS:
            return False
        return status is None or status in RETRY_STATUSES

    @classmethod
    def _json(cls, response: httpx.Response) -> Any:
        return cls._answer(response.status_code, response.content)

    @staticmethod
    def _answer(status: int, content: bytes) -> Any:
        """The JSON object of an answer; an error answer raised as the store's exception."""
        try:
            body = json.loads(content)
        except ValueError:
            body = content.decode("utf-8", "replace")
        if status >= 400:
            raise error_from_body(status, body)
        if not isinstance(body, dict):
            raise StatehouseError(f"the server answered with no JSON object: {body!r:.200}")
        return body


# Idle keep-alive connections a blocking client keeps (more are opened when its threads
# call at once, and closed after use), and how long a client keeps one: less than the
# servers' keep-alive (gunicorn 75 s, granian 60 s: statehouse_site/), so a server never
# closes a connection as a request is sent on it.
MAX_IDLE_CONNECTIONS = 10
IDLE_SECONDS = 50.0

# What a lost, refused, reset or timed-out connection raises in `http.client`.
_TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


def transport(base_url: str, *, token: str | None, timeout: float) -> Transport | HttpxTransport:
    """The blocking transport for `base_url`: `Transport`, or `HttpxTransport` when the
    environment names a proxy for it (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY)."""
    parts = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies()
    if (parts.scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(
        parts.hostname or ""
    ):
        return HttpxTransport(base_url, token=token, timeout=timeout)
    return Transport(base_url, token=token, timeout=timeout)


class _Connections:
    """The idle keep-alive connections of one blocking client, shared by its threads (the
    lease keeper renews on one of its own): a call takes one, or opens one, and gives it
    back once its answer is read to the end."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._netloc = parts.netloc
        self._timeout = timeout
        self._idle: list[tuple[http.client.HTTPConnection, float]] = []
        self._lock = threading.Lock()

    def take(self) -> http.client.HTTPConnection:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._idle:
                    break
                connection, since = self._idle.pop()
            if now - since < IDLE_SECONDS and not _closed_by_server(connection):
                return connection
            connection.close()
        return self._open()

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append((connection, time.monotonic()))
                return
        connection.close()

    def _open(self) -> http.client.HTTPConnection:
        connect = min(self._timeout, 10.0)
        connection: http.client.HTTPConnection
        if self._https:
            # httpx's own TLS settings (certifi, SSL_CERT_FILE / SSL_CERT_DIR), as before.
            context = httpx.create_ssl_context(verify=True, trust_env=True)
            connection = http.client.HTTPSConnection(self._netloc, timeout=connect, context=context)
        else:
            connection = http.client.HTTPConnection(self._netloc, timeout=connect)
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(self._timeout)
        # The answer is never held back by Nagle's algorithm (docs/api.md, "Latency").
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection, _since in idle:
            connection.close()


def _closed_by_server(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server: a socket with something to
    read between two calls holds only its end (the server sends nothing unasked)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Transport(_Base):
    """The blocking transport: keep-alive connections of `http.client`.

    A call is one write (headers and body together, so the server reads the request at
    once) and one read on a connection kept open between calls; the request path, the
    headers and the query are encoded here, without httpx's URL and header models
    (docs/api.md, "Latency")."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        super().__init__(base_url, token=token, timeout=timeout)
        self._root = urllib.parse.urlsplit(base_url).path.rstrip("/") + "/api/v1"
        self._connections = _Connections(base_url, timeout=timeout)
        self._get_headers = {**self._headers, "Accept": "application/json"}
        self._post_headers_all = {**self._get_headers, **self._post_headers}

    def forget_connections(self) -> None:
        """In a forked child: open new connections, leaving the parent's sockets alone
        (closing them here could end the parent's requests)."""
        self._connections = _Connections(self.base_url, timeout=self._timeout)

    def send(self, call: Call[T]) -> T:
        if call.method == "GET":
            return call.parse(self.get(call.path, call.args))
        return call.parse(self.post(call.path, call.args))

    def _target(self, path: str, args: dict[str, Any] | str | None) -> str:
        if args is None:
            return self._root + path
        query = urllib.parse.urlencode(
            {name: _query_value(value) for name, value in self._params(args).items()}
        )
        return f"{self._root}{path}?{query}" if query else self._root + path

    def _exchange(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """Send one request and read its whole answer; the connection is kept for the next
        call unless the server closes it."""
        connection = self._connections.take()
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._connections.give_back(connection)
        return response.status, content

    def get(self, path: str, args: dict[str, Any] | str) -> Any:
        """GET with retries: a read is safe to send again after a lost connection."""
        target = self._target(path, args)
        for attempt in range(READ_ATTEMPTS):
            answer = None
            try:
                answer = self._exchange("GET", target, None, self._get_headers)
            except _TRANSPORT_ERRORS as exc:
                if not self._retry(None, attempt):
                    raise self._lost(exc) from exc
            if answer is not None and not self._retry(answer[0], attempt):
                return self._answer(*answer)
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def post(self, path: str, args: dict[str, Any] | str) -> Any:
        """POST once: a write that may have reached the server is never sent twice."""
        try:
            answer = self._exchange(
                "POST", self._root + path, self._body(args), self._post_headers_all
            )
        except _TRANSPORT_ERRORS as exc:
            raise self._lost(exc) from exc
        return self._answer(*answer)

    def stream_lines(self, path: str, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """GET an NDJSON stream, one decoded line at a time (flat memory)."""
        connection = self._connections.take()
        finished = False
        try:
            connection.request("GET", self._target(path, args), headers=self._get_headers)
            response = connection.getresponse()
            if response.status != 200:
                self._answer(response.status, response.read())
            for raw in response:
                if (item := self._line(raw.decode("utf-8").rstrip("\r\n"))) is not None:
                    yield item
            finished = not response.will_close
        except _TRANSPORT_ERRORS as exc:
            raise self._lost(exc) from exc
        finally:
            if finished:
                self._connections.give_back(connection)
            else:  # a stream left unread, or an error: the connection is not reusable
                connection.close()

    def _lost(self, exc: BaseException) -> ConnectionError:
        kind = "timed out" if isinstance(exc, TimeoutError) else "is unreachable"
        return ConnectionError(f"the Statehouse server at {self.base_url} {kind}: {exc}")

    def close(self) -> None:
        self._connections.close()


def _query_value(value: Any) -> Any:
    """A query parameter as httpx wrote it: booleans as `true` / `false`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class HttpxTransport(_Base):
    """The blocking transport through a proxy: one pooled `httpx.Client` (which reads the
    proxy settings and their exceptions from the environment)."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        super().__init__(base_url, token=token, timeout=timeout)
        self._client = httpx.Client(**self._client_options())

    def forget_connections(self) -> None:
        """In a forked child: open new connections, leaving the parent's sockets alone
        (closing them here could end the parent's requests)."""
        self._client = httpx.Client(**self._client_options())

    def send(self, call: Call[T]) -> T:
        if call.method == "GET":
            return call.parse(self.get(call.path, call.args))
        return call.parse(self.post(call.path, call.args))

    def get(self, path: str, args: dict[str, Any] | str) -> Any:
        """GET with retries: a read is safe to send again after a lost connection."""
        params = self._params(args)
        for attempt in range(READ_ATTEMPTS):
            response = None
            try:
                response = self._client.get(path, params=params)
            except httpx.TransportError as exc:
                if not self._retry(None, attempt):
                    raise self._unreachable(exc) from exc
            if response is not None and not self._retry(response.status_code, attempt):
                return self._json(response)
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def post(self, path: str, args: dict[str, Any] | str) -> Any:
        """POST once: a write that may have reached the server is never sent twice."""
        try:
            response = self._client.post(path, content=self._body(args), headers=self._post_headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._json(response)

    def stream_lines(self, path: str, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """GET an NDJSON stream, one decoded line at a time (flat memory)."""
        try:
            with self._client.stream("GET", path, params=self._params(args)) as response:
                if response.status_code != 200:
                    response.read()
                    self._json(response)
                for line in response.iter_lines():
                    if (item := self._line(line)) is not None:
                        yield item
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def close(self) -> None:
        self._client.close()


class AsyncTransport(_Base):
    """The asyncio transport: one pooled `httpx.AsyncClient`, the same calls and errors."""

    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        super().__init__(base_url, token=token, timeout=timeout)
        self._pool: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def _client(self) -> httpx.AsyncClient:
        """The pool of the running event loop: its connections belong to the loop that
        opened them, so a client used from another loop (a second `asyncio.run`) opens its
        own, leaving the old loop's sockets to it."""
        loop = asyncio.get_running_loop()
        if self._pool is None or loop is not self._loop:
            self._pool, self._loop = httpx.AsyncClient(**self._client_options()), loop
        return self._pool

    async def send(self, call: Call[T]) -> T:
        if call.method == "GET":
            return call.parse(await self.get(call.path, call.args))
        return call.parse(await self.post(call.path, call.args))

    async def get(self, path: str, args: dict[str, Any] | str) -> Any:
        params = self._params(args)
        for attempt in range(READ_ATTEMPTS):
            response = None
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as exc:
                if not self._retry(None, attempt):
                    raise self._unreachable(exc) from exc
            if response is not None and not self._retry(response.status_code, attempt):
                return self._json(response)
            await asyncio.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    async def post(self, path: str, args: dict[str, Any] | str) -> Any:
        try:
            response = await self._client.post(
                path, content=self._body(args), headers=self._post_headers
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._json(response)

    async def stream_lines(self, path: str, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self._client.stream("GET", path, params=self._params(args)) as response:
                if response.status_code != 200:
                    await response.aread()
                    self._json(response)
                async for line in response.aiter_lines():
                    if (item := self._line(line)) is not None:
                        yield item
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def close(self) -> None:
        if self._pool is not None and self._loop is asyncio.get_running_loop():
            await self._pool.aclose()
        self._pool = self._loop = None
