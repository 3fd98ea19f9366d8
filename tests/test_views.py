"""The operator's dashboard: access rules, htmx fragments, CSRF, escaping, bad input,
query budgets and the resume actions, with data written through the real client."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.timezone import now
from statehouse_agents.models import Agent, ResumeRequest, Version

from statehouse import Statehouse
from tests.factories import make_agent, make_agents, status_of

HTMX = {"HTTP_HX_REQUEST": "true"}

# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def agent(sh: Statehouse) -> Agent:
    """An interrupted agent with a step done and a step pending, and a key with 2 versions."""
    found = make_agent(sh, "agent-1", steps=2)
    with sh.begin_transaction() as tx:
        tx.write(agent_id="agent-1", key="doc", value={"a": 1, "b": 2})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="agent-1", key="doc", value={"a": 1, "b": 3, "c": 4})
    return found


def page_urls(agent: Agent) -> list[str]:
    return [
        reverse("agents:overview"),
        reverse("agents:list"),
        reverse("agents:detail", args=[agent.pk]),
        reverse("agents:key-history", args=[agent.pk]) + "?key=doc",
        reverse("agents:replay", args=[agent.pk]),
    ]


def action_posts(agent: Agent) -> list[tuple[str, dict[str, Any]]]:
    return [
        (reverse("agents:resume", args=[agent.pk]), {}),
        (reverse("agents:bulk-resume"), {"agent": [str(agent.pk)]}),
    ]


# --- access -------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_everywhere(client: Client, agent: Agent) -> None:
    for url in page_urls(agent):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url
    for url, data in action_posts(agent):
        response = client.post(url, data)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not ResumeRequest.objects.exists()


def test_login_page_renders_with_the_dashboard_look(client: Client, db: None) -> None:
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "css/statehouse.css" in html and 'name="username"' in html


def test_login_with_password_then_dashboard(client: Client, agent: Agent) -> None:
    User.objects.create_user("op2", password="a-long-pass-123", is_staff=True)
    response = client.post(
        reverse("login"), {"username": "op2", "password": "a-long-pass-123"}, follow=True
    )
    assert response.status_code == 200
    assert response.request["PATH_INFO"] == reverse("agents:overview")


def test_non_staff_reads_every_page(viewer: Client, agent: Agent) -> None:
    for url in page_urls(agent):
        response = viewer.get(url)
        assert response.status_code == 200, url
        assert b"Resume selected" not in response.content


def test_non_staff_gets_403_on_actions_and_nothing_changes(viewer: Client, agent: Agent) -> None:
    for url, data in action_posts(agent):
        refused = viewer.post(url, data)
        assert refused.status_code == 403
        assert b"This needs staff rights." in refused.content
        assert viewer.post(url, data, **HTMX).status_code == 403
    assert not ResumeRequest.objects.exists()
    assert status_of(agent) == "interrupted"


def test_staff_reads_every_page(staff: Client, agent: Agent) -> None:
    for url in page_urls(agent):
        assert staff.get(url).status_code == 200, url


def test_actions_refuse_get(staff: Client, agent: Agent) -> None:
    for url, _data in action_posts(agent):
        assert staff.get(url).status_code == 405
    assert not ResumeRequest.objects.exists()


def test_post_without_csrf_token_is_refused(agent: Agent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    for url, data in action_posts(agent):
        assert client.post(url, data).status_code == 403
        assert client.post(url, data, **HTMX).status_code == 403
    assert not ResumeRequest.objects.exists()
    assert status_of(agent) == "interrupted"


def test_htmx_post_with_the_token_from_hx_headers_is_accepted(agent: Agent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    html = client.get(reverse("agents:list")).content.decode()
    token = re.search(r"hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'", html)
    assert token, "the body carries the CSRF token for htmx"
    response = client.post(
        reverse("agents:resume", args=[agent.pk]), HTTP_X_CSRFTOKEN=token.group(1), **HTMX
    )
    assert response.status_code == 200
    assert ResumeRequest.objects.filter(agent=agent).count() == 1


# --- pages and fragments ------------------------------------------------------------------


def test_base_uses_bundled_htmx_and_no_inline_script_or_style(staff: Client, agent: Agent) -> None:
    for url in page_urls(agent):
        html = staff.get(url).content.decode()
        assert "django_htmx/htmx" in html
        assert '"includeIndicatorStyles": false' in html
        assert " style=" not in html and "<style" not in html, url
        for script in re.findall(r"<script[^>]*>", html):
            assert "src=" in script, (url, script)
        assert "https://" not in re.sub(r"<pre.*?</pre>", "", html, flags=re.S), url


def test_list_htmx_request_gets_the_table_fragment_only(staff: Client, agent: Agent) -> None:
    response = staff.get(reverse("agents:list") + "?status=interrupted", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "<body" not in html
    assert html.lstrip().startswith('<div id="agent-table"')
    assert 'hx-trigger="every 3s"' in html
    assert "agent-1" in html


def test_list_keeps_filters_and_checked_boxes_when_it_refreshes(
    sh: Statehouse, staff: Client
) -> None:
    first = make_agent(sh, "alpha-1")
    second = make_agent(sh, "alpha-2")
    url = reverse("agents:list") + f"?status=interrupted&q=alpha&agent={second.pk}"
    html = staff.get(url, **HTMX).content.decode()
    poll = re.search(r'hx-get="([^"]+)"', html)
    assert poll and "status=interrupted" in poll.group(1) and "q=alpha" in poll.group(1)
    assert "agent=" not in poll.group(1)  # the checked boxes come from the form, not the URL
    assert re.search(rf'value="{second.pk}"[^>]*checked', html)
    assert not re.search(rf'value="{first.pk}"[^>]*checked', html)


def test_list_row_shows_status_steps_and_owner(sh: Statehouse, staff: Client) -> None:
    make_agent(sh, "runner", status="running", steps=3)
    make_agent(sh, "stopper", status="interrupted", steps=3)
    html = staff.get(reverse("agents:list")).content.decode()
    runner = re.search(r'<tr id="agent-row-\d+" class="row row-running">.*?</tr>', html, re.S)
    assert runner and "runner" in runner.group(0)
    assert "2 done · 1 pending" in runner.group(0)
    assert "pid " in runner.group(0)  # owner host and pid of a running agent
    assert ">Resume<" not in runner.group(0)
    stopper = re.search(r'<tr id="agent-row-\d+" class="row row-interrupted">.*?</tr>', html, re.S)
    assert stopper and ">Resume<" in stopper.group(0) and 'name="agent"' in stopper.group(0)


def test_list_status_tabs_put_interrupted_first_with_counts(sh: Statehouse, staff: Client) -> None:
    make_agent(sh, "i1")
    make_agent(sh, "i2")
    make_agent(sh, "c1", status="completed")
    html = staff.get(reverse("agents:list")).content.decode()
    tabs = re.findall(r'class="tab tab-(\w+)".*?<span class="tab-count">(\d+)</span>', html, re.S)
    assert tabs[0] == ("interrupted", "2")
    assert dict(tabs)["completed"] == "1" and dict(tabs)["all"] == "3"


def test_list_search_and_namespace_filter(sh: Statehouse, staff: Client) -> None:
    make_agent(sh, "searchme", task={"task": "find the purple elephant"})
    make_agent(sh, "other", namespace="billing")
    by_task = staff.get(reverse("agents:list") + "?q=PURPLE").content.decode()
    assert "searchme" in by_task and ">other<" not in by_task
    by_ns = staff.get(reverse("agents:list") + "?namespace=billing").content.decode()
    assert ">other<" in by_ns and "searchme" not in by_ns


def test_list_pages_follow_next_and_previous_links(
    sh: Statehouse, staff: Client, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr("statehouse_agents.dashboard.list_page.PAGE_SIZE", 3)
    make_agents(7)
    seen: list[str] = []
    url = reverse("agents:list") + "?status=interrupted"
    while url:
        html = staff.get(url).content.decode()
        seen += re.findall(r'class="agent-link">(bulk-\d+)</a>', html)
        found = re.search(r'href="([^"]+)" rel="next"', html)
        url = found.group(1).replace("&amp;", "&") if found else ""
        assert not found or "status=interrupted" in url
        assert len(seen) <= 3 or 'rel="prev"' in html
    assert sorted(seen) == [f"bulk-{i:03d}" for i in range(7)]


def test_detail_shows_timeline_lease_task_and_keys(sh: Statehouse, staff: Client) -> None:
    found = make_agent(sh, "detailed", steps=3)
    with Statehouse() as other, other.begin_transaction() as tx:
        tx.write(agent_id="detailed", key="step:3", value={"status": "failed", "error": "boom"})
    html = staff.get(found.get_absolute_url()).content.decode()
    assert html.count('class="step step-done"') == 2
    assert html.count('class="step step-pending step-in-doubt"') == 1
    assert html.count('class="step step-failed"') == 1
    for label in ("Done", "Failed"):
        assert f'<span class="step-label">{label}</span>' in html
    # The agent is interrupted: its pending step shows as in doubt, with its policy.
    assert html.count('data-testid="in-doubt"') == 1
    assert "policy retry" in html
    assert "boom" in html and "took" in html
    assert "do the work of detailed" in html
    assert "no process holds this agent" in html
    assert ">Resume<" in html


def test_detail_htmx_poll_gets_the_live_fragment(sh: Statehouse, staff: Client) -> None:
    found = make_agent(sh, "live", status="running")
    response = staff.get(found.get_absolute_url(), HTTP_HX_TARGET="agent-live", **HTMX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="agent-live"')
    assert 'hx-trigger="every 3s"' in html and "<html" not in html


def test_detail_of_completed_agent_stops_polling_and_offers_no_resume(
    sh: Statehouse, staff: Client
) -> None:
    found = make_agent(sh, "done", status="completed")
    html = staff.get(found.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 3s"' not in html
    assert ">Resume<" not in html


def test_long_value_is_truncated_with_a_way_to_see_it_all(sh: Statehouse, staff: Client) -> None:
    found = make_agent(sh, "big", status="completed")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="big", key="notes", value={"lines": [f"line {i}" for i in range(80)]})
    html = staff.get(found.get_absolute_url()).content.decode()
    assert "Show all" in html and "line 79" in html  # inside <details>


def test_key_history_diff_shows_added_and_removed_lines(staff: Client, agent: Agent) -> None:
    url = reverse("agents:key-history", args=[agent.pk]) + "?key=doc&a=1&b=2"
    html = staff.get(url).content.decode()
    removed = re.findall(r'<tr class="diff-removed">.*?<code>(.*?)</code>', html, re.S)
    added = re.findall(r'<tr class="diff-added">.*?<code>(.*?)</code>', html, re.S)
    assert [line.strip() for line in removed] == ["&quot;b&quot;: 2"]
    assert [line.strip() for line in added] == ["&quot;b&quot;: 3,", "&quot;c&quot;: 4"]


def test_key_history_defaults_to_latest_two_versions(staff: Client, agent: Agent) -> None:
    html = staff.get(reverse("agents:key-history", args=[agent.pk]) + "?key=doc").content
    assert b"Changes from v1 to v2" in html


def _replay_rows(html: str) -> list[tuple[int, str, int]]:
    """(commit, key, version) of each operation a replay page lists, in the page's order."""
    cells = re.findall(
        r'<td data-label="Commit">(\d+)</td>.*?<code>([^<]*)</code></a></td>\s*'
        r'<td data-label="Version">v(\d+)</td>',
        html,
        flags=re.S,
    )
    return [(int(commit), key, int(version)) for commit, key, version in cells]


