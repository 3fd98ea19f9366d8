"""Models of the store (commit log, versions, current records) and of agents, tasks, steps.

The store tables are append-only history plus one current row per record; the agent,
task and step tables are a projection of the key conventions of docs/contract.md §3, written in
the same database transaction as the store write that implies them (agents/store/writes.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, overload

from django.db import models
from django.db.backends.ddl_references import Statement, Table
from django.db.models import Case, Count, Exists, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Now
from django.urls import reverse
from statehouse_agents.conventions import field_json

from statehouse import steps
from statehouse._ids import new_txn_id


class TrigramIndex(models.Index):
    """A pg_trgm GIN index on `UPPER(field)`, for `icontains` search; PostgreSQL only.

    On PostgreSQL, Django runs `field__icontains` as `UPPER(col::text) LIKE UPPER('%text%')`,
    which this index serves (the pg_trgm extension comes from migration 0003). The SQL is
    written here rather than with `OpClass(Upper(...))`, which needs `django.contrib.postgres`
    in INSTALLED_APPS. On SQLite (the embedded mode) there is no such index: the statements
    are empty, so migrations and SQLite's table rebuilds run unchanged.
    """

    def create_sql(self, model, schema_editor, using="", **kwargs):  # type: ignore[no-untyped-def]  # Index's own signature, untyped in the stubs
        if schema_editor.connection.vendor != "postgresql":
            return ""
        (field_name,) = self.fields
        quote = schema_editor.quote_name
        return Statement(
            "CREATE INDEX %(concurrently)s%(name)s ON %(table)s "
            "USING gin ((UPPER(%(column)s)) gin_trgm_ops)",
            concurrently="CONCURRENTLY " if kwargs.get("concurrently") else "",
            name=quote(self.name),
            table=Table(model._meta.db_table, quote),
            column=quote(model._meta.get_field(field_name).column),
        )

    def remove_sql(self, model, schema_editor, **kwargs):  # type: ignore[no-untyped-def]  # Index's own signature, untyped in the stubs
        if schema_editor.connection.vendor != "postgresql":
            return ""
        return super().remove_sql(model, schema_editor, **kwargs)


class TimeOrderIndex(models.Index):
    """An index on a column whose values arrive in order (a commit's time): BRIN on
    PostgreSQL, a B-tree elsewhere.

    A BRIN index keeps the range of values of each run of table pages, so a write adds
    no entry to it (a B-tree entry costs WAL on every commit: docs/architecture.md,
    "What a step writes"), and a query by a range of times reads the pages whose range
    overlaps it. SQLite has no BRIN; there the index is the B-tree it always was.
    """

    def create_sql(self, model, schema_editor, using="", **kwargs):  # type: ignore[no-untyped-def]  # Index's own signature, untyped in the stubs
        if schema_editor.connection.vendor == "postgresql":
            using = " USING brin"
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class AgentState(models.TextChoices):
    """An agent's stored lifecycle (`Agent.State`); liveness (running) comes from the lease."""

    IDLE = "idle", "Idle (no task)"
    ACTIVE = "active"
    RESUMING = "resuming"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused", "Paused by an operator"
    CANCELLED = "cancelled", "Cancelled by an operator"


class ResumeStatus(models.TextChoices):
    """Where a resume request stands (`ResumeRequest.Status`)."""

    QUEUED = "queued"
    CLAIMED = "claimed", "Claimed by a worker"
    SUCCEEDED = "succeeded"
    STOPPED = "stopped", "Stopped before finishing"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ResumeSource(models.TextChoices):
    """Who asked for a resume (`ResumeRequest.Source`); callers pass one of these."""

    DASHBOARD = "dashboard"  # an operator in the dashboard: a button, a bulk action, a fork
    ADMIN = "admin"  # an action of the Django admin
    COMMAND = "command"  # the resume_agents and cancel_agents management commands
    CLIENT = "client"  # the client's resume requests, embedded or through the API
    AUTO = "auto", "Automatic (crash detected)"  # the resume worker, after a crash


# The conditions of the partial indexes and constraints, named once: the models' Meta and
# the QuerySets filter with the same `Q`, so a query and the index that serves it agree.
AGENT_ACTIVE = Q(state=AgentState.ACTIVE)
LEASE_UNOWNED = Q(lease_owner="")
LEASE_OWNED = ~LEASE_UNOWNED
RESUME_QUEUED = Q(status=ResumeStatus.QUEUED)
RESUME_CLAIMED = Q(status=ResumeStatus.CLAIMED)
RESUME_OPEN_STATUSES = (ResumeStatus.QUEUED, ResumeStatus.CLAIMED)
RESUME_OPEN = Q(status__in=RESUME_OPEN_STATUSES)


def _last_step_waits() -> Exists:
    """The agent's last step is pending and waits for input (`StepQuerySet`)."""
    return Exists(
        Step.objects.waiting_for_input().filter(agent=OuterRef("pk"), number=OuterRef("last_step"))
    )


class StatusIn:
    """An agent's property: whether its status is one of `statuses`. It reads
    `status_value`, annotated by `AgentQuerySet.annotate_status()`; an agent read without
    it has none of them."""

    def __init__(self, statuses: Iterable[str]) -> None:
        self.statuses = frozenset(statuses)

    @overload
    def __get__(self, agent: None, owner: type) -> StatusIn: ...
    @overload
    def __get__(self, agent: Agent, owner: type | None = None) -> bool: ...
    def __get__(self, agent: Agent | None, owner: type | None = None) -> StatusIn | bool:
        if agent is None:  # read on the class: the descriptor itself
            return self
        return getattr(agent, "status_value", None) in self.statuses


class AgentQuerySet(models.QuerySet["Agent"]):
    """Reads named after the statuses an operator sees; every caller filters the same way.

    The stored `state` is the lifecycle; the lease on top of it says whether a live
    process holds the agent. A RESUMING agent whose lease was taken by a worker that then
    died (lease expired) is interrupted again, never stuck as resuming (docs/contract.md §4).
    """

    @staticmethod
    def status_rules() -> dict[str, Q]:
        """The one definition of each operator-facing status, as mutually exclusive
        conditions: every agent meets exactly one. Filters, counts and the annotation
        below all read it."""
        State = Agent.State
        live = Q(lease_expires_at__gt=Now())
        not_live = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=Now())
        # Waiting for a human decision (docs/operations.md, "Approvals") wins over every
        # unfinished status: the agent may be blocked in `request_approval` (running) or
        # have stopped to be resumed once decided (interrupted); either way an operator
        # must answer first.
        not_finished = ~Q(state__in=(*Agent.TERMINAL_STATES, State.PAUSED))
        waiting = Q(waiting_since__isnull=False) & not_finished
        not_waiting = Q(waiting_since__isnull=True)
        return {
            Agent.Status.RUNNING: live & Q(state__in=[State.ACTIVE, State.IDLE]) & not_waiting,
            Agent.Status.INTERRUPTED: not_live
            & (AGENT_ACTIVE | (Q(state=State.RESUMING) & LEASE_OWNED))
            & not_waiting,
            Agent.Status.RESUMING: Q(state=State.RESUMING) & (LEASE_UNOWNED | live) & not_waiting,
            Agent.Status.WAITING: waiting,
            Agent.Status.COMPLETED: Q(state=State.COMPLETED),
            Agent.Status.FAILED: Q(state=State.FAILED),
            Agent.Status.IDLE: Q(state=State.IDLE) & not_live & not_waiting,
            Agent.Status.PAUSED: Q(state=State.PAUSED),
            Agent.Status.CANCELLED: Q(state=State.CANCELLED),
        }

    # The two statuses the worker and the overview ask for most, by name.
    def running(self) -> AgentQuerySet:
        return self.with_status(Agent.Status.RUNNING)

    def interrupted(self) -> AgentQuerySet:
        return self.with_status(Agent.Status.INTERRUPTED)

    def with_cancellable_status(self) -> AgentQuerySet:
        """Agents whose status an operator may cancel (`Agent.CANCELLABLE_STATUSES`, the
        rule `cancel_agent` checks): not finished, and not waiting for a decision."""
        return self.with_status(*Agent.CANCELLABLE_STATUSES)

    def finished(self) -> AgentQuerySet:
        return self.filter(state__in=Agent.TERMINAL_STATES)

    def resumable(self) -> AgentQuerySet:
        return self.with_status(*Agent.RESUMABLE_STATUSES)

    def in_namespace(self, namespace: str | None) -> AgentQuerySet:
        return self.filter(namespace=namespace) if namespace else self

    def with_status(self, *statuses: str) -> AgentQuerySet:
        """Agents whose operator-facing status (`Agent.Status`, as `status_rules` defines
        it) is one of `statuses`."""
        rules = self.status_rules()
        for status in statuses:
            if status not in rules:
                choices = ", ".join(Agent.Status.values)
                raise ValueError(f"unknown status {status!r}; use one of {choices}")
        return self.filter(Q(*(rules[s] for s in statuses), _connector=Q.OR))

    def idle_for(self, delta: timedelta) -> AgentQuerySet:
        return self.filter(last_activity_at__lte=Now() - Value(delta))

    def status_counts(self) -> dict[str, int]:
        """How many agents have each operator-facing status, in one aggregate query."""
        counts = self.order_by().aggregate(
            **{
                str(status): Count("pk", filter=rule)
                for status, rule in self.status_rules().items()
            }
        )
        return {str(status): counts[str(status)] or 0 for status in Agent.Status.values}

    def waiting_for_input(self) -> AgentQuerySet:
        """Unfinished agents whose last step waits for input: a LangGraph graph stopped at
        `interrupt()` (docs/langgraph.md). A marker beside the status, not a status."""
        return self.exclude(state__in=Agent.TERMINAL_STATES).filter(_last_step_waits())

    def annotate_waiting_for_input(self) -> AgentQuerySet:
        """Annotate `waiting_for_input_value` (read by `Agent.is_waiting_for_input`)."""
        return self.annotate(waiting_for_input_value=_last_step_waits())

    def annotate_status(self) -> AgentQuerySet:
        """Annotate `status_value` with the agent's status (the same rules)."""
        return self.annotate(
            status_value=Case(
                *(
                    When(rule, then=Value(str(status)))
                    for status, rule in self.status_rules().items()
                ),
                default=Value(Agent.Status.IDLE.value),
                output_field=models.CharField(),
            )
        )


