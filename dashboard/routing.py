"""WebSocket URL routes (wrapped by origin and session checks in ``ticker.asgi``)."""

from django.urls import path, re_path

from dashboard.consumers import StreamConsumer, SymbolConsumer

websocket_urlpatterns = [
    path("ws/stream/", StreamConsumer.as_asgi()),
    # Any segment routes here; the consumer answers a malformed code with an error frame.
    re_path(r"^ws/symbols/(?P<symbol>[^/]{1,40})/$", SymbolConsumer.as_asgi()),
]
