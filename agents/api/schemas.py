"""Request and response bodies of the HTTP API; the OpenAPI schema is generated from them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from uuid import UUID

from ninja import Field
from pydantic import BaseModel, StrictStr, StringConstraints
from statehouse_agents.models import Agent

from statehouse.steps import StepStatus

Json = Any  # any JSON value
# A namespace, agent id or key: 1 to 255 characters, no control characters (docs/client.md).
_NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
Ident = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=255, pattern=f"^{_NO_CONTROL}+$")
]
Prefix = Annotated[str, StringConstraints(max_length=255, pattern=f"^{_NO_CONTROL}*$")]
EntryPoint = Annotated[
    str,
    StringConstraints(
        strict=True,
        max_length=255,
        # no empty part of the dotted path: what statehouse/validation.py checks
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$",
    ),
]
StatusName = Enum("StatusName", {value: value for value in Agent.Status.values}, type=str)  # type: ignore[misc]  # built from runtime values


class ApiSchema(BaseModel):
    """A body of the API: a plain pydantic model. django-ninja's `Schema` would wrap every
    object it validates, nested ones too, in a getter of Django model attributes, which no
    body here needs (the views return dicts): about 35 µs of a commit request (docs/api.md,
    "Latency"). The OpenAPI schema is the same."""


class ErrorOut(ApiSchema):
    code: Literal[
        "validation",
        "not_found",
        "conflict",
        "lease_held",
        "lease_lost",
        "agent_cancelled",
        "agent_paused",
        "transaction",
        "unauthorized",
        "forbidden",
        "rate_limited",
        "unavailable",
    ]
    message: str
    error: str = Field(description="The client's exception class (statehouse.errors).")
    details: dict[str, Any] = Field(default_factory=dict)


class AgentRef(ApiSchema):
    """One agent: its namespace and id."""

    namespace: Ident = "default"
    agent_id: Ident


class OwnerIn(ApiSchema):
    """Who runs the agents written: their lease goes to this owner (docs/api.md, leases)."""

    # No control characters: they name a process to operators (and PostgreSQL refuses NUL).
    token: StrictStr = Field(
        min_length=8,
        max_length=64,
        pattern=f"^{_NO_CONTROL}*$",
        description="A random id per client.",
    )
    host: StrictStr = Field(max_length=255, pattern=f"^{_NO_CONTROL}*$")
    pid: int = Field(ge=0, le=2**31 - 1)


class LeaseArgs(ApiSchema):
    owner: OwnerIn | None = None
    held: dict[str, int] = Field(
        default_factory=dict, description="Agent id -> lease epoch this owner got earlier."
    )
    lease_seconds: float | None = Field(default=None, ge=0.1, le=86_400)


class OperationIn(ApiSchema):
    op: Literal["write", "delete"] = "write"
    agent_id: Ident
    key: Ident
    value: Json = None
    expected_version: int | None = Field(default=None, ge=0)


class TransactionIn(LeaseArgs):
    namespace: Ident = "default"
    txn_id: UUID | None = Field(default=None, description="Made if absent.")
    operations: list[OperationIn]


class VersionOut(ApiSchema):
    agent_id: str
    key: str
    version: int


class CommitOut(ApiSchema):
    commit_ts: int | None = Field(description="None for an empty transaction.")
    txn_id: str
    versions: list[VersionOut]
    leased: dict[str, int] = Field(description="Agent id -> lease epoch now held.")
    released: list[str]


class HealthOut(ApiSchema):
    status: Literal["ok"]


class VersionInfoOut(ApiSchema):
    version: str
    revision: str
    max_value_bytes: int
    max_transaction_operations: int
    lease_seconds: float


class StateOut(ApiSchema):
    namespace: str
    agent_id: str
    key: str
    value: Json
    version: int
    commit_ts: int
    exists: bool


class KeysOut(ApiSchema):
    keys: list[str]


class ScanOut(ApiSchema):
    records: list[StateOut]


class OperationOut(ApiSchema):
    key: str
    value: Json
    version: int
    op: Literal["write", "delete"]


class EventOut(ApiSchema):
    """One line of the NDJSON replay stream."""

    txn_id: str
    commit_ts: int
    namespace: str
    agent_id: str
    committed_at: datetime
    operations: list[OperationOut]


class RenewIn(ApiSchema):
    owner_token: StrictStr = Field(min_length=8, max_length=64)
    lease_seconds: float | None = Field(default=None, ge=0.1, le=86_400)


class RenewOut(ApiSchema):
    held: int = Field(description="How many leases this owner still holds.")


class ReleaseIn(ApiSchema):
    owner_token: StrictStr = Field(min_length=8, max_length=64)
    namespace: Ident = Field(default="default", description="The agent's namespace.")
    agent_id: Ident | None = Field(default=None, description="None: every lease the owner holds.")


class ReleaseOut(ApiSchema):
    released: int


class AgentIn(AgentRef, LeaseArgs):
    """An agent helper's call: the agent, and the lease options of its commit."""