class Agent(models.Model):
    """One agent: `(namespace, agent_id)`. Its row is the lock that orders its commits."""

    State = AgentState

    class Status(models.TextChoices):
        """What an operator sees (docs/contract.md §3)."""

        RUNNING = "running"
        INTERRUPTED = "interrupted"
        RESUMING = "resuming"
        WAITING = "waiting", "Waiting for a decision"
        COMPLETED = "completed"
        FAILED = "failed"
        IDLE = "idle"
        PAUSED = "paused"
        CANCELLED = "cancelled"

    # The rules derived from the statuses, each defined once; views, templates, commands
    # and the store read these names (docs/contract.md §3, §4).
    RESUMABLE_STATUSES = (Status.INTERRUPTED, Status.FAILED)  # a resume may be asked for
    LIVE_STATUSES = (
        Status.RUNNING,
        Status.RESUMING,
        Status.INTERRUPTED,
        Status.WAITING,
    )  # pages poll these
    HELD_STATUSES = (Status.RUNNING, Status.RESUMING)  # a process holds it: show the owner
    TERMINAL_STATES = (State.COMPLETED, State.FAILED, State.CANCELLED)  # nothing runs it again
    # Operator controls (docs/contract.md §7): a step write of a cancelled agent raises
    # AgentCancelledError; one of a paused agent waits until it is unpaused.
    CANCELLABLE_STATUSES = (
        Status.RUNNING,
        Status.INTERRUPTED,
        Status.RESUMING,
        Status.IDLE,
        Status.PAUSED,
    )
    PAUSABLE_STATUSES = (Status.RUNNING, Status.INTERRUPTED, Status.RESUMING, Status.IDLE)

    namespace = models.CharField(max_length=255)
    agent_id = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IDLE)
    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    last_commit_ts = models.BigIntegerField(default=0)

    has_task = models.BooleanField(default=False)
    task_summary = models.CharField(max_length=200, blank=True, default="")
    steps_done = models.PositiveIntegerField(default=0)
    steps_pending = models.PositiveIntegerField(default=0)
    steps_failed = models.PositiveIntegerField(default=0)
    last_step = models.IntegerField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    resume_entry_point = models.CharField(max_length=255, blank=True, default="")
    # A crash seen by the detector queues a resume at once (source "auto"), also without
    # STATEHOUSE_AUTO_RESUME (docs/operations.md, "Crash detection").
    auto_resume = models.BooleanField(default=False)
    # Set while the agent is PAUSED: when, and the state to go back to on unpause.
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_from = models.CharField(max_length=16, blank=True, default="")

    # The lease: who runs the agent now. Times come from the database clock, so that
    # processes on many hosts agree on expiry.
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_host = models.CharField(max_length=255, blank=True, default="")
    lease_pid = models.IntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set while the agent waits for a human decision (an open `Approval`), in the same
    # transaction as the request; cleared by the decision (docs/operations.md).
    waiting_since = models.DateTimeField(null=True, blank=True)
    # A fork's source and the commit_ts its keys were copied as of (docs/operations.md).
    forked_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="forks"
    )
    forked_at_ts = models.BigIntegerField(null=True, blank=True)

    # Grows each time a different owner takes the lease: the fencing token that stops a
    # process which lost the lease (a zombie) even after the lease is free again.
    lease_epoch = models.PositiveBigIntegerField(default=0)
    # The holder's liveness handle (agents/store/liveness.py): what the detector checks to
    # see the holder's death at once, before its lease runs out (docs/contract.md §3).
    # "" when the holder has none (a remote client, a worker's claim): the lease alone.
    lease_watch = models.TextField(blank=True, default="")
    # The lease fields of an agent no process holds.
    NO_LEASE: dict[str, object] = {
        "lease_owner": "",
        "lease_host": "",
        "lease_pid": None,
        "lease_expires_at": None,
        "lease_watch": "",
    }

    objects = AgentQuerySet.as_manager()
    # Set on rows read through `AgentQuerySet.annotate_status()`.
    status_value: str

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "agent_id"], name="agent_identity"),
        ]
        indexes = [
            models.Index(fields=["state", "-last_activity_at"], name="agent_state_activity"),
            models.Index(fields=["-last_activity_at"], name="agent_activity"),
            models.Index(
                fields=["-last_activity_at"],
                name="agent_active_activity",
                condition=AGENT_ACTIVE,
            ),
            models.Index(fields=["lease_expires_at"], name="agent_lease_expiry"),
            models.Index(fields=["lease_owner"], name="agent_lease_owner", condition=LEASE_OWNED),
            models.Index(fields=["agent_id"], name="agent_agent_id"),
            models.Index(
                fields=["-waiting_since"],
                name="agent_waiting",
                condition=Q(waiting_since__isnull=False),
            ),
            # The dashboard's search (`agent_id` or `task_summary` icontains): without them
            # it is a sequential scan of every agent, twice (tab counts and the page).
            TrigramIndex(fields=["agent_id"], name="agent_id_trgm"),
            TrigramIndex(fields=["task_summary"], name="agent_task_trgm"),
        ]

    def __str__(self) -> str:
        return self.agent_id if self.namespace == "default" else f"{self.namespace}/{self.agent_id}"

    def get_absolute_url(self) -> str:
        return reverse("agents:detail", args=[self.pk])

    def lease_is_live(self, now: datetime) -> bool:
        return bool(self.lease_expires_at and self.lease_expires_at > now)

    # Whether the agent's status is in each set above (`StatusIn`).
    is_resumable = StatusIn(RESUMABLE_STATUSES)
    is_live = StatusIn(LIVE_STATUSES)
    is_cancellable = StatusIn(CANCELLABLE_STATUSES)
    is_pausable = StatusIn(PAUSABLE_STATUSES)
    is_paused = StatusIn((Status.PAUSED,))
    is_held = StatusIn(HELD_STATUSES)

    @property
    def is_waiting_for_input(self) -> bool:
        """Stopped at a LangGraph `interrupt()`, its question unanswered (read from
        `AgentQuerySet.annotate_waiting_for_input()`; a finished agent waits for nothing)."""
        return bool(getattr(self, "waiting_for_input_value", False)) and (
            self.state not in self.TERMINAL_STATES
        )


