"""The client's value types (compatible with the original Statehouse Python SDK)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["ApprovalDecision", "Operation", "ReplayEvent", "StateResult"]


@dataclass(frozen=True, slots=True)
class StateResult:
    """A record as read: `exists` is False for a key never written or deleted (tombstone)."""

    value: Any
    version: int
    commit_ts: int
    exists: bool
    key: str = ""  # every read of the client sets it
    agent_id: str | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a committed transaction: a write, or a delete (value None)."""

    key: str
    value: Any
    version: int
    op: Literal["write", "delete"] = "write"

    @property
    def is_delete(self) -> bool:
        return self.op == "delete"

    @property
    def name(self) -> str:
        return "DEL" if self.is_delete else "WRITE"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "version": self.version, "op": self.op}


@dataclass(frozen=True, slots=True, repr=False)
class ReplayEvent:
    """One committed transaction as it touched one agent, in commit order."""

    txn_id: str
    commit_ts: int
    namespace: str
    agent_id: str
    committed_at: datetime
    operations: list[Operation] = field(default_factory=list)

    @property
    def timestamp(self) -> datetime:
        return self.committed_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form the HTTP API streams; `committed_at` in ISO 8601)."""
        return {
            "txn_id": self.txn_id,
            "commit_ts": self.commit_ts,
            "namespace": self.namespace,
            "agent_id": self.agent_id,
            "committed_at": self.committed_at.isoformat(),
            "operations": [op.to_dict() for op in self.operations],
        }

    def __repr__(self) -> str:
        ops = ", ".join(f"{op.name} {op.key} v{op.version}" for op in self.operations)
        return (
            f"<ReplayEvent commit_ts={self.commit_ts} agent={self.namespace}/{self.agent_id} "
            f"at {self.committed_at.isoformat()} [{ops}]>"
        )


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """A human decision an agent asked for (`Statehouse.request_approval`); `decided` is
    False while it is pending (docs/operations.md, "Approvals")."""

    id: int
    name: str
    status: str  # "pending", "approved" or "rejected"
    approved: bool
    decided: bool
    decided_by: str
    decided_at: str | None  # ISO 8601, UTC
    comment: str
    payload: Any

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalDecision:
        return cls(**{name: data[name] for name in cls.__slots__})
