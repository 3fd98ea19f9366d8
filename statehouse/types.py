"""The client's value types (compatible with the original Statehouse Python SDK)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["Operation", "ReplayEvent", "StateResult"]


@dataclass(frozen=True, slots=True)
class StateResult:
    """A record as read: `exists` is False for a key never written or deleted (tombstone)."""

    value: Any
    version: int
    commit_ts: int
    exists: bool
    key: str | None = None
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


@dataclass(frozen=True, slots=True)
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