def _link(html: str, rel: str) -> str | None:
    found = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def _write_versions(sh: Statehouse, agent_id: str, count: int, *, per_commit: int) -> None:
    for start in range(0, count, per_commit):
        with sh.begin_transaction() as tx:
            for n in range(start, min(start + per_commit, count)):
                tx.write(agent_id=agent_id, key=f"note:{n:03}", value={"n": n})


def test_replay_pages_seek_forward_and_back_in_commit_order(sh: Statehouse, staff: Client) -> None:
    # 123 operations, three per commit: pages end inside a commit, so the seek's tie-break
    # on the row id is exercised; pages hold 50, 50 and 23.
    _write_versions(sh, "replayed", 123, per_commit=3)
    found = Agent.objects.get(agent_id="replayed")
    expected = [
        (v.commit_id, v.key, v.version)
        for v in Version.objects.filter(agent=found).order_by("commit_id", "id")
    ]
    assert len(expected) == 123
    url: str | None = reverse("agents:replay", args=[found.pk])
    pages = []
    while url:
        html = staff.get(url).content.decode()
        pages.append(html)
        url = _link(html, "next")
    assert [len(_replay_rows(html)) for html in pages] == [50, 50, 23]
    assert [row for html in pages for row in _replay_rows(html)] == expected
    assert _link(pages[0], "prev") is None and _link(pages[-1], "next") is None
    assert "(123 operations)" in pages[0] and "50 shown of 123" in pages[0]
    # Back from the last page: the middle page again, exactly.
    back = staff.get(_link(pages[-1], "prev") or "").content.decode()
    assert _replay_rows(back) == _replay_rows(pages[1])
    assert _link(back, "next") and _link(back, "prev")


