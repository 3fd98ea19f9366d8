from django.contrib import admin
from django.urls import include, path

from statehouse_site.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("statehouse_agents.api.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("statehouse_agents.urls")),
]
