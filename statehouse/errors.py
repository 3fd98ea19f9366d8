"""Every error the client raises. All derive from `StatehouseError`."""

from __future__ import annotations

import functools
from typing import Any

__all__ = [
    "AgentCancelledError",
    "AgentFinishedError",
    "AgentPausedError",
    "AlreadyDecidedError",
    "AlreadyExistsError",
    "ApprovalTimeoutError",
    "AuthenticationError",
    "ConflictError",
    "ConnectionError",
    "LeaseHeldError",
    "LeaseLostError",
    "NotFoundError",
    "NotResumableError",
    "OperatorActionError",
    "PermissionDeniedError",
    "RateLimitedError",
    "SchemaMissingError",
    "StatehouseError",
    "StepNotInDoubtError",
    "StepReviewRequiredError",
    "TransactionError",
    "ValidationError",
]


class StatehouseError(Exception):
    """Base class; also raised as-is when the database is unreachable or fails.

    An error that carries details (`ConflictError.expected`, `LeaseHeldError.host`, …)
    declares them as annotated class attributes, with a default where a detail is
    optional; they are passed as keyword arguments after the message.
    """

    def __init__(self, *args: object, **details: Any) -> None:
        super().__init__(*args)
        declared = detail_names(type(self))
        unknown = details.keys() - declared
        if unknown:
            raise TypeError(f"{type(self).__name__} has no detail {sorted(unknown)[0]!r}")
        missing = [name for name in declared if name not in details and not hasattr(self, name)]
        if missing:
            raise TypeError(f"{type(self).__name__} needs the detail {missing[0]!r}")
        for name, value in details.items():
            setattr(self, name, value)

    @property
    def details(self) -> dict[str, Any]:
        """The details this error carries, by name (what the HTTP API sends with it)."""
        return {name: getattr(self, name) for name in detail_names(type(self))}

    def __reduce__(self) -> tuple[Any, tuple[object, ...]]:
        # Pickled (to another process) with its details, which the class requires.
        return functools.partial(type(self), **self.details), self.args


def detail_names(cls: type) -> list[str]:
    """The details an error class and its bases declare, in declaration order."""
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, StatehouseError):
            names.update(dict.fromkeys(vars(klass).get("__annotations__", {})))
    return list(names)


class ValidationError(StatehouseError, ValueError):
    """Bad input (an id, a key, a value): nothing was staged or written."""


class TransactionError(StatehouseError):
    """The transaction was used after commit or abort, or it timed out."""


class NotFoundError(StatehouseError, LookupError):
    """The thing asked for (a version, an agent) never existed."""


class ConflictError(StatehouseError):
    """A compare-and-set failed: a record's version differed from `expected_version`."""

    agent_id: str
    key: str
    expected: int
    actual: int


class LeaseHeldError(StatehouseError):
    """Another live process holds the agent (docs/contract.md §3); nothing was written."""

    agent_id: str
    host: str
    pid: int | None
    expires_at: object


class LeaseLostError(LeaseHeldError):
    """This client held the agent, but another process took it over since: stop running it.

    Raised even when the lease is free again, so a process that stalled past its lease
    cannot resume writing steps over a run that replaced it; nothing was written.
    """


class SchemaMissingError(StatehouseError):
    """The database has no (or an outdated) Statehouse schema."""


class NotResumableError(StatehouseError):
    """The agent cannot be resumed in its current status (e.g. running or completed)."""


class StepReviewRequiredError(NotResumableError):
    """The agent has an in-doubt step with the policy `review` (docs/contract.md §7): no
    resume (single, bulk or automatic) until an operator decides that step on the agent
    page. Nothing was queued."""

    agent_id: str = ""
    key: str = ""
    number: int = 0


class ConnectionError(StatehouseError):
    """The server or the database is unreachable (or stopped answering in time)."""


class AuthenticationError(StatehouseError):
    """The server refused the API token: none, unknown, revoked or expired (HTTP 401)."""


class PermissionDeniedError(StatehouseError):
    """The API token does not allow this: a read-only token writing, or another
    namespace than the token's (HTTP 403)."""


class RateLimitedError(StatehouseError):
    """The API token sent more requests than its rate limit allows (HTTP 429)."""


class AlreadyExistsError(StatehouseError):
    """The thing to create is already there (an imported agent, a transaction id)."""


class AlreadyDecidedError(AlreadyExistsError):
    """The approval was decided already (by someone else, or before): nothing changed."""


class ApprovalTimeoutError(StatehouseError, TimeoutError):
    """`request_approval` waited `timeout` seconds and nobody decided. The request stays
    open (the agent shows as waiting): ask again with the same name after a resume to get
    its decision (docs/operations.md, "Approvals")."""

    approval_id: int
    name: str


class AgentCancelledError(StatehouseError):
    """An operator cancelled the agent (docs/contract.md §7): its task, steps and answer
    can no longer be written; stop running it. Nothing was written."""

    agent_id: str = ""


class AgentPausedError(StatehouseError):
    """An operator paused the agent and it was not unpaused within the pause timeout
    (STATEHOUSE_PAUSE_TIMEOUT_SECONDS); nothing was written."""

    agent_id: str = ""


class AgentFinishedError(StatehouseError):
    """The agent has finished (completed, or cancelled), so it cannot ask for a decision;
    nothing was written (HTTP 409 `conflict`)."""


class OperatorActionError(StatehouseError):
    """The agent's status does not allow this operator action (cancelling a completed
    agent, unpausing one that is not paused); nothing was changed."""


class StepNotInDoubtError(OperatorActionError):
    """A step decision on a step that is not in doubt (its agent runs, or the step is not
    pending any more): nothing was changed."""