class Task(models.Model):
    """The value of an agent's `task` key."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="task")
    value_json = models.TextField()
    summary = models.CharField(max_length=200, blank=True, default="")
    version = models.PositiveIntegerField()
    written_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.summary or self.value_json[:80]


# How a step's value marks it waiting for input, in the store's compact JSON.
WAITING_FOR_INPUT_JSON = '"waiting":"input"'
# A step that recorded LLM metadata; also the condition of the partial index
# `step_llm_usage`, so the overview's usage reads only those steps (bench/README-resume.md).
STEP_USED_LLM = (
    ~Q(model="") | Q(tokens_in__isnull=False) | Q(tokens_out__isnull=False) | Q(cost__isnull=False)
)


def waits_for_input(value_json: str | None) -> bool:
    """Whether a key's value says `"waiting": "input"`: the rule behind
    `Record.waits_for_input`, which both commit paths write (and the commit function
    repeats in SQL). A tombstone (None) waits for nothing."""
    return value_json is not None and WAITING_FOR_INPUT_JSON in value_json


def _agent_resumable() -> Exists:
    """The step's agent is interrupted or failed: no process runs it (`AgentQuerySet`)."""
    return Exists(Agent.objects.resumable().filter(pk=OuterRef("agent")))


def _waits_for_input() -> Exists:
    """The step key's current value says `"waiting": "input"` (`WAITING_FOR_INPUT_JSON`)."""
    return Exists(
        # The partial index record_waits_for_input serves exactly this condition.
        Record.objects.filter(waits_for_input=True, agent=OuterRef("agent"), key=OuterRef("key"))
    )


