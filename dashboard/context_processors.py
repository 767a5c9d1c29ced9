"""Template context every page gets: the logged-in trader's display preferences.

Rendered into ``<html data-clock data-palette>`` so the page has the trader's palette and
clock from its first paint, in any browser they log in from.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard.selectors import preferences_for


def ticker_preferences(request: HttpRequest) -> dict[str, Any]:
    return {"ticker_prefs": preferences_for(getattr(request, "user", None))}
