"""Page-level reads of the operator's dashboard, so that the views stay thin.

Every function here runs a fixed number of queries whatever the number of rows (agents,
steps, keys, versions): lists are sliced or paginated, and related rows come from one
query each. Nothing here writes; actions go through `statehouse_agents.store.resume`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Page, Paginator
from django.db import connections, router
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone
from statehouse_agents.models import (
    Agent,
    AgentQuerySet,
    Commit,
    Record,
    ResumeRequest,
    Step,
    Version,
)

PAGE_SIZE = 50
MAX_SEARCH = 200
RESUMABLE = frozenset({Agent.Status.INTERRUPTED.value, Agent.Status.FAILED.value})
# Tabs of the agent list, interrupted first: what an operator most often looks for.
TAB_ORDER = (
    Agent.Status.INTERRUPTED,
    Agent.Status.RUNNING,
    Agent.Status.RESUMING,
    Agent.Status.FAILED,
    Agent.Status.COMPLETED,
    Agent.Status.IDLE,
)
STEPS_SHOWN = 50
KEYS_PER_PAGE = 50
VERSIONS_PER_PAGE = 50
REPLAY_PER_PAGE = 50
PREVIEW_CHARS = 1200
PREVIEW_LINES = 24
INLINE_FULL_LIMIT = 64 * 1024  # larger values are shown whole on the history page only
DIFF_MAX_LINES = 20_000


# --- JSON helpers ----------------------------------------------------------------------


def pretty_json(value_json: str | None, *, sort_keys: bool = False) -> str:
    """Indented JSON text of a stored value ("" for a tombstone)."""
    if value_json is None:
        return ""
    try:
        return json.dumps(json.loads(value_json), indent=2, ensure_ascii=False, sort_keys=sort_keys)
    except ValueError:
        return value_json


@dataclass(frozen=True)
class ShownValue:
    """A value as the dashboard shows it: a preview, and the whole text when it is small."""

    preview: str
    full: str
    truncated: bool
    inline_full: bool
    size: int

    @classmethod
    def of(cls, value_json: str | None) -> ShownValue:
        text = pretty_json(value_json)
        lines = text.splitlines()
        preview = "\n".join(lines[:PREVIEW_LINES])
        if len(preview) > PREVIEW_CHARS:
            preview = preview[:PREVIEW_CHARS]
        truncated = preview != text
        inline = len(text) <= INLINE_FULL_LIMIT
        return cls(
            preview=preview + ("\n…" if truncated else ""),
            full=text if truncated and inline else "",
            truncated=truncated,
            inline_full=inline,
            size=len(text),
        )


def one_line(value_json: str | None, limit: int = 160) -> str:
    if value_json is None:
        return ""
    text = " ".join(value_json.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- overview --------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    caption: str
    bars: list[Bar]
    total: int
    peak: int
    start: datetime
    end: datetime
    width: int = 480
    height: int = 120


def _hourly_chart(
    title: str, caption: str, rows: Iterable[tuple[datetime, int]], since: datetime, hours: int
) -> Chart:
    buckets = [0] * hours
    for hour, n in rows:
        if hour is None:
            continue
        if hour.tzinfo is None:
            hour = hour.replace(tzinfo=UTC)
        index = int((hour - since).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index] += n
    peak = max(buckets) or 1
    width, height, gap = 480, 120, 2
    slot = width / hours
    bars = []
    for index, n in enumerate(buckets):
        h = round(n / peak * (height - 4), 1) if n else 0.0
        start = since + timedelta(hours=index)
        bars.append(
            Bar(
                x=round(index * slot + gap / 2, 1),
                y=round(height - h, 1),
                width=round(slot - gap, 1),
                height=h,
                count=n,
                label=f"{start:%H:00} to {start + timedelta(hours=1):%H:00} UTC: {n}",
            )
        )
    return Chart(
        title=title,
        caption=caption,
        bars=bars,
        total=sum(buckets),
        peak=max(buckets),
        start=since,
        end=since + timedelta(hours=hours),
    )


def _per_hour(queryset: Any, field_name: str, since: datetime) -> list[tuple[datetime, int]]:
    return list(
        queryset.filter(**{f"{field_name}__gte": since})
        .annotate(hour=TruncHour(field_name))
        .order_by()
        .values("hour")
        .annotate(n=Count("pk"))
        .values_list("hour", "n")
    )


def overview(*, hours: int = 24) -> dict[str, Any]:
    """Counts per status, recently interrupted agents, latest writes, hourly charts."""
    now = timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    counts = Agent.objects.status_counts()
    commits = _hourly_chart(
        "Commits",
        f"Committed transactions per hour, last {hours} hours.",
        _per_hour(Commit.objects.all(), "committed_at", since),
        since,
        hours,
    )
    # Interruptions are not recorded as events, so this approximates them: resume requests
    # created in each hour (an operator or script saw the agent interrupted or failed), plus
    # agents interrupted now, counted at the hour of their last activity (when they stopped).
    interruptions = _hourly_chart(
        "Interruptions",
        f"Resume requests created, plus agents interrupted now by the hour of their last "
        f"activity, per hour, last {hours} hours.",
        _per_hour(ResumeRequest.objects.all(), "requested_at", since)
        + _per_hour(Agent.objects.interrupted(), "last_activity_at", since),
        since,
        hours,
    )
    return {
        "counts": [(status, counts[status]) for status in TAB_ORDER],
        "total": sum(counts.values()),
        "interrupted": list(
            Agent.objects.interrupted().annotate_status().order_by("-last_activity_at", "-pk")[:10]
        ),
        "activity": list(Version.objects.select_related("agent", "commit").order_by("-pk")[:15]),
        "charts": [commits, interruptions],
    }


# --- agent list ------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Cursor:
    """A position in the list ordered by (last activity, pk): keyset ("seek") pagination."""

    at: datetime
    pk: int

    def encode(self) -> str:
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}_{self.pk}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        micros, sep, pk = text.partition("_")
        if not sep or not micros.lstrip("-").isdigit() or not pk.isdigit():
            raise ValueError(f"{text!r} is not a list position")
        try:
            at = _EPOCH + timedelta(microseconds=int(micros))
        except OverflowError as exc:
            raise ValueError(f"{text!r} is not a list position") from exc
        return cls(at=at, pk=int(pk))

    @classmethod
    def of(cls, agent: Agent) -> Cursor:
        return cls(at=agent.last_activity_at, pk=agent.pk)


class CursorField(forms.CharField):
    def to_python(self, value: Any) -> Cursor | None:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return None
        if len(text) > 60:
            raise forms.ValidationError("This is not a position in the list.")
        try:
            return Cursor.decode(text)
        except ValueError as exc:
            raise forms.ValidationError(
                "This is not a position in the list; start again from the first page."
            ) from exc


class AgentListForm(forms.Form):
    """The list's filters, from the query string. Every field is optional."""

    status = forms.ChoiceField(
        required=False,
        choices=[("", "All")] + [(s.value, s.label) for s in TAB_ORDER],
        error_messages={"invalid_choice": "Unknown status %(value)s."},
    )
    q = forms.CharField(
        required=False,
        max_length=MAX_SEARCH,
        strip=True,
        label="Search",
        error_messages={
            "max_length": f"Search for at most {MAX_SEARCH} characters "
            "(an agent id or words of its task)."
        },
    )
    namespace = forms.CharField(required=False, max_length=255)
    sort = forms.ChoiceField(
        required=False,
        choices=[("newest", "Newest activity first"), ("oldest", "Oldest activity first")],
        error_messages={"invalid_choice": "Unknown sort order %(value)s."},
    )
    after = CursorField(required=False)
    before = CursorField(required=False)


