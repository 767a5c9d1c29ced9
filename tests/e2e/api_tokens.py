"""Personal API tokens for end-to-end tests, created the way a trader does: on the settings page."""

from __future__ import annotations

import html
import re

from tests.e2e.stack import TRADER, HttpSession


def create_token(
    session: HttpSession, name: str, *, read_only: bool = False, password: str = TRADER[1]
) -> tuple[int, str]:
    """Create a token through the real form, which asks for the session's user's current
    ``password`` (the trader's by default); returns its id and its secret (shown once)."""
    fields: dict[str, object] = {"name": name, "expires_in_days": "1", "password": password}
    if read_only:
        fields["read_only"] = "on"
    page = session.post_form("/settings/tokens/", fields)
    secret = re.search(r'class="secret-value" readonly value="([^"]+)"', page)
    assert secret, "the page shows the new token"
    ids = [int(i) for i in re.findall(r'action="/settings/tokens/(\d+)/revoke/"', page)]
    assert ids, "the page lists the new token"
    return max(ids), html.unescape(secret.group(1))


def revoke_token(session: HttpSession, token_id: int) -> None:
    page = session.post_form(f"/settings/tokens/{token_id}/revoke/", {}, form_path="/settings/tokens/")
    assert "Token revoked: it is refused from now on." in page
