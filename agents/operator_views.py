"""Operator actions beyond resume (docs/contract.md §7, docs/operations.md): edit a key,
fork an agent, compare two agents, approve or reject a request, decide an in-doubt step.

Actions need staff rights and a POST with a CSRF token; each calls one store function
(agents/store/edits.py, forks.py, approvals.py) that writes in one transaction with its
audit record. Everything works without JavaScript; htmx swaps a fragment where it helps.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from statehouse_agents import dashboard
from statehouse_agents.access import page, staff_action, staff_form
from statehouse_agents.dashboard.compare_page import compare as compare_page
from statehouse_agents.dashboard.edit_page import EditForm, EditPage, edit_page, preview
from statehouse_agents.dashboard.pager import form_problems
from statehouse_agents.models import Agent, Approval
from statehouse_agents.store.approvals import decide_approval
from statehouse_agents.store.decisions import DECISIONS, decide_step
from statehouse_agents.store.edits import MAX_REASON, edit_key
from statehouse_agents.store.forks import fork_agent
from statehouse_agents.views import (
    HtmxHttpRequest,
    _after_action,
    _agent_or_404,
    _messages_oob,
    _redirect_back,
)

from statehouse.errors import (
    ConflictError,
    LeaseHeldError,
    NotFoundError,
    StatehouseError,
    ValidationError,
)

# --- edit a key -----------------------------------------------------------------------------


def _edit_response(request: HtmxHttpRequest, page: EditPage, status: int = 200) -> HttpResponse:
    template = "agents/edit_key.html"
    if request.htmx and request.htmx.target == "edit-panel":
        # htmx swaps only 2xx answers: the refusal is in the fragment it shows.
        template += "#edit-panel"
        status = 200
    return render(request, template, page.context, status=status)


@staff_form
def edit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: the editor on `?key=`. POST `action=preview`: the diff; `action=save`: the edit."""
    agent = _agent_or_404(pk)
    if request.method == "GET":
        key = request.GET.get("key", "")[:255]
        page = edit_page(agent, key)
        if page.record is None:
            page.problem = f"Agent {agent} has no live key {key!r} to edit."
            return _edit_response(request, page, status=404)
        return _edit_response(request, page)
    form = EditForm(request.POST)
    page = preview(agent, form)
    if not page.previewed:
        return _edit_response(request, page, status=400)
    if request.POST.get("action") != "save":
        return _edit_response(request, page)
    if not form.cleaned_data["reason"].strip():
        form.add_error("reason", "Give a reason to save: it is kept in the audit log.")
        return _edit_response(request, page, status=400)
    try:
        result = edit_key(
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            key=form.cleaned_data["key"],
            value_text=form.cleaned_data["value"],
            expected_version=form.cleaned_data["expected_version"],
            reason=form.cleaned_data["reason"],
            actor=request.user.get_username(),
        )
    except (ConflictError, LeaseHeldError) as exc:
        page.problem = f"Not saved: {exc}. Reload the editor to start from the current value."
        return _edit_response(request, page, status=409)
    except (ValidationError, NotFoundError) as exc:
        page.problem = f"Not saved: {exc}."
        return _edit_response(request, page, status=400)
    except StatehouseError as exc:
        page.problem = f"The edit failed: {exc}"
        return _edit_response(request, page, status=503)
    messages.success(
        request,
        f"Saved {form.cleaned_data['key']} v{result.version} (commit {result.commit_ts}).",
    )
    target = agent.get_absolute_url()
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


# --- fork -----------------------------------------------------------------------------------


class ForkForm(forms.Form):
    new_id = forms.CharField(max_length=255, required=False, label="New agent id")
    step = forms.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    commit_ts = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    resume = forms.BooleanField(required=False)
    reason = forms.CharField(max_length=MAX_REASON, required=False)


@staff_action
def fork(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    agent = get_object_or_404(Agent, pk=pk)
    form = ForkForm(request.POST)
    if not form.is_valid():
        for problem in form_problems(form):
            messages.error(request, f"Not forked: {problem}")
        return _redirect_back(request, agent.get_absolute_url())
    data = form.cleaned_data
    try:
        result = fork_agent(
            namespace=agent.namespace,
            source_id=agent.agent_id,
            new_id=data["new_id"].strip(),
            step=data["step"],
            at_ts=data["commit_ts"],
            resume=data["resume"],
            actor=request.user.get_username(),
            reason=data["reason"],
        )
    except StatehouseError as exc:
        messages.error(request, f"Not forked: {exc}.")
        return _redirect_back(request, agent.get_absolute_url())
    text = f"Forked {agent} as {result.agent} ({result.keys} keys as of commit {result.at_ts})."
    if result.resume_request is not None:
        text += f" Resume requested (request {result.resume_request.pk})."
    messages.success(request, text)
    return HttpResponseRedirect(result.agent.get_absolute_url())


@page
def compare(request: HtmxHttpRequest) -> HttpResponse:
    page = compare_page(request.GET)
    return render(request, "agents/compare.html", {"page": page}, status=page.status_code)


# --- approvals ------------------------------------------------------------------------------


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    comment = forms.CharField(max_length=MAX_REASON, required=False)


@staff_action
def decide(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    approval = get_object_or_404(Approval.objects.select_related("agent"), pk=pk)
    agent = approval.agent
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not decided: choose approve or reject.")
    else:
        approve = form.cleaned_data["decision"] == "approve"
        try:
            decided, resume_request = decide_approval(
                approval_id=approval.pk,
                approve=approve,
                actor=request.user.get_username(),
                comment=form.cleaned_data["comment"],
            )
        except StatehouseError as exc:
            messages.error(request, f"Not decided: {exc}.")
        else:
            text = f"{decided.get_status_display()}: {decided.name!r} of {agent}."
            if resume_request is not None:
                text += f" Resume requested (request {resume_request.pk})."
            messages.success(request, text)
    if not request.htmx:
        return _redirect_back(request, agent.get_absolute_url())
    fresh = _agent_or_404(agent.pk)
    html = render_to_string(
        "agents/agent_detail.html#agent-live", dashboard.agent_live(fresh), request=request
    )
    return HttpResponse(html + _messages_oob(request))


# --- in-doubt steps ------------------------------------------------------------------------

_DECIDED = {"retry": "will run again", "done": "marked done", "failed": "marked failed"}


class StepDecisionForm(forms.Form):
    key = forms.CharField(max_length=255)
    decision = forms.ChoiceField(choices=[(d, d) for d in DECISIONS])
    result = forms.CharField(required=False, strip=False)
    error = forms.CharField(required=False)
    reason = forms.CharField(max_length=MAX_REASON, required=False)


@staff_action
def decide_in_doubt_step(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Run an in-doubt step again, or mark it done (with a JSON result) or failed (with an
    error message): one commit and its audit record (agents/store/decisions.py)."""
    agent = get_object_or_404(Agent, pk=pk)
    form = StepDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Not decided: choose run again, mark done or mark failed.")
        return _after_action(request, agent)
    data = form.cleaned_data
    try:
        decided = decide_step(
            namespace=agent.namespace,
            agent_id=agent.agent_id,
            key=data["key"],
            decision=data["decision"],
            actor=request.user.get_username(),
            reason=data["reason"],
            result_text=data["result"],
            error=data["error"],
        )
    except StatehouseError as exc:
        messages.error(request, f"Not decided: {exc}.")
    else:
        messages.success(
            request,
            f"{data['key']} of {agent} {_DECIDED[data['decision']]} "
            f"(v{decided.version}, commit {decided.commit_ts}).",
        )
    return _after_action(request, agent)