def _current_value() -> Subquery:
    """The value of the version an outer row (a record, or a step) names by its agent, key
    and version: one lookup in the version's identity index."""
    named = Version.objects.filter(
        agent=OuterRef("agent"), key=OuterRef("key"), version=OuterRef("version")
    )
    return Subquery(named.values("value_json")[:1])


class StepQuerySet(models.QuerySet["Step"]):
    def pending(self) -> StepQuerySet:
        return self.filter(status=Step.Status.PENDING)

    def in_doubt(self) -> StepQuerySet:
        """Pending steps of agents no process runs (interrupted, or failed): their action
        may or may not have run (docs/contract.md §7). A resume would run them again. A
        step waiting for input (a LangGraph `interrupt()`) is not in doubt: it waits."""
        return self.pending().filter(_agent_resumable(), ~_waits_for_input())

    def needing_review(self) -> StepQuerySet:
        """In-doubt steps with the policy `review`: they block every resume of their agent
        until an operator decides them (agents/store/decisions.py)."""
        return self.in_doubt().filter(policy=Step.Policy.REVIEW)

    def to_skip(self) -> StepQuerySet:
        """In-doubt steps with the policy `skip`: a resume records them done, skipped."""
        return self.in_doubt().filter(policy=Step.Policy.SKIP)

    def done(self) -> StepQuerySet:
        return self.filter(status=Step.Status.DONE)

    def failed(self) -> StepQuerySet:
        return self.filter(status=Step.Status.FAILED)

    def with_llm_usage(self) -> StepQuerySet:
        """Steps that recorded LLM metadata (a model, tokens or a cost)."""
        return self.filter(STEP_USED_LLM)

    def to_run_again(self) -> StepQuerySet:
        """The steps a resume runs again: pending (in doubt) and failed ones, but not the
        pending ones it skips (policy `skip`; docs/operations.md, "In-doubt steps")."""
        return self.filter(status__in=[Step.Status.PENDING, Step.Status.FAILED]).exclude(
            status=Step.Status.PENDING, policy=Step.Policy.SKIP
        )

    def llm_totals(self) -> dict[str, Any]:
        """Steps with LLM usage, tokens in and out, and cost, in one aggregate."""
        totals = (
            self.with_llm_usage()
            .order_by()
            .aggregate(
                steps=Count("pk"),
                tokens_in=Sum("tokens_in"),
                tokens_out=Sum("tokens_out"),
                cost=Sum("cost"),
            )
        )
        return {
            "steps": totals["steps"],
            "tokens_in": totals["tokens_in"] or 0,
            "tokens_out": totals["tokens_out"] or 0,
            "cost": totals["cost"] or 0.0,
        }

    def with_values(self) -> StepQuerySet:
        """Annotate `value_json`, the step key's current value, from its version.

        A step row keeps no copy of the value (docs/architecture.md, "Values stored
        once"): `action`, `result` and `error` are read from it through `Step.action_json`
        and the like. One subquery in the same SQL statement, so a page's query count
        does not change; the version's identity index (agent, key, version) serves it.
        """
        return self.annotate(value_json=_current_value())

    def waiting_for_input(self) -> StepQuerySet:
        """Pending steps whose value says `"waiting": "input"`, as the LangGraph saver
        writes a super-step stopped at `interrupt()` (docs/langgraph.md). The key's
        current value is stored as compact JSON, so the pair reads exactly so."""
        return self.pending().filter(_waits_for_input())


