"""The remote client's HTTP transport: one pooled httpx client, timeouts, retries of
idempotent reads only, and errors turned into the store's own exceptions (statehouse/_wire.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from statehouse import __version__
from statehouse._wire import error_from_body
from statehouse.errors import ConnectionError, StatehouseError

__all__ = ["Transport"]

READ_ATTEMPTS = 3
RETRY_STATUSES = {502, 503, 504}
BACKOFF_SECONDS = 0.1


class Transport:
    def __init__(self, base_url: str, *, token: str | None, timeout: float) -> None:
        headers = {"User-Agent": f"statehouse-client/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url
        self._headers = headers
        self._timeout = timeout
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v1",
            headers=self._headers,
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def forget_connections(self) -> None:
        """In a forked child: open new connections, leaving the parent's sockets alone
        (closing them here could end the parent's requests)."""
        self._client = self._new_client()

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """GET with retries: a read is safe to send again after a lost connection."""
        clean = {name: value for name, value in params.items() if value is not None}
        for attempt in range(READ_ATTEMPTS):
            last = attempt + 1 == READ_ATTEMPTS
            try:
                response = self._client.get(path, params=clean)
            except httpx.TransportError as exc:
                if last:
                    raise self._unreachable(exc) from exc
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return self._json(response)
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def post(self, path: str, body: dict[str, Any] | str) -> Any:
        """POST once: a write that may have reached the server is never sent twice.

        `body` is an object, or JSON text already encoded."""
        if not isinstance(body, str):
            body = json.dumps(body, ensure_ascii=False, allow_nan=False)
        try:
            response = self._client.post(
                path,
                content=body.encode("utf-8"),
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return self._json(response)

    def stream_lines(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """GET an NDJSON stream, one decoded line at a time (flat memory)."""
        clean = {name: value for name, value in params.items() if value is not None}
        try:
            with self._client.stream("GET", path, params=clean) as response:
                if response.status_code != 200:
                    response.read()
                    self._json(response)
                for line in response.iter_lines():
                    if line:
                        item = json.loads(line)
                        if "code" in item and "message" in item:  # an error after the headers
                            raise error_from_body(503, item)
                        yield item
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def close(self) -> None:
        self._client.close()

    def _unreachable(self, exc: httpx.TransportError) -> ConnectionError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
        return ConnectionError(f"the Statehouse server at {self.base_url} {kind}: {exc}")

    def _json(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise error_from_body(response.status_code, body)
        if not isinstance(body, dict):
            raise StatehouseError(f"the server answered with no JSON object: {body!r:.200}")
        return body
