"""The Django admin: inspect agents and the store's history, resume agents in bulk.

The store's history (Commit, Version, Record) and its projection (Task, Step) are written
by the store alone, in the transaction of each commit: the admin shows them read-only, so
that it can never make the dashboard disagree with the store. Resume requests and attempts
are machine-written too; the one way to change anything here is through a store function
(the "Resume selected agents" action, the agent's resume entry point).

Every changelist is one query per page (plus the count), whatever the number of rows:
`list_select_related` for the columns that follow a foreign key, the operator status
annotated in `get_queryset`, and no full-table count on the big tables.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString
from statehouse_agents.dashboard import formatting
from statehouse_agents.models import (
    Agent,
    AgentQuerySet,
    Commit,
    OperatorAction,
    Record,
    RecordQuerySet,
    ResumeAttempt,
    ResumeRequest,
    Step,
    StepQuerySet,
    Task,
    Version,
)
from statehouse_agents.store import operator
from statehouse_agents.store.decisions import decide_step
from statehouse_agents.store.resume import register_entry_point, resume_selected

from statehouse.errors import NotFoundError, OperatorActionError, ValidationError
from statehouse.validation import check_entry_point

# Above this many rows (by the planner's estimate) an unfiltered changelist shows the
# estimate instead of counting every row.
_ESTIMATE_ABOVE = 100_000
# The agent page shows its latest steps inline; all of them are a link away (Step list).
STEP_INLINE_LIMIT = 100


def pretty_json(value: str | None) -> SafeString | str:
    """Render stored JSON indented inside <pre>, escaped (values are user data)."""
    if value is None:
        return "(deleted)"
    if value == "":
        return "—"
    return format_html('<pre class="statehouse-json">{}</pre>', formatting.pretty_json(value))


def _json_field(value: Any) -> SafeString | str:
    return "—" if value is None else pretty_json(json.dumps(value, sort_keys=True))


def json_column(attribute: str, description: str, *, stored: bool = True) -> Any:
    """A read-only admin column showing `obj.<attribute>` as indented JSON: stored JSON
    text (`stored`), or a value a JSONField decoded."""

    @admin.display(description=description)
    def column(self: Any, obj: Any) -> SafeString | str:
        value = getattr(obj, attribute)
        return pretty_json(value) if stored else _json_field(value)

    return column


class EstimatedCountPaginator(Paginator):
    """Count an unfiltered big PostgreSQL table from the planner's statistics.

    `count(*)` of a million steps or versions reads the whole table on every page view;
    the pager only needs an approximate number of pages there. Filtered lists, small
    tables and SQLite are counted exactly.
    """

    @cached_property
    def count(self) -> int:
        object_list = self.object_list
        if isinstance(object_list, QuerySet) and not object_list.query.where:
            connection = connections[object_list.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                        [object_list.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] > _ESTIMATE_ABOVE:
                    return int(row[0])
        return super().count


class BoundedChangeList(ChangeList):
    """A changelist whose filters refuse numbers too big for a date (or the database).

    Django turns a malformed lookup (`?last_activity_at__year=abc`) into "incorrect
    parameters" and a redirect, but lets OverflowError (`?…__year=99999999999999999999`)
    escape as a 500. No query string may make a page answer 500.
    """

    def get_filters(self, request: HttpRequest) -> Any:
        # PostgreSQL refuses a NUL in any string it is sent (a 500 at the query).
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            raise IncorrectLookupParameters("a NUL character in the query string")
        try:
            return super().get_filters(request)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        try:
            return super().get_queryset(request, exclude_parameters)
        except OverflowError as exc:
            raise IncorrectLookupParameters(exc) from exc


class StaffViewMixin:
    """Any active staff member may view; permissions to change are decided per model.

    Every changelist of the app is a BoundedChangeList."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BoundedChangeList

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)


class NoEditsMixin:
    """Machine-written rows: nobody adds, changes or deletes them in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(NoEditsMixin, StaffViewMixin, admin.ModelAdmin):
    """Machine-written rows, viewable by staff."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False


