"""ASGI entry point: HTTP through Django, WebSockets through Channels.

Every WebSocket passes the Origin check (scheme, host and port: ``SameOriginValidator``),
then the per-address limit on handshakes no user answers for (``AddressGate``, before any
lookup: close 4429), then the session lookup (``SessionAuthStack``: Channels' own, batched
across concurrent handshakes), then a bearer token if the handshake carries one
(``BearerTokenMiddleware``: scripts), then ``ChargeUnknownSessions`` (a session that named
nobody counts toward its address's limit), then the router, whose routes are each behind
``StreamAdmission`` (no authenticated user: close 4401; over the per-user bounds: 4429).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ticker.settings")

# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from dashboard.streams.address_limit import AddressGate, ChargeUnknownSessions  # noqa: E402
from dashboard.streams.origin import SameOriginValidator  # noqa: E402
from dashboard.streams.routing import websocket_urlpatterns  # noqa: E402
from dashboard.streams.session_auth import SessionAuthStack  # noqa: E402
from dashboard.streams.token_auth import BearerTokenMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(
            AddressGate(
                SessionAuthStack(BearerTokenMiddleware(ChargeUnknownSessions(URLRouter(websocket_urlpatterns))))
            )
        ),
    }
)