class Step(models.Model):
    """The current value of one `step:<n>` (or `step/<n>`) key of an agent."""

    class Status(models.TextChoices):
        """The statuses of statehouse/steps.py (docs/contract.md §3), and ours for others."""

        PENDING = steps.PENDING, "Pending"
        DONE = steps.DONE, "Done"
        FAILED = steps.FAILED, "Failed"
        UNKNOWN = "unknown"

    class Policy(models.TextChoices):
        """What a resume does with the step in doubt (statehouse/steps.py, docs/contract.md §7)."""

        RETRY = steps.RETRY, "Retry"
        SKIP = steps.SKIP, "Skip"
        REVIEW = steps.REVIEW, "Review"

    ENDED_STATUSES = (Status.DONE, Status.FAILED)  # the step has an end time
    # How the dashboard's timeline marks each status.
    MARKERS: dict[str, str] = {
        Status.PENDING: "…",
        Status.DONE: "✓",
        Status.FAILED: "✕",
        Status.UNKNOWN: "?",
    }

    # No index of its own: `step_identity` (agent, key) starts with it. No constraint
    # (docs/architecture.md, "References without constraints").
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="steps", db_index=False, db_constraint=False
    )
    key = models.CharField(max_length=255)
    number = models.IntegerField()
    status = models.CharField(max_length=16, choices=Status.choices)
    version = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    # LLM metadata from the step's value (docs/contract.md §3), None when not recorded.
    model = models.CharField(max_length=255, blank=True, default="")
    tokens_in = models.BigIntegerField(null=True, blank=True)
    tokens_out = models.BigIntegerField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)
    # The value's `policy` (docs/contract.md §3); `retry` when it names none. No index of
    # its own: every read of it is by agent (the identity index) and among few steps.
    policy = models.CharField(max_length=8, choices=Policy.choices, default=Policy.RETRY)

    objects = StepQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="step_identity"),
        ]
        indexes = [
            models.Index(fields=["agent", "number"], name="step_agent_number"),
            # Few steps carry LLM usage (none, for agents that call no model): the
            # overview's totals, days and top agents read only these (bench/README-resume.md).
            models.Index(
                fields=["started_at", "agent"], condition=STEP_USED_LLM, name="step_llm_usage"
            ),
        ]
        ordering = ["agent", "number", "key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        return self.ended_at - self.started_at if self.ended_at else None

    def is_in_doubt(self, agent: Agent) -> bool:
        """Whether this step of `agent` is in doubt (`StepQuerySet.in_doubt`), from the
        agent's annotated status (`AgentQuerySet.annotate_status`) and the step's value
        (`StepQuerySet.with_values`): no query."""
        waits = waits_for_input(getattr(self, "value_json", None))
        return self.status == self.Status.PENDING and agent.is_resumable and not waits

    # The step's value, annotated by `StepQuerySet.with_values()` (None without it).
    value_json: str | None

    def _field_json(self, name: str) -> str:
        value_json = getattr(self, "value_json", None)
        if value_json is None:
            return ""
        return field_json(json.loads(value_json), name)

    @property
    def action_json(self) -> str:
        """JSON text of the value's `action`, "" when absent (needs `with_values()`)."""
        return self._field_json("action")

    @property
    def result_json(self) -> str:
        return self._field_json("result")

    @property
    def error_json(self) -> str:
        return self._field_json("error")


# --- The store --------------------------------------------------------------------------


class Commit(models.Model):
    """One committed transaction. Its primary key is the transaction's `commit_ts`.

    The id is drawn after the commit has locked its agents' rows, or (the commit function)
    just before an update of the agent's row that applies only if no other commit came in
    between (docs/architecture.md, "The commit function"): for one agent the order of ids
    is the order of commits.
    """

    txn_id = models.UUIDField(default=new_txn_id, unique=True)
    namespace = models.CharField(max_length=255)
    committed_at = models.DateTimeField()
    op_count = models.PositiveIntegerField()

    class Meta:
        indexes = [TimeOrderIndex(fields=["committed_at"], name="commit_committed_at")]

    def __str__(self) -> str:
        return f"commit {self.pk} ({self.txn_id})"

    @property
    def commit_ts(self) -> int:
        return self.pk


class Version(models.Model):
    """Every version of every record, tombstones included. Append-only."""

    # No index of its own: `version_identity` (agent, key, version) starts with it. Neither
    # reference has a constraint (docs/architecture.md, "References without constraints").
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    key = models.CharField(max_length=255)
    version = models.PositiveIntegerField()
    commit = models.ForeignKey(
        Commit, on_delete=models.CASCADE, related_name="versions", db_constraint=False
    )
    value_json = models.TextField(null=True, blank=True)
    deleted = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key", "version"], name="version_identity"),
        ]
        indexes = [models.Index(fields=["agent", "commit"], name="version_replay")]

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"


