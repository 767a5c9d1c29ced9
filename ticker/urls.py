"""Top-level URLs: probes, the dashboard, authentication and the admin."""

from django.contrib import admin
from django.urls import include, path

from dashboard.login_throttle import ThrottledLoginView
from ticker import health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("dashboard.urls")),
]
