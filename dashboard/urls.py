"""HTTP routes of the dashboard."""

from django.urls import path

from dashboard import api, views

app_name = "dashboard"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("symbols/<str:symbol>/", views.symbol_page, name="symbol"),
    path("api/symbols/", api.symbols, name="api-symbols"),
    path("api/symbols/<str:symbol>/candles/", api.candles, name="api-candles"),
    path("api/watchlists/", api.watchlists, name="api-watchlists"),
    path("api/watchlists/<int:pk>/", api.watchlist, name="api-watchlist"),
]
