"""What a client backend does: the embedded one (this process's database) and the remote
one (the HTTP API) offer the same operations, so `Statehouse` only validates and delegates.

Arguments reach a backend already validated by the front (statehouse/client.py);
`end_ts` of `replay` is inclusive here too.
"""

from __future__ import annotations

import os
import socket
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from statehouse._ops import PendingOp
from statehouse.lease import LeaseKeeper
from statehouse.types import ReplayEvent, StateResult

__all__ = ["Backend", "Owner"]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who holds a lease: a random token per client, with host and pid for operators."""

    token: str
    host: str
    pid: int

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


class Backend(ABC):
    """The operations every backend offers, and the bookkeeping of the leases it holds."""

    mode: ClassVar[str]

    def __init__(self, *, lease_seconds: float | None) -> None:
        self._lease_seconds = lease_seconds
        self._owner_token = os.environ.get("STATEHOUSE_LEASE_TOKEN") or uuid.uuid4().hex
        self._owner: Owner | None = None
        # (namespace, agent_id) -> the lease epoch this client got when it took the lease
        self._held: dict[tuple[str, str], int] = {}
        self._keeper: LeaseKeeper | None = None
        _backends.add(self)

    def _after_fork(self) -> None:
        """A forked child is another process: it holds none of its parent's leases and
        takes its own under a new identity (its parent goes on renewing its own)."""
        self._owner_token = uuid.uuid4().hex
        self._owner = None
        self._held = {}
        self._keeper = None  # the parent's renewal thread did not survive the fork

    # --- leases ---

    @property
    def owner(self) -> Owner:
        """This client as a lease holder (made anew in a forked child: another pid)."""
        owner = self._owner
        if owner is None or owner.pid != os.getpid():
            owner = Owner(token=self._owner_token, host=socket.gethostname(), pid=os.getpid())
            self._owner = owner
        return owner

    def held_in(self, namespace: str) -> dict[str, int]:
        return {agent: epoch for (ns, agent), epoch in self._held.items() if ns == namespace}

    def _track(self, namespace: str, leased: dict[str, int], released: list[str]) -> None:
        """Remember the leases a commit took or released; keep renewing those held."""
        for agent_id, epoch in leased.items():
            self._held[(namespace, agent_id)] = epoch
        for agent_id in released:
            self._held.pop((namespace, agent_id), None)
        if leased:
            if self._keeper is None:
                self._keeper = self._make_keeper()
            self._keeper.start()

    def _forget(self, namespace: str, agent_id: str) -> None:
        self._held.pop((namespace, agent_id), None)

    def _stop_keeping(self) -> bool:
        """Stop renewing; return whether there was anything to release."""
        self._held.clear()
        keeper, self._keeper = self._keeper, None
        if keeper is None:
            return False
        keeper.stop()
        return True

    @abstractmethod
    def _make_keeper(self) -> LeaseKeeper: ...

    # --- the store's limits ---

    @abstractmethod
    def _setting(self, name: str) -> Any:
        """The store's setting `name` (lease_seconds, max_value_bytes or
        max_transaction_operations; docs/configuration.md): this process's, or the server's."""

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds or float(self._setting("lease_seconds"))

    @property
    def max_value_bytes(self) -> int:
        return int(self._setting("max_value_bytes"))

    @property
    def max_transaction_operations(self) -> int:
        return int(self._setting("max_transaction_operations"))

    # --- operations ---

    def value_limit(self) -> int:
        """`max_value_bytes` as an operation: what the clients' shared plans ask for."""
        return self.max_value_bytes

    @abstractmethod
    def health(self) -> str: ...

    @abstractmethod
    def version(self) -> tuple[str, str]: ...

    @abstractmethod
    def commit(
        self, namespace: str, ops: list[PendingOp], txn_id: str, *, join: bool = False
    ) -> int | None: ...

    @abstractmethod
    def release(self, namespace: str, agent_id: str) -> None: ...

    @abstractmethod
    def get_state(self, namespace: str, agent_id: str, key: str) -> StateResult: ...

    @abstractmethod
    def get_state_at_version(
        self, namespace: str, agent_id: str, key: str, version: int
    ) -> StateResult: ...

    @abstractmethod
    def list_keys(self, namespace: str, agent_id: str, prefix: str | None) -> list[str]: ...

    @abstractmethod
    def scan_prefix(self, namespace: str, agent_id: str, prefix: str) -> list[StateResult]: ...

    @abstractmethod
    def replay(
        self, namespace: str, agent_id: str, start_ts: int | None, end_ts: int | None
    ) -> Iterator[ReplayEvent]: ...

    @abstractmethod
    def last_completed_step(self, namespace: str, agent_id: str) -> int: ...

    @abstractmethod
    def status(self, namespace: str, agent_id: str) -> str | None: ...

    @abstractmethod
    def register_resume(
        self, namespace: str, agent_id: str, entry_point: str, auto: bool = False
    ) -> None: ...

    @abstractmethod
    def request_resume(self, namespace: str, agent_id: str, requested_by: str) -> int: ...

    @abstractmethod
    def request_approval(
        self, namespace: str, agent_id: str, name: str, payload: Any, kind: str = "request"
    ) -> dict[str, Any]:
        """Ask for the decision `name` (asked again: the same request); its decision dict."""

    @abstractmethod
    def get_approval(
        self, namespace: str, agent_id: str, approval_id: int, wait: float, poll_interval: float
    ) -> dict[str, Any]:
        """The request now, or once decided if that happens within `wait` seconds."""

    @abstractmethod
    def control(
        self, namespace: str, agent_id: str, action: str, actor: str, reason: str
    ) -> str: ...

    @abstractmethod
    def agents(
        self, status: str | None, namespace: str | None, pattern: str | None, limit: int
    ) -> list[dict[str, object]]: ...

    @abstractmethod
    def close(self) -> None: ...


_backends: weakref.WeakSet[Backend] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for backend in list(_backends):
        backend._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
