from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, path
from statehouse_agents import operator_views, token_views, views

app_name = "agents"


def named_after(prefix: str, *pages: Callable[..., Any]) -> list[URLPattern]:
    """Pages whose URL segment and URL name are the view's own name: `<prefix><name>/`."""
    return [path(f"{prefix}{page.__name__}/", page, name=page.__name__) for page in pages]


urlpatterns = [
    path("", views.overview, name="overview"),
    path("agents/", views.agent_list, name="list"),
    path("agents/resume/", views.bulk_resume, name="bulk-resume"),
    path("agents/<int:pk>/", views.agent_detail, name="detail"),
    path("agents/<int:pk>/history/", views.key_history, name="key-history"),
    *named_after(
        "agents/<int:pk>/", views.replay, views.resume, operator_views.edit, operator_views.fork
    ),
    *named_after("agents/", operator_views.compare),
    path("approvals/<int:pk>/decide/", operator_views.decide, name="decide"),
    path(
        "agents/<int:pk>/steps/decide/",
        operator_views.decide_in_doubt_step,
        name="decide-step",
    ),
    *(
        path(f"agents/<int:pk>/{action}/", views.control, {"action": action}, name=action)
        for action in ("cancel", "pause", "unpause")
    ),
    path("agents/cancel/", views.bulk_cancel, name="bulk-cancel"),
    path("agents/cancel-matching/", views.cancel_matching, name="cancel-matching"),
    *named_after("", views.audit, views.storage),
    path("api-tokens/", token_views.token_list, name="api-tokens"),
    path("api-tokens/new/", token_views.token_create, name="api-token-create"),
    path("api-tokens/<int:pk>/revoke/", token_views.token_revoke, name="api-token-revoke"),
]
