"""HTTP routes of the dashboard."""

from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("symbols/<str:symbol>/", views.symbol_page, name="symbol"),
]
