"""The remote client's HTTP transports: pooled httpx clients (keep-alive connections),
timeouts, retries of idempotent reads only, and errors turned into the store's own
exceptions (statehouse/_wire.py).

`Transport` serves the blocking client, `AsyncTransport` the asyncio one
(`AsyncStatehouse`); both send the same `Call`s (built once, in statehouse/remote.py) and
share everything but the waiting.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import httpx

from statehouse import __version__
from statehouse._wire import error_from_body
from statehouse.errors import ConnectionError, StatehouseError

__all__ = ["AsyncTransport", "Call", "Transport"]

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
                max_connections=20, max_keepalive_connections=10, keepalive_expiry=60
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
    def _retry(response: httpx.Response | None, attempt: int) -> bool:
        """Whether a read is sent again: after a lost connection (None) or a gateway's
        error, while attempts remain (a read is safe to send twice)."""
        if attempt + 1 >= READ_ATTEMPTS:
            return False
        return response is None or response.status_code in RETRY_STATUSES

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise error_from_body(response.status_code, body)
        if not isinstance(body, dict):
            raise StatehouseError(f"the server answered with no JSON object: {body!r:.200}")
        return body


class Transport(_Base):
    """The blocking transport: one pooled `httpx.Client`."""

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
            if response is not None and not self._retry(response, attempt):
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
            if response is not None and not self._retry(response, attempt):
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
