from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from statehouse_agents.metrics_views import metrics

from statehouse_site.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("statehouse_agents.api.urls")),
    # Only the auth views the product uses: no password reset (it would send mail) and
    # no password change outside the admin's own.
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("statehouse_agents.urls")),
]
