"""The remote backend: the store through a Statehouse server's HTTP API (docs/api.md).

It behaves as the embedded one: the same validation before anything is sent, the same
errors (the server sends each error's class), and the leases it takes are renewed over
HTTP in the background and released at close. It needs neither Django nor a driver.

Each operation is built once as a `Call` (the request, and how its answer becomes the
result); `RemoteBackend` sends it on the blocking transport, `AsyncRemote` (the remote
mode of `AsyncStatehouse`) on the asyncio one.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from statehouse._backend import Backend
from statehouse._http import AsyncTransport, Call, transport
from statehouse._ops import PendingOp
from statehouse._wire import event_from_json, state_from_json
from statehouse.errors import StatehouseError, TransactionError
from statehouse.lease import LeaseKeeper
from statehouse.types import ReplayEvent, StateResult
from statehouse.validation import env_seconds

__all__ = ["AsyncRemote", "RemoteBackend"]

logger = logging.getLogger("statehouse.remote")

REPLAY_PAGE = 1000  # events a page of the replay stream


class RemoteBackend(Backend):
    mode: ClassVar[str] = "remote"

    def __init__(
        self, base_url: str, *, token: str | None, timeout: float, lease_seconds: float | None
    ) -> None:
        if lease_seconds is None:
            lease_seconds = env_seconds("STATEHOUSE_LEASE_SECONDS")
        super().__init__(lease_seconds=lease_seconds)
        self.base_url = base_url
        self.token = token
        self.timeout = timeout
        self._http = transport(base_url, token=token, timeout=timeout)
        self._server_info: dict[str, Any] | None = None

    def _after_fork(self) -> None:
        super()._after_fork()
        self._http.forget_connections()

    @property
    def _server(self) -> dict[str, Any]:
        """The server's version and limits, asked once (`AsyncRemote` asks without blocking)."""
        if self._server_info is None:
            self._server_info = self._http.send(self.version_info_call())
        return self._server_info

    def _setting(self, name: str) -> Any:
        return self._server[name]

    def _make_keeper(self) -> LeaseKeeper:
        return _HttpLeaseKeeper(self)

    def _lease_args(self, namespace: str) -> dict[str, Any]:
        owner = self.owner
        return {
            "owner": {"token": owner.token, "host": owner.host, "pid": owner.pid},
            "held": self.held_in(namespace),
            "lease_seconds": self.lease_seconds,
        }

    # --- the calls, built once for both transports ---

    def version_info_call(self) -> Call[dict[str, Any]]:
        return Call("GET", "/version", {}, dict)

    def health_call(self) -> Call[str]:
        return Call("GET", "/health", {}, lambda answer: str(answer["status"]))

    def version_call(self) -> Call[tuple[str, str]]:
        return Call(
            "GET", "/version", {}, lambda info: (str(info["version"]), str(info["revision"]))
        )

    def commit_call(self, namespace: str, ops: list[PendingOp], txn_id: str) -> Call[int | None]:
        # The values are JSON text already (validated at staging): spliced in, not re-encoded.
        head = json.dumps({"namespace": namespace, "txn_id": txn_id, **self._lease_args(namespace)})
        body = f'{head[:-1]}, "operations": [{", ".join(map(_op_json, ops))}]}}'

        def committed(result: dict[str, Any]) -> int | None:
            self._track(namespace, result["leased"], result["released"])
            return result["commit_ts"]

        return Call("POST", "/transactions", body, committed)

    def release_call(self, namespace: str, agent_id: str) -> Call[None]:
        self._forget(namespace, agent_id)
        body = {"owner_token": self.owner.token, "namespace": namespace, "agent_id": agent_id}
        return Call("POST", "/leases/release", body, _nothing)

    def release_all_call(self) -> Call[None]:
        return Call("POST", "/leases/release", {"owner_token": self.owner.token}, _nothing)

    def renew_call(self) -> Call[int]:
        body = {"owner_token": self.owner.token, "lease_seconds": self.lease_seconds}
        return Call("POST", "/leases/renew", body, lambda answer: int(answer["held"]))

    def get_state_call(self, namespace: str, agent_id: str, key: str) -> Call[StateResult]:
        params = {"namespace": namespace, "agent_id": agent_id, "key": key}
        return Call("GET", "/state", params, state_from_json)

    def get_state_at_version_call(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> Call[StateResult]:
        params = {"namespace": namespace, "agent_id": agent_id, "key": key, "version": version}
        return Call("GET", "/state/version", params, state_from_json)

    def list_keys_call(self, namespace: str, agent_id: str, prefix: str | None) -> Call[list[str]]:
        params = {"namespace": namespace, "agent_id": agent_id, "prefix": prefix}
        return Call("GET", "/keys", params, lambda answer: list(answer["keys"]))

    def scan_prefix_call(
        self, namespace: str, agent_id: str, prefix: str
    ) -> Call[list[StateResult]]:
        params = {"namespace": namespace, "agent_id": agent_id, "prefix": prefix}
        return Call(
            "GET", "/scan", params, lambda answer: [state_from_json(r) for r in answer["records"]]
        )

    def last_completed_step_call(self, namespace: str, agent_id: str) -> Call[int]:
        params = {"namespace": namespace, "agent_id": agent_id}
        return Call(
            "GET", "/agents/status", params, lambda answer: int(answer["last_completed_step"])
        )

    def status_call(self, namespace: str, agent_id: str) -> Call[str | None]:
        params = {"namespace": namespace, "agent_id": agent_id}
        return Call("GET", "/agents/status", params, lambda answer: answer["status"])

    def register_resume_call(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> Call[None]:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "entry_point": entry_point,
            "auto": auto,
        }
        return Call("POST", "/agents/resume-entry-point", body, _nothing)

    def request_resume_call(self, namespace: str, agent_id: str, requested_by: str) -> Call[int]:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "requested_by": requested_by or self.owner.describe(),
        }
        return Call(
            "POST", "/agents/resume-requests", body, lambda answer: int(answer["request_id"])
        )

    def request_approval_call(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str
    ) -> Call[dict[str, Any]]:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "name": name,
            "payload": payload,
            "kind": kind,
        }
        return Call("POST", "/agents/approvals", body, dict)

    def get_approval_call(
        self, namespace: str, agent_id: str, approval_id: int, wait: float
    ) -> Call[dict[str, Any]]:
        # The long poll ends well within the request's own timeout.
        wait = max(0.0, min(wait, self.timeout - 5.0))
        params = {"namespace": namespace, "agent_id": agent_id, "wait": round(wait, 3)}
        return Call("GET", f"/agents/approvals/{approval_id}", params, dict)

    def agents_call(
        self, status: str | None, namespace: str | None, pattern: str | None, limit: int
    ) -> Call[list[dict[str, object]]]:
        params = {"status": status, "namespace": namespace, "agent": pattern, "limit": limit}
        return Call("GET", "/agents", params, lambda answer: list(answer["agents"]))

    # --- operations ---

    def health(self) -> str:
        return self._http.send(self.health_call())

    def version(self) -> tuple[str, str]:
        return self._http.send(self.version_call())

    def commit(
        self, namespace: str, ops: list[PendingOp], txn_id: str, *, join: bool = False
    ) -> int | None:
        if join:
            raise TransactionError(
                "begin_transaction(join=True) joins the caller's own database transaction, "
                "which only the embedded client shares; nothing was applied"
            )
        return self._http.send(self.commit_call(namespace, ops, txn_id))

    def release(self, namespace: str, agent_id: str) -> None:
        self._http.send(self.release_call(namespace, agent_id))

    def renew(self) -> int:
        return self._http.send(self.renew_call())

    def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult:
        return self._http.send(self.get_state_call(namespace, agent_id, key))

    def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult:
        return self._http.send(self.get_state_at_version_call(namespace, agent_id, key, version))

    def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]:
        return self._http.send(self.list_keys_call(namespace, agent_id, prefix))

    def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
        return self._http.send(self.scan_prefix_call(namespace, agent_id, prefix))

    def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]:
        return self._replay(ReplayPages(namespace, agent_id, start_ts, end_ts))

    def _replay(self, pages: ReplayPages) -> Iterator[ReplayEvent]:
        while (params := pages.next_page()) is not None:
            for item in self._http.stream_lines("/replay", params):
                yield pages.seen(item)

    def last_completed_step(self, namespace: str, agent_id: str) -> int:
        return self._http.send(self.last_completed_step_call(namespace, agent_id))

    def status(self, namespace: str, agent_id: str) -> str | None:
        return self._http.send(self.status_call(namespace, agent_id))

    def register_resume(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> None:
        self._http.send(self.register_resume_call(namespace, agent_id, entry_point, auto))

    def control(self, namespace: str, agent_id: str, action: str, actor: str, reason: str) -> str:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "action": action,
            "actor": actor or self.owner.describe(),
            "reason": reason,
        }
        call = Call("POST", "/agents/controls", body, lambda answer: str(answer["status"]))
        return self._http.send(call)

    def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int:
        return self._http.send(self.request_resume_call(namespace, agent_id, requested_by))

    def request_approval(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str = "request"
    ) -> dict[str, Any]:
        call = self.request_approval_call(namespace, agent_id, name, payload, kind)
        return self._http.send(call)

    def get_approval(
        self, namespace: str, agent_id: str, approval_id: int, wait: float, poll_interval: float
    ) -> dict[str, Any]:
        # The server reads every APPROVAL_POLL_SECONDS during the wait (agents/api/views.py).
        return self._http.send(self.get_approval_call(namespace, agent_id, approval_id, wait))

    def agents(
        self, status: str | None, namespace: str | None, pattern: str | None, limit: int
    ) -> list[dict[str, object]]:
        return self._http.send(self.agents_call(status, namespace, pattern, limit))

    def close(self) -> None:
        if self._stop_keeping():
            with contextlib.suppress(StatehouseError):  # else the leases expire on their own
                self._http.send(self.release_all_call())
        self._http.close()