@pytest.mark.parametrize(("count", "pages"), [(49, 1), (50, 1), (51, 2)])
def test_replay_page_boundaries(sh: Statehouse, staff: Client, count: int, pages: int) -> None:
    _write_versions(sh, "edge", count, per_commit=1)
    url: str | None = reverse("agents:replay", args=[Agent.objects.get(agent_id="edge").pk])
    sizes = []
    while url:
        html = staff.get(url).content.decode()
        sizes.append(len(_replay_rows(html)))
        url = _link(html, "next")
    assert len(sizes) == pages and sum(sizes) == count


def test_replay_of_an_agent_with_nothing_committed_says_so(staff: Client) -> None:
    found = Agent.objects.create(
        namespace="default", agent_id="empty", created_at=now(), last_activity_at=now()
    )
    html = staff.get(reverse("agents:replay", args=[found.pk])).content.decode()
    assert "Nothing committed for this agent." in html and 'rel="next"' not in html


@pytest.mark.parametrize(
    "query",
    [
        "?after=abc",
        "?after=1_",
        "?after=_1",
        "?after=-1_2",
        "?before=1.5_2",
        "?after=" + "9" * 41,
        "?after=99999999999999999999_1",
        "?page=2_1&after=1_x",
    ],
)
def test_replay_refuses_a_position_that_is_not_one(staff: Client, agent: Agent, query: str) -> None:
    response = staff.get(reverse("agents:replay", args=[agent.pk]) + query)
    assert response.status_code == 400
    html = response.content.decode()
    assert "This is not a position in the replay log; start again from the first page." in html
    assert "<table" not in html


