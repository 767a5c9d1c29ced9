"""The trader's display preferences (clock, palette): read and changed by the pages' prefs.js."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_http_methods

from dashboard.selectors import preferences_for
from dashboard.services import set_preferences


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> JsonResponse:
    """GET: the preferences. POST a JSON object with ``clock`` and/or ``palette``: change them
    (Django's CSRF check applies: the page sends its token in ``X-CSRFToken``)."""
    if request.method == "GET":
        return JsonResponse(preferences_for(request.user))
    try:
        changes = json.loads(request.body or b"{}")
    except ValueError:
        changes = None
    if not isinstance(changes, dict):
        return JsonResponse({"error": "bad_request", "message": "the body must be a JSON object"}, status=400)
    try:
        return JsonResponse(set_preferences(request.user, changes))
    except ValueError as err:
        return JsonResponse({"error": "bad_request", "message": str(err)}, status=400)
