"""The dashboard's read helpers: status counts agree with the QuerySet, keyset pages cover
every agent once, diffs, value previews and the overview charts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone
from statehouse_agents import dashboard
from statehouse_agents.dashboard import Cursor, ShownValue, diff_lines
from statehouse_agents.models import Agent, Commit

from statehouse import Statehouse
from tests.factories import make_agent, make_agents

STATUSES = ["running", "interrupted", "resuming", "completed", "failed", "idle"]


@pytest.fixture
def one_of_each(sh: Statehouse) -> dict[str, Agent]:
    return {status: make_agent(sh, f"a-{status}", status=status) for status in STATUSES}


def test_status_counts_agree_with_queryset_methods_and_annotation(
    one_of_each: dict[str, Agent],
) -> None:
    # Edge cases of the lease: a resume whose worker died (lease expired) is interrupted
    # again; an idle agent with a live lease from another key's writer is running.
    Agent.objects.filter(pk=one_of_each["resuming"].pk).update(
        lease_owner="dead-worker", lease_expires_at=timezone.now() - timedelta(minutes=5)
    )
    stale = make_agent(Statehouse(), "a-stale-resume", status="resuming")
    Agent.objects.filter(pk=stale.pk).update(
        lease_owner="live-worker", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    counts = Agent.objects.status_counts()
    assert set(counts) == set(Agent.Status.values)
    for status in STATUSES:
        assert counts[status] == Agent.objects.with_status(status).count(), status
    annotated = Agent.objects.annotate_status()
    for status in STATUSES:
        assert counts[status] == annotated.filter(status_value=status).count(), status
    assert sum(counts.values()) == Agent.objects.count()
    assert counts["interrupted"] == 2 and counts["resuming"] == 1


def test_status_counts_is_one_query(
    one_of_each: dict[str, Agent], django_assert_num_queries: object
) -> None:
    with django_assert_num_queries(1):  # type: ignore[operator]
        Agent.objects.filter(namespace="default").status_counts()


def _walk(params: str) -> list[str]:
    """Follow "next" links from the first page; return the agent ids in order."""
    seen: list[str] = []
    query = QueryDict(params)
    for _ in range(100):
        page = dashboard.agent_list(query)
        assert page.status_code == 200, page.problem
        seen += [a.agent_id for a in page.agents]
        if not page.next_url:
            return seen
        query = QueryDict(page.next_url.split("?", 1)[1])
    raise AssertionError("pagination did not end")


def test_keyset_pages_cover_every_agent_once_in_both_orders(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statehouse_agents.dashboard.list_page.PAGE_SIZE", 7)
    agents = make_agents(30)  # one transaction: many share the same last activity
    # Ties on last_activity_at are broken by pk, so no agent is skipped or repeated.
    assert len({a.last_activity_at for a in agents}) < len(agents)
    newest = _walk("")
    oldest = _walk("sort=oldest")
    assert sorted(newest) == sorted(a.agent_id for a in agents)
    assert oldest == list(reversed(newest))


def test_keyset_previous_page_returns_the_same_rows(
    sh: Statehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statehouse_agents.dashboard.list_page.PAGE_SIZE", 5)
    make_agents(12)
    first = dashboard.agent_list(QueryDict(""))
    second = dashboard.agent_list(QueryDict(first.next_url.split("?", 1)[1]))
    assert second.prev_url
    back = dashboard.agent_list(QueryDict(second.prev_url.split("?", 1)[1]))
    assert [a.pk for a in back.agents] == [a.pk for a in first.agents]
    assert not first.prev_url


def test_list_counts_follow_search_and_status(sh: Statehouse) -> None:
    make_agent(sh, "match-1", task={"task": "Find the needle"})
    make_agent(sh, "match-2", status="completed", task={"task": "another needle"})
    make_agent(sh, "nope", task={"task": "hay"})
    page = dashboard.agent_list(QueryDict("q=needle&status=interrupted"))
    tabs = {tab["status"]: tab["count"] for tab in page.tabs}
    assert tabs["interrupted"] == 1 and tabs["completed"] == 1 and tabs[""] == 2
    assert [a.agent_id for a in page.agents] == ["match-1"]
    assert page.total == 1
    by_id = dashboard.agent_list(QueryDict("q=NOPE"))
    assert [a.agent_id for a in by_id.agents] == ["nope"]


def test_cursor_round_trips_and_rejects_garbage() -> None:
    at = timezone.now()
    cursor = Cursor(at=at, pk=42)
    assert Cursor.decode(cursor.encode()) == cursor
    for text in ["", "abc", "1_", "_1", "1-2", "12_x", "9" * 30 + "_1"]:
        with pytest.raises(ValueError):
            Cursor.decode(text)


def test_diff_lines_marks_added_removed_and_context() -> None:
    old = "\n".join(f"line {i}" for i in range(20))
    new = old.replace("line 3", "line three") + "\nline 20"
    rows = diff_lines(old, new)
    kinds = [(r.kind, r.text) for r in rows if r.kind != "context"]
    assert ("removed", "line 3") in kinds and ("added", "line three") in kinds
    assert ("added", "line 20") in kinds
    assert any(r.kind == "gap" for r in rows)  # unchanged middle collapsed
    removed = next(r for r in rows if r.kind == "removed")
    assert (removed.old, removed.new) == (4, None)


def test_diff_of_pretty_json_is_independent_of_key_order() -> None:
    a = dashboard.pretty_json('{"b": 1, "a": 2}', sort_keys=True)
    b = dashboard.pretty_json('{"a": 2, "b": 1}', sort_keys=True)
    assert diff_lines(a, b) == []


def test_shown_value_truncates_long_values_only() -> None:
    short = ShownValue.of('{"a": 1}')
    assert not short.truncated and short.full == ""
    long = ShownValue.of("[" + ",".join(str(i) for i in range(100)) + "]")
    assert long.truncated and long.inline_full and "99" in long.full and "99" not in long.preview
    huge = ShownValue.of('"' + "x" * (dashboard.INLINE_FULL_LIMIT + 10) + '"')
    assert huge.truncated and not huge.inline_full and huge.full == ""
    assert ShownValue.of(None).preview == ""


def test_overview_counts_and_hourly_charts(sh: Statehouse) -> None:
    make_agent(sh, "one")
    make_agent(sh, "two", status="completed")
    data = dashboard.overview()
    counts = dict(data["counts"])
    assert counts["interrupted"] == 1 and counts["completed"] == 1 and data["total"] == 2
    commits, interruptions = data["charts"]
    assert len(commits.bars) == 24
    assert commits.total == Commit.objects.count()
    assert interruptions.total == 1  # the interrupted agent, at the hour it stopped
    assert [a.agent_id for a in data["interrupted"]] == ["one"]
    assert all(0 <= bar.height <= commits.height for bar in commits.bars)


def test_key_history_unknown_version_and_bad_input(sh: Statehouse) -> None:
    agent = make_agent(sh, "hist", status="completed")
    found = dashboard.agent_for_page(agent.pk)
    assert found is not None
    ok = dashboard.key_history(found, QueryDict("key=task"))
    assert ok.status_code == 200 and ok.new is not None and ok.new.version == 1 and not ok.old
    missing = dashboard.key_history(found, QueryDict("key=task&b=5"))
    assert missing.status_code == 404 and "no version 5" in missing.problem[0]
    bad = dashboard.key_history(found, QueryDict("key=task&a=x"))
    assert bad.status_code == 400
