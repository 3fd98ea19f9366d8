"""The endpoints of /api/v1/ (docs/api.md). Each checks the token's scope, validates as
the client does (statehouse/_ops.py, statehouse/validation.py) and calls the store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from ninja import Query, Router
from statehouse_agents.api import schemas as s
from statehouse_agents.api.auth import OPTIONAL_TOKEN, HealthAuth, allow, request_token
from statehouse_agents.api.errors import ERROR_RESPONSES, stream_error

from statehouse import _embedded as store
from statehouse import steps
from statehouse._backend import Owner
from statehouse._ids import new_txn_id
from statehouse._ops import Staging
from statehouse._wire import state_to_json
from statehouse.client import check_replay_bounds
from statehouse.errors import PermissionDeniedError, StatehouseError
from statehouse.validation import check_identifier, check_prefix

router = Router()


def responses(ok: Any, *codes: int) -> dict[int, Any]:
    return {200: ok, **{code: ERROR_RESPONSES[code] for code in (401, 403, 422, 429, 503, *codes)}}


def _ns(namespace: str) -> str:
    return check_identifier("namespace", namespace)


def _owner(args: s.LeaseArgs) -> Owner | None:
    owner = args.owner
    return None if owner is None else Owner(owner.token, owner.host, owner.pid)


def _commit(
    namespace: str, staging: Staging, given_txn_id: uuid.UUID | None, args: s.LeaseArgs
) -> dict:
    txn_id = str(given_txn_id) if given_txn_id else new_txn_id()
    ops = staging.ops()
    if not ops:
        return {"commit_ts": None, "txn_id": txn_id, "versions": [], "leased": {}, "released": []}
    result = store.commit_ops(
        namespace=namespace,
        ops=ops,
        txn_id=txn_id,
        owner=_owner(args),
        held=args.held,
        lease_seconds=args.lease_seconds or store.settings().lease_seconds,
    )
    return {
        "commit_ts": result.commit_ts,
        "txn_id": result.txn_id,
        "versions": [
            {"agent_id": agent_id, "key": key, "version": version}
            for (agent_id, key), version in result.versions.items()
        ],
        "leased": result.leased,
        "released": sorted(result.released),
    }


def _writing(request: HttpRequest, namespace: str) -> tuple[str, Staging]:
    namespace = _ns(namespace)
    allow(request, namespace, write=True)
    conf = store.settings()
    return namespace, Staging(
        max_value_bytes=conf.max_value_bytes, max_operations=conf.max_transaction_operations
    )


# --- health ---------------------------------------------------------------------------


@router.get(
    "/health",
    response=responses(s.HealthOut),
    tags=["health"],
    auth=HealthAuth(),
    openapi_extra={"security": OPTIONAL_TOKEN},
)
def health(request: HttpRequest) -> dict:
    """ "ok" when the database answers; 503 `unavailable` otherwise. Needs no token; one
    that is sent is checked (401, 429 as elsewhere)."""
    from statehouse_agents.store import reads

    reads.ping()
    return {"status": "ok"}


@router.get("/version", response=responses(s.VersionInfoOut), tags=["health"])
def version(request: HttpRequest) -> dict:
    """The package version, the schema revision and the server's limits."""
    from statehouse import __version__

    conf = store.settings()
    return {
        "version": __version__,
        "revision": store.schema_revision(),
        "max_value_bytes": conf.max_value_bytes,
        "max_transaction_operations": conf.max_transaction_operations,
        "lease_seconds": conf.lease_seconds,
    }


# --- transactions ---------------------------------------------------------------------


@router.post("/transactions", response=responses(s.CommitOut, 409), tags=["transactions"])
def commit(request: HttpRequest, body: s.TransactionIn) -> dict:
    """Commit a whole transaction, all or nothing; `expected_version` per operation."""
    namespace, staging = _writing(request, body.namespace)
    for op in body.operations:
        staging.stage(op.agent_id, op.key, op.value, op.expected_version, delete=op.op == "delete")
    return _commit(namespace, staging, body.txn_id, body)