class StartIn(AgentIn):
    task: Json


class StepIn(AgentIn):
    number: int = Field(ge=0, le=2**31 - 1)
    status: StepStatus
    action: Json = None
    result: Json = None
    error: StrictStr | None = None


class FinishIn(AgentIn):
    answer: Json


class FailIn(AgentIn):
    error: StrictStr


class StatusOut(ApiSchema):
    namespace: str
    agent_id: str
    status: str | None = Field(description="None for an agent never written.")
    last_completed_step: int


class AgentRowOut(ApiSchema):
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


class AgentsOut(ApiSchema):
    agents: list[AgentRowOut]


class EntryPointIn(AgentRef):
    entry_point: EntryPoint = Field(description='"package.module:function"')
    auto: bool = Field(
        default=False,
        description="resume at once, with no command, when a crash of the agent is detected",
    )


class EntryPointOut(ApiSchema):
    entry_point: str


class ResumeIn(AgentRef):
    requested_by: StrictStr = Field(default="", max_length=255)


class ResumeOut(ApiSchema):
    request_id: int


class ControlIn(AgentRef):
    """An operator control of an agent (docs/operations.md): cancel, pause, unpause."""

    action: Literal["cancel", "pause", "unpause"]
    actor: StrictStr = Field(default="", max_length=255)
    reason: StrictStr = Field(default="", max_length=10_000)


class ControlOut(ApiSchema):
    status: str


class ApprovalIn(AgentRef):
    """An agent asks a person to decide (docs/operations.md, "Approvals")."""

    name: Ident
    payload: Json = Field(default=None, description="Shown to the operator; JSON.")
    kind: Literal["request", "interrupt"] = Field(
        default="request",
        description='"interrupt": a LangGraph graph stopped at interrupt(), resumed with '
        "the decision by the resume worker (docs/langgraph.md).",
    )


class ApprovalOut(ApiSchema):
    id: int
    name: str
    status: Literal["pending", "approved", "rejected"]
    approved: bool
    decided: bool
    decided_by: str
    decided_at: str | None = Field(description="ISO 8601, UTC; None while pending.")
    comment: str
    payload: Json


# --- query parameters ---


class RecordQuery(AgentRef):
    key: Ident


class VersionQuery(RecordQuery):
    version: int = Field(ge=1)


class KeysQuery(AgentRef):
    prefix: Prefix = ""


class ReplayQuery(AgentRef):
    start_ts: int | None = None
    end_ts: int | None = Field(default=None, description="Inclusive.")
    limit: int = Field(default=1000, ge=1, le=10_000, description="Events a page.")


class AgentQuery(AgentRef):
    """The agent whose status is read."""


class AgentsQuery(ApiSchema):
    status: StatusName | None = None
    namespace: Ident | None = Field(default=None, description="None: every namespace.")
    agent: Prefix | None = Field(default=None, description="A shell pattern of agent ids.")
    limit: int = Field(default=100, ge=1, le=10_000)


class ApprovalQuery(AgentRef):
    wait: float = Field(
        default=0,
        ge=0,
        le=30,
        description="Seconds to wait for the decision if pending (a long poll); 0: answer now.",
    )