def test_replay_position_past_the_end_shows_an_empty_page(staff: Client, agent: Agent) -> None:
    response = staff.get(reverse("agents:replay", args=[agent.pk]) + f"?after={2**63 - 1}_1")
    assert response.status_code == 200
    assert "Nothing committed for this agent." in response.content.decode()


# --- escaping -------------------------------------------------------------------------------


def test_script_and_quotes_in_ids_keys_and_values_are_escaped(
    sh: Statehouse, staff: Client
) -> None:
    evil = "<script>alert('x')</script>"
    found = make_agent(sh, "evil-<script>", task={"task": evil}, status="interrupted")
    with sh.begin_transaction() as tx:
        tx.write(agent_id="evil-<script>", key=evil, value={"v": evil, "q": 'say "hi"'})
    with sh.begin_transaction() as tx:
        tx.write(agent_id="evil-<script>", key=evil, value={"v": evil, "q": 'say "hi" 2'})
    key_url = reverse("agents:key-history", args=[found.pk])
    urls = [
        reverse("agents:overview"),
        reverse("agents:list"),
        reverse("agents:list") + "?q=" + "%3Cscript%3E",
        found.get_absolute_url(),
        key_url + "?key=%3Cscript%3Ealert('x')%3C%2Fscript%3E",
        reverse("agents:replay", args=[found.pk]),
    ]
    for url in urls:
        response = staff.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;alert(&#x27;x&#x27;)" in html, url
    html = staff.get(found.get_absolute_url()).content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)" in html
    assert "say \\&quot;hi\\&quot; 2" in html  # the JSON text, escaped


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?status=bogus", 400, "Unknown status"),
        ("?namespace=nowhere", 404, "There is no agent in namespace"),
        ("?q=" + "x" * 201, 400, "at most 200 characters"),
        ("?sort=sideways", 400, "Unknown sort order"),
        ("?after=not-a-cursor", 400, "not a position in the list"),
        ("?after=99999999999999999999999_1", 400, "not a position in the list"),
        ("?agent=abc&agent=-1", 200, "Agents"),
    ],
)
def test_list_malformed_input_gives_a_clear_message(
    staff: Client, agent: Agent, query: str, status: int, message: str
) -> None:
    response = staff.get(reverse("agents:list") + query)
    assert response.status_code == status
    assert message in response.content.decode()
    htmx = staff.get(reverse("agents:list") + query, **HTMX)
    assert htmx.status_code == status