class RecordQuerySet(models.QuerySet["Record"]):
    def with_values(self) -> RecordQuerySet:
        """Annotate `value_json`, the record's current value (None for a tombstone).

        A record names its current version and keeps no copy of its value
        (docs/architecture.md, "Values stored once"): one subquery in the same SQL
        statement reads it from the version.
        """
        return self.annotate(value_json=_current_value())


class Record(models.Model):
    """The current version of a record; a tombstone after a delete.

    Its value is its version's (`Record.objects.with_values()`): written once per version.
    """

    # No index of its own: `record_identity` (agent, key) starts with it. No constraint
    # (docs/architecture.md, "References without constraints").
    agent = models.ForeignKey(
        Agent, on_delete=models.CASCADE, related_name="records", db_index=False, db_constraint=False
    )
    key = models.CharField(max_length=255)
    version = models.PositiveIntegerField()
    commit_ts = models.BigIntegerField()
    deleted = models.BooleanField(default=False)
    updated_at = models.DateTimeField()
    # Whether the value says `"waiting": "input"` (`waits_for_input()`), written by the
    # commit with the version, so that the partial index below reads a column that
    # changes only when a record starts or stops waiting (HOT updates on PostgreSQL;
    # docs/architecture.md, "What a step writes").
    waits_for_input = models.BooleanField(default=False)

    objects = RecordQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="record_identity"),
        ]
        indexes = [
            # The list's "waits for input" marker looks records up by this condition; without
            # the index PostgreSQL scans every record for it (bench/README-resume.md).
            models.Index(
                fields=["agent", "key"],
                condition=Q(waits_for_input=True),
                name="record_waits_for_input",
            ),
        ]

    # The record's value, annotated by `RecordQuerySet.with_values()`.
    value_json: str | None

    def __str__(self) -> str:
        return f"{self.key} v{self.version}{' (deleted)' if self.deleted else ''}"