# --- reads ----------------------------------------------------------------------------


def _reading(request: HttpRequest, namespace: str, agent_id: str) -> str:
    namespace = _ns(namespace)
    check_identifier("agent_id", agent_id)
    allow(request, namespace, write=False)
    return namespace


@router.get("/state", response=responses(s.StateOut), tags=["reads"])
def get_state(request: HttpRequest, q: Query[s.RecordQuery]) -> dict:
    """The current value of a record; `exists` false if never written or deleted."""
    from statehouse_agents.store import reads

    namespace = _reading(request, q.namespace, q.agent_id)
    check_identifier("key", q.key)
    row = reads.get_state(namespace, q.agent_id, q.key)
    return state_to_json(store.state_result(row, namespace, q.agent_id, q.key))


@router.get("/state/version", response=responses(s.StateOut, 404), tags=["reads"])
def get_state_at_version(request: HttpRequest, q: Query[s.VersionQuery]) -> dict:
    """The record as it was at `version`; 404 `not_found` if that version never existed."""
    namespace = _reading(request, q.namespace, q.agent_id)
    check_identifier("key", q.key)
    return state_to_json(store.version_result(namespace, q.agent_id, q.key, q.version))


@router.get("/keys", response=responses(s.KeysOut), tags=["reads"])
def list_keys(request: HttpRequest, q: Query[s.KeysQuery]) -> dict:
    """The agent's live keys, sorted; only those starting with `prefix` if given."""
    from statehouse_agents.store import reads

    namespace = _reading(request, q.namespace, q.agent_id)
    check_prefix(q.prefix)
    return {"keys": reads.list_keys(namespace, q.agent_id, q.prefix or None)}


@router.get("/scan", response=responses(s.ScanOut), tags=["reads"])
def scan_prefix(request: HttpRequest, q: Query[s.KeysQuery]) -> dict:
    """Live records whose key starts with `prefix`, in key order."""
    namespace = _reading(request, q.namespace, q.agent_id)
    check_prefix(q.prefix)
    return {
        "records": [state_to_json(r) for r in store.scan_results(namespace, q.agent_id, q.prefix)]
    }


@router.get(
    "/replay",
    response=responses(s.EventOut),
    tags=["reads"],
    openapi_extra={
        "responses": {
            200: {
                "description": "NDJSON: one EventOut a line, in commit order. A page holds "
                "at most `limit` events; when it is full, ask again with `start_ts` one "
                "past its last event's commit_ts (keyset paging).",
                "content": {
                    "application/x-ndjson": {"schema": {"$ref": "#/components/schemas/EventOut"}}
                },
            }
        }
    },
)
def replay(request: HttpRequest, q: Query[s.ReplayQuery]) -> StreamingHttpResponse:
    """Every committed transaction that touched the agent, streamed; both bounds inclusive."""
    namespace = _reading(request, q.namespace, q.agent_id)
    start_ts, end_ts = check_replay_bounds(q.start_ts, q.end_ts)
    events = store.replay_events(namespace, q.agent_id, start_ts, end_ts)
    return StreamingHttpResponse(_ndjson(events, q.limit), content_type="application/x-ndjson")


def _ndjson(events: Iterator[Any], limit: int) -> Iterator[str]:
    try:
        for count, event in enumerate(events, start=1):
            yield json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
            if count >= limit:
                break
    except StatehouseError as exc:  # the headers are sent: the error is the last line
        yield json.dumps(stream_error(exc)) + "\n"


# --- leases ---------------------------------------------------------------------------


