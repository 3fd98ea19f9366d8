"""The operator's dashboard: thin function views over `statehouse_agents.dashboard` (reads) and
`statehouse_agents.store.resume` (the one write an operator makes here: asking for a resume).

Every page needs a login; actions need staff rights and a POST with a CSRF token. An htmx
request gets the fragment it swaps (plus the messages, out of band); any other request
gets the whole page, or a redirect after an action, so everything works without JavaScript.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails
from statehouse_agents import dashboard
from statehouse_agents.access import page, staff_action, staff_form, staff_page
from statehouse_agents.models import Agent, ResumeRequest
from statehouse_agents.store import operator
from statehouse_agents.store.resume import request_resume, resume_selected

from statehouse.errors import (
    NotFoundError,
    NotResumableError,
    OperatorActionError,
    StatehouseError,
)

MAX_BULK = 1000


class HtmxHttpRequest(HttpRequest):
    """A request through django-htmx's middleware, which sets `htmx` on every request."""

    htmx: HtmxDetails


def _agent_or_404(pk: int) -> Agent:
    agent = dashboard.agent_for_page(pk)
    if agent is None:
        raise Http404(f"No agent with id {pk}.")
    return agent


# --- pages ------------------------------------------------------------------------------


def _table_page(request: HtmxHttpRequest, fragment: str, page: Any) -> HttpResponse:
    """A filtered table page: the whole page, or only its table ("page.html#table") when
    htmx asks for it from the page's own filters."""
    template = fragment if request.htmx and not request.htmx.boosted else fragment.split("#")[0]
    return render(request, template, {"page": page}, status=page.status_code)


@page
def overview(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "agents/overview.html", dashboard.overview())


@page
def agent_list(request: HtmxHttpRequest) -> HttpResponse:
    return _table_page(
        request, "agents/agent_list.html#agent-table", dashboard.agent_list(request.GET)
    )


@page
def agent_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    agent = _agent_or_404(pk)
    if request.htmx and request.htmx.target == "agent-live":
        return render(request, "agents/agent_detail.html#agent-live", dashboard.agent_live(agent))
    context = dashboard.agent_detail(agent, keys_page=request.GET.get("keys"))
    return render(request, "agents/agent_detail.html", context)


