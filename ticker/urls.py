"""Top-level URLs: the dashboard, authentication and the admin."""

from django.contrib import admin
from django.urls import include, path

from dashboard.login_throttle import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("dashboard.urls")),
]
