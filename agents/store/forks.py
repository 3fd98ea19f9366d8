"""Fork: a new agent from another's keys as they stood at a step or a commit_ts
(docs/contract.md §7, docs/operations.md "Fork").

The source's history is read as of the chosen point (for each key, its latest version
committed at or before it; tombstones leave the key out), and written to the new agent as
one ordinary commit in which every key must not exist yet (`expected_version=0`), so two
forks racing for one new id cannot both win. The new agent's row links back to its source
(`forked_from`, `forked_at_ts`) in the same transaction, with the audit record; a resume
can be queued in it too.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery
from statehouse_agents.conventions import classify
from statehouse_agents.models import (
    Agent,
    OperatorAction,
    Record,
    ResumeRequest,
    ResumeSource,
    Step,
    Version,
)
from statehouse_agents.store.atomic import run_atomic
from statehouse_agents.store.audit import record_action
from statehouse_agents.store.commit import commit
from statehouse_agents.store.operations import StagedOp
from statehouse_agents.store.resume import request_resume

from statehouse.errors import AlreadyExistsError, NotFoundError, ValidationError
from statehouse.validation import check_identifier


@dataclass(frozen=True, slots=True)
class ForkResult:
    agent: Agent
    source: Agent
    at_ts: int
    keys: int
    resume_request: ResumeRequest | None


def new_agent_id(source_id: str) -> str:
    """A fresh id for a fork of `source_id`: `<source>-fork-<8 hex>`, at most 255 characters."""
    return f"{source_id[:236]}-fork-{uuid.uuid4().hex[:8]}"


def point_of_step(source: Agent, step: int) -> int:
    """The commit_ts of the step's current version: the fork sees the step as it ended."""
    row = (
        Step.objects.filter(agent=source, number=step)
        .order_by("key")
        .values_list("key", flat=True)
        .first()
    )
    if row is None:
        raise NotFoundError(f"agent {source.agent_id!r} has no step {step}")
    commit_ts = Record.objects.filter(agent=source, key=row).values_list("commit_ts", flat=True)
    return int(commit_ts[0])


def keys_as_of(source: Agent, at_ts: int) -> list[Version]:
    """The source's live versions as of `at_ts`: per key the newest committed at or before
    it, tombstones dropped; one query over the (agent, key, version) index."""
    newest = (
        Version.objects.filter(agent=source, key=OuterRef("key"), commit_id__lte=at_ts)
        .order_by("-version")
        .values("version")[:1]
    )
    return list(
        Version.objects.filter(agent=source, commit_id__lte=at_ts, version=Subquery(newest))
        .filter(deleted=False)
        .order_by("key")
    )


def fork_agent(
    *,
    namespace: str,
    source_id: str,
    new_id: str = "",
    step: int | None = None,
    at_ts: int | None = None,
    resume: bool = False,
    actor: str,
    source: ResumeSource = ResumeSource.DASHBOARD,
    reason: str = "",
) -> ForkResult:
    """Create agent `new_id` (generated when empty) from `source_id`'s keys as of `step`
    or `at_ts` (neither: its latest commit). Raises ValidationError (bad id, both points
    given, a point before the first commit), NotFoundError (no source or step),
    AlreadyExistsError (the new id is taken), NotResumableError (resume asked for an agent
    that is finished at that point); nothing is written in any of these cases."""
    if step is not None and at_ts is not None:
        raise ValidationError("fork at a step or at a commit_ts, not both")
    if step is not None and step < 0:
        raise ValidationError(f"step must be 0 or more, not {step}")
    if at_ts is not None and at_ts < 1:
        raise ValidationError(f"commit_ts must be 1 or more, not {at_ts}")
    new_id = check_identifier("agent_id", new_id) if new_id else new_agent_id(source_id)
    if new_id == source_id:
        raise ValidationError("a fork needs a new agent id, not its source's")

    def fork() -> ForkResult:
        origin = Agent.objects.filter(namespace=namespace, agent_id=source_id).first()
        if origin is None:
            raise NotFoundError(f"no agent {source_id!r} in namespace {namespace!r}")
        if Agent.objects.filter(namespace=namespace, agent_id=new_id).exists():
            raise AlreadyExistsError(
                f"agent {new_id!r} already exists in namespace {namespace!r}; choose another id"
            )
        point = (
            point_of_step(origin, step)
            if step is not None
            else (at_ts if at_ts is not None else origin.last_commit_ts)
        )
        versions = keys_as_of(origin, point)
        if not versions:
            raise ValidationError(
                f"agent {source_id!r} had no live key as of commit_ts {point}; nothing to fork"
            )
        ops = [
            StagedOp(
                agent_id=new_id,
                key=v.key,
                value_json=v.value_json,
                value=json.loads(v.value_json)
                if v.value_json is not None and classify(v.key).takes_lease
                else None,
                expected_version=0,
            )
            for v in versions
        ]
        commit(namespace=namespace, ops=ops)
        Agent.objects.filter(namespace=namespace, agent_id=new_id).update(
            forked_from=origin, forked_at_ts=point
        )
        forked = Agent.objects.get(namespace=namespace, agent_id=new_id)
        resume_request = None
        if resume:
            resume_request, _created = request_resume(
                namespace=namespace,
                agent_id=new_id,
                source=source,
                requested_by=actor,
            )
        record_action(
            actor=actor,
            action=OperatorAction.Action.FORK,
            agent=forked,
            reason=reason,
            before=None,
            after={"agent_id": new_id, "keys": len(ops)},
            detail={
                "source": source_id,
                "at_ts": point,
                "step": step,
                "resume_request": resume_request.pk if resume_request else None,
            },
        )
        return ForkResult(
            agent=forked, source=origin, at_ts=point, keys=len(ops), resume_request=resume_request
        )

    return run_atomic(fork, what="fork")
