"""The API's URLs: /api/v1/ (endpoints), /api/v1/openapi.json (schema), /api/v1/docs."""

from __future__ import annotations

from django.urls import path
from ninja import NinjaAPI
from statehouse_agents.api import errors
from statehouse_agents.api.auth import TokenAuth
from statehouse_agents.api.views import router

from statehouse import __version__

api = NinjaAPI(
    title="Statehouse API",
    version=__version__,
    description="A durable, versioned state store for AI agents, over HTTP. Every request "
    "sends `Authorization: Bearer <token>` (docs/api.md).",
    auth=TokenAuth(),
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)
errors.install(api)
api.add_router("/", router)

urlpatterns = [path("api/v1/", api.urls)]
