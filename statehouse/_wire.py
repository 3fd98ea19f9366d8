"""The JSON forms the HTTP API and the remote client exchange (docs/api.md), kept in one
Django-free place so both sides read and write them the same way."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from statehouse import errors
from statehouse.types import Operation, ReplayEvent, StateResult

__all__ = ["ERROR_CODES", "error_body", "error_from_body", "event_from_json", "state_from_json"]

# Most specific first: the first class an exception is an instance of gives its code.
ERROR_CODES: list[tuple[type[errors.StatehouseError], str, int]] = [
    (errors.AgentCancelledError, "agent_cancelled", 409),
    (errors.AgentPausedError, "agent_paused", 409),
    (errors.LeaseLostError, "lease_lost", 409),
    (errors.LeaseHeldError, "lease_held", 409),
    (errors.ConflictError, "conflict", 409),
    (errors.AlreadyExistsError, "conflict", 409),
    (errors.StepReviewRequiredError, "step_review_required", 409),
    (errors.NotResumableError, "conflict", 409),
    (errors.StepNotInDoubtError, "step_not_in_doubt", 409),
    (errors.OperatorActionError, "conflict", 409),
    (errors.AgentFinishedError, "conflict", 409),
    (errors.NotFoundError, "not_found", 404),
    (errors.ValidationError, "validation", 422),
    (errors.TransactionError, "transaction", 409),
    (errors.AuthenticationError, "unauthorized", 401),
    (errors.PermissionDeniedError, "forbidden", 403),
    (errors.RateLimitedError, "rate_limited", 429),
    (errors.ConnectionError, "unavailable", 503),
    (errors.StatehouseError, "unavailable", 503),
]


def error_body(exc: errors.StatehouseError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an error of the store."""
    code, status = next((c, s) for cls, c, s in ERROR_CODES if isinstance(exc, cls))
    details = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in exc.details.items()
    }
    return status, {
        "code": code,
        "message": str(exc),
        "error": type(exc).__name__,
        "details": details,
    }


def error_from_body(status: int, body: object) -> errors.StatehouseError:
    """The client-side exception of an error response (the same class the server raised)."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return errors.StatehouseError(f"the server answered HTTP {status}: {body!r:.200}")
    message: str = body["message"]
    raw_details = body.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    name = body.get("error")
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, errors.StatehouseError)):
        by_code = {code: cls for cls, code, _status in reversed(ERROR_CODES)}
        cls = by_code.get(str(body.get("code")), errors.StatehouseError)
    if cls is errors.StatehouseError and status == 503:
        cls = errors.ConnectionError  # the server is up but its database is not
    given: dict[str, Any] = {}
    for detail in errors.detail_names(cls):
        if detail in details:
            given[detail] = _detail(detail, details[detail])
        elif not hasattr(cls, detail):
            given[detail] = None  # required by the class, missing from the body
    return cls(message, **given)


def _detail(name: str, value: Any) -> Any:
    """A detail as JSON carried it: a time (a detail named `*_at`) from its ISO form."""
    if name.endswith("_at") and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def state_from_json(data: dict[str, Any]) -> StateResult:
    return StateResult(
        data["value"],
        data["version"],
        data["commit_ts"],
        data["exists"],
        key=data["key"],
        agent_id=data["agent_id"],
        namespace=data["namespace"],
    )


def state_to_json(result: StateResult) -> dict[str, Any]:
    return {
        "namespace": result.namespace,
        "agent_id": result.agent_id,
        "key": result.key,
        "value": result.value,
        "version": result.version,
        "commit_ts": result.commit_ts,
        "exists": result.exists,
    }


def event_from_json(data: dict[str, Any]) -> ReplayEvent:
    return ReplayEvent(
        txn_id=data["txn_id"],
        commit_ts=data["commit_ts"],
        namespace=data["namespace"],
        agent_id=data["agent_id"],
        committed_at=datetime.fromisoformat(data["committed_at"]),
        operations=[
            Operation(key=op["key"], value=op["value"], version=op["version"], op=op["op"])
            for op in data["operations"]
        ],
    )
