"""Top-level URLs: probes, the dashboard, authentication (every path throttled: ``ticker.auth``) and the admin."""

from django.contrib import admin
from django.urls import include, path

from ticker import auth, health, metrics

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    # Login (here and in the admin) is throttled by django-axes; these two need a hook each.
    path("accounts/password_change/", auth.ThrottledPasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_reset/", auth.ThrottledPasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("dashboard.urls")),
]