@router.post("/leases/renew", response=responses(s.RenewOut), tags=["leases"])
def renew_leases(request: HttpRequest, body: s.RenewIn) -> dict:
    """Extend every lease the owner holds (a client renews a third of the way through)."""
    from statehouse_agents.store.writes import LeaseOwner, renew_all_leases

    allow(request, None, write=True)
    owner = LeaseOwner(token=body.owner_token, host="", pid=0)
    seconds = body.lease_seconds or store.settings().lease_seconds
    return {"held": renew_all_leases(owner=owner, lease_seconds=seconds)}


@router.post("/leases/release", response=responses(s.ReleaseOut), tags=["leases"])
def release_leases(request: HttpRequest, body: s.ReleaseIn) -> dict:
    """Give up the owner's lease of one agent, or all of its leases."""
    from statehouse_agents.store.writes import LeaseOwner, release_leases

    namespace = None if body.agent_id is None else _ns(body.namespace)
    if body.agent_id is not None:
        check_identifier("agent_id", body.agent_id)
    allow(request, namespace, write=True)
    owner = LeaseOwner(token=body.owner_token, host="", pid=0)
    return {"released": release_leases(owner=owner, namespace=namespace, agent_id=body.agent_id)}


# --- agents ---------------------------------------------------------------------------


def _write_one(request: HttpRequest, body: s.AgentIn, key: str, value: Any) -> dict:
    namespace, staging = _writing(request, body.namespace)
    staging.stage(body.agent_id, key, value, None, delete=False)
    return _commit(namespace, staging, None, body)


@router.post("/agents/start", response=responses(s.CommitOut, 409), tags=["agents"])
def start(request: HttpRequest, body: s.StartIn) -> dict:
    """Write the agent's `task`: the owner now runs it (and takes its lease)."""
    return _write_one(request, body, "task", body.task)


@router.post("/agents/step", response=responses(s.CommitOut, 409), tags=["agents"])
def step(request: HttpRequest, body: s.StepIn) -> dict:
    """Write `step:<number>` as pending (before acting), then done or failed (after)."""
    value: dict[str, Any] = {"action": body.action, "status": body.status}
    if body.status == steps.DONE:
        value["result"] = body.result
    elif body.status == steps.FAILED:
        value["error"] = body.error or ""
    return _write_one(request, body, f"step:{body.number}", value)


@router.post("/agents/finish", response=responses(s.CommitOut, 409), tags=["agents"])
def finish(request: HttpRequest, body: s.FinishIn) -> dict:
    """Write the agent's `answer`: it is completed and its lease released."""
    return _write_one(request, body, "answer", body.answer)


@router.post("/agents/fail", response=responses(s.CommitOut, 409), tags=["agents"])
def fail(request: HttpRequest, body: s.FailIn) -> dict:
    """Write the agent's `failure`: it is failed (until resumed) and its lease released."""
    return _write_one(request, body, "failure", {"error": body.error})


@router.get("/agents/status", response=responses(s.StatusOut), tags=["agents"])
def status(request: HttpRequest, q: Query[s.AgentQuery]) -> dict:
    """The agent's status as operators see it, and its last completed step (-1: none)."""
    from statehouse_agents.store import reads

    namespace = _reading(request, q.namespace, q.agent_id)
    return {
        "namespace": namespace,
        "agent_id": q.agent_id,
        "status": reads.agent_status(namespace, q.agent_id),
        "last_completed_step": reads.last_completed_step(namespace, q.agent_id),
    }


@router.get("/agents", response=responses(s.AgentsOut), tags=["agents"])
def agents(request: HttpRequest, q: Query[s.AgentsQuery]) -> dict:
    """Agents with status, task and step counts, most recently active first."""
    token = request_token(request)
    if q.namespace is None and token.namespaces:
        raise PermissionDeniedError(
            f"API token {token.prefix}… is scoped to namespaces: name one of them"
        )
    namespace = None if q.namespace is None else _ns(q.namespace)
    allow(request, namespace, write=False)
    status = None if q.status is None else q.status.value
    rows = store.agent_rows(status=status, namespace=namespace, pattern=q.agent, limit=q.limit)
    return {"agents": rows}


