"""HTTP routes of the dashboard: the pages, the API (``dashboard.api``) and the tokens page."""

from django.urls import path, re_path

from dashboard import api, preference_views, token_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("symbols/<str:symbol>/", views.symbol_page, name="symbol"),
    path("settings/tokens/", token_views.tokens_page, name="tokens"),
    path("settings/preferences/", preference_views.preferences, name="preferences"),
    path("settings/tokens/<int:token_id>/revoke/", token_views.revoke_token, name="revoke-token"),
    path("api/", api.api.urls),
    # Anything else under /api/ is a 404 in the API's error shape, not an HTML page.
    re_path(r"^api/", api.not_found, name="api-not-found"),
]
