"""The types a commit takes and gives: staged operations, the lease owner, the result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class StagedOp:
    """One staged write (`value_json` set) or delete (`value_json` None), already validated."""

    agent_id: str
    key: str
    value_json: str | None
    value: Any = None
    expected_version: int | None = None

    @property
    def is_delete(self) -> bool:
        return self.value_json is None


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """Who runs an agent: a random token per client, with host and pid for operators."""

    token: str
    host: str
    pid: int
    # Its liveness handle as `Agent.lease_watch` records it ("" none: agents/store/liveness.py).
    watch: str = ""


@dataclass(frozen=True, slots=True)
class CommitRequest:
    """A commit as `commit` was asked for it: what both its paths take, the general one
    (agents/store/commit.py) and the commit function (agents/store/commit_function.py)."""

    namespace: str
    ops: Sequence[StagedOp]
    owner: LeaseOwner | None
    lease_seconds: float
    txn_id: str
    at: datetime | None  # the commit time when given (an import keeps its history's times)
    held: Mapping[str, int]  # agent id -> the lease epoch this owner took earlier


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit_ts: int | None
    txn_id: str
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    leased: dict[str, int] = field(default_factory=dict)  # agent id -> lease epoch now held
    released: frozenset[str] = frozenset()
    # False when the commit joined the caller's database transaction: it is durable only
    # once that transaction commits (docs/client.md, "Durability").
    durable: bool = True


@dataclass(frozen=True, slots=True)
class Current:
    """A record's current version as the commit found it, and its step's status if any."""

    version: int
    deleted: bool
    step_status: str | None = None