class ReadOnlyInline(NoEditsMixin, StaffViewMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True


# --- agents -----------------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    """The operator's status (running, interrupted, …), by the same QuerySet methods as
    the dashboard and `resume_agents`, not by the stored lifecycle state."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in Agent.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in Agent.Status.values:
            return queryset.with_status(self.value())  # type: ignore[attr-defined]  # the admin's queryset is an AgentQuerySet
        return queryset


class StepInline(ReadOnlyInline):
    """The agent's latest STEP_INLINE_LIMIT steps (an agent may have thousands)."""

    model = Step
    verbose_name_plural = f"steps (latest {STEP_INLINE_LIMIT}; all under “all steps” above)"
    fields = ("key", "status", "action", "version", "started_at", "ended_at")
    readonly_fields = fields
    ordering = ("number", "key")

    action = json_column("action_json", "action")


# A resume attempt's columns, on the agent's page and in the attempts' own list.
ATTEMPT_COLUMNS = (
    "number",
    "outcome",
    "requested_by",
    "worker",
    "pid",
    "started_at",
    "ended_at",
    "exit_code",
)


class AgentResumeAttemptInline(ReadOnlyInline):
    model = ResumeAttempt
    fk_name = "agent"
    fields = (*ATTEMPT_COLUMNS, "error")
    readonly_fields = fields


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = ("resume_entry_point",)

    def clean_resume_entry_point(self) -> str:
        value = self.cleaned_data["resume_entry_point"].strip()
        if value:
            try:
                check_entry_point(value)
            except ValidationError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return value


@admin.register(Agent)
class AgentAdmin(StaffViewMixin, admin.ModelAdmin):
    """Agents as operators see them. Everything but the resume entry point is read-only:
    the rest is the store's projection of the agent's keys and lease."""

    form = AgentForm
    list_display = (
        "agent_id",
        "namespace",
        "status",
        "task_summary",
        "steps_done",
        "steps_pending",
        "steps_failed",
        "last_activity_at",
        "lease_host",
        "lease_pid",
    )
    list_filter = (StatusFilter, "namespace", "state")
    search_fields = ("agent_id", "task_summary")
    date_hierarchy = "last_activity_at"
    ordering = ("-last_activity_at",)
    list_select_related = ()  # every column is on the agent row
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ("resume_agents", "cancel_agents", "pause_agents", "unpause_agents")
    inlines = (StepInline, AgentResumeAttemptInline)
    fieldsets = (
        (
            None,
            {"fields": ("namespace", "agent_id", "status", "state", "task_summary", "all_steps")},
        ),
        (
            "Progress",
            {
                "fields": (
                    "steps_done",
                    "steps_pending",
                    "steps_failed",
                    "last_step",
                    "created_at",
                    "last_activity_at",
                    "last_commit_ts",
                    "finished_at",
                    "error",
                )
            },
        ),
        ("Lease", {"fields": ("lease_owner", "lease_host", "lease_pid", "lease_expires_at")}),
        ("Resume", {"fields": ("resume_entry_point",)}),
    )
    # Everything shown is written by the store, except the resume entry point.
    readonly_fields = tuple(
        name  # type: ignore[misc]  # the stubs allow nested field groups; these are flat names
        for _title, options in fieldsets
        for name in options["fields"]
        if name != "resume_entry_point"
    )

    def get_queryset(self, request: HttpRequest) -> AgentQuerySet:
        return super().get_queryset(request).annotate_status()  # type: ignore[attr-defined]  # the admin's queryset is an AgentQuerySet

    @admin.display(description="status", ordering="status_value")
    def status(self, obj: Agent) -> str:
        return str(getattr(obj, "status_value", ""))

    @admin.display(description="all steps")
    def all_steps(self, obj: Agent) -> SafeString:
        url = reverse("admin:agents_step_changelist")
        return format_html(
            '<a href="{}?agent__id__exact={}">{} step(s)</a>',
            url,
            obj.pk,
            obj.steps_done + obj.steps_pending + obj.steps_failed,
        )

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, StepInline) and obj is not None and obj.pk:
            latest = Step.objects.filter(agent=obj).order_by("-number", "-key")
            kwargs["queryset"] = (
                kwargs["queryset"]
                .filter(pk__in=Subquery(latest.values("pk")[:STEP_INLINE_LIMIT]))
                .with_values()
            )
        return kwargs

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # agents come into being by their first commit

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # pruning (with its history) is a command, not a click

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        """Save the one editable field through the store, which locks the agent's row."""
        if "resume_entry_point" not in form.changed_data:
            return
        register_entry_point(
            namespace=obj.namespace, agent_id=obj.agent_id, entry_point=obj.resume_entry_point
        )

    @admin.action(description="Cancel selected agents", permissions=["change"])
    def cancel_agents(self, request: HttpRequest, queryset: AgentQuerySet) -> None:
        agent_pks = list(queryset.order_by().values_list("pk", flat=True))
        cancelled = sum(
            operator.cancel_agents(
                agent_pks=agent_pks,
                actor=request.user.get_username(),
                source=ResumeRequest.Source.ADMIN,
            )
        )
        self.message_user(
            request,
            f"{cancelled} of {len(agent_pks)} selected agent(s) cancelled "
            f"({len(agent_pks) - cancelled} skipped: already finished or waiting for a decision)",
            messages.SUCCESS if cancelled else messages.WARNING,
        )

    @admin.action(description="Pause selected agents", permissions=["change"])
    def pause_agents(self, request: HttpRequest, queryset: AgentQuerySet) -> None:
        self._each(request, queryset, operator.pause_agent, "paused")

    @admin.action(description="Unpause selected agents", permissions=["change"])
    def unpause_agents(self, request: HttpRequest, queryset: AgentQuerySet) -> None:
        self._each(request, queryset, operator.unpause_agent, "unpaused")

    def _each(self, request: HttpRequest, queryset: AgentQuerySet, act: Any, done: str) -> None:
        """Apply one control to each agent, each in its own transaction with its record."""
        changed, refused = 0, []
        for namespace, agent_id in queryset.order_by("pk").values_list("namespace", "agent_id"):
            try:
                act(
                    namespace=namespace,
                    agent_id=agent_id,
                    actor=request.user.get_username(),
                    source=ResumeRequest.Source.ADMIN,
                )
                changed += 1
            except (NotFoundError, OperatorActionError):
                refused.append(agent_id)
        text = f"{changed} agent(s) {done}"
        if refused:
            text += f"; {len(refused)} skipped (not in a status that allows it)"
        self.message_user(request, text, messages.SUCCESS if changed else messages.WARNING)

    @admin.action(description="Resume selected agents", permissions=["change"])
    def resume_agents(self, request: HttpRequest, queryset: AgentQuerySet) -> None:
        agent_pks = list(queryset.order_by().values_list("pk", flat=True))
        result = resume_selected(
            agent_pks, source=ResumeRequest.Source.ADMIN, requested_by=request.user.get_username()
        )
        text = f"{result.queued} of {len(agent_pks)} selected agent(s) queued for resume "
        text += f"({result.skipped} skipped: not interrupted or failed, or already queued)"
        if result.needs_review:
            text += f"; {len(result.needs_review)} skipped, needs review: "
            text += ", ".join(str(hold) for hold in result.needs_review[:20])
        self.message_user(request, text, messages.SUCCESS if result.queued else messages.WARNING)


