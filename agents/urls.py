from django.urls import path
from statehouse_agents import operator_views, token_views, views

app_name = "agents"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("agents/", views.agent_list, name="list"),
    path("agents/resume/", views.bulk_resume, name="bulk-resume"),
    path("agents/<int:pk>/", views.agent_detail, name="detail"),
    path("agents/<int:pk>/history/", views.key_history, name="key-history"),
    path("agents/<int:pk>/replay/", views.replay, name="replay"),
    path("agents/<int:pk>/resume/", views.resume, name="resume"),
    path("agents/<int:pk>/edit/", operator_views.edit, name="edit"),
    path("agents/<int:pk>/fork/", operator_views.fork, name="fork"),
    path("agents/compare/", operator_views.compare, name="compare"),
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
    path("audit/", views.audit, name="audit"),
    path("storage/", views.storage, name="storage"),
    path("api-tokens/", token_views.token_list, name="api-tokens"),
    path("api-tokens/new/", token_views.token_create, name="api-token-create"),
    path("api-tokens/<int:pk>/revoke/", token_views.token_revoke, name="api-token-revoke"),
]