def test_key_history_works_on_a_key_whose_old_versions_were_pruned(
    sh: Statehouse, staff: Client
) -> None:
    """`prune --versions` keeps the numbers of the versions it keeps: the newest is not
    the count of versions, and the version before one may be gone."""
    found = make_agent(sh, "pruned", status="completed")
    for n in range(1, 4):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="pruned", key="notes", value={"n": n})
    call_command("prune", "--versions", "0s", stdout=io.StringIO())
    assert Version.objects.filter(agent=found, key="notes").count() == 1  # v3 alone
    url = reverse("agents:key-history", args=[found.pk]) + "?key=notes"

    response = staff.get(url)
    assert response.status_code == 200
    history = response.context["history"]
    assert (history.new.version, history.old) == (3, None)
    assert [row["diff_url"] for row in history.version_links] == [""]

    for n in (4, 5):  # history goes on after a prune; the version before 4 is 3
        with sh.begin_transaction() as tx:
            tx.write(agent_id="pruned", key="notes", value={"n": n})
    history = staff.get(url).context["history"]
    assert (history.old.version, history.new.version) == (4, 5)
    links = {row["version"].version: row["diff_url"] for row in history.version_links}
    assert links[5].endswith("a=4&b=5") and links[4].endswith("a=3&b=4") and links[3] == ""
    history = staff.get(url + "&b=4").context["history"]
    assert (history.old.version, history.new.version) == (3, 4)
    assert [(line.kind, line.text) for line in history.diff if line.kind != "context"] == [
        ("removed", '  "n": 3'),
        ("added", '  "n": 4'),
    ]

    response = staff.get(url + "&b=2")
    assert response.status_code == 404
    assert response.context["history"].problem == [
        "Key 'notes' has no version 2 (it has versions 3 to 5; the others were pruned)."
    ]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("", 400, "Name a key"),
        ("?key=missing", 404, "has no key"),
        ("?key=doc&a=abc", 400, "whole number"),
        ("?key=doc&b=99", 404, "has no version 99"),
        ("?key=doc&a=0", 400, "greater than or equal to 1"),
        ("?key=doc&b=99999999999999999999", 400, "less than or equal to"),
        ("?key=doc&page=zzz", 200, "Changes from v1 to v2"),
        ("?key=" + "k" * 300, 400, "at most 255"),
    ],
)
def test_key_history_malformed_input_gives_a_clear_message(
    staff: Client, agent: Agent, query: str, status: int, message: str
) -> None:
    response = staff.get(reverse("agents:key-history", args=[agent.pk]) + query)
    assert response.status_code == status
    assert message in response.content.decode()


def test_detail_keys_page_number_is_clamped(staff: Client, agent: Agent) -> None:
    assert staff.get(agent.get_absolute_url() + "?keys=nope").status_code == 200
    assert staff.get(agent.get_absolute_url() + "?keys=424242").status_code == 200