# --- the projection: tasks and steps ------------------------------------------------------


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin):
    list_display = ("agent", "summary", "version", "written_at")
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "summary")
    ordering = ("-id",)
    fields = ("agent", "summary", "version", "written_at", "value")
    readonly_fields = ("value",)

    value = json_column("value_json", "value")


class InDoubtFilter(admin.SimpleListFilter):
    """In-doubt steps (`StepQuerySet.in_doubt`), by the same rule as the agent page."""

    title = "in doubt"
    parameter_name = "in_doubt"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "In doubt"), ("review", "In doubt, needs review")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Step]) -> QuerySet[Step]:
        steps: StepQuerySet = queryset  # type: ignore[assignment]  # the admin's StepQuerySet
        if self.value() == "yes":
            return steps.in_doubt()
        if self.value() == "review":
            return steps.needing_review()
        return queryset


STEP_COLUMNS = ("agent", "key", "number", "status", "policy", "version", "started_at", "ended_at")


@admin.register(Step)
class StepAdmin(ReadOnlyAdmin):
    list_display = STEP_COLUMNS
    list_filter = (InDoubtFilter, "status", "policy")
    actions = ["run_again"]
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "key")
    ordering = ("-id",)  # the primary key's index; started_at has none (a million rows)
    readonly_fields = ("action", "result", "error")
    fields = STEP_COLUMNS + readonly_fields

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff)

    @admin.action(description="Run selected in-doubt steps again", permissions=["decide"])
    def run_again(self, request: HttpRequest, queryset: QuerySet[Step]) -> None:
        """The decision "run again" for each step (agents/store/decisions.py), each in its
        own transaction with its audit record; marking done or failed needs the agent page
        (a result or an error to enter)."""
        decided, refused = 0, []
        for step in queryset.select_related("agent").order_by("pk"):
            try:
                decide_step(
                    namespace=step.agent.namespace,
                    agent_id=step.agent.agent_id,
                    key=step.key,
                    decision="retry",
                    actor=request.user.get_username(),
                    reason="run again from the admin",
                )
                decided += 1
            except (NotFoundError, OperatorActionError):
                refused.append(f"{step.agent} {step.key}")
        text = f"{decided} step(s) will run again"
        if refused:
            text += f"; {len(refused)} skipped (not in doubt): " + ", ".join(refused[:20])
        self.message_user(request, text, messages.SUCCESS if decided else messages.WARNING)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Step]:
        return super().get_queryset(request).with_values()  # type: ignore[attr-defined]  # a StepQuerySet

    action = json_column("action_json", "action")

    result = json_column("result_json", "result")
    error = json_column("error_json", "error")