class ReplayPages:
    """Keyset paging of the replay stream: a full page is followed by one starting past
    its last commit_ts, until a page is short or the end bound is passed."""

    def __init__(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> None:
        self.namespace = namespace
        self.agent_id = agent_id
        self.start: int = 1 if start_ts is None else start_ts
        self.end_ts = end_ts
        self.count: int | None = None  # events of the page being read; None before the first

    def next_page(self) -> dict[str, Any] | None:
        """The query of the next page, or None when the replay is over."""
        if self.count is not None and (
            self.count < REPLAY_PAGE or (self.end_ts is not None and self.start > self.end_ts)
        ):
            return None
        self.count = 0
        return {
            "namespace": self.namespace,
            "agent_id": self.agent_id,
            "start_ts": self.start,
            "end_ts": self.end_ts,
            "limit": REPLAY_PAGE,
        }

    def seen(self, item: dict[str, Any]) -> ReplayEvent:
        event = event_from_json(item)
        self.count = (self.count or 0) + 1
        self.start = event.commit_ts + 1
        return event


class AsyncRemote:
    """The remote mode of `AsyncStatehouse`: the `RemoteBackend`'s calls sent on a pooled
    `httpx.AsyncClient`, so the event loop never waits on the network.

    The lease bookkeeping stays the backend's: its keeper renews on a thread of its own
    (over the backend's blocking transport), so a busy event loop cannot let leases lapse.
    """

    def __init__(self, backend: RemoteBackend) -> None:
        self.backend = backend
        self._http = AsyncTransport(backend.base_url, token=backend.token, timeout=backend.timeout)

    async def load_limits(self) -> None:
        """Ask the server its limits once, before a transaction stages against them."""
        if self.backend._server_info is None:
            self.backend._server_info = await self._http.send(self.backend.version_info_call())

    async def value_limit(self) -> int:
        await self.load_limits()  # asked without blocking
        return self.backend.max_value_bytes

    async def health(self) -> str:
        return await self._http.send(self.backend.health_call())

    async def version(self) -> tuple[str, str]:
        return await self._http.send(self.backend.version_call())

    async def commit(self, namespace: str, ops: list[PendingOp], txn_id: str) -> int | None:
        await self.load_limits()  # the lease duration sent with the commit
        return await self._http.send(self.backend.commit_call(namespace, ops, txn_id))

    async def release(self, namespace: str, agent_id: str) -> None:
        await self._http.send(self.backend.release_call(namespace, agent_id))

    async def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult:
        return await self._http.send(self.backend.get_state_call(namespace, agent_id, key))

    async def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult:
        call = self.backend.get_state_at_version_call(namespace, agent_id, key, version)
        return await self._http.send(call)

    async def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]:
        return await self._http.send(self.backend.list_keys_call(namespace, agent_id, prefix))

    async def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
        return await self._http.send(self.backend.scan_prefix_call(namespace, agent_id, prefix))

    async def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> AsyncIterator[ReplayEvent]:
        pages = ReplayPages(namespace, agent_id, start_ts, end_ts)
        while (params := pages.next_page()) is not None:
            async for item in self._http.stream_lines("/replay", params):
                yield pages.seen(item)

    async def last_completed_step(self, namespace: str, agent_id: str) -> int:
        return await self._http.send(self.backend.last_completed_step_call(namespace, agent_id))

    async def status(self, namespace: str, agent_id: str) -> str | None:
        return await self._http.send(self.backend.status_call(namespace, agent_id))

    async def register_resume(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> None:
        call = self.backend.register_resume_call(namespace, agent_id, entry_point, auto)
        await self._http.send(call)

    async def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int:
        call = self.backend.request_resume_call(namespace, agent_id, requested_by)
        return await self._http.send(call)

    async def request_approval(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str = "request"
    ) -> dict[str, Any]:
        call = self.backend.request_approval_call(namespace, agent_id, name, payload, kind)
        return await self._http.send(call)

    async def get_approval(
        self, namespace: str, agent_id: str, approval_id: int, wait: float, poll_interval: float
    ) -> dict[str, Any]:
        call = self.backend.get_approval_call(namespace, agent_id, approval_id, wait)
        return await self._http.send(call)

    async def close(self) -> None:
        """Stop renewing and release every lease; then the client closes the backend."""
        if self.backend._stop_keeping():
            with contextlib.suppress(StatehouseError):  # else the leases expire on their own
                await self._http.send(self.backend.release_all_call())
        await self._http.close()


def _nothing(answer: Any) -> None:
    return None


def _op_json(op: PendingOp) -> str:
    ids = f'"agent_id": {json.dumps(op.agent_id)}, "key": {json.dumps(op.key)}'
    expected = "" if op.expected_version is None else f', "expected_version": {op.expected_version}'
    if op.is_delete:
        return f'{{{ids}, "op": "delete"{expected}}}'
    return f'{{{ids}, "value": {op.value_json}{expected}}}'


class _HttpLeaseKeeper(LeaseKeeper):
    """The embedded keeper's thread and timing, renewing through the API instead."""

    def __init__(self, backend: RemoteBackend) -> None:
        super().__init__(backend.owner, backend.lease_seconds)
        self._backend = backend

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._backend.renew()
            except Exception:  # keep renewing: a passing outage must not end the thread
                logger.exception("lease renewal failed; retrying")