@dataclass
class AgentListPage:
    """Everything the agent list template needs; `problem` is set when the input was bad."""

    form: AgentListForm
    status_code: int = 200
    problem: list[str] = field(default_factory=list)
    status: str = ""
    q: str = ""
    namespace: str = ""
    sort: str = "newest"
    namespaces: list[str] = field(default_factory=list)
    tabs: list[dict[str, Any]] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    total: int = 0
    checked: frozenset[int] = frozenset()
    next_url: str = ""
    prev_url: str = ""
    first_url: str = ""
    table_url: str = ""
    page_url: str = ""

    @property
    def resumable_count(self) -> int:
        return sum(1 for agent in self.agents if agent.status_value in RESUMABLE)


def _filter_query(**params: str) -> str:
    kept = {name: value for name, value in params.items() if value}
    return urlencode(kept)


def _list_url(**params: str) -> str:
    query = _filter_query(**params)
    return reverse("agents:list") + (f"?{query}" if query else "")


def checked_ids(values: Iterable[str]) -> frozenset[int]:
    return frozenset(int(v) for v in values if v.isdigit() and len(v) < 19)


def _namespaces(*, limit: int) -> list[str]:
    """The first `limit` distinct namespaces, in order, by skipping through an index.

    `SELECT DISTINCT namespace` reads every agent (a sequential scan, ~20 ms at 100,000
    agents, on every list request and every 3 s poll). This walks the `agent_identity`
    (namespace, agent_id) index instead, one `MIN(namespace) ... > previous` probe per
    namespace: the same rows in the same order, in well under a millisecond. Plain SQL
    that PostgreSQL and SQLite both run.
    """
    connection = connections[router.db_for_read(Agent)]
    table = connection.ops.quote_name(Agent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE ns(namespace) AS (
                SELECT MIN(namespace) FROM {table}
                UNION ALL
                SELECT (SELECT MIN(namespace) FROM {table} WHERE namespace > ns.namespace)
                FROM ns WHERE ns.namespace IS NOT NULL
            )
            SELECT namespace FROM ns WHERE namespace IS NOT NULL LIMIT %s
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def agent_list(params: Mapping[str, Any]) -> AgentListPage:
    """Build the agent list: tab counts (one aggregate), then one page by keyset.

    No other count runs: the total of the chosen tab comes from the same aggregate.
    """
    getlist = getattr(params, "getlist", None)
    checked = checked_ids(getlist("agent") if getlist else [])
    form = AgentListForm(params)
    namespaces = _namespaces(limit=200)
    page = AgentListPage(form=form, namespaces=namespaces, checked=checked)
    if not form.is_valid():
        page.status_code = 400
        page.problem = [str(e) for errors in form.errors.values() for e in errors]
        page.first_url = reverse("agents:list")
        return page
    data = form.cleaned_data
    page.status, page.q, page.namespace = data["status"], data["q"], data["namespace"]
    page.sort = data["sort"] or "newest"
    filters = {"q": page.q, "namespace": page.namespace}
    sort_param = "" if page.sort == "newest" else page.sort
    if (
        page.namespace
        and page.namespace not in namespaces
        and not Agent.objects.filter(namespace=page.namespace).exists()
    ):
        page.status_code = 404
        page.problem = [f"There is no agent in namespace {page.namespace!r}."]
        page.first_url = reverse("agents:list")
        return page

    base: AgentQuerySet = Agent.objects.in_namespace(page.namespace or None)
    if page.q:
        base = base.filter(Q(agent_id__icontains=page.q) | Q(task_summary__icontains=page.q))
    counts = base.status_counts()
    page.tabs = [
        {
            "status": status.value,
            "label": status.label,
            "count": counts[status.value],
            "url": _list_url(status=status.value, sort=sort_param, **filters),
            "current": page.status == status.value,
        }
        for status in TAB_ORDER
    ] + [
        {
            "status": "",
            "label": "All",
            "count": sum(counts.values()),
            "url": _list_url(sort=sort_param, **filters),
            "current": not page.status,
        }
    ]
    page.total = counts[page.status] if page.status else sum(counts.values())

    rows = base.with_status(page.status) if page.status else base
    newest = page.sort == "newest"
    after, before = data["after"], data["before"]
    agents, has_prev, has_next = _seek(rows, newest=newest, after=after, before=before)
    page.agents = agents
    keep = {"status": page.status, "sort": sort_param, **filters}
    page.first_url = _list_url(**keep)
    if agents and has_next:
        page.next_url = _list_url(after=Cursor.of(agents[-1]).encode(), **keep)
    if agents and has_prev:
        page.prev_url = _list_url(before=Cursor.of(agents[0]).encode(), **keep)
    position = {"after": after.encode()} if after else {}
    if before:
        position = {"before": before.encode()}
    page.page_url = _list_url(**keep, **position)
    page.table_url = page.page_url
    return page


def _seek(
    rows: AgentQuerySet, *, newest: bool, after: Cursor | None, before: Cursor | None
) -> tuple[list[Agent], bool, bool]:
    """One page of `rows` after (or before) a cursor; return (agents, has_prev, has_next).

    Seeking by the indexed (last_activity_at, pk) ordering costs the same on page 1 and on
    page 2,000: no OFFSET, no count.
    """
    backwards = before is not None
    cursor = before if backwards else after
    # Going forward in "newest first" order, or backward in "oldest first", means older.
    older = newest != backwards
    op = "lt" if older else "gt"
    ordering = ["-last_activity_at", "-pk"] if older else ["last_activity_at", "pk"]
    if cursor is not None:
        bound = "lte" if older else "gte"
        rows = rows.filter(
            Q(**{f"last_activity_at__{bound}": cursor.at}),
            Q(**{f"last_activity_at__{op}": cursor.at})
            | Q(last_activity_at=cursor.at, **{f"pk__{op}": cursor.pk}),
        )
    found = list(rows.annotate_status().order_by(*ordering)[: PAGE_SIZE + 1])
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    if backwards:
        found.reverse()
        return found, more, True
    return found, cursor is not None, more


# --- agent page ------------------------------------------------------------------------


def duration_text(delta: timedelta | None) -> str:
    """A short human duration: "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min"."""
    if delta is None:
        return ""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


@dataclass(frozen=True)
class TimelineStep:
    step: Step
    action: str
    result: str
    error: str
    duration: str
    running_for: str

    @property
    def status(self) -> str:
        return self.step.status


def _json_text(value_json: str) -> str:
    """Pretty JSON for display; a plain string (an error message, say) shown as itself."""
    if not value_json:
        return ""
    if value_json.startswith('"'):
        try:
            text = json.loads(value_json)
        except ValueError:
            return value_json
        if isinstance(text, str):
            return text
    return pretty_json(value_json)


def agent_live(agent: Agent) -> dict[str, Any]:
    """The parts of the agent page that change while it runs: status, lease, steps, resumes."""
    total_steps = agent.steps_done + agent.steps_pending + agent.steps_failed
    steps = list(Step.objects.filter(agent=agent).order_by("-number", "-key")[:STEPS_SHOWN])
    steps.reverse()
    now = timezone.now()
    timeline = [
        TimelineStep(
            step=step,
            action=_json_text(step.action_json),
            result=_json_text(step.result_json),
            error=_json_text(step.error_json),
            duration=duration_text(step.duration),
            running_for="" if step.ended_at else duration_text(now - step.started_at),
        )
        for step in steps
    ]
    attempts = list(agent.resume_attempts.order_by("-started_at", "-id")[:20])
    task = getattr(agent, "task", None) if agent.has_task else None
    return {
        "agent": agent,
        "task": task,
        "task_value": pretty_json(task.value_json) if task else "",
        "timeline": timeline,
        "steps_hidden": max(0, total_steps - len(timeline)),
        "attempts": [(attempt, duration_text(attempt.duration)) for attempt in attempts],
        "requests": list(agent.resume_requests.order_by("-requested_at", "-id")[:10]),
        "resumable": agent.status_value in RESUMABLE,
        "polling": agent.status_value
        in (Agent.Status.RUNNING, Agent.Status.RESUMING, Agent.Status.INTERRUPTED),
        "lease_live": agent.lease_is_live(now),
    }


def agent_for_page(pk: int) -> Agent | None:
    return Agent.objects.filter(pk=pk).annotate_status().select_related("task").first()


def agent_detail(agent: Agent, *, keys_page: str | None) -> dict[str, Any]:
    records = Paginator(
        Record.objects.filter(agent=agent, deleted=False).order_by("key"), KEYS_PER_PAGE
    )
    page = records.get_page(keys_page)
    keys = [(record, ShownValue.of(record.value_json)) for record in page.object_list]
    return {
        **agent_live(agent),
        "keys": keys,
        "keys_page": page,
    }


# --- key history -------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "context", "added", "removed" or "gap"
    old: int | None
    new: int | None
    text: str

    @property
    def sign(self) -> str:
        return {"added": "+", "removed": "\u2212", "context": " ", "gap": "…"}[self.kind]


def diff_lines(old_text: str, new_text: str, *, context: int = 3) -> list[DiffLine]:
    """Line diff of two texts (difflib), as rows of a table, with `context` lines of context."""
    old, new = old_text.splitlines(), new_text.splitlines()
    rows: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for index, group in enumerate(matcher.get_grouped_opcodes(context)):
        if index:
            rows.append(DiffLine("gap", None, None, ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [
                    DiffLine("context", i + 1, j + 1, old[i])
                    for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
                ]
                continue
            if tag in ("replace", "delete"):
                rows += [DiffLine("removed", i + 1, None, old[i]) for i in range(i1, i2)]
            if tag in ("replace", "insert"):
                rows += [DiffLine("added", None, j + 1, new[j]) for j in range(j1, j2)]
    return rows


class VersionField(forms.IntegerField):
    default_error_messages = {"invalid": "A version is a whole number, such as 3."}


class KeyHistoryForm(forms.Form):
    key = forms.CharField(max_length=255, error_messages={"required": "Name a key (?key=…)."})
    a = VersionField(required=False, min_value=1, max_value=2**31 - 1)
    b = VersionField(required=False, min_value=1, max_value=2**31 - 1)
    page = forms.CharField(required=False, max_length=20)


@dataclass
class KeyHistory:
    agent: Agent
    status_code: int = 200
    problem: list[str] = field(default_factory=list)
    key: str = ""
    versions: Page | None = None
    old: Version | None = None
    new: Version | None = None
    diff: list[DiffLine] = field(default_factory=list)
    diff_note: str = ""
    added: int = 0
    removed: int = 0
    new_value: str = ""
    # For each version listed, the version kept before it (None for the first kept).
    earlier: dict[int, int | None] = field(default_factory=dict)

    @property
    def version_links(self) -> list[dict[str, Any]]:
        if self.versions is None:
            return []
        rows = []
        for version in self.versions.object_list:
            rows.append(
                {
                    "version": version,
                    "diff_url": _history_url(
                        self.agent, self.key, self.earlier[version.version], version.version
                    )
                    if self.earlier.get(version.version)
                    else "",
                    "view_url": _history_url(self.agent, self.key, None, version.version),
                    "selected": self.new is not None and version.pk == self.new.pk,
                    "preview": one_line(version.value_json),
                }
            )
        return rows

    def _page_url(self, number: int) -> str:
        a = self.old.version if self.old else None
        b = self.new.version if self.new else None
        return _history_url(self.agent, self.key, a, b, page=number)

    @property
    def prev_page_url(self) -> str:
        pages = self.versions
        if pages is None or not pages.has_previous():
            return ""
        return self._page_url(pages.previous_page_number())

    @property
    def next_page_url(self) -> str:
        pages = self.versions
        if pages is None or not pages.has_next():
            return ""
        return self._page_url(pages.next_page_number())


def _history_url(
    agent: Agent, key: str, a: int | None, b: int | None, page: int | None = None
) -> str:
    params: dict[str, Any] = {"key": key}
    if a:
        params["a"] = a
    if b:
        params["b"] = b
    if page and page > 1:
        params["page"] = page
    return reverse("agents:key-history", args=[agent.pk]) + "?" + urlencode(params)


def key_history(agent: Agent, params: Mapping[str, Any]) -> KeyHistory:
    """A key's versions (newest first, paginated) and the diff between versions a and b."""
    history = KeyHistory(agent=agent)
    form = KeyHistoryForm(params)
    if not form.is_valid():
        history.status_code = 400
        history.problem = [
            f"{name}: {e}" if name != "__all__" else str(e)
            for name, errors in form.errors.items()
            for e in errors
        ]
        history.key = str(params.get("key", ""))[:255]
        return history
    data = form.cleaned_data
    history.key = data["key"]
    all_versions = Version.objects.filter(agent=agent, key=history.key).select_related("commit")
    paginator = Paginator(all_versions.order_by("-version"), VERSIONS_PER_PAGE)
    history.versions = paginator.get_page(data["page"] or None)
    if paginator.count == 0:
        history.status_code = 404
        history.problem = [f"Agent {agent} has no key {history.key!r}."]
        return history
    listed = list(history.versions.object_list)
    # The newest version is not the count: `prune --versions` deletes superseded versions
    # and keeps the numbers of the others (docs/contract.md §2).
    newest = listed[0].version if history.versions.number == 1 else _newest(all_versions)
    numbers = [v.version for v in listed]
    beyond = _kept_before(all_versions, numbers[-1]) if history.versions.has_next() else None
    history.earlier = dict(zip(numbers, [*numbers[1:], beyond], strict=True))
    b = data["b"] or newest
    # By default, the diff is against the version before b that is still kept.
    if data["a"] is not None:
        a = data["a"]
    else:
        a = history.earlier[b] if b in history.earlier else _kept_before(all_versions, b)
    wanted = {v for v in (a, b) if v}
    chosen = {v.version: v for v in listed if v.version in wanted}
    missing = wanted - chosen.keys()
    if missing:
        chosen.update({v.version: v for v in all_versions.filter(version__in=missing).order_by()})
    unknown = sorted(v for v in wanted if v not in chosen)
    if unknown:
        oldest = _oldest(all_versions)
        kept = (
            f"versions {oldest} to {newest}"
            if paginator.count == newest - oldest + 1
            else f"{paginator.count} versions from {oldest} to {newest}"
        ) + ("" if paginator.count == newest else "; the others were pruned")
        history.status_code = 404
        history.problem = [
            f"Key {history.key!r} has no version {v} (it has {kept})." for v in unknown
        ]
        return history
    history.new = chosen[b]
    history.old = chosen.get(a) if a else None
    history.new_value = pretty_json(history.new.value_json)
    old_text = pretty_json(history.old.value_json, sort_keys=True) if history.old else ""
    new_text = pretty_json(history.new.value_json, sort_keys=True)
    if max(old_text.count("\n"), new_text.count("\n")) > DIFF_MAX_LINES:
        history.diff_note = f"These values have more than {DIFF_MAX_LINES} lines: no diff shown."
    elif history.old is not None:
        history.diff = diff_lines(old_text, new_text)
        history.added = sum(1 for line in history.diff if line.kind == "added")
        history.removed = sum(1 for line in history.diff if line.kind == "removed")
    return history


def _newest(versions: Any) -> int:
    return int(versions.order_by("-version").values_list("version", flat=True)[0])


def _oldest(versions: Any) -> int:
    return int(versions.order_by("version").values_list("version", flat=True)[0])


def _kept_before(versions: Any, version: int) -> int | None:
    """The newest version before `version` still kept (None if there is none)."""
    before = versions.filter(version__lt=version).order_by("-version")
    return before.values_list("version", flat=True).first()  # type: ignore[no-any-return]


# --- replay ------------------------------------------------------------------------------


def replay_page(agent: Agent, page_number: str | None) -> dict[str, Any]:
    """The agent's committed operations in commit order, a page at a time."""
    versions = (
        Version.objects.filter(agent=agent).select_related("commit").order_by("commit_id", "id")
    )
    page = Paginator(versions, REPLAY_PER_PAGE).get_page(page_number)
    return {
        "agent": agent,
        "page": page,
        "rows": [(v, one_line(v.value_json, 200)) for v in page.object_list],
    }