@router.post("/agents/resume-entry-point", response=responses(s.EntryPointOut), tags=["agents"])
def register_resume(request: HttpRequest, body: s.EntryPointIn) -> dict:
    """Name the function a resume worker calls as `function(client, agent_id)`."""
    from statehouse_agents.store.resume import register_entry_point

    namespace, _staging = _writing(request, body.namespace)
    check_identifier("agent_id", body.agent_id)
    register_entry_point(
        namespace=namespace, agent_id=body.agent_id, entry_point=body.entry_point, auto=body.auto
    )
    return {"entry_point": body.entry_point}


@router.post("/agents/controls", response=responses(s.ControlOut, 404, 409), tags=["agents"])
def control_agent(request: HttpRequest, body: s.ControlIn) -> dict:
    """Cancel, pause or unpause an agent; recorded in the audit log. Returns its status."""
    from statehouse_agents.store import operator

    namespace, _staging = _writing(request, body.namespace)
    check_identifier("agent_id", body.agent_id)
    token = request_token(request)
    act = {
        "cancel": operator.cancel_agent,
        "pause": operator.pause_agent,
        "unpause": operator.unpause_agent,
    }[body.action]
    record = act(
        namespace=namespace,
        agent_id=body.agent_id,
        actor=body.actor or f"API token {token.prefix}… of {token.user}",
        reason=body.reason,
        source="client",
    )
    return {"status": str((record.after or {}).get("status", ""))}


@router.post("/agents/resume-requests", response=responses(s.ResumeOut, 404, 409), tags=["agents"])
def request_resume(request: HttpRequest, body: s.ResumeIn) -> dict:
    """Queue a resume of an interrupted or failed agent (an open request is reused)."""
    from statehouse_agents.models import ResumeSource
    from statehouse_agents.store.resume import request_resume

    namespace, _staging = _writing(request, body.namespace)
    check_identifier("agent_id", body.agent_id)
    token = request_token(request)
    resume, _created = request_resume(
        namespace=namespace,
        agent_id=body.agent_id,
        source=ResumeSource.CLIENT,
        requested_by=body.requested_by or f"API token {token.prefix}… of {token.user}",
    )
    return {"request_id": resume.pk}


# --- approvals --------------------------------------------------------------------------

# How often a long poll reads the request again (agents/store/approvals.py).
APPROVAL_POLL_SECONDS = 0.25


@router.post("/agents/approvals", response=responses(s.ApprovalOut, 404, 409), tags=["approvals"])
def request_approval(request: HttpRequest, body: s.ApprovalIn) -> dict:
    """Ask a person to approve or reject `name`: the agent shows as waiting until decided.
    Asking again with the same name returns the same request, decided or not."""
    from statehouse_agents.store import approvals

    namespace, _staging = _writing(request, body.namespace)
    check_identifier("agent_id", body.agent_id)
    check_identifier("name", body.name)
    approval = approvals.request_approval(
        namespace=namespace,
        agent_id=body.agent_id,
        name=body.name,
        payload=body.payload,
        kind=body.kind,
    )
    return approvals.decision_of(approval)


@router.get(
    "/agents/approvals/{approval_id}", response=responses(s.ApprovalOut, 404), tags=["approvals"]
)
def get_approval(request: HttpRequest, approval_id: int, q: Query[s.ApprovalQuery]) -> dict:
    """One request of the agent; with `wait`, answered as soon as it is decided (or after
    `wait` seconds, still pending). Deciding is an operator's action, not the API's."""
    from statehouse_agents.store import approvals

    namespace = _reading(request, q.namespace, q.agent_id)
    approval = approvals.wait_for_decision(
        namespace=namespace,
        agent_id=q.agent_id,
        approval_id=approval_id,
        wait=q.wait,
        poll_interval=APPROVAL_POLL_SECONDS,
    )
    return approvals.decision_of(approval)