# --- Resume -----------------------------------------------------------------------------


class ResumeRequestQuerySet(models.QuerySet["ResumeRequest"]):
    def open(self) -> ResumeRequestQuerySet:
        return self.filter(RESUME_OPEN)

    def queued(self) -> ResumeRequestQuerySet:
        return self.filter(RESUME_QUEUED)

    def due(self) -> ResumeRequestQuerySet:
        return self.queued().filter(run_after__lte=Now())

    def claimed(self) -> ResumeRequestQuerySet:
        return self.filter(RESUME_CLAIMED)

    def abandoned(self) -> ResumeRequestQuerySet:
        """Claimed by a worker that stopped renewing its claim (it crashed or was killed)."""
        return self.claimed().filter(claim_expires_at__lt=Now())


class ResumeRequest(models.Model):
    """A durable request to resume one agent; a worker claims it and runs the agent."""

    Status = ResumeStatus
    Source = ResumeSource
    OPEN_STATUSES = RESUME_OPEN_STATUSES

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="resume_requests")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    source = models.CharField(max_length=16, choices=Source.choices)
    requested_by = models.CharField(max_length=255, blank=True, default="")
    requested_at = models.DateTimeField()
    run_after = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    claimed_by = models.CharField(max_length=255, blank=True, default="")
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    objects = ResumeRequestQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent"],
                condition=RESUME_OPEN,
                name="one_open_resume_per_agent",
            ),
        ]
        indexes = [
            models.Index(fields=["run_after", "id"], name="resume_due", condition=RESUME_QUEUED),
            models.Index(
                fields=["claim_expires_at"], name="resume_claimed", condition=RESUME_CLAIMED
            ),
        ]

    def __str__(self) -> str:
        return f"resume {self.agent} ({self.status})"


