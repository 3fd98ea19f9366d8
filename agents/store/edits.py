"""An operator's edit of one key before a resume (docs/contract.md §7, docs/operations.md).

The edit is an ordinary versioned commit with `expected_version` (the version the
operator saw when the editor opened), so an edit that raced the agent or another operator
is a ConflictError and writes nothing. The commit and its audit record share one database
transaction: the audit record names the operator, the reason and the value before and
after, which is how the commit is attributed to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from statehouse_agents.conf import get_settings
from statehouse_agents.models import Agent, OperatorAction, Record
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.audit import record_action
from statehouse_agents.store.commit import commit
from statehouse_agents.store.operations import StagedOp

from statehouse.errors import NotFoundError, ValidationError
from statehouse.validation import check_identifier, encode_value

MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class EditResult:
    commit_ts: int
    version: int
    before: Any
    after: Any


def parse_json_text(text: str, *, key: str) -> Any:
    """The value a JSON editor's text stands for, or ValidationError saying where it is wrong."""

    def refuse_constant(name: str) -> Any:
        raise ValidationError(f"value of key {key!r} is not JSON: {name} is not a JSON value")

    if not text.strip():
        raise ValidationError(f"value of key {key!r} is empty: enter a JSON value, such as {{}}")
    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"value of key {key!r} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def check_reason(reason: str, *, required: bool = True, what: str = "reason") -> str:
    """An operator's reason (or comment, `what`) for the audit log, stripped; at most
    MAX_REASON characters, and not empty when `required`."""
    reason = (reason or "").strip()
    if required and not reason:
        raise ValidationError(f"give a {what}: it is kept in the audit log")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"the {what} is {len(reason)} characters; at most {MAX_REASON}")
    return reason


def commit_audited(
    *,
    agent: Agent,
    key: str,
    value: Any,
    value_json: str,
    expected_version: int,
    action: str,
    actor: str,
    reason: str,
    before: Any,
    detail: dict[str, Any] | None = None,
) -> EditResult:
    """Write `value` (`value_json`) to the agent's `key` if it is still at
    `expected_version`, with the audit record of the operator's action, in the caller's
    transaction: an ordinary versioned commit (docs/operations.md). The record's detail
    names the key, the new version and commit_ts, after what `detail` adds."""
    op = StagedOp(
        agent_id=agent.agent_id,
        key=key,
        value_json=value_json,
        value=value,
        expected_version=expected_version,
    )
    written = commit(namespace=agent.namespace, ops=[op])
    assert written.commit_ts is not None
    version = written.versions[(op.agent_id, op.key)]
    record_action(
        actor=actor,
        action=action,
        agent=agent,
        reason=reason,
        before=before,
        after=op.value,
        detail={
            "key": op.key,
            **(detail or {}),
            "version": version,
            "commit_ts": written.commit_ts,
        },
    )
    return EditResult(commit_ts=written.commit_ts, version=version, before=before, after=op.value)


def edit_key(
    *,
    namespace: str,
    agent_id: str,
    key: str,
    value_text: str,
    expected_version: int,
    reason: str,
    actor: str,
) -> EditResult:
    """Write `value_text` (JSON) to `key` if it is still at `expected_version`; audit it.

    Raises ValidationError (bad JSON, no reason, value too large), NotFoundError (no such
    agent or live key), ConflictError (the key changed since), LeaseHeldError (a live
    process runs the agent and the key is one of its task/step/answer keys): in every case
    nothing is written.
    """
    check_identifier("key", key)
    reason = check_reason(reason)
    value = parse_json_text(value_text, key=key)
    value_json = encode_value(value, key=key, max_bytes=get_settings().max_value_bytes)

    def edit() -> EditResult:
        agent = Agent.objects.filter(namespace=namespace, agent_id=agent_id).first()
        if agent is None:
            raise NotFoundError(f"no agent {agent_id!r} in namespace {namespace!r}")
        record = Record.objects.filter(agent=agent, key=key, deleted=False).with_values().first()
        if record is None:
            raise NotFoundError(f"agent {agent_id!r} has no live key {key!r} to edit")
        before = json.loads(record.value_json) if record.value_json is not None else None
        # The commit re-reads the version under the agent's row lock: `record` above may
        # be stale by then, the compare-and-set is what decides.
        return commit_audited(
            agent=agent,
            key=key,
            value=value,
            value_json=value_json,
            expected_version=expected_version,
            action=OperatorAction.Action.EDIT,
            actor=actor,
            reason=reason,
            before=before,
        )

    return run_atomic(edit, what="edit")