def test_unknown_agent_is_404_everywhere(staff: Client, agent: Agent) -> None:
    missing = agent.pk + 1000
    for name in ("agents:detail", "agents:key-history", "agents:replay"):
        assert staff.get(reverse(name, args=[missing]) + "?key=doc").status_code == 404
    assert staff.post(reverse("agents:resume", args=[missing])).status_code == 404
    assert staff.get("/agents/not-a-number/").status_code == 404
    page = staff.get(reverse("agents:detail", args=[missing])).content.decode()
    assert f"No agent with id {missing}." in page and "Resolver404" not in page
    assert not ResumeRequest.objects.exists()


def test_resume_of_a_completed_agent_is_a_clear_message(sh: Statehouse, staff: Client) -> None:
    found = make_agent(sh, "finished", status="completed")
    response = staff.post(reverse("agents:resume", args=[found.pk]), follow=True)
    assert response.status_code == 200
    assert "only interrupted or failed agents can be resumed" in response.content.decode()
    htmx = staff.post(reverse("agents:resume", args=[found.pk]), **HTMX)
    assert htmx.status_code == 200 and b"Not resumed" in htmx.content
    assert not ResumeRequest.objects.exists()


def test_bulk_resume_with_bad_or_no_ids_changes_nothing(staff: Client, agent: Agent) -> None:
    bad = staff.post(reverse("agents:bulk-resume"), {"agent": ["abc", str(agent.pk)]}, follow=True)
    assert "not valid ids" in bad.content.decode()
    empty = staff.post(reverse("agents:bulk-resume"), {}, follow=True)
    assert "Select at least one agent" in empty.content.decode()
    assert not ResumeRequest.objects.exists()