# --- the store's history ----------------------------------------------------------------


class VersionInline(ReadOnlyInline):
    model = Version
    fields = ("agent", "key", "version", "deleted")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Version]:
        return super().get_queryset(request).select_related("agent")


@admin.register(Commit)
class CommitAdmin(ReadOnlyAdmin):
    list_display = ("commit_ts", "txn_id", "namespace", "committed_at", "op_count")
    list_filter = ("namespace",)
    search_fields = ("=id", "namespace")
    date_hierarchy = "committed_at"
    ordering = ("-id",)
    fields = ("commit_ts", "txn_id", "namespace", "committed_at", "op_count")
    readonly_fields = ("commit_ts",)
    inlines = (VersionInline,)

    @admin.display(description="commit_ts", ordering="id")
    def commit_ts(self, obj: Commit) -> int:
        return obj.pk


@admin.register(Version)
class VersionAdmin(ReadOnlyAdmin):
    list_display = ("agent", "key", "version", "commit_ts", "deleted")
    list_filter = ("deleted",)
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "key")
    ordering = ("-commit_id", "-id")
    fields = ("agent", "key", "version", "commit", "deleted", "value")
    readonly_fields = ("value",)

    @admin.display(description="commit_ts", ordering="commit_id")
    def commit_ts(self, obj: Version) -> int:
        return obj.commit_id

    value = json_column("value_json", "value")


@admin.register(Record)
class RecordAdmin(ReadOnlyAdmin):
    list_display = ("agent", "key", "version", "commit_ts", "deleted", "updated_at")
    list_filter = ("deleted",)
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "key")
    ordering = ("-id",)
    fields = ("agent", "key", "version", "commit_ts", "deleted", "updated_at", "value")
    readonly_fields = ("value",)

    value = json_column("value_json", "value")

    def get_queryset(self, request: HttpRequest) -> RecordQuerySet:
        # A record's value is its version's (docs/architecture.md, "Values stored once").
        return super().get_queryset(request).with_values()  # type: ignore[attr-defined]  # a RecordQuerySet


# --- resume -----------------------------------------------------------------------------


class RequestAttemptInline(ReadOnlyInline):
    model = ResumeAttempt
    fk_name = "request"
    fields = ("number", "outcome", "worker", "host", "pid", "started_at", "ended_at", "error")
    readonly_fields = fields


@admin.register(ResumeRequest)
class ResumeRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "agent",
        "status",
        "source",
        "requested_by",
        "requested_at",
        "attempts",
        "claimed_by",
        "finished_at",
    )
    list_filter = ("status", "source")
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "requested_by")
    date_hierarchy = "requested_at"
    ordering = ("-requested_at", "-id")
    inlines = (RequestAttemptInline,)


@admin.register(ResumeAttempt)
class ResumeAttemptAdmin(ReadOnlyAdmin):
    list_display = ("agent", *ATTEMPT_COLUMNS)
    list_filter = ("outcome",)
    list_select_related = ("agent",)
    search_fields = ("agent__agent_id", "worker", "requested_by")
    date_hierarchy = "started_at"
    ordering = ("-started_at", "-id")


# --- the audit log ------------------------------------------------------------------------


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    """The audit log (docs/operations.md, "Audit log"): written by the store, read here."""

    list_display = ("at", "actor", "action", "agent_link", "reason_short")
    list_filter = ("action",)
    search_fields = ("actor", "agent_name", "namespace", "reason")
    date_hierarchy = "at"
    ordering = ("-at", "-id")
    fields = (
        "at",
        "actor",
        "action",
        "agent",
        "namespace",
        "agent_name",
        "reason",
        "before_json",
        "after_json",
        "detail_json",
    )
    readonly_fields = fields
    list_select_related = ("agent",)

    @admin.display(description="agent", ordering="agent_name")
    def agent_link(self, obj: OperatorAction) -> SafeString | str:
        if not obj.agent_name:
            return "—"
        label = (
            obj.agent_name if obj.namespace == "default" else f"{obj.namespace}/{obj.agent_name}"
        )
        if obj.agent_id is None:
            return label
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:agents_agent_change", args=[obj.agent_id]), label
        )

    @admin.display(description="reason")
    def reason_short(self, obj: OperatorAction) -> str:
        return obj.reason[:80] + ("…" if len(obj.reason) > 80 else "")

    before_json = json_column("before", "before", stored=False)
    after_json = json_column("after", "after", stored=False)
    detail_json = json_column("detail", "detail", stored=False)


from statehouse_agents import admin_tokens  # noqa: E402, F401  (API tokens)