class ResumeAttempt(models.Model):
    """One run of an agent's resume entry point by a worker, with its outcome."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        STOPPED = "stopped", "Returned without finishing"
        FAILED = "failed"
        CRASHED = "crashed"
        LOST = "lost", "Worker lost"
        SHUTDOWN = "shutdown", "Worker shut down"
        TIMED_OUT = "timed_out", "Timed out"
        CANCELLED = "cancelled", "Stopped: the agent was cancelled"

    request = models.ForeignKey(ResumeRequest, on_delete=models.CASCADE, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="resume_attempts")
    number = models.PositiveIntegerField()
    requested_by = models.CharField(max_length=255, blank=True, default="")
    worker = models.CharField(max_length=255)
    host = models.CharField(max_length=255)
    pid = models.IntegerField(null=True, blank=True)
    entry_point = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["agent", "-started_at"], name="attempt_agent_started")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.agent} ({self.outcome})"

    @property
    def duration(self) -> timedelta | None:
        return self.ended_at - self.started_at if self.ended_at else None


class ApprovalQuerySet(models.QuerySet["Approval"]):
    def pending(self) -> ApprovalQuerySet:
        return self.filter(status=Approval.Status.PENDING)

    def decided(self) -> ApprovalQuerySet:
        return self.exclude(status=Approval.Status.PENDING)


class Approval(models.Model):
    """A human decision an agent asked for (docs/operations.md, "Approvals").

    `kind` says how the answer reaches the agent: a `request` is polled by the agent's own
    `request_approval` (or read after a resume); an `interrupt` is a LangGraph graph stopped
    at `interrupt()`, resumed with the decision as its resume value.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    class Kind(models.TextChoices):
        REQUEST = "request", "Request from the agent"
        INTERRUPT = "interrupt", "LangGraph interrupt"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="approvals")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REQUEST)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField()
    decided_by = models.CharField(max_length=255, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")

    objects = ApprovalQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent"], condition=Q(status="pending"), name="one_pending_approval"
            ),
        ]
        indexes = [models.Index(fields=["agent", "-requested_at"], name="approval_agent")]

    def __str__(self) -> str:
        return f"approval {self.name!r} of {self.agent} ({self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING

    @property
    def payload_text(self) -> str:
        return json.dumps(self.payload, indent=2, ensure_ascii=False, sort_keys=True)


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=Now())
        )

    def revoked(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=False)

    def expired(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__lte=Now())


class ApiToken(models.Model):
    """A bearer token of the HTTP API (docs/api.md): stored as its SHA-256 digest only,
    shown once at creation, scoped to namespaces (none listed: every one) and to reading
    or also writing, rate-limited per minute, revocable."""

    user = models.ForeignKey(
        "auth.User", on_delete=models.CASCADE, related_name="statehouse_api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, help_text="The token's first characters.")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    namespaces = models.JSONField(default=list, blank=True)
    read_only = models.BooleanField(default=False)
    rate_limit = models.PositiveIntegerField(
        default=0, help_text="Requests per minute; 0: STATEHOUSE_API_RATE_LIMIT."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The rate limiter's shared counter: requests seen in the minute starting window_start.
    window_start = models.DateTimeField(null=True, blank=True, editable=False)
    window_count = models.PositiveIntegerField(default=0, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def allows_namespace(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    @property
    def scope(self) -> str:
        access = "read" if self.read_only else "read, write"
        where = ", ".join(self.namespaces) if self.namespaces else "every namespace"
        return f"{access}; {where}"


# --- Metrics ----------------------------------------------------------------------------


class MetricCounter(models.Model):
    """A cluster-wide event counter kept in the database, for events no table records
    (lease expiries, direct detections of a dead holder): every process on every host adds
    to the same row, and `/metrics` reads it (docs/metrics.md). Only ever grows."""

    name = models.CharField(max_length=64, unique=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} = {self.value}"


# --- Operator actions -------------------------------------------------------------------


class OperatorActionQuerySet(models.QuerySet["OperatorAction"]):
    def for_agent(self, agent: Agent) -> OperatorActionQuerySet:
        return self.filter(agent=agent)


class OperatorAction(models.Model):
    """The audit log (docs/contract.md §7): one row per operator action, written by the
    store in the same transaction as the action itself (agents/store/audit.py). Rows are
    never changed; the agent's identity is kept as text, so a row outlives its agent."""

    class Action(models.TextChoices):
        RESUME = "resume"
        CANCEL = "cancel"
        PAUSE = "pause"
        UNPAUSE = "unpause"
        EDIT = "edit", "Edit a key"
        FORK = "fork"
        APPROVE = "approve"
        REJECT = "reject"
        STEP_DECISION = "step_decision", "Step decision"
        TOKEN_CREATED = "token_created", "API token created"
        TOKEN_REVOKED = "token_revoked", "API token revoked"
        ANSWER = "answer"

    actor = models.CharField(max_length=255)
    at = models.DateTimeField()
    agent = models.ForeignKey(
        Agent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="operator_actions",
        db_index=False,  # `operator_action_agent` (agent, -at) starts with it
    )
    # The agent's identity as text (`agent_id` is the foreign key's column, hence the name).
    namespace = models.CharField(max_length=255, blank=True, default="")
    agent_name = models.CharField(max_length=255, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices)
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    objects = OperatorActionQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["agent", "-at"], name="operator_action_agent"),
            models.Index(fields=["action", "-at"], name="operator_action_action"),
            models.Index(fields=["-at", "-id"], name="operator_action_at"),
        ]

    def __str__(self) -> str:
        who = f" {self.namespace}/{self.agent_name}" if self.agent_name else ""
        return f"{self.actor}: {self.action}{who}"
