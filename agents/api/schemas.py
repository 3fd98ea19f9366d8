"""Request and response bodies of the HTTP API; the OpenAPI schema is generated from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import StrictInt, StrictStr

Json = Any  # any JSON value


class ErrorOut(Schema):
    code: Literal[
        "validation",
        "not_found",
        "conflict",
        "lease_held",
        "lease_lost",
        "transaction",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "unavailable",
    ]
    message: str
    error: str = Field(description="The client's exception class (statehouse.errors).")
    details: dict[str, Any] = Field(default_factory=dict)


class OwnerIn(Schema):
    """Who runs the agents written: their lease goes to this owner (docs/api.md, leases)."""

    token: StrictStr = Field(min_length=8, max_length=64, description="A random id per client.")
    host: StrictStr = Field(max_length=255)
    pid: StrictInt = Field(ge=0, le=2**31 - 1)


class LeaseArgs(Schema):
    owner: OwnerIn | None = None
    held: dict[str, StrictInt] = Field(
        default_factory=dict, description="Agent id -> lease epoch this owner got earlier."
    )
    lease_seconds: float | None = Field(default=None, ge=0.1, le=86_400)


class OperationIn(Schema):
    op: Literal["write", "delete"] = "write"
    agent_id: StrictStr
    key: StrictStr
    value: Json = None
    expected_version: StrictInt | None = Field(default=None, ge=0)


class TransactionIn(LeaseArgs):
    namespace: StrictStr = "default"
    txn_id: StrictStr | None = Field(default=None, description="A UUID; made if absent.")
    operations: list[OperationIn]


class VersionOut(Schema):
    agent_id: str
    key: str
    version: int


class CommitOut(Schema):
    commit_ts: int | None = Field(description="None for an empty transaction.")
    txn_id: str
    versions: list[VersionOut]
    leased: dict[str, int] = Field(description="Agent id -> lease epoch now held.")
    released: list[str]


class HealthOut(Schema):
    status: Literal["ok"]


class VersionInfoOut(Schema):
    version: str
    revision: str
    max_value_bytes: int
    lease_seconds: float


class StateOut(Schema):
    namespace: str
    agent_id: str
    key: str
    value: Json
    version: int
    commit_ts: int
    exists: bool


class KeysOut(Schema):
    keys: list[str]


class ScanOut(Schema):
    records: list[StateOut]


class OperationOut(Schema):
    key: str
    value: Json
    version: int
    op: Literal["write", "delete"]


class EventOut(Schema):
    """One line of the NDJSON replay stream."""

    txn_id: str
    commit_ts: int
    namespace: str
    agent_id: str
    committed_at: datetime
    operations: list[OperationOut]


class RenewIn(Schema):
    owner_token: StrictStr = Field(min_length=8, max_length=64)
    lease_seconds: float | None = Field(default=None, ge=0.1, le=86_400)


class RenewOut(Schema):
    held: int = Field(description="How many leases this owner still holds.")


class ReleaseIn(Schema):
    owner_token: StrictStr = Field(min_length=8, max_length=64)
    namespace: StrictStr | None = None
    agent_id: StrictStr | None = Field(default=None, description="None: every lease held.")


class ReleaseOut(Schema):
    released: int


class AgentIn(LeaseArgs):
    namespace: StrictStr = "default"
    agent_id: StrictStr


class StartIn(AgentIn):
    task: Json


class StepIn(AgentIn):
    number: StrictInt = Field(ge=0, le=2**31 - 1)
    status: Literal["pending", "done", "failed"]
    action: Json = None
    result: Json = None
    error: StrictStr | None = None


class FinishIn(AgentIn):
    answer: Json


class FailIn(AgentIn):
    error: StrictStr


class StatusOut(Schema):
    namespace: str
    agent_id: str
    status: str | None = Field(description="None for an agent never written.")
    last_completed_step: int


class AgentRowOut(Schema):
    namespace: str
    agent_id: str
    status: str
    task: str
    steps_done: int
    steps_pending: int
    steps_failed: int
    last_step: int | None
    last_activity: datetime
    owner: str = Field(description='"host pid N" of the lease holder, or "".')


class AgentsOut(Schema):
    agents: list[AgentRowOut]


class EntryPointIn(Schema):
    namespace: StrictStr = "default"
    agent_id: StrictStr
    entry_point: StrictStr = Field(description='"package.module:function"')


class EntryPointOut(Schema):
    entry_point: str


class ResumeIn(Schema):
    namespace: StrictStr = "default"
    agent_id: StrictStr
    requested_by: StrictStr = Field(default="", max_length=255)


class ResumeOut(Schema):
    request_id: int
