"""The remote backend: the store through a Statehouse server's HTTP API (docs/api.md).

It behaves as the embedded one: the same validation before anything is sent, the same
errors (the server sends each error's class), and the leases it takes are renewed over
HTTP in the background and released at close. It needs neither Django nor a driver.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from typing import Any, ClassVar

from statehouse._backend import Backend
from statehouse._http import Transport
from statehouse._ops import PendingOp
from statehouse._wire import event_from_json, state_from_json
from statehouse.errors import StatehouseError, TransactionError
from statehouse.lease import LeaseKeeper
from statehouse.types import ReplayEvent, StateResult

__all__ = ["RemoteBackend"]

logger = logging.getLogger("statehouse.remote")

REPLAY_PAGE = 1000  # events a page of the replay stream


class RemoteBackend(Backend):
    mode: ClassVar[str] = "remote"

    def __init__(
        self, base_url: str, *, token: str | None, timeout: float, lease_seconds: float | None
    ) -> None:
        if lease_seconds is None and os.environ.get("STATEHOUSE_LEASE_SECONDS"):
            lease_seconds = float(os.environ["STATEHOUSE_LEASE_SECONDS"])
        super().__init__(lease_seconds=lease_seconds)
        self.base_url = base_url
        self._http = Transport(base_url, token=token, timeout=timeout)

    def _after_fork(self) -> None:
        super()._after_fork()
        self._http.forget_connections()

    @functools.cached_property
    def _server(self) -> dict[str, Any]:
        """The server's version and limits, asked once."""
        return self._http.get("/version", {})

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds or float(self._server["lease_seconds"])

    @property
    def max_value_bytes(self) -> int:
        return int(self._server["max_value_bytes"])

    @property
    def max_transaction_operations(self) -> int:
        return int(self._server["max_transaction_operations"])

    def _make_keeper(self) -> LeaseKeeper:
        return _HttpLeaseKeeper(self)

    def _lease_args(self, namespace: str) -> dict[str, Any]:
        owner = self.owner
        return {
            "owner": {"token": owner.token, "host": owner.host, "pid": owner.pid},
            "held": self.held_in(namespace),
            "lease_seconds": self.lease_seconds,
        }

    # --- operations ---

    def health(self) -> str:
        return str(self._http.get("/health", {})["status"])

    def version(self) -> tuple[str, str]:
        info = self._http.get("/version", {})
        return str(info["version"]), str(info["revision"])

    def commit(
        self, namespace: str, ops: list[PendingOp], txn_id: str, *, join: bool = False
    ) -> int | None:
        if join:
            raise TransactionError(
                "begin_transaction(join=True) joins the caller's own database transaction, "
                "which only the embedded client shares; nothing was applied"
            )
        # The values are JSON text already (validated at staging): spliced in, not re-encoded.
        head = json.dumps({"namespace": namespace, "txn_id": txn_id, **self._lease_args(namespace)})
        body = f'{head[:-1]}, "operations": [{", ".join(map(_op_json, ops))}]}}'
        result = self._http.post("/transactions", body)
        self._track(namespace, result["leased"], result["released"])
        return result["commit_ts"]

    def release(self, namespace: str, agent_id: str) -> None:
        self._forget(namespace, agent_id)
        self._http.post(
            "/leases/release",
            {"owner_token": self.owner.token, "namespace": namespace, "agent_id": agent_id},
        )

    def renew(self) -> int:
        body = {"owner_token": self.owner.token, "lease_seconds": self.lease_seconds}
        return int(self._http.post("/leases/renew", body)["held"])

    def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult:
        params = {"namespace": namespace, "agent_id": agent_id, "key": key}
        return state_from_json(self._http.get("/state", params))

    def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult:
        params = {"namespace": namespace, "agent_id": agent_id, "key": key, "version": version}
        return state_from_json(self._http.get("/state/version", params))

    def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]:
        params = {"namespace": namespace, "agent_id": agent_id, "prefix": prefix}
        return list(self._http.get("/keys", params)["keys"])

    def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]:
        params = {"namespace": namespace, "agent_id": agent_id, "prefix": prefix}
        return [state_from_json(r) for r in self._http.get("/scan", params)["records"]]

    def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]:
        return self._replay(namespace, agent_id, start_ts, end_ts)

    def _replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]:
        # Keyset paging: a full page is followed by one starting past its last commit_ts.
        start: int = 1 if start_ts is None else start_ts
        while True:
            params = {
                "namespace": namespace,
                "agent_id": agent_id,
                "start_ts": start,
                "end_ts": end_ts,
                "limit": REPLAY_PAGE,
            }
            count = 0
            for item in self._http.stream_lines("/replay", params):
                event = event_from_json(item)
                count += 1
                start = event.commit_ts + 1
                yield event
            if count < REPLAY_PAGE or (end_ts is not None and start > end_ts):
                return

    def last_completed_step(self, namespace: str, agent_id: str) -> int:
        params = {"namespace": namespace, "agent_id": agent_id}
        return int(self._http.get("/agents/status", params)["last_completed_step"])

    def status(self, namespace: str, agent_id: str) -> str | None:
        params = {"namespace": namespace, "agent_id": agent_id}
        return self._http.get("/agents/status", params)["status"]

    def register_resume(self, namespace: str, agent_id: str, entry_point: str) -> None:
        body = {"namespace": namespace, "agent_id": agent_id, "entry_point": entry_point}
        self._http.post("/agents/resume-entry-point", body)

    def control(self, namespace: str, agent_id: str, action: str, actor: str, reason: str) -> str:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "action": action,
            "actor": actor or self.owner.describe(),
            "reason": reason,
        }
        return str(self._http.post("/agents/controls", body)["status"])

    def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int:
        body = {
            "namespace": namespace,
            "agent_id": agent_id,
            "requested_by": requested_by or self.owner.describe(),
        }
        return int(self._http.post("/agents/resume-requests", body)["request_id"])

    def agents(
        self, status: str | None, namespace: str | None, pattern: str | None, limit: int
    ) -> list[dict[str, object]]:
        params = {"status": status, "namespace": namespace, "agent": pattern, "limit": limit}
        return list(self._http.get("/agents", params)["agents"])

    def close(self) -> None:
        if self._stop_keeping():
            with contextlib.suppress(StatehouseError):  # else the leases expire on their own
                self._http.post("/leases/release", {"owner_token": self.owner.token})
        self._http.close()


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