@page
def key_history(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    agent = _agent_or_404(pk)
    history = dashboard.key_history(agent, request.GET)
    return render(
        request, "agents/key_history.html", {"history": history}, status=history.status_code
    )


@page
def replay(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    agent = _agent_or_404(pk)
    page = dashboard.replay(agent, request.GET)
    return render(request, "agents/replay.html", {"page": page}, status=page.status_code)


@staff_page
def storage(request: HtmxHttpRequest) -> HttpResponse:
    return render(
        request, "agents/storage.html", dashboard.storage(sums=request.GET.get("sums") == "1")
    )


@page
def audit(request: HtmxHttpRequest) -> HttpResponse:
    return _table_page(request, "agents/audit.html#audit-table", dashboard.audit_log(request.GET))


# --- actions ------------------------------------------------------------------------------


@staff_action
def resume(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    try:
        resume_request, created = request_resume(
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            source=ResumeRequest.Source.DASHBOARD,
            requested_by=request.user.get_username(),
        )
    except (NotFoundError, NotResumableError) as exc:
        messages.error(request, f"Not resumed: {exc}.")
    except StatehouseError as exc:
        messages.error(request, f"The resume request failed: {exc}")
    else:
        if created:
            messages.success(request, f"Resume of {agent} requested (request {resume_request.pk}).")
        else:
            messages.info(request, f"A resume of {agent} was already requested; nothing added.")
    return _after_action(request, agent)


_CONTROLS = {
    "cancel": (operator.cancel_agent, "cancelled"),
    "pause": (operator.pause_agent, "paused"),
    "unpause": (operator.unpause_agent, "unpaused"),
}


@staff_action
def control(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    """Cancel, pause or unpause one agent (docs/operations.md), with an optional reason."""
    agent = get_object_or_404(Agent, pk=pk)
    act, done = _CONTROLS[action]
    reason = request.POST.get("reason", "").strip()[:10_000]
    try:
        act(
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            actor=request.user.get_username(),
            reason=reason,
            source=ResumeRequest.Source.DASHBOARD,
        )
    except (NotFoundError, OperatorActionError) as exc:
        messages.error(request, f"Not {done}: {exc}.")
    except StatehouseError as exc:
        messages.error(request, f"The {action} failed: {exc}")
    else:
        messages.success(request, f"Agent {agent} {done}.")
    return _after_action(request, agent)


def _after_action(request: HtmxHttpRequest, agent: Agent) -> HttpResponse:
    """A redirect back, or for htmx the fragment it targets plus the messages."""
    pk = agent.pk
    if not request.htmx:
        return _redirect_back(request, agent.get_absolute_url())
    target = request.htmx.target or ""
    html: str
    if target == "agent-live":
        fresh = _agent_or_404(pk)
        html = render_to_string(
            "agents/agent_detail.html#agent-live", dashboard.agent_live(fresh), request=request
        )
    elif target == f"agent-row-{pk}":
        context = {
            "agent": _agent_or_404(pk),
            "checked": dashboard.checked_ids(request.POST.getlist("agent")),
        }
        html = render_to_string("agents/agent_list.html#agent-row", context, request=request)
    else:
        html = _table_html(request)
    return HttpResponse(html + _messages_oob(request))


def _after_bulk(request: HtmxHttpRequest) -> HttpResponse:
    """After a bulk action: back to the list (no htmx), or its table with the messages."""
    if not request.htmx:
        return _redirect_back(request, reverse("agents:list"))
    return HttpResponse(_table_html(request, keep_checked=False) + _messages_oob(request))


def _checked_agents(request: HtmxHttpRequest, verb: str, done: str) -> list[int]:
    """The agents checked in the list (their ids, sorted), or [] after saying why none
    will be acted on: an id that is not one, none checked, or more than MAX_BULK."""
    raw = request.POST.getlist("agent")
    pks = sorted(dashboard.checked_ids(raw))
    if len(pks) != len(set(raw)):
        messages.error(request, f"Some selected agents were not valid ids; none was {done}.")
    elif not pks:
        messages.warning(request, f"Select at least one agent to {verb}.")
    elif len(pks) > MAX_BULK:
        messages.error(
            request,
            f"At most {MAX_BULK} agents at a time here; use `manage.py {verb}_agents` for more.",
        )
    else:
        return pks
    return []


@staff_action
def bulk_resume(request: HtmxHttpRequest) -> HttpResponse:
    pks = _checked_agents(request, "resume", "resumed")
    if pks:
        try:
            result = resume_selected(
                pks, source=ResumeRequest.Source.DASHBOARD, requested_by=request.user.get_username()
            )
        except StatehouseError as exc:
            messages.error(request, f"The bulk resume failed: {exc}")
        else:
            queued = result.queued
            text = f"Resume requested for {queued} agent{'s' if queued != 1 else ''}."
            if result.needs_review:
                text += f" {len(result.needs_review)} skipped, needs review: "
                text += _listed(result.needs_review) + " (decide the step on the agent page)."
            if result.skipped:
                text += (
                    f" {result.skipped} skipped: not interrupted or failed, or a resume was "
                    "already requested."
                )
            messages.success(request, text) if queued else messages.warning(request, text)
    return _after_bulk(request)


@staff_action
def bulk_cancel(request: HtmxHttpRequest) -> HttpResponse:
    """Cancel the selected agents; with `dry_run`, only say which would be cancelled."""
    pks = _checked_agents(request, "cancel", "cancelled")
    reason = request.POST.get("reason", "").strip()[:10_000]
    if pks and request.POST.get("dry_run"):
        would = list(
            Agent.objects.filter(pk__in=pks)
            .with_cancellable_status()
            .order_by("agent_id")[:MAX_BULK]
        )
        messages.info(
            request,
            f"Dry run: {len(would)} of {len(pks)} selected agent(s) would be cancelled"
            + (f" ({_listed(would)})" if would else "")
            + "; nothing was changed.",
        )
    elif pks:
        _cancel_and_report(request, pks, reason=reason)
    return _after_bulk(request)


@staff_form
def cancel_matching(request: HtmxHttpRequest) -> HttpResponse:
    """Cancel every agent the list's filters match (docs/operations.md, "Bulk cancel").

    GET is the dry run: how many and which agents, and a form to confirm; nothing is
    written. POST cancels them (a transaction and an audit record per agent, 500 agents a
    transaction) and goes back to the list with what was done."""
    if request.method == "GET":
        page = dashboard.cancel_matching_preview(request.GET)
        return _cancel_matching_page(request, page)
    page = dashboard.cancel_matching_selection(request.POST)
    pks = dashboard.selected_pks(page) if not page.problem else []
    if len(pks) > dashboard.MAX_CANCEL_MATCHING:
        page.refuse(
            400,
            f"More than {dashboard.MAX_CANCEL_MATCHING:,} agents match; narrow the filters or "
            "use `manage.py cancel_agents`. Nothing was cancelled.",
        )
    if page.problem:
        return _cancel_matching_page(request, page)
    reason = request.POST.get("reason", "").strip()[:10_000]
    _cancel_and_report(request, pks, reason=reason, selection=page.described)
    return HttpResponseRedirect(page.list_url)


def _cancel_and_report(
    request: HtmxHttpRequest, pks: list[int], *, reason: str, selection: str = ""
) -> None:
    """Cancel the agents `pks` (a transaction per 500, an audit record each; the filters
    that chose them, `selection`, kept in it) and say in a message what was done."""
    try:
        cancelled = sum(
            operator.cancel_agents(
                agent_pks=pks,
                actor=request.user.get_username(),
                reason=reason,
                source=ResumeRequest.Source.DASHBOARD,
                selection=selection,
            )
        )
    except StatehouseError as exc:
        messages.error(request, f"The bulk cancel failed: {exc}")
        return
    text = f"Cancelled {cancelled} agent{'s' if cancelled != 1 else ''}"
    text += f" ({selection})." if selection else "."
    if skipped := len(pks) - cancelled:
        text += f" {skipped} skipped: already finished or waiting for a decision."
    messages.success(request, text) if cancelled else messages.warning(request, text)


def _cancel_matching_page(request: HtmxHttpRequest, page: Any) -> HttpResponse:
    return render(request, "agents/cancel_matching.html", {"page": page}, status=page.status_code)


# --- helpers -------------------------------------------------------------------------------


def _listed(items: list[Any], shown: int = 20) -> str:
    return ", ".join(str(i) for i in items[:shown]) + (" …" if len(items) > shown else "")


def _redirect_back(request: HtmxHttpRequest, default: str) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = default
    return HttpResponseRedirect(target or default)


def _current_query(request: HtmxHttpRequest) -> QueryDict:
    """The query string of the page the htmx request came from (its filters and cursor)."""
    current = request.htmx.current_url_abs_path if request.htmx else None
    return QueryDict(urlsplit(current).query if current else "")


def _table_html(request: HtmxHttpRequest, *, keep_checked: bool = True) -> str:
    params = _current_query(request).copy()
    params.setlist("agent", request.POST.getlist("agent") if keep_checked else [])
    page = dashboard.agent_list(params)
    return render_to_string("agents/agent_list.html#agent-table", {"page": page}, request=request)


def _messages_oob(request: HtmxHttpRequest) -> str:
    return render_to_string("base.html#messages", {"oob": True}, request=request)