def test_redirect_after_action_stays_on_this_site(staff: Client, agent: Agent) -> None:
    response = staff.post(
        reverse("agents:resume", args=[agent.pk]), {"next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert response["Location"] == agent.get_absolute_url()


# --- actions --------------------------------------------------------------------------------


def test_resume_one_creates_a_request_and_moves_the_agent_to_resuming(
    staff: Client, agent: Agent
) -> None:
    next_url = reverse("agents:list") + "?status=interrupted"
    response = staff.post(reverse("agents:resume", args=[agent.pk]), {"next": next_url})
    assert response.status_code == 302 and response["Location"] == next_url
    request = ResumeRequest.objects.get(agent=agent)
    assert (request.source, request.requested_by) == ("dashboard", "ops")
    assert status_of(agent) == "resuming"
    page = staff.get(next_url).content.decode()
    assert "Resume of agent-1 requested" in page


def test_resume_one_by_htmx_returns_the_row_and_an_oob_message(staff: Client, agent: Agent) -> None:
    response = staff.post(
        reverse("agents:resume", args=[agent.pk]),
        HTTP_HX_TARGET=f"agent-row-{agent.pk}",
        HTTP_HX_CURRENT_URL="http://testserver/agents/?status=interrupted",
        **HTMX,
    )
    html = response.content.decode()
    assert html.lstrip().startswith(f'<tr id="agent-row-{agent.pk}" class="row row-resuming">')
    assert 'id="messages"' in html and 'hx-swap-oob="true"' in html
    assert "Resume of agent-1 requested" in html
    assert status_of(agent) == "resuming"


def test_resume_from_the_agent_page_by_htmx_returns_the_live_fragment(
    staff: Client, agent: Agent
) -> None:
    response = staff.post(
        reverse("agents:resume", args=[agent.pk]), HTTP_HX_TARGET="agent-live", **HTMX
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="agent-live"')
    assert "status-resuming" in html and "Queued" in html


def test_resume_twice_reuses_the_open_request(staff: Client, agent: Agent) -> None:
    staff.post(reverse("agents:resume", args=[agent.pk]))
    response = staff.post(reverse("agents:resume", args=[agent.pk]), follow=True)
    assert "already requested" in response.content.decode()
    assert ResumeRequest.objects.filter(agent=agent).count() == 1


def test_bulk_resume_queues_the_checked_agents(sh: Statehouse, staff: Client) -> None:
    chosen = [make_agent(sh, f"pick-{i}") for i in range(3)]
    failed = make_agent(sh, "pick-failed", status="failed")
    done = make_agent(sh, "pick-done", status="completed")
    left = make_agent(sh, "left-alone")
    pks = [str(a.pk) for a in [*chosen, failed, done]]
    response = staff.post(
        reverse("agents:bulk-resume"),
        {"agent": pks},
        HTTP_HX_CURRENT_URL="http://testserver/agents/?status=interrupted",
        **HTMX,
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="agent-table"')
    assert "Resume requested for 4 agents. 1 skipped" in html
    assert ResumeRequest.objects.count() == 4
    assert all(status_of(a) == "resuming" for a in [*chosen, failed])
    assert status_of(done) == "completed" and status_of(left) == "interrupted"
    # Still on the interrupted tab: the resumed agents left it.
    assert "left-alone" in html and "pick-0" not in html


def test_bulk_resume_without_htmx_redirects_back_with_a_message(
    sh: Statehouse, staff: Client
) -> None:
    chosen = [make_agent(sh, f"nojs-{i}") for i in range(2)]
    response = staff.post(
        reverse("agents:bulk-resume"),
        {"agent": [str(a.pk) for a in chosen], "next": "/agents/?status=resuming"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/agents/?status=resuming"
    html = response.content.decode()
    assert "Resume requested for 2 agents." in html
    assert "nojs-0" in html and "nojs-1" in html


# --- query budgets --------------------------------------------------------------------------


@pytest.fixture
def rows(request: pytest.FixtureRequest, sh: Statehouse) -> Agent:
    """`n` agents, and one agent with `n` steps, `n` keys and a key of `n` versions."""
    n = request.param
    make_agents(n)
    with sh.begin_transaction() as tx:
        tx.write(agent_id="wide", key="task", value={"task": "wide"})
        for i in range(n):
            tx.write(agent_id="wide", key=f"step:{i}", value={"status": "done", "result": i})
            tx.write(agent_id="wide", key=f"k{i}", value={"i": i})
    for i in range(n):
        with sh.begin_transaction() as tx:
            tx.write(agent_id="wide", key="doc", value={"i": i})
    client = Statehouse()
    client.request_resume("bulk-000") if n else None
    client.close()
    return Agent.objects.get(agent_id="wide")


BUDGETS: list[tuple[str, Callable[[Agent], str], int]] = [
    ("overview", lambda a: reverse("agents:overview"), 12),  # +3: LLM usage
    ("list", lambda a: reverse("agents:list"), 6),
    ("list-tab", lambda a: reverse("agents:list") + "?status=interrupted&q=bulk", 6),
    ("detail", lambda a: a.get_absolute_url(), 13),  # +3: LLM usage, rerun cost; +1: approvals
    ("history", lambda a: reverse("agents:key-history", args=[a.pk]) + "?key=doc", 6),
    ("replay", lambda a: reverse("agents:replay", args=[a.pk]), 6),
    ("replay-later", lambda a: reverse("agents:replay", args=[a.pk]) + "?after=1_1", 6),
    ("replay-earlier", lambda a: reverse("agents:replay", args=[a.pk]) + f"?before={2**40}_1", 6),
]


@pytest.mark.parametrize("rows", [1, 50], indirect=True)
@pytest.mark.parametrize(("name", "url", "budget"), BUDGETS, ids=[b[0] for b in BUDGETS])
def test_query_count_is_fixed_whatever_the_rows(
    staff: Client,
    rows: Agent,
    name: str,
    url: Callable[[Agent], str],
    budget: int,
    django_assert_max_num_queries: Any,
) -> None:
    target = url(rows)
    staff.get(target)  # warm the session
    with django_assert_max_num_queries(budget):
        assert staff.get(target).status_code == 200


@pytest.mark.parametrize("rows", [1, 50], indirect=True)
def test_htmx_list_poll_query_count_is_fixed(
    staff: Client, rows: Agent, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(6):
        assert staff.get(reverse("agents:list"), **HTMX).status_code == 200
