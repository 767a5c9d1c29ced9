"""WebSocket URL routes, each behind ``StreamAdmission`` (wrapped by the Origin check and
the session lookup in ``ticker.asgi``)."""

from django.urls import path, re_path

from dashboard.streams.admission import StreamAdmission
from dashboard.streams.consumers import StreamConsumer, SymbolConsumer

websocket_urlpatterns = [
    path("ws/stream/", StreamAdmission(StreamConsumer.as_asgi(), "stream")),
    # Any segment routes here; the consumer answers a malformed code with an error frame.
    re_path(r"^ws/symbols/(?P<symbol>[^/]{1,40})/$", StreamAdmission(SymbolConsumer.as_asgi(), "symbol")),
]
